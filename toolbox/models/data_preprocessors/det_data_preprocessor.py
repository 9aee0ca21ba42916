"""The detectors' data preprocessor: uint8 images in, one normalised, padded batch out."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from toolbox.models.data_preprocessors.base import BatchPreprocessor, pad_spatial

__all__ = ["DetDataPreprocessor"]

MASK_FIELDS = ("gt_instances", "ignored_instances")


class DetDataPreprocessor(BatchPreprocessor):
    """Batch what ``det_collate`` lists, on the model's device.

    ``forward(data, training)`` takes ``dict(inputs=[Tensor[C, H, W], ...],
    data_samples=[DetDataSample, ...])`` (``uint8`` images as the pipeline
    packs them; float images and a ``Tensor[B, C, H, W]`` are accepted too),
    moves it to the device, casts to float32, normalises with ``mean`` /
    ``std`` (RGB, 0..255 units: ``mean=(123.675, 116.28, 103.53), std=(58.395,
    57.12, 57.375)`` is ImageNet's, the same floats as the ``Normalize``
    transform) and pads bottom/right with ``pad_value`` to the larger of
    ``pad_size_divisor`` and the detector's ``size_divisor``. Each sample gets
    ``batch_input_shape`` and ``pad_shape`` (its image's size rounded up to
    the divisor); with ``pad_mask`` its ``gt_instances`` / ``ignored_instances``
    masks are padded (with 0) to the batch shape.

    ``mean=None, std=None`` (the default) does not normalise: for pipelines
    that normalise themselves (the reference configs, where torchvision
    normalises before resizing).

    ``channels_last=True`` hands the batch over in NHWC memory order (same
    values and shape): convolutions, and so the whole network, then run in
    oneDNN's / cuDNN's channels-last kernels, which on a CPU cut a
    MobileNetV3 detector's training step by about a fifth (depthwise
    convolutions' backward above all; benchmarks/results_quickstart_profile_cpu.md).
    Results match the NCHW run to float rounding.
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 bgr_to_rgb: bool = False, pad_size_divisor: int = 1, pad_value: float = 0.0,
                 pad_mask: bool = True, non_blocking: bool = False, channels_last: bool = False):
        super().__init__(mean=mean, std=std, bgr_to_rgb=bgr_to_rgb,
                         pad_size_divisor=pad_size_divisor, pad_value=pad_value,
                         non_blocking=non_blocking)
        self.pad_mask = bool(pad_mask)
        self.channels_last = bool(channels_last)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data["inputs"]
        _check_images(inputs)
        batch = self.batch_inputs(inputs)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        samples = data.get("data_samples")
        if samples is not None:
            self._complete_samples(samples, inputs, batch)
        return dict(inputs=batch, data_samples=samples)

    def _complete_samples(self, samples, inputs, batch: Tensor) -> None:
        shape = tuple(batch.shape[-2:])
        d = self.size_divisor
        for index, sample in enumerate(samples):
            if sample is None:
                continue
            h, w = inputs[index].shape[-2:]
            sample.set_metainfo(dict(batch_input_shape=shape,
                                     pad_shape=(-(-h // d) * d, -(-w // d) * d)))
            if self.pad_mask:
                _pad_masks(sample, shape)


def _check_images(inputs) -> None:
    if isinstance(inputs, Tensor):
        if inputs.dim() != 4:
            raise ValueError(f"DetDataPreprocessor: 'inputs' must be a list of Tensor[C, H, W] "
                             f"or a Tensor[B, C, H, W], got shape {tuple(inputs.shape)}")
        return
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise ValueError("DetDataPreprocessor: 'inputs' must be a non-empty list of "
                         f"Tensor[C, H, W], got {type(inputs).__name__}")
    bad = [i for i, x in enumerate(inputs) if not (isinstance(x, Tensor) and x.dim() == 3)]
    if bad:
        raise ValueError(f"DetDataPreprocessor: item {bad[0]} has inputs that are not a "
                         "Tensor[C, H, W]")


def _pad_masks(sample, shape: tuple[int, int]) -> None:
    for field in MASK_FIELDS:
        inst = getattr(sample, field, None) if field in sample else None
        masks = getattr(inst, "masks", None) if inst is not None else None
        if isinstance(masks, torch.Tensor) and masks.dim() == 3:
            inst.masks = pad_spatial(masks, shape)
