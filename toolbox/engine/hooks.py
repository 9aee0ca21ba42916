"""Training hooks the toolbox adds to every run."""
from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from toolbox.engine.checkpoint import SafeCheckpointHook
from toolbox.registry import HOOKS

HOOKS.register_module(module=SafeCheckpointHook)


@HOOKS.register_module()
class ClassFrequencyHook(Hook):
    """Hands the training set's per-class counts to losses that need them.

    A loss (or any module) declaring ``needs_class_frequencies = True`` gets
    ``set_class_frequencies(instance_counts, image_counts)`` called once
    before training, with counts from ``dataset.class_frequencies()``.
    Frequencies are therefore never typed into configs.
    """

    priority = "VERY_HIGH"

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        takers = [m for m in model.modules() if getattr(m, "needs_class_frequencies", False)]
        if not takers:
            return
        dataset = runner.train_dataloader.dataset
        while not hasattr(dataset, "class_frequencies") and hasattr(dataset, "dataset"):
            dataset = dataset.dataset  # unwrap RepeatDataset and the like
        if not hasattr(dataset, "class_frequencies"):
            raise TypeError(
                f"{type(takers[0]).__name__} needs class frequencies but the training "
                f"dataset {type(dataset).__name__} has no class_frequencies() method")
        freqs = dataset.class_frequencies()
        for module in takers:
            module.set_class_frequencies(freqs["instance_counts"], freqs["image_counts"])
        print_log(f"class frequencies handed to {len(takers)} module(s): "
                  f"instances per class {freqs['instance_counts']}", logger="current")
