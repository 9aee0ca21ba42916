"""DETR's detection head (Carion et al., "End-to-End Object Detection with
Transformers", ECCV 2020).

The last feature map is projected to ``embed_dims`` by a 1x1 conv, given a
2D positional encoding computed from the padding mask, and run through the
encoder-decoder transformer with ``num_queries`` learned object queries.
Every decoder layer's output goes through the shared class head (``C + 1``
logits, the last "no object") and a 3-layer MLP box head with a sigmoid:
normalised ``(cx, cy, w, h)`` relative to each image's ``img_shape`` (not
the padded batch).

Training (per decoder layer, all of them with ``aux_loss``): predictions are
matched one-to-one to the ground truth by :class:`HungarianMatcher`; the
classification loss covers every query (unmatched ones target "no object",
down-weighted by ``eos_coef``) and is the weighted mean over queries, as in
DETR; the L1 and GIoU losses cover matched queries and are divided by the
number of ground-truth boxes (all-reduced over ranks and divided by the
world size under DDP).

Loss contract (so a plugin's losses can replace them from the config):
``loss_cls(logits [M, C + 1], labels [M], weight=[M], avg_factor=float)``;
``loss_bbox(pred [K, 4], target [K, 4], avg_factor=num_boxes)`` on
normalised cx, cy, w, h; ``loss_iou`` the same on normalised x1, y1, x2, y2.
The transformer can be swapped too (see ``transformer`` below).

Options that speed up convergence (docs/detr.md), all off by default (then
the numerics are the paper's):

* ``query=dict(type='anchor_box', ...)``: DAB-DETR's learnable anchor boxes
  as positional queries with iterative box refinement and Conditional
  DETR's spatial scaling (:mod:`toolbox.models.layers.detr_anchor_queries`);
  needs the built-in :class:`DETRTransformer`.
* ``denoising=dict(num_groups=, box_noise_scale=, label_noise_ratio=)``:
  DN-DETR's noised ground-truth queries during training
  (:mod:`toolbox.models.layers.detr_denoising`), losses ``dn.loss_*`` (and
  ``d{i}.dn.loss_*``) without matching; needs anchor-box queries.
* ``query_selection=dict(proposal_wh=0.1)``: DINO's mixed query selection
  (:mod:`toolbox.models.layers.detr_query_selection`): the top-k encoder
  tokens' proposals initialise the anchors, trained by ``enc.loss_*``;
  needs anchor-box queries.
* a sigmoid classification loss (``loss_cls=dict(type='FocalLoss', ...)``,
  any loss with ``use_sigmoid = True``): ``C`` logits without "no object"
  (bias initialised to a 0.01 prior), focal matching cost by default
  (``matcher.class_cost='focal'``), loss normalised by the number of gt
  boxes, sigmoid scores at test time (Deformable DETR / DINO).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.distributed as dist
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn
from torchvision.ops import box_convert

from toolbox.models.heads.dense import graph_zero
from toolbox.models.heads.parts import (ground_truth, loss_with_defaults, merge_cfg,
                                        resolve_input_shape, sample_metas, with_defaults)
from toolbox.models.layers.detr_anchor_queries import AnchorBoxQueries
from toolbox.models.layers.detr_denoising import DenoisingQueries
from toolbox.models.layers.detr_padding_mask import cover_padding_mask, nearest_padding_mask
from toolbox.models.layers.detr_query_selection import EncoderQuerySelection
from toolbox.models.layers.detr_transformer import DETRTransformer
from toolbox.models.layers.positional_encoding import build_positional_encoding
from toolbox.registry import HEADS, check_arguments
from toolbox.structures import clip_boxes
from toolbox.structures.feature_spec import FeatureSpec
from toolbox.structures.hungarian_matcher import HungarianMatcher

__all__ = ["DETRHead"]

DEFAULT_LOSS_CLS = dict(type="CrossEntropyLoss", loss_weight=1.0)
DEFAULT_LOSS_BBOX = dict(type="L1Loss", loss_weight=5.0)
DEFAULT_LOSS_IOU = dict(type="GIoULoss", loss_weight=2.0)
DEFAULT_MATCHER = dict(cost_class=1.0, cost_bbox=5.0, cost_giou=2.0)
DEFAULT_TEST_CFG = dict(max_per_img=100, one_label_per_query=False, clip_boxes=True)
PADDING_MASKS = ("cover", "nearest")
QUERY_TYPES = ("embedding", "anchor_box")


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (DETR's box head)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = x.relu()
        return x


def build_transformer(cfg, d_model: int) -> nn.Module:
    """A :class:`DETRTransformer` from its arguments (``type`` absent or
    ``'DETRTransformer'``), a module, or any other ``type`` registered in the
    ``heads`` hook point that takes ``d_model`` (filled from ``embed_dims``)
    and follows :class:`DETRTransformer`'s ``forward``."""
    if isinstance(cfg, nn.Module):
        return cfg
    if not isinstance(cfg, dict):
        raise TypeError(f"DETRHead: 'transformer' must be a dict config or a module, got {cfg!r}")
    cfg = dict(cfg)
    cfg.setdefault("d_model", d_model)
    if cfg.get("type", "DETRTransformer") == "DETRTransformer":
        cfg.pop("type", None)
        check_arguments(DETRTransformer, cfg, "DETRHead.transformer")
        return DETRTransformer(**cfg)
    return HEADS.build(cfg)


