"""Tiny, deterministic inputs for component tests: images, detection and
segmentation samples, and feature maps of declared strides."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["det_sample", "det_batch", "seg_sample", "seg_batch", "feature_maps"]


def _meta(size: tuple[int, int], **meta) -> dict:
    h, w = size
    metainfo = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                    batch_input_shape=(h, w), scale_factor=(1.0, 1.0), flip=False,
                    flip_direction=None, img_id=0)
    metainfo.update(meta)
    return metainfo


def det_sample(boxes: Sequence = (), labels: Sequence | None = None,
               size: tuple[int, int] = (64, 64), **meta):
    """A :class:`toolbox.structures.DetDataSample` of a ``size`` (h, w) image
    with ``boxes`` (x1 y1 x2 y2, in image coordinates; none: an image without
    objects) and ``labels`` (0 when not given); ``meta`` overrides metainfo.
    ``gt_instances`` and ``ori_gt_instances`` (what metrics read) are set."""
    from mmengine.structures import InstanceData

    from toolbox.structures import DetDataSample
    sample = DetDataSample(metainfo=_meta(tuple(size), **meta))
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = (torch.zeros(len(boxes), dtype=torch.long) if labels is None
              else torch.as_tensor(labels, dtype=torch.long).reshape(-1))
    if len(labels) != len(boxes):
        raise ValueError(f"det_sample: {len(boxes)} boxes but {len(labels)} labels")
    sample.gt_instances = InstanceData(bboxes=boxes, labels=labels)
    sample.ignored_instances = InstanceData(bboxes=torch.zeros(0, 4),
                                            labels=torch.zeros(0, dtype=torch.long))
    sample.ori_gt_instances = InstanceData(bboxes=boxes.clone(), labels=labels.clone(),
                                           ignore=torch.zeros(len(boxes), dtype=torch.bool))
    return sample


def det_batch(batch: int = 2, size: tuple[int, int] = (64, 64), num_classes: int = 3,
              num_objects: int | Sequence[int] = 2, seed: int = 0):
    """``(inputs Tensor[B, 3, H, W], list of DetDataSample)``: normalised-looking
    noise images, each with ``num_objects`` random boxes (an int, or one per
    image; 0 gives an image without objects) brightened in the image."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    inputs = torch.randn(batch, 3, h, w, generator=g) * 0.5
    counts = [num_objects] * batch if isinstance(num_objects, int) else list(num_objects)
    if len(counts) != batch:
        raise ValueError(f"det_batch: num_objects has {len(counts)} entries for {batch} images")
    samples = []
    for i, n in enumerate(counts):
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = (torch.rand(n, 2, generator=g) * 0.3 + 0.1) * torch.tensor([w, h])
        boxes = torch.cat([xy, (xy + wh).minimum(torch.tensor([w - 1.0, h - 1.0]))], 1)
        labels = torch.randint(0, num_classes, (n,), generator=g)
        for box in boxes.long():
            inputs[i, :, box[1]:box[3], box[0]:box[2]] += 1.5
        samples.append(det_sample(boxes, labels, size, img_id=i))
    return inputs, samples


def seg_sample(label_map: Tensor | None = None, size: tuple[int, ...] = (64, 64),
               num_classes: int = 3, seed: int = 0, **meta):
    """A :class:`toolbox.structures.SegDataSample` of a ``size`` image (2 ints)
    or volume (3 ints), with ``label_map`` (random blocks when not given)."""
    from toolbox.structures import SegDataSample
    if label_map is None:
        g = torch.Generator().manual_seed(seed)
        coarse = torch.randint(0, num_classes, tuple(max(1, s // 8) for s in size), generator=g)
        label_map = coarse
        for axis, s in enumerate(size):
            label_map = label_map.repeat_interleave(math.ceil(s / coarse.shape[axis]), axis)
        label_map = label_map[tuple(slice(0, s) for s in size)]
    label_map = torch.as_tensor(label_map, dtype=torch.long)
    size = tuple(label_map.shape)
    metainfo = dict(img_shape=size, ori_shape=size, pad_shape=size, batch_input_shape=size,
                    scale_factor=(1.0,) * len(size), flip=False, flip_direction=None)
    metainfo.update(meta)
    sample = SegDataSample(metainfo=metainfo)
    sample.gt_sem_seg = label_map
    sample.ori_gt_sem_seg = label_map.clone()
    return sample


def seg_batch(batch: int = 2, size: tuple[int, ...] = (64, 64), num_classes: int = 3,
              channels: int = 3, seed: int = 0):
    """``(inputs Tensor[B, C, *size], list of SegDataSample)``."""
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, channels, *size, generator=g)
    return inputs, [seg_sample(size=size, num_classes=num_classes, seed=seed + i)
                    for i in range(batch)]


def feature_maps(channels: int | Sequence[int], strides: Sequence[int],
                 size: tuple[int, int] = (64, 64), batch: int = 2, seed: int = 0) -> list[Tensor]:
    """Random maps ``[B, C_i, ceil(H / s_i), ceil(W / s_i)]``, one per stride."""
    g = torch.Generator().manual_seed(seed)
    chans = [channels] * len(strides) if isinstance(channels, int) else list(channels)
    return [torch.randn(batch, c, math.ceil(size[0] / s), math.ceil(size[1] / s), generator=g)
            for c, s in zip(chans, strides)]
