"""The segmentors' data preprocessor: images or volumes in, one padded batch out."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from toolbox.models.data_preprocessors.base import BatchPreprocessor, pad_spatial

__all__ = ["SegDataPreprocessor"]


class SegDataPreprocessor(BatchPreprocessor):
    """Batch what ``seg_collate`` lists: images ``[C, H, W]`` or volumes
    ``[C, D, H, W]``, on the model's device.

    Casts to float32, normalises with ``mean`` / ``std`` (per channel, in the
    inputs' units; ``None``, the default, leaves them alone, e.g. volumes the
    pipeline scaled already) and pads the end of every spatial axis with
    ``pad_value`` to the batch's largest size rounded up to the larger of
    ``pad_size_divisor`` and the segmentor's ``size_divisor``. Each sample's
    ``gt_sem_seg`` is padded with ``seg_pad_value`` (255, ignored by the
    losses and metrics) and it gets ``batch_input_shape``.
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 bgr_to_rgb: bool = False, pad_size_divisor: int = 1, pad_value: float = 0.0,
                 seg_pad_value: int = 255, non_blocking: bool = False):
        super().__init__(mean=mean, std=std, bgr_to_rgb=bgr_to_rgb,
                         pad_size_divisor=pad_size_divisor, pad_value=pad_value,
                         non_blocking=non_blocking)
        self.seg_pad_value = int(seg_pad_value)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data["inputs"]
        first = inputs if isinstance(inputs, Tensor) else (inputs[0] if inputs else None)
        if not isinstance(first, Tensor) or first.dim() < 3:
            raise ValueError("SegDataPreprocessor: 'inputs' must be a non-empty list of "
                             "Tensor[C, *S] or a Tensor[B, C, *S]")
        batch = self.batch_inputs(inputs)
        samples = data.get("data_samples")
        if samples is not None:
            shape = tuple(batch.shape[2:])
            for sample in samples:
                if sample is None:
                    continue
                sample.set_metainfo(dict(batch_input_shape=shape))
                if "gt_sem_seg" in sample:
                    sample.gt_sem_seg = pad_spatial(sample.gt_sem_seg, shape, self.seg_pad_value)
        return dict(inputs=batch, data_samples=samples)
