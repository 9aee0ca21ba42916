"""Synchronised BatchNorm under DDP, on GPUs (torch's ``SyncBatchNorm``) and
on CPUs over gloo (:class:`CPUSyncBatchNorm`: torch's refuses CPU tensors).

``sync_bn=True`` in a config makes the runner wrap the model in
:class:`SyncBNDistributedDataParallel`, which converts every BatchNorm layer
before wrapping: batch statistics are then computed over the global batch
(all ranks), so the running statistics are the same on every rank.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch import nn
from torch.distributed.nn.functional import all_reduce
from torch.nn.modules.batchnorm import _BatchNorm



class CPUSyncBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are reduced over the default process
    group with a differentiable ``all_reduce`` (so gloo works); otherwise, and
    in eval mode, plain BatchNorm. Any input rank >= 2 (N, C, ...)."""

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        distributed = dist.is_available() and dist.is_initialized() and \
            dist.get_world_size() > 1
        if not (self.training and distributed):
            return super().forward(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        dims = [0] + list(range(2, x.dim()))
        channels = x.size(1)
        xf = x.float()
        count = xf.new_full((1,), xf.numel() / channels)
        stats = all_reduce(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))
        total = stats[-1]
        mean = stats[:channels] / total
        var = (stats[channels:2 * channels] / total - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                unbiased = var * total / (total - 1).clamp_min(1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm of ``module`` as torch's ``SyncBatchNorm`` (parameters on
    CUDA) or :class:`CPUSyncBatchNorm` (on CPU), weights and statistics kept."""
    on_cuda = any(p.is_cuda for p in module.parameters())
    if on_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    converted = module
    if isinstance(module, _BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        converted = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum,
                                     module.affine, module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                converted.weight = module.weight
                converted.bias = module.bias
        if module.track_running_stats:
            converted.running_mean = module.running_mean
            converted.running_var = module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.training = module.training
    for name, child in module.named_children():
        converted.add_module(name, convert_sync_batchnorm(child))
    return converted


@MODEL_WRAPPERS.register_module()  # the root: Runner.wrap_model looks types up there
class SyncBNDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's ``MMDistributedDataParallel`` after converting the module's
    BatchNorm layers with :func:`convert_sync_batchnorm`."""

    def __init__(self, module: nn.Module, **kwargs):
        kwargs.setdefault("broadcast_buffers", False)
        super().__init__(module=convert_sync_batchnorm(module), **kwargs)


def count_batchnorms(model: nn.Module) -> tuple[int, int]:
    """(plain BatchNorm layers, synchronised ones) in ``model``."""
    sync = sum(isinstance(m, (CPUSyncBatchNorm, nn.SyncBatchNorm)) for m in model.modules())
    plain = sum(isinstance(m, _BatchNorm) for m in model.modules()) - sync
    return plain, sync
