"""Training hooks the toolbox adds to every run (registered through the
``hooks`` hook point by :mod:`toolbox.builtin`)."""
from __future__ import annotations

import inspect

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper

from toolbox.engine.checkpoint import SafeCheckpointHook  # noqa: F401 - re-exported

__all__ = ["ClassFrequencyHook", "MixedPrecisionHook", "ProgressBarHook"]


class ClassFrequencyHook(Hook):
    """Hands the training set's per-class counts to losses that need them.

    A loss (or any module) declaring ``needs_class_frequencies = True`` gets
    ``set_class_frequencies(instance_counts, image_counts[, num_images])`` called once
    before training, with counts from ``dataset.class_frequencies()``.
    Frequencies are therefore never typed into configs.
    """

    priority = "VERY_HIGH"

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        taken = hand_class_frequencies(model, runner.train_dataloader.dataset)
        if taken:
            print_log(f"class frequencies handed to {taken} module(s)", logger="current")


def hand_class_frequencies(model, dataset) -> int:
    """Give every module of ``model`` that declares ``needs_class_frequencies``
    the per-class counts of ``dataset``; returns how many modules took them."""
    takers = [m for m in model.modules() if getattr(m, "needs_class_frequencies", False)]
    if not takers:
        return 0
    while not hasattr(dataset, "class_frequencies") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset  # unwrap RepeatDataset and the like
    if not hasattr(dataset, "class_frequencies"):
        raise TypeError(
            f"{type(takers[0]).__name__} needs class frequencies but the training "
            f"dataset {type(dataset).__name__} has no class_frequencies() method")
    freqs = dataset.class_frequencies()
    for module in takers:
        extra = {}
        if "num_images" in freqs and "num_images" in \
                inspect.signature(module.set_class_frequencies).parameters:
            extra["num_images"] = freqs["num_images"]
        module.set_class_frequencies(freqs["instance_counts"], freqs["image_counts"], **extra)
    return len(takers)


class MixedPrecisionHook(Hook):
    """Keeps heads' outputs and losses in fp32 under autocast (``amp=True``;
    see :mod:`toolbox.engine.amp`), and runs the submodules named in
    ``fp32_modules`` (config key ``amp_fp32_modules``) wholly in fp32; added
    by the runner, not by configs."""

    priority = "VERY_HIGH"

    def __init__(self, fp32_modules=()):
        self.fp32_modules = tuple(fp32_modules or ())

    def before_run(self, runner) -> None:
        from toolbox.engine.amp import keep_fp32, run_in_fp32
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        count = keep_fp32(model)
        run_in_fp32(model, self.fp32_modules)
        wrapper = runner.optim_wrapper
        if not isinstance(wrapper, OptimWrapper):  # testing: no optimizer is built
            return
        dtype = getattr(wrapper, "cast_dtype", None)
        print_log(f"mixed precision: {type(wrapper).__name__}, autocast dtype "
                  f"{dtype or 'float16'}; fp32 outputs/inputs kept for {count} head and "
                  f"loss module(s)" + (f"; run in fp32: {', '.join(self.fp32_modules)}"
                                       if self.fp32_modules else ""), logger="current")


class ProgressBarHook(Hook):
    """tqdm progress bars for training iterations and val/test passes (rank 0).

    The training bar shows done/total iterations, elapsed time and ETA, it/s,
    the loss, the epoch and, once a validation has run, the last value of
    ``metric`` (default: the first metric the evaluator returns, e.g.
    ``coco/bbox_mAP``).
    """

    priority = "LOW"

    def __init__(self, mininterval: float = 1.0, metric: str | None = None):
        self.mininterval = mininterval
        self.metric = metric
        self._bar = None
        self.postfix: dict = {}

    def _open(self, runner, total, desc, initial=0):
        from mmengine.dist import is_main_process
        from tqdm import tqdm
        if is_main_process():
            self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True,
                             mininterval=self.mininterval, leave=True)

    def _close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def before_train(self, runner):
        self._open(runner, runner.max_iters, "train", initial=runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._bar is not None:
            self._bar.update(1)
            if outputs and "loss" in outputs:
                self.postfix.update(loss=f"{float(outputs['loss'].detach()):.3f}",
                                    epoch=runner.epoch + 1)
                self._bar.set_postfix(self.postfix, refresh=False)

    def after_val_epoch(self, runner, metrics=None):
        self._after_epoch(runner, "val")
        if not metrics:
            return
        key = self.metric if self.metric in metrics else \
            next((k for k, v in metrics.items() if isinstance(v, (int, float))), None)
        if key is None:
            return
        self.postfix[key.split("/")[-1]] = f"{float(metrics[key]):.4f}"
        if self._bar is not None:
            self._bar.set_postfix(self.postfix, refresh=True)

    def after_train(self, runner):
        self._close()

    # val and test share mmengine's mode-generic hook methods
    def _before_epoch(self, runner, mode: str = "train"):
        if mode == "train":
            return
        if mode == "val":  # validation interrupts training: park its bar
            self._train_bar, self._bar = self._bar, None
        self._open(runner, len(getattr(runner, f"{mode}_dataloader")), mode)

    def _after_iter(self, runner, batch_idx, data_batch=None, outputs=None, mode="train"):
        if mode != "train" and self._bar is not None:
            self._bar.update(1)

    def _after_epoch(self, runner, mode: str = "train"):
        if mode == "train":
            return
        self._close()
        if mode == "val":
            self._bar = getattr(self, "_train_bar", None)
