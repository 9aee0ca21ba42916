"""The one batching rule of the toolbox, and what the preprocessors share.

Images ``[C, H, W]`` and volumes ``[C, D, H, W]`` are batched by padding
every spatial axis at its end (bottom/right, so no coordinate moves) to the
batch's largest size rounded up to a multiple of ``size_divisor``. The data
preprocessors and the models' direct-call path (a list of tensors given to
``model(...)``) both use :func:`batch_tensors`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor
from torch import Tensor

__all__ = ["padded_size", "batch_tensors", "pad_spatial", "BatchPreprocessor"]


def padded_size(sizes: Sequence[Sequence[int]], size_divisor: int = 1) -> tuple[int, ...]:
    """The largest of the spatial ``sizes`` on each axis, rounded up to ``size_divisor``."""
    if size_divisor is None or int(size_divisor) < 1:
        raise ValueError(f"size_divisor must be a positive int, got {size_divisor!r}")
    d = int(size_divisor)
    return tuple(-(-max(s[a] for s in sizes) // d) * d for a in range(len(sizes[0])))


def pad_spatial(x: Tensor, size: Sequence[int], value: float = 0.0) -> Tensor:
    """Pad the last ``len(size)`` axes of ``x`` at their end to ``size``."""
    widths = []
    for have, want in zip(reversed(x.shape[-len(size):]), reversed(tuple(size))):
        widths += [0, int(want) - int(have)]
    return F.pad(x, widths, value=value) if any(widths) else x


def batch_tensors(inputs, size_divisor: int = 1, pad_value: float = 0.0,
                  dtype: torch.dtype | None = None,
                  finish: Callable[[Tensor], object] | None = None) -> Tensor:
    """A list of ``[C, *S]`` tensors (or one ``[B, C, *S]`` tensor) as one
    ``[B, C, *S']`` batch, padded at the end of each spatial axis with
    ``pad_value`` to the largest size rounded up to ``size_divisor``.

    A list is copied once (cast to ``dtype``, default the first tensor's)
    into a batch filled with ``pad_value``; ``finish`` then runs in place on
    each image's region of the batch (e.g. normalising it), so the padding
    keeps ``pad_value``. A tensor is padded only when a side is not a
    multiple of ``size_divisor``.
    """
    if isinstance(inputs, Tensor):
        size = padded_size([inputs.shape[2:]], size_divisor)
        return pad_spatial(inputs, size, pad_value)
    inputs = list(inputs)
    size = padded_size([x.shape[1:] for x in inputs], size_divisor)
    first = inputs[0]
    out = torch.full((len(inputs), first.shape[0]) + size, pad_value,
                     dtype=dtype or first.dtype, device=first.device)
    for slot, x in zip(out, inputs):
        region = slot[(slice(None),) + tuple(slice(0, s) for s in x.shape[1:])]
        region.copy_(x)
        if finish is not None:
            finish(region)
    return out


class BatchPreprocessor(BaseDataPreprocessor):
    """Move a collated batch to the device, cast, normalise and pad it once.

    ``mean`` / ``std`` (one value per channel, in the units of the inputs,
    e.g. 0..255 for ``uint8`` images) normalise ``(x - mean) / std`` in
    float32; ``None`` for both leaves the values alone (inputs the pipeline
    normalised already). ``bgr_to_rgb`` reverses the channel order first.
    The batch is padded with ``pad_value`` (after normalising) to the larger
    of ``pad_size_divisor`` and the model's ``size_divisor`` (the model
    links itself through :meth:`follow_size_divisor`).
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 bgr_to_rgb: bool = False, pad_size_divisor: int = 1, pad_value: float = 0.0,
                 non_blocking: bool = False):
        super().__init__(non_blocking=non_blocking)
        if (mean is None) != (std is None):
            raise ValueError(f"{type(self).__name__}: give both 'mean' and 'std' or neither, "
                             f"got mean={mean!r}, std={std!r}")
        if not isinstance(pad_size_divisor, int) or pad_size_divisor < 1:
            raise ValueError(f"{type(self).__name__}: 'pad_size_divisor' must be a positive "
                             f"int, got {pad_size_divisor!r}")
        self.normalize = mean is not None
        if self.normalize:
            mean_v, std_v = _floats(mean), _floats(std)  # checked in Python: the
            if len(mean_v) != len(std_v):                 # meta device has no values
                raise ValueError(f"{type(self).__name__}: 'mean' and 'std' need one value per "
                                 f"channel each, got {mean!r} and {std!r}")
            if any(v <= 0 for v in std_v):
                raise ValueError(f"{type(self).__name__}: 'std' must be positive, got {std!r}")
            mean_t = torch.tensor(mean_v, dtype=torch.float32)
            std_t = torch.tensor(std_v, dtype=torch.float32)
            # not saved in checkpoints: they come from the config
            self.register_buffer("mean", mean_t, persistent=False)
            self.register_buffer("std", std_t, persistent=False)
        self.bgr_to_rgb = bool(bgr_to_rgb)
        self.pad_size_divisor = pad_size_divisor
        self.pad_value = float(pad_value)
        self._model_size_divisor: Callable[[], int] | None = None

    def follow_size_divisor(self, size_divisor_of_model: Callable[[], int]) -> None:
        """Pad to at least what ``size_divisor_of_model()`` returns (asked
        at each batch, so a model may set its divisor after building)."""
        self._model_size_divisor = size_divisor_of_model

    @property
    def size_divisor(self) -> int:
        model = self._model_size_divisor() if self._model_size_divisor is not None else 1
        return max(self.pad_size_divisor, int(model or 1))

    def normalize_tensor(self, x: Tensor, channel_axis: int = 0) -> Tensor:
        """``x`` (any dtype) as normalised float32 (a new tensor); ``channel_axis``
        0 for one ``[C, *S]`` image, 1 for a ``[B, C, *S]`` batch."""
        return self._normalize_(x.to(torch.float32, copy=True), channel_axis)

    def _normalize_(self, x: Tensor, channel_axis: int = 0) -> Tensor:
        """Channel order and ``(x - mean) / std``, in place on float32 ``x``."""
        if self.bgr_to_rgb:
            x.copy_(x.flip(channel_axis))
        if self.normalize:
            shape = [1] * x.dim()
            shape[channel_axis] = -1
            x.sub_(self.mean.view(shape)).div_(self.std.view(shape))
        return x

    def batch_inputs(self, inputs) -> Tensor:
        """One float32 batch: each image cast into its padded slot, then
        normalised there (the padding keeps ``pad_value``)."""
        if isinstance(inputs, Tensor):
            return batch_tensors(self.normalize_tensor(inputs, channel_axis=1), self.size_divisor,
                                 self.pad_value)
        if not inputs:
            raise ValueError(f"{type(self).__name__}: got an empty batch")
        return batch_tensors(inputs, self.size_divisor, self.pad_value, dtype=torch.float32,
                             finish=self._normalize_)

    def extra_repr(self) -> str:
        norm = (f"mean={self.mean.tolist()}, std={self.std.tolist()}" if self.normalize
                else "mean=None, std=None")
        return (f"{norm}, bgr_to_rgb={self.bgr_to_rgb}, pad_size_divisor="
                f"{self.pad_size_divisor}, pad_value={self.pad_value}")


def _floats(values) -> list[float]:
    """A scalar or a sequence of numbers as a flat list of floats."""
    if isinstance(values, (int, float)):
        return [float(values)]
    return [float(v) for v in values]
