"""The (dx, dy, dw, dh) box parameterisation of R-CNN / RetinaNet.

For a prior with centre (px, py) and size (pw, ph) and a target box with
(gx, gy, gw, gh)::

    dx = (gx - px) / pw    dy = (gy - py) / ph
    dw = log(gw / pw)      dh = log(gh / ph)

then normalised as ``(d - target_means) / target_stds``. Widths are
``x2 - x1`` (no "+1").
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor


class DeltaXYWHBBoxCoder:
    """Encode boxes as deltas from priors and decode them back.

    Args:
        target_means, target_stds: normalisation of the four deltas.
        clip_border: clip decoded boxes to ``max_shape`` when one is given.
        add_ctr_clamp: clamp the centre shift to ``ctr_clamp`` pixels (and
            only the upper end of dw/dh), as in YOLOF.
        ctr_clamp: the centre-shift limit, in pixels.
        wh_ratio_clip: dw/dh are clamped to ``+-|log(wh_ratio_clip)|`` so
            ``exp`` cannot overflow.
        dw_clamp: ``'both'`` clamps dw/dh on both sides (mmdetection);
            ``'max'`` only from above (torchvision's ``BoxCoder``, whose
            ``bbox_xform_clip = log(1000 / 16)`` is the same bound).
    """

    def __init__(self, target_means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
                 target_stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 clip_border: bool = True, add_ctr_clamp: bool = False,
                 ctr_clamp: float = 32.0, wh_ratio_clip: float = 16 / 1000,
                 dw_clamp: str = "both"):
        if len(target_means) != 4 or len(target_stds) != 4:
            raise ValueError("DeltaXYWHBBoxCoder: 'target_means' and 'target_stds' need 4 "
                             f"values each, got {target_means} and {target_stds}")
        if any(s <= 0 for s in target_stds):
            raise ValueError(f"DeltaXYWHBBoxCoder: 'target_stds' must be positive, got {target_stds}")
        if not 0 < wh_ratio_clip < 1:
            raise ValueError(f"DeltaXYWHBBoxCoder: 'wh_ratio_clip' must be in (0, 1), "
                             f"got {wh_ratio_clip}")
        if dw_clamp not in ("both", "max"):
            raise ValueError(f"DeltaXYWHBBoxCoder: 'dw_clamp' must be 'both' or 'max', "
                             f"got {dw_clamp!r}")
        self.dw_clamp = dw_clamp
        self.target_means = tuple(float(m) for m in target_means)
        self.target_stds = tuple(float(s) for s in target_stds)
        self.clip_border = clip_border
        self.add_ctr_clamp = add_ctr_clamp
        self.ctr_clamp = float(ctr_clamp)
        self.wh_ratio_clip = float(wh_ratio_clip)

    @staticmethod
    def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        w = boxes[..., 2] - boxes[..., 0]
        h = boxes[..., 3] - boxes[..., 1]
        return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        means = like.new_tensor(self.target_means)
        stds = like.new_tensor(self.target_stds)
        return means, stds

    def encode(self, priors: Tensor, gt_bboxes: Tensor) -> Tensor:
        """Deltas [..., 4] that turn ``priors`` into ``gt_bboxes`` (same shape)."""
        if priors.shape != gt_bboxes.shape or priors.shape[-1] != 4:
            raise ValueError("DeltaXYWHBBoxCoder.encode: 'priors' and 'gt_bboxes' must both be "
                             f"[..., 4] with the same shape, got {tuple(priors.shape)} and "
                             f"{tuple(gt_bboxes.shape)}")
        priors, gt_bboxes = priors.float(), gt_bboxes.float()
        px, py, pw, ph = self._centre_size(priors)
        gx, gy, gw, gh = self._centre_size(gt_bboxes)
        eps = torch.finfo(priors.dtype).eps
        deltas = torch.stack([(gx - px) / pw, (gy - py) / ph,
                              torch.log(gw.clamp(min=eps) / pw),
                              torch.log(gh.clamp(min=eps) / ph)], dim=-1)
        means, stds = self._stats(deltas)
        return (deltas - means) / stds

    def decode(self, priors: Tensor, deltas: Tensor,
               max_shape: Sequence[int] | None = None) -> Tensor:
        """Boxes [..., 4] from ``priors`` and predicted ``deltas``.

        ``priors`` broadcasts against ``deltas`` (e.g. [N, 4] with [B, N, 4]);
        with ``clip_border`` and ``max_shape`` (h, w) boxes are clipped to the
        image.
        """
        if deltas.shape[-1] != 4 or priors.shape[-1] != 4:
            raise ValueError("DeltaXYWHBBoxCoder.decode: 'priors' and 'deltas' must end in 4, "
                             f"got {tuple(priors.shape)} and {tuple(deltas.shape)}")
        means, stds = self._stats(deltas)
        deltas = deltas * stds + means
        dx, dy, dw, dh = deltas.unbind(dim=-1)
        px, py, pw, ph = self._centre_size(priors.to(deltas.dtype))
        max_ratio = abs(math.log(self.wh_ratio_clip))
        shift_x, shift_y = pw * dx, ph * dy
        if self.add_ctr_clamp or self.dw_clamp == "max":
            dw, dh = dw.clamp(max=max_ratio), dh.clamp(max=max_ratio)
        if self.add_ctr_clamp:
            shift_x = shift_x.clamp(-self.ctr_clamp, self.ctr_clamp)
            shift_y = shift_y.clamp(-self.ctr_clamp, self.ctr_clamp)
        elif self.dw_clamp == "both":
            dw, dh = dw.clamp(-max_ratio, max_ratio), dh.clamp(-max_ratio, max_ratio)
        cx, cy = px + shift_x, py + shift_y
        w, h = pw * dw.exp(), ph * dh.exp()
        boxes = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
        if self.clip_border and max_shape is not None:
            boxes = clip_boxes(boxes, max_shape)
        return boxes

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(target_means={self.target_means}, "
                f"target_stds={self.target_stds}, clip_border={self.clip_border})")


def clip_boxes(boxes: Tensor, shape: Sequence[int]) -> Tensor:
    """Clip x1 y1 x2 y2 boxes [..., 4] to an image of ``shape`` (h, w)."""
    h, w = float(shape[0]), float(shape[1])
    x = boxes[..., 0::2].clamp(0, w)
    y = boxes[..., 1::2].clamp(0, h)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)
