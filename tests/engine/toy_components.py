"""A tiny model and dataset for engine tests (imported via custom_imports)."""
import os

import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from torch import nn
from torch.utils.data import Dataset

from toolbox.registry import DATASETS, HOOKS, MODELS


@MODELS.register_module(force=True)
class ToyRegressor(BaseModel):
    def __init__(self, hidden: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, inputs, data_samples=None, mode="tensor"):
        x = torch.stack(inputs) if isinstance(inputs, (list, tuple)) else inputs
        out = self.net(x).squeeze(1)
        if mode == "loss":
            target = torch.stack(data_samples) if isinstance(data_samples, (list, tuple)) \
                else data_samples
            return dict(loss=(out - target).pow(2).mean())
        return out


@DATASETS.register_module(force=True)
class ToyDataset(Dataset):
    def __init__(self, size: int = 32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(size, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], data_samples=self.y[i])


@HOOKS.register_module(force=True)
class CrashAtEpoch(Hook):
    """Simulates a killed run: exits hard before training epoch ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def before_train_epoch(self, runner):
        if runner.epoch == self.epoch:
            os._exit(17)


@HOOKS.register_module(force=True)
class DumpRankWeights(Hook):
    """Saves each rank's parameters before and after training (DDP tests).

    Only parameters: BN running statistics are per-rank unless SyncBN is used
    (mmengine's DDP wrapper does not broadcast buffers)."""

    def _dump(self, runner, tag):
        import torch.distributed as dist
        rank = dist.get_rank() if dist.is_initialized() else 0
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        torch.save({k: v.detach().clone() for k, v in model.named_parameters()},
                   os.path.join(runner.work_dir, f"{tag}_rank{rank}.pt"))

    def before_train(self, runner):
        self._dump(runner, "init")

    def after_train(self, runner):
        self._dump(runner, "final")
