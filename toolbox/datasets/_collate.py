"""Batch collation for detection: pad images to a common size, keep samples a list.

Configs use it as ``collate_fn=dict(type='toolbox.det_collate')`` (extra keys,
e.g. ``size_divisor=64``, are passed through by mmengine's runner).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from toolbox.registry import FUNCTIONS


@FUNCTIONS.register_module(name="det_collate")
def det_collate(batch: Sequence[dict], size_divisor: int = 32, pad_value: float = 0.0) -> dict:
    """Stack ``inputs`` into ``Tensor[B, 3, H, W]`` and list the ``data_samples``.

    H and W are the batch's largest height and width rounded up to a multiple
    of ``size_divisor``; images are padded at the bottom/right with
    ``pad_value`` (so no box moves). Each sample gets ``batch_input_shape``
    (H, W) in its metainfo, and its ``gt_instances.masks`` / ``ignored_instances
    .masks`` (if any) are padded to (H, W) too.
    """
    if not batch:
        raise ValueError("det_collate: got an empty batch")
    if size_divisor is None or size_divisor < 1:
        raise ValueError(f"det_collate: size_divisor must be a positive int, got {size_divisor}")
    inputs = [item["inputs"] for item in batch]
    bad = [i for i, x in enumerate(inputs) if not (isinstance(x, torch.Tensor) and x.dim() == 3)]
    if bad:
        raise ValueError(f"det_collate: item {bad[0]} has inputs that are not a Tensor[C, H, W]")
    max_h = max(x.shape[1] for x in inputs)
    max_w = max(x.shape[2] for x in inputs)
    h = -(-max_h // size_divisor) * size_divisor
    w = -(-max_w // size_divisor) * size_divisor
    padded = torch.stack([F.pad(x, (0, w - x.shape[2], 0, h - x.shape[1]), value=pad_value)
                          for x in inputs])
    samples = [item.get("data_samples") for item in batch]
    for sample in samples:
        if sample is None:
            continue
        sample.set_metainfo(dict(batch_input_shape=(h, w)))
        for field in ("gt_instances", "ignored_instances"):
            inst = getattr(sample, field, None) if field in sample else None
            masks = getattr(inst, "masks", None) if inst is not None else None
            if isinstance(masks, torch.Tensor) and masks.dim() == 3:
                inst.masks = F.pad(masks, (0, w - masks.shape[2], 0, h - masks.shape[1]))
    return dict(inputs=padded, data_samples=samples)
