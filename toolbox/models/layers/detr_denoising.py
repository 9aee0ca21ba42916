"""Denoising queries for DETR training (DN-DETR, Li et al., "DN-DETR:
Accelerate DETR Training by Introducing Query DeNoising", CVPR 2022).

During training, ``num_groups`` noised copies of each image's ground truth
are fed to the decoder as extra queries in front of the matching queries:
their content is a label embedding of the (partly flipped) class, their
anchor the noised box. Each of them must reconstruct its own ground-truth
box and class, a loss without Hungarian matching that gives the decoder a
stable target from the first iteration.

Noise (per box ``(cx, cy, w, h)``, ``lambda = box_noise_scale``): the centre
moves by up to ``lambda * w / 2`` and ``lambda * h / 2``, the width and
height are scaled by a factor in ``[1 - lambda, 1 + lambda]``, all uniform,
and the box is clipped to [0, 1]; each label is replaced by a uniformly
drawn class with probability ``label_noise_ratio``.

Attention mask (``[D + Q, D + Q]`` bool, True = may not attend, the
``nn.MultiheadAttention`` convention, D = ``num_groups * max_gt`` denoising
queries first): the matching queries see no denoising query (no ground
truth leaks into matching); each group sees itself and the matching
queries, not the other groups. Images with fewer than ``max_gt`` boxes pad
their group with unused slots (no loss).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from toolbox.models.layers.detr_anchor_queries import inverse_sigmoid

__all__ = ["DenoisingQueries", "DenoisingBatch", "denoising_attn_mask", "noise_boxes",
           "noise_labels"]


def denoising_attn_mask(num_groups: int, group_size: int, num_queries: int,
                        device=None) -> Tensor:
    """``[D + Q, D + Q]`` bool self-attention mask (True = blocked) for
    ``D = num_groups * group_size`` denoising queries followed by
    ``num_queries`` matching queries (module docstring)."""
    num_dn = num_groups * group_size
    size = num_dn + num_queries
    mask = torch.zeros(size, size, dtype=torch.bool, device=device)
    mask[num_dn:, :num_dn] = True  # matching queries do not see denoising queries
    for g in range(num_groups):
        start, end = g * group_size, (g + 1) * group_size
        mask[start:end, :start] = True
        mask[start:end, end:num_dn] = True
    return mask


def noise_boxes(boxes: Tensor, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """Normalised cxcywh ``boxes`` [N, 4] with DN-DETR's centre shift and
    size scaling noise (module docstring), clipped to [0, 1]."""
    if scale <= 0:
        return boxes.clone()
    spread = torch.cat((boxes[:, 2:] / 2, boxes[:, 2:]), dim=1) * scale
    rand = torch.rand(boxes.shape, generator=generator, device=boxes.device) * 2 - 1
    return (boxes + rand.to(boxes.dtype) * spread).clamp(0.0, 1.0)


def noise_labels(labels: Tensor, num_classes: int, ratio: float,
                 generator: torch.Generator | None = None) -> Tensor:
    """``labels`` [N] with each one replaced by a uniform random class with
    probability ``ratio``."""
    if ratio <= 0:
        return labels.clone()
    flip = torch.rand(labels.shape, generator=generator, device=labels.device) < ratio
    random = torch.randint(0, num_classes, labels.shape, generator=generator,
                           device=labels.device)
    return torch.where(flip, random, labels)


@dataclass
class DenoisingBatch:
    """The denoising queries of one batch (sequence-first for the decoder)."""
    content: Tensor      # [D, B, C] label embeddings
    ref_logits: Tensor   # [D, B, 4] inverse sigmoid of the noised boxes
    attn_mask: Tensor    # [D + Q, D + Q] bool, True = blocked
    valid: Tensor        # [B, D] bool, False on padding slots
    gt_index: Tensor     # [B, D] long, the ground truth each slot reconstructs (-1 on padding)
    num_groups: int
    group_size: int

    @property
    def num_dn(self) -> int:
        return self.num_groups * self.group_size


class DenoisingQueries(nn.Module):
    """Builds the noised ground-truth queries and their attention mask.

    Args:
        num_classes: object classes.
        d_model: transformer width (of the label embedding).
        num_groups: noised copies of the ground truth (DN-DETR: 5).
        box_noise_scale: ``lambda`` of the box noise (0.4).
        label_noise_ratio: probability of flipping a label (0.2).
    """

    def __init__(self, num_classes: int, d_model: int, num_groups: int = 5,
                 box_noise_scale: float = 0.4, label_noise_ratio: float = 0.2):
        super().__init__()
        if not isinstance(num_groups, int) or num_groups < 1:
            raise ValueError(f"DenoisingQueries: 'num_groups' must be a positive int, "
                             f"got {num_groups!r}")
        if box_noise_scale < 0 or not 0 <= label_noise_ratio <= 1:
            raise ValueError("DenoisingQueries: 'box_noise_scale' must be >= 0 and "
                             "'label_noise_ratio' in [0, 1], got "
                             f"{box_noise_scale} and {label_noise_ratio}")
        self.num_classes = num_classes
        self.num_groups = num_groups
        self.box_noise_scale = float(box_noise_scale)
        self.label_noise_ratio = float(label_noise_ratio)
        self.label_embed = nn.Embedding(num_classes, d_model)

    def forward(self, targets: list[tuple[Tensor, Tensor]], num_queries: int
                ) -> DenoisingBatch | None:
        """``targets``: per image (labels [N], normalised cxcywh boxes [N, 4]).
        None when no image has a box."""
        group_size = max(len(labels) for labels, _ in targets)
        if group_size == 0:
            return None
        batch = len(targets)
        device = self.label_embed.weight.device
        num_dn = self.num_groups * group_size
        labels_out = torch.zeros(batch, num_dn, dtype=torch.long, device=device)
        boxes_out = torch.full((batch, num_dn, 4), 0.5, device=device)
        boxes_out[..., 2:] = 0.1
        valid = torch.zeros(batch, num_dn, dtype=torch.bool, device=device)
        gt_index = torch.full((batch, num_dn), -1, dtype=torch.long, device=device)
        for i, (labels, boxes) in enumerate(targets):
            n = len(labels)
            if n == 0:
                continue
            for g in range(self.num_groups):
                sl = slice(g * group_size, g * group_size + n)
                labels_out[i, sl] = noise_labels(labels, self.num_classes, self.label_noise_ratio)
                boxes_out[i, sl] = noise_boxes(boxes.float(), self.box_noise_scale)
                valid[i, sl] = True
                gt_index[i, sl] = torch.arange(n, device=device)
        content = self.label_embed(labels_out).transpose(0, 1)
        return DenoisingBatch(
            content=content, ref_logits=inverse_sigmoid(boxes_out).transpose(0, 1),
            attn_mask=denoising_attn_mask(self.num_groups, group_size, num_queries, device),
            valid=valid, gt_index=gt_index, num_groups=self.num_groups, group_size=group_size)

    def extra_repr(self) -> str:
        return (f"num_groups={self.num_groups}, box_noise_scale={self.box_noise_scale}, "
                f"label_noise_ratio={self.label_noise_ratio}")
