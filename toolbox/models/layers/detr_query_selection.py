"""Mixed query selection (DINO, Zhang et al., "DINO: DETR with Improved
DeNoising Anchor Boxes for End-to-End Object Detection", ICLR 2023; the
two-stage scheme of Deformable DETR, Zhu et al., ICLR 2021).

Every encoder output token proposes a box: a fixed proposal centred on its
cell (size ``proposal_wh``, normalised) refined by a box MLP in logit space,
scored by a class head over ``LayerNorm(Linear(memory))``. The ``k``
best-scoring valid tokens (padding excluded) give the decoder's initial
anchor boxes (detached); with ``content='static'`` (default) the content
queries stay the static ones ("mixed" selection: dynamic positions, static
content); ``content='token'`` starts them from the selected tokens'
projected features (DINO's "pure" selection, as Efficient DETR), so the
decoder starts from what the encoder knows of the object. The head trains the token
predictions with the set loss (``enc.loss_*``), so the encoder learns to
localise objects directly. ``gt_repeats`` > 1 makes that loss
one-to-many: the ground truth is repeated ``gt_repeats`` times in the token
matching, so each object trains that many tokens (H-DETR's hybrid matching,
Jia et al., CVPR 2023, applied to the encoder proposals).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from toolbox.models.layers.detr_anchor_queries import inverse_sigmoid

__all__ = ["EncoderQuerySelection", "cell_proposals"]


def cell_proposals(mask: Tensor, proposal_wh: float) -> Tensor:
    """``[B, h, w]`` padding mask -> ``[B, h * w, 4]`` cxcywh proposals:
    the centre of each cell, normalised by the valid (non-padding) extent of
    its image, and width and height ``proposal_wh``."""
    valid = ~mask
    valid_h = valid[:, :, 0].sum(1).clamp(min=1).float()  # [B]
    valid_w = valid[:, 0, :].sum(1).clamp(min=1).float()
    h, w = mask.shape[1:]
    ys = (torch.arange(h, device=mask.device, dtype=torch.float32) + 0.5)[None] / valid_h[:, None]
    xs = (torch.arange(w, device=mask.device, dtype=torch.float32) + 0.5)[None] / valid_w[:, None]
    cy = ys[:, :, None].expand(-1, h, w)
    cx = xs[:, None, :].expand(-1, h, w)
    size = torch.full_like(cx, proposal_wh)
    return torch.stack((cx, cy, size, size), dim=-1).flatten(1, 2)


class EncoderQuerySelection(nn.Module):
    """Token proposals from the encoder memory and their top-k selection.

    Args:
        d_model: transformer width.
        num_cls_outputs: class logits per token (the head's classifier width:
            ``C`` for sigmoid, ``C + 1`` for softmax with "no object" last).
        num_queries: anchors selected (the matching queries).
        proposal_wh: the proposals' width and height before refinement (0.1).
        sigmoid: score tokens by the sigmoid of their best class; else by
            the softmax of their best object class.
        content: ``'static'`` or ``'token'`` (module docstring).
        gt_repeats: copies of each gt box in the token loss's matching (1).
    """

    CONTENTS = ("static", "token")

    def __init__(self, d_model: int, num_cls_outputs: int, num_queries: int,
                 proposal_wh: float = 0.1, sigmoid: bool = True, content: str = "static",
                 gt_repeats: int = 1):
        super().__init__()
        if not isinstance(gt_repeats, int) or gt_repeats < 1:
            raise ValueError(f"EncoderQuerySelection: 'gt_repeats' must be a positive int, "
                             f"got {gt_repeats!r}")
        self.gt_repeats = gt_repeats
        if content not in self.CONTENTS:
            raise ValueError(f"EncoderQuerySelection: 'content' must be one of {self.CONTENTS}, "
                             f"got {content!r}")
        self.content = content
        if not 0 < proposal_wh < 1:
            raise ValueError(f"EncoderQuerySelection: 'proposal_wh' must be in (0, 1), "
                             f"got {proposal_wh}")
        self.num_queries = num_queries
        self.proposal_wh = float(proposal_wh)
        self.sigmoid = bool(sigmoid)
        self.output_proj = nn.Sequential(nn.Linear(d_model, d_model), nn.LayerNorm(d_model))
        self.cls_head = nn.Linear(d_model, num_cls_outputs)
        self.box_head = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(),
                                      nn.Linear(d_model, d_model), nn.ReLU(),
                                      nn.Linear(d_model, 4))
        nn.init.zeros_(self.box_head[-1].weight)
        nn.init.zeros_(self.box_head[-1].bias)

    def token_scores(self, cls_logits: Tensor) -> Tensor:
        """[B, N] objectness of each token's best class."""
        if self.sigmoid:
            return cls_logits.max(-1).values
        return cls_logits.softmax(-1)[..., :-1].max(-1).values

    def forward(self, memory: Tensor, mask: Tensor
                ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """``memory`` [HW, B, C] (sequence first), ``mask`` [B, h, w] (True =
        padding) -> token class logits [B, HW, K], token boxes [B, HW, 4]
        (normalised cxcywh), the selected anchor logits [Q, B, 4] (detached)
        and, with ``content='token'``, the selected features [Q, B, C]
        (else None)."""
        feats = self.output_proj(memory.transpose(0, 1))
        cls_logits = self.cls_head(feats)
        proposals = cell_proposals(mask, self.proposal_wh).to(feats.dtype)
        box_logits = inverse_sigmoid(proposals) + self.box_head(feats)
        scores = self.token_scores(cls_logits).masked_fill(mask.flatten(1), float("-inf"))
        k = min(self.num_queries, scores.shape[1])
        index = scores.topk(k, dim=1).indices  # [B, k]
        selected = box_logits.gather(1, index[..., None].expand(-1, -1, 4)).detach()
        if k < self.num_queries:  # fewer tokens than queries: repeat the best ones
            repeat = index.new_tensor([i % k for i in range(self.num_queries)])
            selected, index = selected[:, repeat], index[:, repeat]
        content = None
        if self.content == "token":
            content = feats.gather(1, index[..., None].expand(-1, -1, feats.shape[-1]))
            content = content.transpose(0, 1)
        return cls_logits, box_logits.sigmoid(), selected.transpose(0, 1), content

    def extra_repr(self) -> str:
        return (f"num_queries={self.num_queries}, proposal_wh={self.proposal_wh}, "
                f"content={self.content!r}")
