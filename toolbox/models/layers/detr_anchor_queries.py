"""Anchor-box queries for DETR's decoder (DAB-DETR, Liu et al., "DAB-DETR:
Dynamic Anchor Boxes are Better Queries for DETR", ICLR 2022), with the
conditional spatial scaling of Conditional DETR (Meng et al., ICCV 2021).

Each object query owns a learnable 4-d anchor box ``(cx, cy, w, h)``
(stored as logits, i.e. inverse sigmoid). At every decoder layer the
current anchors are sine-embedded (:func:`box_sine_embedding`, 4 x
``d_model / 2`` channels) and projected by a 2-layer MLP
(``ref_point_head``) to the positional query that is added to the
queries of both attentions (the memory keys keep their own encoding).
With ``conditional_scale`` the positional query of layers after the first
is multiplied element-wise by an MLP of the layer's content input
(Conditional DETR's ``lambda_q``, DAB-DETR's ``query_scale``). With
``cross_attn_pos='sine'`` the cross-attention's positional query is
instead Conditional DETR's spatial query: the sine encoding of the anchor
centre in the layout of the memory's own encoding (y then x channels,
:class:`~toolbox.models.layers.positional_encoding.SinePositionalEncoding`),
scaled by ``query_scale`` of the content; it is added to the content query
(the paper concatenates the two per head). After each
layer the shared box head predicts a logit-space offset of the anchor
(iterative box refinement); the refined box, detached, is the next layer's
anchor, so the learnable anchors get their gradient through the first
layer. The content queries of the matching queries start as zeros (as in
DETR and DAB-DETR).

:class:`AnchorBoxQueries` holds the anchors and MLPs and runs the decoder
layers of a :class:`~toolbox.models.layers.detr_transformer.DETRTransformer`
(their own modules, so a checkpoint's decoder weights are the same names).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["AnchorBoxQueries", "box_sine_embedding", "inverse_sigmoid"]


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """``log(x / (1 - x))`` with ``x`` clamped to ``[eps, 1 - eps]``."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def box_sine_embedding(boxes: Tensor, num_feats: int, temperature: float = 10000.0) -> Tensor:
    """``[..., 4]`` normalised boxes -> ``[..., 4 * num_feats]``: for each of
    cx, cy, w, h (in that order) the DETR sine encoding of ``coord * 2 pi``:
    channel ``2i`` is ``sin(p / T^(2i / F))``, ``2i + 1`` ``cos`` of the same."""
    if boxes.shape[-1] != 4 or num_feats % 2:
        raise ValueError(f"box_sine_embedding: boxes must be [..., 4] and num_feats even, got "
                         f"{tuple(boxes.shape)} and {num_feats}")
    index = torch.arange(num_feats, dtype=torch.float32, device=boxes.device)
    dim_t = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / num_feats)
    pos = boxes.float()[..., None] * (2 * math.pi) / dim_t  # [..., 4, F]
    pos = torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)
    return pos.flatten(-2).to(boxes.dtype)


class _MLP(nn.Sequential):
    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class AnchorBoxQueries(nn.Module):
    """Learnable anchor boxes as positional queries, refined layer by layer.

    Args:
        num_queries: matching (object) queries.
        d_model: transformer width.
        conditional_scale: scale the positional query of layers > 0 by an
            MLP of the content query (Conditional DETR / DAB-DETR).
        random_xy: initialise the anchor centres uniformly in (0, 1) and keep
            them fixed (DAB-DETR's ``random_refpoints_xy``); else (default)
            they start uniform in (0, 1) and are learned, like the sizes.
        init_wh: initial anchor width and height (normalised), 0.1.
        cross_attn_pos: ``'mlp'`` (default): the cross-attention uses the
            same positional query as the self-attention (DAB-DETR's
            ``ref_point_head`` output); ``'sine'``: Conditional DETR's spatial
            query (module docstring).
    """

    CROSS_ATTN_POS = ("mlp", "sine")

    def __init__(self, num_queries: int, d_model: int, conditional_scale: bool = True,
                 random_xy: bool = False, init_wh: float = 0.1, cross_attn_pos: str = "mlp"):
        super().__init__()
        if cross_attn_pos not in self.CROSS_ATTN_POS:
            raise ValueError(f"AnchorBoxQueries: 'cross_attn_pos' must be one of "
                             f"{self.CROSS_ATTN_POS}, got {cross_attn_pos!r}")
        self.cross_attn_pos = cross_attn_pos
        if not 0 < init_wh < 1:
            raise ValueError(f"AnchorBoxQueries: 'init_wh' must be in (0, 1), got {init_wh}")
        self.num_queries = num_queries
        self.d_model = d_model
        self.random_xy = bool(random_xy)
        anchors = torch.empty(num_queries, 4)
        anchors[:, :2].uniform_(0, 1)
        anchors[:, 2:] = init_wh
        self.anchors = nn.Parameter(inverse_sigmoid(anchors))  # logits
        self.ref_point_head = _MLP(2 * d_model, d_model, d_model)
        self.query_scale = _MLP(d_model, d_model, d_model) if conditional_scale else None

    def anchor_logits(self) -> Tensor:
        """[Q, 4] anchor logits (centres detached with ``random_xy``)."""
        if self.random_xy:
            return torch.cat((self.anchors[:, :2].detach(), self.anchors[:, 2:]), dim=1)
        return self.anchors

    def decode(self, decoder: nn.Module, tgt: Tensor, ref_logits: Tensor, memory: Tensor,
               memory_key_padding_mask: Tensor | None, pos: Tensor | None, bbox_embed: nn.Module,
               self_attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run ``decoder.layers`` (and its shared ``norm``) from content
        ``tgt`` [N, B, C] and anchor logits ``ref_logits`` [N, B, 4]
        (sequence first). Returns every layer's normalised output [L, B, N, C]
        and its refined boxes [L, B, N, 4] (normalised cxcywh, sigmoid of
        anchor logit + ``bbox_embed`` offset)."""
        outputs, boxes = [], []
        for i, layer in enumerate(decoder.layers):
            anchor = ref_logits.sigmoid()  # layer 0: the learnable anchors, then detached
            query_pos = self.ref_point_head(box_sine_embedding(anchor, self.d_model // 2))
            scale = self.query_scale(tgt) if self.query_scale is not None and i > 0 else None
            cross_pos = None
            if self.cross_attn_pos == "sine":  # [y, x] like the memory's encoding
                cross_pos = box_sine_embedding(anchor[..., [1, 0, 1, 0]],
                                               self.d_model // 2)[..., :self.d_model]
                cross_pos = cross_pos if scale is None else cross_pos * scale
            elif scale is not None:
                query_pos = query_pos * scale
            tgt = layer(tgt, memory, memory_key_padding_mask=memory_key_padding_mask, pos=pos,
                        query_pos=query_pos, self_attn_mask=self_attn_mask,
                        cross_query_pos=cross_pos)
            out = decoder.norm(tgt)
            new_logits = inverse_sigmoid(anchor) + bbox_embed(out)
            outputs.append(out)
            boxes.append(new_logits.sigmoid())
            ref_logits = new_logits.detach()
        return torch.stack(outputs).transpose(1, 2), torch.stack(boxes).transpose(1, 2)

    def extra_repr(self) -> str:
        return (f"num_queries={self.num_queries}, conditional_scale={self.query_scale is not None},"
                f" random_xy={self.random_xy}")
