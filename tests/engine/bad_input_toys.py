"""Toy components for the bad-input tests (imported via custom_imports)."""
import random

import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook

from toolbox.registry import DATASETS, HOOKS, METRICS, MODELS
from toy_components import ToyDataset, ToyRegressor  # noqa: F401 - registers them


@MODELS.register_module(force=True)
class NaNToyRegressor(ToyRegressor):
    """ToyRegressor whose training loss is NaN at the listed 1-based
    iterations (``nan_iters``) or from iteration ``nan_from`` on."""

    def __init__(self, hidden: int = 8, nan_iters=(), nan_from: int = 0):
        super().__init__(hidden)
        self.nan_iters, self.nan_from, self.calls = set(nan_iters), nan_from, 0

    def forward(self, inputs, data_samples=None, mode="tensor"):
        out = super().forward(inputs, data_samples, mode)
        if mode == "loss":
            self.calls += 1
            if self.calls in self.nan_iters or (self.nan_from and self.calls >= self.nan_from):
                out = dict(loss=out["loss"] * float("nan"))
        return out


@MODELS.register_module(force=True)
class AugToyRegressor(ToyRegressor):
    """ToyRegressor with Python-``random`` and NumPy "augmentation" of its
    inputs in training (as RandomFlip / ColorJitter draw from ``random``)."""

    def forward(self, inputs, data_samples=None, mode="tensor"):
        if mode == "loss":
            import numpy as np
            x = torch.stack(inputs) if isinstance(inputs, (list, tuple)) else inputs
            scale = random.uniform(0.5, 1.5) * float(np.random.uniform(0.8, 1.2))
            inputs = x * scale + 0.01 * torch.randn_like(x)
        return super().forward(inputs, data_samples, mode)


@METRICS.register_module(force=True)
class TensorMSE(BaseMetric):
    """Mean squared error of tensor predictions (a name of its own: switch_toys
    registers another ToyMSE in the same registry)."""

    def process(self, data_batch, data_samples):
        target = data_batch["data_samples"]
        target = torch.stack(target) if isinstance(target, (list, tuple)) else target
        pred = torch.stack(list(data_samples)) if isinstance(data_samples, (list, tuple)) \
            else data_samples
        self.results.append(float((pred - target).pow(2).mean()))

    def compute_metrics(self, results):
        return dict(mse=sum(results) / max(len(results), 1))


@HOOKS.register_module(force=True)
class KillAt(Hook):
    """``os._exit(17)`` at a point of the run: ``where`` is 'iter' (before
    training iteration ``at``, 1-based, counted over the whole run), 'save'
    (while writing the ``at``-th checkpoint: the temp file half written),
    'rename' (just after the ``at``-th checkpoint's rename, before
    ``last_checkpoint`` is written) or 'val' (during the ``at``-th validation)."""

    priority = "VERY_HIGH"

    def __init__(self, where: str, at: int):
        self.where, self.at, self.saves, self.vals = where, at, 0, 0

    def before_train(self, runner):
        if self.where in ("save", "rename"):
            import toolbox.engine.checkpoint as ckpt
            hook, original = self, ckpt.atomic_write_bytes

            def atomic_write_bytes(data, filepath):
                import os
                if str(filepath).endswith(".pth"):
                    hook.saves += 1
                    if hook.saves == hook.at and hook.where == "save":
                        with open(os.path.join(os.path.dirname(str(filepath)),
                                               f".{os.path.basename(str(filepath))}.x.tmp"),
                                  "wb") as f:
                            f.write(data[: len(data) // 2])
                        os._exit(17)
                    original(data, filepath)
                    if hook.saves == hook.at and hook.where == "rename":
                        os._exit(17)
                    return
                original(data, filepath)
            ckpt.atomic_write_bytes = atomic_write_bytes

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.where == "iter" and runner.iter + 1 == self.at:
            import os
            os._exit(17)

    def before_val_iter(self, runner, batch_idx, data_batch=None):
        if self.where == "val" and batch_idx == 1:
            self.vals += 1
            if self.vals == self.at:
                import os
                os._exit(17)


@DATASETS.register_module(force=True)
class AugToyDataset(ToyDataset):
    """ToyDataset with random "augmentation" in ``__getitem__`` (Python
    ``random``, NumPy and torch draws, as pipelines make), so it runs in the
    DataLoader workers when there are any."""

    def __getitem__(self, i):
        import numpy as np
        item = super().__getitem__(i)
        flip = -1.0 if random.random() < 0.5 else 1.0
        jitter = float(np.random.uniform(0.9, 1.1))
        noise = 0.01 * torch.randn(4)
        return dict(inputs=item["inputs"] * flip * jitter + noise,
                    data_samples=item["data_samples"] * flip * jitter)
