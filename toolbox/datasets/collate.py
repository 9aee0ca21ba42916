"""Batch collation: list the images (or volumes) and their samples.

Configs use ``collate_fn=dict(type='toolbox.det_collate')`` for detection and
``dict(type='toolbox.seg_collate')`` for segmentation (registered through the
``functions`` hook point by :mod:`toolbox.builtin`). Nothing is padded or
stacked here: the model's data preprocessor (``DetDataPreprocessor`` /
``SegDataPreprocessor``) moves the ``uint8`` images to the model's device and
normalises and pads them there, once, so a batch crosses to the device as
``uint8`` (a quarter of the float32 bytes).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch

__all__ = ["det_collate", "seg_collate"]

MOVED_ARGS = "set 'pad_size_divisor' / 'pad_value' of the model's data_preprocessor instead"


def _warn_ignored(name: str, **args) -> None:
    given = {k: v for k, v in args.items() if v is not None}
    if given:
        warnings.warn(f"{name}: {', '.join(sorted(given))} no longer pad here and are ignored "
                      f"(deprecated); {MOVED_ARGS}", DeprecationWarning, stacklevel=3)


def _listed(batch: Sequence[dict], name: str, ndims: tuple[int, ...], what: str) -> dict:
    if not batch:
        raise ValueError(f"{name}: got an empty batch")
    inputs = [item["inputs"] for item in batch]
    ndim = inputs[0].dim() if isinstance(inputs[0], torch.Tensor) else None
    bad = [i for i, x in enumerate(inputs)
           if not (isinstance(x, torch.Tensor) and x.dim() in ndims and x.dim() == ndim)]
    if bad:
        raise ValueError(f"{name}: item {bad[0]} has inputs that are not a {what}")
    if torch.utils.data.get_worker_info() is not None:
        # in a DataLoader worker: move to shared memory now (what sending the
        # batch to the main process would do), once per image
        inputs = [x.share_memory_() for x in inputs]
    return dict(inputs=inputs, data_samples=[item.get("data_samples") for item in batch])


def det_collate(batch: Sequence[dict], size_divisor: int | None = None,
                pad_value: float | None = None) -> dict:
    """``dict(inputs=[Tensor[C, H, W], ...], data_samples=[...])``: the items'
    images (as packed, normally ``uint8``) and samples, as lists.

    ``size_divisor`` / ``pad_value`` are deprecated and ignored (with a
    ``DeprecationWarning``): the ``DetDataPreprocessor`` pads.
    """
    _warn_ignored("det_collate", size_divisor=size_divisor, pad_value=pad_value)
    return _listed(batch, "det_collate", (3,), "Tensor[C, H, W]")


def seg_collate(batch: Sequence[dict], size_divisor: int | None = None,
                pad_value: float | None = None, seg_pad_value: int | None = None) -> dict:
    """``dict(inputs=[...], data_samples=[...])``: images ``[C, H, W]`` or
    volumes ``[C, D, H, W]`` (all alike, with one channel count) and samples.

    ``size_divisor`` / ``pad_value`` / ``seg_pad_value`` are deprecated and
    ignored (with a ``DeprecationWarning``): the ``SegDataPreprocessor`` pads.
    """
    _warn_ignored("seg_collate", size_divisor=size_divisor, pad_value=pad_value,
                  seg_pad_value=seg_pad_value)
    out = _listed(batch, "seg_collate", (3, 4), "Tensor[C, H, W] or [C, D, H, W] like item 0")
    channels = sorted({x.shape[0] for x in out["inputs"]})
    if len(channels) > 1:
        raise ValueError(f"seg_collate: items have different channel counts {channels}")
    return out