class DETRHead(BaseModule):
    """DETR: input projection, transformer, class and box heads, set loss.

    Every sub-config (``matcher``, the losses, ``test_cfg``) merges over the
    default named below; a loss of another ``type`` replaces it
    (docs/heads.md). Boxes are predicted in ``img_shape`` coordinates.

    Args:
        num_classes: object classes (the head adds "no object").
        in_channels: channels of the feature map(s); the last one is used.
            From ``input_shape`` when absent.
        embed_dims: transformer width (d_model, 256).
        num_queries: learned object queries (100).
        transformer: :class:`DETRTransformer` arguments (6 + 6 layers, 8
            heads, FFN 2048, dropout 0.1 by default), a module, or a config
            whose ``type`` names a registered replacement.
        positional_encoding: ``dict(type='sine')`` (default, normalised, scale
            2 pi) or ``dict(type='learned')`` plus their arguments.
        matcher: :class:`HungarianMatcher` arguments (cost 1 / 5 / 2).
        loss_cls / loss_bbox / loss_iou: ``LOSSES`` configs (CE 1, L1 5, GIoU 2).
        eos_coef: weight of the "no object" class in the classification loss.
        aux_loss: apply the losses to every decoder layer, not only the last.
        padding_mask: how the feature map's padding mask is made from each
            image's ``img_shape`` in the padded ``batch_input_shape``:
            ``'cover'`` (default): a cell is valid if it covers any image
            pixel; ``'nearest'``: the pixel mask is nearest-interpolated to the
            feature size, as the official DETR and HF transformers do (the
            two differ only where float rounding puts a cell edge on the
            image border).
        test_cfg: ``max_per_img`` (100): detections kept per image;
            ``one_label_per_query`` (False): False ranks every (query, class)
            pair by softmax score (no-object excluded) and keeps the top
            ``max_per_img``; True keeps each query once with its best class,
            as the official DETR's ``PostProcess`` and HF's
            ``post_process_object_detection`` do (then sorted by score, at
            most ``max_per_img`` queries); ``clip_boxes`` (True): clip boxes to
            the image; False leaves them as predicted (as the official DETR,
            whose boxes may reach past the image border; the detector then
            maps them back unclipped too).
        input_shape: :class:`FeatureSpec` of the map the head reads (the
            last one is used).
        query: None or ``dict(type='embedding')``: DETR's learned query
            embeddings; ``dict(type='anchor_box', conditional_scale=True,
            random_xy=False, init_wh=0.1)``: :class:`AnchorBoxQueries`.
        denoising: None (off) or :class:`DenoisingQueries` arguments
            (``num_groups``, ``box_noise_scale``, ``label_noise_ratio``);
            training only, needs ``query=dict(type='anchor_box')``.
        query_selection: None (off) or ``dict(proposal_wh=0.1, content='static',
            gt_repeats=1)``:
            :class:`EncoderQuerySelection`; needs anchor-box queries.
    """

    def __init__(self, num_classes: int, in_channels: int | Sequence[int] | None = None,
                 embed_dims: int = 256,
                 num_queries: int = 100, transformer: dict | nn.Module | None = None,
                 positional_encoding: dict | nn.Module | None = None, matcher: dict | None = None,
                 loss_cls: dict | None = None, loss_bbox: dict | None = None,
                 loss_iou: dict | None = None, eos_coef: float = 0.1, aux_loss: bool = True,
                 padding_mask: str = "cover", test_cfg: dict | None = None,
                 input_shape: Sequence[FeatureSpec] | None = None, init_cfg=None,
                 query: dict | None = None, denoising: dict | None = None,
                 query_selection: dict | None = None):
        super().__init__(init_cfg=init_cfg)
        if input_shape is not None:
            input_shape = tuple(input_shape)[-1:]
            if in_channels is not None and not isinstance(in_channels, int):
                in_channels = tuple(in_channels)[-1:]
        in_channels, _ = resolve_input_shape("DETRHead", input_shape, in_channels, None)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"DETRHead: 'num_classes' must be a positive int, got {num_classes!r}")
        if not isinstance(in_channels, int):
            if not in_channels:
                raise ValueError("DETRHead: 'in_channels' must be an int or a non-empty sequence, "
                                 f"got {in_channels!r}")
            in_channels = tuple(in_channels)[-1]  # DETR reads the last (coarsest) map
        if not isinstance(embed_dims, int) or embed_dims < 2 or embed_dims % 2:
            raise ValueError(f"DETRHead: 'embed_dims' must be a positive even int, "
                             f"got {embed_dims!r}")
        if not isinstance(num_queries, int) or num_queries < 1:
            raise ValueError(f"DETRHead: 'num_queries' must be a positive int, got {num_queries!r}")
        if not 0 <= eos_coef <= 1:
            raise ValueError(f"DETRHead: 'eos_coef' must be in [0, 1], got {eos_coef}")
        if padding_mask not in PADDING_MASKS:
            raise ValueError(f"DETRHead: 'padding_mask' must be one of {PADDING_MASKS}, "
                             f"got {padding_mask!r}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.embed_dims = embed_dims
        self.num_queries = num_queries
        self.eos_coef = float(eos_coef)
        self.aux_loss = bool(aux_loss)
        self.padding_mask_mode = padding_mask
        self.test_cfg = merge_cfg("DETRHead", DEFAULT_TEST_CFG, test_cfg, "test_cfg")

        self.transformer = build_transformer(transformer or {}, embed_dims)
        if getattr(self.transformer, "d_model", embed_dims) != embed_dims:
            raise ValueError(f"DETRHead: transformer d_model {self.transformer.d_model} differs "
                             f"from 'embed_dims' {embed_dims}")
        self.positional_encoding = build_positional_encoding(
            positional_encoding or dict(type="sine"), embed_dims // 2)
        self.loss_cls = loss_with_defaults(loss_cls, DEFAULT_LOSS_CLS)
        self.use_sigmoid = bool(getattr(self.loss_cls, "use_sigmoid", False))
        default_matcher = dict(DEFAULT_MATCHER, class_cost="focal") if self.use_sigmoid \
            else DEFAULT_MATCHER
        self.matcher = with_defaults(matcher, default_matcher, HungarianMatcher, "DETRHead.matcher")
        self.loss_bbox = loss_with_defaults(loss_bbox, DEFAULT_LOSS_BBOX)
        self.loss_iou = loss_with_defaults(loss_iou, DEFAULT_LOSS_IOU)
        class_weight = torch.ones(num_classes + 1)
        class_weight[-1] = self.eos_coef
        self.register_buffer("class_weight", class_weight, persistent=False)

        self.input_proj = nn.Conv2d(in_channels, embed_dims, kernel_size=1)
        query = dict(query or {})
        self.query_type = query.pop("type", "embedding")
        if self.query_type not in QUERY_TYPES:
            raise ValueError(f"DETRHead: query type must be one of {QUERY_TYPES}, "
                             f"got {self.query_type!r}")
        if self.query_type == "embedding":
            if query:
                raise ValueError(f"DETRHead: query type 'embedding' takes no arguments, "
                                 f"got {sorted(query)}")
            self.query_embed = nn.Embedding(num_queries, embed_dims)
        else:
            if not isinstance(self.transformer, DETRTransformer):
                raise ValueError("DETRHead: query type 'anchor_box' needs the built-in "
                                 "DETRTransformer")
            query.update(num_queries=num_queries, d_model=embed_dims)
            check_arguments(AnchorBoxQueries, query, "DETRHead.query")
            self.anchor_queries = AnchorBoxQueries(**query)
        self.denoising = None
        if denoising is not None:
            if self.query_type != "anchor_box":
                raise ValueError("DETRHead: 'denoising' needs query=dict(type='anchor_box') "
                                 "(DN-DETR's queries are anchor boxes)")
            denoising = dict(denoising, num_classes=num_classes, d_model=embed_dims)
            check_arguments(DenoisingQueries, denoising, "DETRHead.denoising")
            self.denoising = DenoisingQueries(**denoising)
        self.query_selection = None
        if query_selection is not None:
            if self.query_type != "anchor_box":
                raise ValueError("DETRHead: 'query_selection' needs query=dict(type='anchor_box')")
            query_selection = dict(query_selection, d_model=embed_dims,
                                   num_cls_outputs=num_classes + (not self.use_sigmoid),
                                   num_queries=num_queries, sigmoid=self.use_sigmoid)
            check_arguments(EncoderQuerySelection, query_selection, "DETRHead.query_selection")
            self.query_selection = EncoderQuerySelection(**query_selection)
            if self.use_sigmoid:
                nn.init.constant_(self.query_selection.cls_head.bias, -math.log((1 - 0.01) / 0.01))
        self.class_embed = nn.Linear(embed_dims, num_classes + (not self.use_sigmoid))
        self.bbox_embed = MLP(embed_dims, embed_dims, 4, num_layers=3)
        if self.use_sigmoid:
            nn.init.constant_(self.class_embed.bias, -math.log((1 - 0.01) / 0.01))
        if self.query_type == "anchor_box":  # refinement starts at the anchors (DAB-DETR)
            nn.init.zeros_(self.bbox_embed.layers[-1].weight)
            nn.init.zeros_(self.bbox_embed.layers[-1].bias)

    # ------------------------------------------------------------------ forward
    # the two rules of which feature cells are padding (layers/detr_padding_mask.py)
    padding_mask = staticmethod(cover_padding_mask)
    nearest_padding_mask = staticmethod(nearest_padding_mask)

    def forward(self, feats: Sequence[Tensor], batch_img_metas: Sequence[dict] | None = None
                ) -> tuple[Tensor, Tensor]:
        """Per decoder layer: class logits [L, B, Q, C + 1] and boxes
        [L, B, Q, 4] (normalised cx, cy, w, h of each image's img_shape)."""
        feat = feats[-1]
        if feat.dim() != 4 or feat.shape[1] != self.in_channels:
            raise ValueError(f"DETRHead: expected the last feature map as [B, in_channels="
                             f"{self.in_channels}, H, W], got {tuple(feat.shape)}")
        make_mask = (self.padding_mask if self.padding_mask_mode == "cover"
                     else self.nearest_padding_mask)
        mask = make_mask(feat, batch_img_metas)
        pos = self.positional_encoding(mask).to(feat.dtype)
        if self.query_type == "embedding":
            hs, _ = self.transformer(self.input_proj(feat), mask, self.query_embed.weight, pos)
            return self.class_embed(hs), self.bbox_embed(hs).sigmoid()
        cls, boxes, _ = self._anchor_forward(self.input_proj(feat), mask, pos, None)
        return cls, boxes

    def _anchor_forward(self, src: Tensor, mask: Tensor, pos: Tensor, dn,
                        encoder_outputs: list | None = None):
        """Anchor-box queries (with ``dn`` denoising queries in front): class
        logits and boxes of the matching queries [L, B, Q, *] and, with
        ``dn``, of the denoising ones (None otherwise). With query selection,
        the token predictions (logits [B, HW, K], boxes [B, HW, 4]) are
        appended to ``encoder_outputs`` when it is given."""
        mask_2d = mask
        memory, mask, pos = self.transformer.encode(src, mask, pos)
        batch = src.shape[0]
        if self.query_selection is not None:
            enc_cls, enc_boxes, ref, tgt = self.query_selection(memory, mask_2d)
            if encoder_outputs is not None:
                encoder_outputs.extend((enc_cls, enc_boxes))
        else:
            ref = self.anchor_queries.anchor_logits()[:, None, :].expand(-1, batch, -1)
            tgt = None
        if tgt is None:
            tgt = ref.new_zeros(ref.shape[0], batch, self.embed_dims)
        attn_mask = None
        if dn is not None:
            tgt = torch.cat((dn.content.to(tgt.dtype), tgt))
            ref = torch.cat((dn.ref_logits.to(ref.dtype), ref))
            attn_mask = dn.attn_mask
        hs, boxes = self.anchor_queries.decode(self.transformer.decoder, tgt, ref, memory, mask,
                                               pos, self.bbox_embed, self_attn_mask=attn_mask)
        cls = self.class_embed(hs)
        if dn is None:
            return cls, boxes, None
        k = dn.num_dn
        return cls[:, :, k:], boxes[:, :, k:], (cls[:, :, :k], boxes[:, :, :k])

    # --------------------------------------------------------------------- loss
    def loss(self, feats: Sequence[Tensor], data_samples) -> dict[str, Tensor]:
        metas = [s.metainfo for s in data_samples]
        if self.denoising is None and self.query_selection is None:
            all_cls, all_boxes = self(feats, metas)
            return self.loss_by_feat(all_cls, all_boxes, data_samples)
        feat = feats[-1]
        mask = (self.padding_mask if self.padding_mask_mode == "cover"
                else self.nearest_padding_mask)(feat, metas)
        pos = self.positional_encoding(mask).to(feat.dtype)
        targets = self._targets(data_samples, feat.device)
        dn = None if self.denoising is None else self.denoising(targets, self.num_queries)
        encoder_outputs = []
        all_cls, all_boxes, dn_out = self._anchor_forward(self.input_proj(feat), mask, pos, dn,
                                                          encoder_outputs)
        losses = self.loss_by_feat(all_cls, all_boxes, data_samples)
        if encoder_outputs:
            repeats = self.query_selection.gt_repeats
            enc_targets = [(labels.repeat(repeats), boxes.repeat(repeats, 1))
                           for labels, boxes in targets]
            num_boxes = self._num_boxes(enc_targets, feat.device)
            parts = self.loss_single(*encoder_outputs, enc_targets, num_boxes)
            losses.update({"enc." + k: v for k, v in parts.items()})
        if dn_out is not None:
            losses.update(self.denoising_losses(*dn_out, dn, targets))
        return losses

    def denoising_losses(self, dn_cls: Tensor, dn_boxes: Tensor, dn, targets
                         ) -> dict[str, Tensor]:
        """DN-DETR's reconstruction losses (no matching): every valid
        denoising query against the ground truth it was made from, per
        decoder layer, prefixed ``dn.`` (``d{i}.dn.`` for earlier layers)."""
        labels = torch.cat([t[0][dn.gt_index[i][dn.valid[i]]] for i, t in enumerate(targets)])
        gt = torch.cat([t[1][dn.gt_index[i][dn.valid[i]]] for i, t in enumerate(targets)])
        num_boxes = self._num_boxes(targets, dn_cls.device) * dn.num_groups
        num_layers = dn_cls.shape[0]
        layers = range(num_layers) if self.aux_loss else [num_layers - 1]
        losses = {}
        for layer in layers:
            logits = dn_cls[layer][dn.valid]
            pred = dn_boxes[layer][dn.valid]
            if self.use_sigmoid:
                loss_cls = self.loss_cls(logits, labels, avg_factor=num_boxes)
            else:
                weight = self.class_weight[labels]
                loss_cls = self.loss_cls(logits, labels, weight=weight,
                                         avg_factor=float(weight.sum()))
            prefix = ("" if layer == num_layers - 1 else f"d{layer}.") + "dn."
            losses[prefix + "loss_cls"] = loss_cls
            losses[prefix + "loss_bbox"] = self.loss_bbox(pred, gt, avg_factor=num_boxes)
            losses[prefix + "loss_iou"] = self.loss_iou(box_convert(pred, "cxcywh", "xyxy"),
                                                       box_convert(gt, "cxcywh", "xyxy"),
                                                       avg_factor=num_boxes)
        return losses

    @staticmethod
    def _image_wh(meta: dict) -> tuple[float, float]:
        shape = meta.get("img_shape", meta.get("batch_input_shape"))
        if shape is None:
            raise ValueError("DETRHead: every data sample needs 'img_shape' in its metainfo "
                             "(boxes are normalised by it)")
        return float(shape[1]), float(shape[0])

    def _targets(self, data_samples, device) -> list[tuple[Tensor, Tensor]]:
        """Per image: labels [N] and normalised cx, cy, w, h boxes [N, 4]."""
        targets = []
        for sample in data_samples:
            boxes, labels, _ = ground_truth(sample, device, self.num_classes, "DETRHead")
            w, h = self._image_wh(sample.metainfo)
            boxes = box_convert(boxes, "xyxy", "cxcywh") / boxes.new_tensor([w, h, w, h])
            targets.append((labels, boxes))
        return targets

    @staticmethod
    def _num_boxes(targets, device) -> float:
        """Ground-truth boxes in the batch, averaged over DDP ranks (>= 1)."""
        num = torch.tensor(float(sum(len(t[0]) for t in targets)), device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(num)
            num = num / dist.get_world_size()
        return max(float(num), 1.0)

    def loss_by_feat(self, all_cls: Tensor, all_boxes: Tensor, data_samples) -> dict[str, Tensor]:
        if len(data_samples) != all_cls.shape[1]:
            raise ValueError(f"DETRHead.loss: {len(data_samples)} data samples for a batch of "
                             f"{all_cls.shape[1]} images")
        targets = self._targets(data_samples, all_cls.device)
        num_boxes = self._num_boxes(targets, all_cls.device)
        num_layers = all_cls.shape[0]
        layers = range(num_layers) if self.aux_loss else [num_layers - 1]
        losses = {}
        for layer in layers:
            parts = self.loss_single(all_cls[layer], all_boxes[layer], targets, num_boxes)
            prefix = "" if layer == num_layers - 1 else f"d{layer}."
            losses.update({prefix + k: v for k, v in parts.items()})
        return losses

    def loss_single(self, cls_logits: Tensor, boxes: Tensor, targets, num_boxes: float
                    ) -> dict[str, Tensor]:
        """Losses of one decoder layer: ``cls_logits`` [B, Q, C + 1], ``boxes``
        [B, Q, 4]."""
        batch, num_queries, _ = cls_logits.shape
        target_classes = cls_logits.new_full((batch, num_queries), self.num_classes,
                                             dtype=torch.long)
        pred_matched, gt_matched = [], []
        for i, (labels, gt_boxes) in enumerate(targets):
            query_idx, gt_idx = self.matcher.match(cls_logits[i].detach(), boxes[i].detach(),
                                                   labels, gt_boxes)
            target_classes[i, query_idx] = labels[gt_idx]
            pred_matched.append(boxes[i, query_idx])
            gt_matched.append(gt_boxes[gt_idx])
        target_classes = target_classes.flatten()
        if self.use_sigmoid:  # C = background; normalised by the gt boxes (Deformable DETR)
            loss_cls = self.loss_cls(cls_logits.flatten(0, 1), target_classes,
                                     avg_factor=num_boxes)
        else:
            weight = self.class_weight[target_classes]
            loss_cls = self.loss_cls(cls_logits.flatten(0, 1), target_classes, weight=weight,
                                     avg_factor=float(weight.sum()))
        pred = torch.cat(pred_matched)
        gt = torch.cat(gt_matched)
        loss_bbox = self.loss_bbox(pred, gt, avg_factor=num_boxes)
        loss_iou = self.loss_iou(box_convert(pred, "cxcywh", "xyxy"),
                                 box_convert(gt, "cxcywh", "xyxy"), avg_factor=num_boxes)
        if pred.numel() == 0:
            loss_bbox = loss_bbox + graph_zero(boxes)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_iou=loss_iou)

    # ------------------------------------------------------------------ predict
    def predict(self, feats: Sequence[Tensor], data_samples=None) -> list[InstanceData]:
        """Top ``max_per_img`` (query, class) pairs per image by softmax score
        (no-object excluded; one pair per query with ``one_label_per_query``),
        boxes in ``img_shape`` coordinates (clipped to it unless
        ``clip_boxes`` is off)."""
        batch = feats[-1].shape[0]
        metas = sample_metas(data_samples, batch)
        all_cls, all_boxes = self(feats, metas if data_samples is not None else None)
        return self.predict_by_feat(all_cls[-1], all_boxes[-1], metas)

    def predict_by_feat(self, cls_logits: Tensor, boxes: Tensor,
                        batch_img_metas: Sequence[dict]) -> list[InstanceData]:
        clip = self.test_cfg["clip_boxes"]
        results = []
        for i, meta in enumerate(batch_img_metas):
            scores, labels, query = self._top_pairs(cls_logits[i])
            if "img_shape" in meta:
                w, h = self._image_wh(meta)
            else:  # no metainfo: boxes relative to the (unpadded) input
                w, h = 1.0, 1.0
            bboxes = box_convert(boxes[i, query], "cxcywh", "xyxy")
            bboxes = bboxes * bboxes.new_tensor([w, h, w, h])
            if "img_shape" in meta and clip:
                bboxes = clip_boxes(bboxes, (h, w))
            results.append(InstanceData(bboxes=bboxes, scores=scores, labels=labels))
        return results

    def _top_pairs(self, cls_logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(scores, labels, query index) of one image's kept (query, class) pairs."""
        probs = cls_logits.sigmoid() if self.use_sigmoid else cls_logits.softmax(-1)[:, :-1]
        if self.test_cfg["one_label_per_query"]:
            scores, labels = probs.max(-1)
            k = min(self.test_cfg["max_per_img"], scores.numel())
            scores, query = scores.topk(k)
            return scores, labels[query], query
        k = min(self.test_cfg["max_per_img"], probs.numel())
        scores, index = probs.flatten().topk(k)
        return scores, index % self.num_classes, torch.div(index, self.num_classes,
                                                          rounding_mode="floor")
