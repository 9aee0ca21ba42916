"""Batch collation: pad images (and volumes) to a common size, keep samples a list.

Configs use ``collate_fn=dict(type='toolbox.det_collate')`` for detection and
``dict(type='toolbox.seg_collate')`` for segmentation (extra keys, e.g.
``size_divisor=64``, are passed through by mmengine's runner).
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
    padded = _batch_tensor(inputs[0], (len(inputs), inputs[0].shape[0], h, w), pad_value)
    for out, x in zip(padded, inputs):  # one copy per image (not pad, then stack)
        out[:, :x.shape[1], :x.shape[2]] = x
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


def _batch_tensor(like: torch.Tensor, shape: tuple, fill: float) -> torch.Tensor:
    """A ``shape`` tensor of ``like``'s dtype filled with ``fill``; in a
    DataLoader worker, in shared memory (as ``default_collate`` does), so
    handing the batch to the main process copies nothing more."""
    if torch.utils.data.get_worker_info() is not None:
        numel = 1
        for n in shape:
            numel *= n
        storage = like._typed_storage()._new_shared(numel, device=like.device)
        out = like.new(storage).resize_(*shape)
        return out.fill_(fill)
    return like.new_full(shape, fill)


@FUNCTIONS.register_module(name="seg_collate")
def seg_collate(batch: Sequence[dict], size_divisor: int = 1, pad_value: float = 0.0,
                seg_pad_value: int = 255) -> dict:
    """Stack images ``[C, H, W]`` or volumes ``[C, D, H, W]`` into one batch tensor.

    Every spatial size is the batch's largest, rounded up to a multiple of
    ``size_divisor`` (e.g. a ViT's patch size); inputs are padded at the end
    of each axis with ``pad_value`` and each sample's ``gt_sem_seg`` with
    ``seg_pad_value`` (255, ignored by the losses and metrics). Samples stay
    a list; each gets ``batch_input_shape`` in its metainfo.
    Configs: ``collate_fn=dict(type='toolbox.seg_collate', size_divisor=16)``.
    """
    if not batch:
        raise ValueError("seg_collate: got an empty batch")
    if size_divisor is None or size_divisor < 1:
        raise ValueError(f"seg_collate: size_divisor must be a positive int, got {size_divisor}")
    inputs = [item["inputs"] for item in batch]
    ndim = inputs[0].dim() if isinstance(inputs[0], torch.Tensor) else None
    bad = [i for i, x in enumerate(inputs)
           if not (isinstance(x, torch.Tensor) and x.dim() in (3, 4) and x.dim() == ndim)]
    if bad:
        raise ValueError(f"seg_collate: item {bad[0]} has inputs that are not a Tensor[C, H, W] "
                         "or [C, D, H, W] like item 0")
    if len({x.shape[0] for x in inputs}) > 1:
        raise ValueError(f"seg_collate: items have different channel counts "
                         f"{sorted({x.shape[0] for x in inputs})}")
    shape = tuple(-(-max(x.shape[a] for x in inputs) // size_divisor) * size_divisor
                  for a in range(1, ndim))

    def pad(t: torch.Tensor, value: float) -> torch.Tensor:
        spatial = t.shape[-len(shape):]
        widths = []
        for have, want in zip(reversed(spatial), reversed(shape)):
            widths += [0, want - have]
        return F.pad(t, widths, value=value) if any(widths) else t

    padded = torch.stack([pad(x, pad_value) for x in inputs])
    samples = [item.get("data_samples") for item in batch]
    for sample in samples:
        if sample is None:
            continue
        sample.set_metainfo(dict(batch_input_shape=shape))
        if "gt_sem_seg" in sample:
            sample.gt_sem_seg = pad(sample.gt_sem_seg, seg_pad_value)
    return dict(inputs=padded, data_samples=samples)
