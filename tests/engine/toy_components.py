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
