"""DETR-R50 checkpoints -> the toolbox's ``DETR`` (``configs/reference/detr_r50_official.py``).

Two layouts:

* ``detr-official``: the DETR authors' release (facebookresearch/detr,
  ``detr-r50-e632da11.pth``, a ``{"model": state_dict}`` file):
  ``backbone.0.body.*`` (torchvision ResNet-50), ``transformer.*`` (the
  ``nn.MultiheadAttention`` layers with fused ``in_proj_weight``, which the
  toolbox transformer keeps), ``class_embed``, ``bbox_embed.layers.N``,
  ``query_embed``, ``input_proj``.
* ``detr-hf``: HF transformers' ``DetrForObjectDetection`` with the timm
  ResNet-50 backbone (``facebook/detr-resnet-50``): the backbone under
  ``model.backbone.conv_encoder.model.`` (transformers 4) or
  ``model.backbone.model.`` (transformers 5), separate ``q_proj`` /
  ``k_proj`` / ``v_proj`` (fused here in that order), ``out_proj`` (4) or
  ``o_proj`` (5), ``fc1`` / ``fc2`` directly on the layer (4) or under
  ``mlp.`` (5).

Both keep DETR's 91 + 1 class rows (label == COCO category id, the last row
"no object"), which is what the reference config's ``num_classes=91``
builds. ``num_batches_tracked`` entries, if any, are dropped (FrozenBN).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Mapping, Sequence

import torch
from torch import Tensor

from toolbox.convert.base import ConversionError, Layout, drop_keys, rename_keys

__all__ = ["LAYOUTS", "convert_official", "convert_hf"]

CONFIG = "reference/detr_r50_official.py"
_HEAD = r"(input_proj\.(?:weight|bias)|query_embed\.weight|class_embed\.(?:weight|bias)" \
        r"|bbox_embed\.layers\.\d+\.(?:weight|bias))"
_RESNET = [  # torchvision / timm ResNet names -> toolbox ResNet
    (r"conv1\.weight", r"backbone.stem.conv.weight"),
    (r"bn1\.(weight|bias|running_mean|running_var)", r"backbone.stem.bn.\1"),
    (r"(layer[1-4]\.\d+\.(?:conv[1-3]|bn[1-3]|downsample\.[01])\."
     r"(?:weight|bias|running_mean|running_var))", r"backbone.\1"),
]


def _unwrap(state_dict: Mapping) -> Mapping[str, Tensor]:
    """The state dict of a ``{"model": ...}`` / ``{"state_dict": ...}`` file."""
    for key in ("model", "state_dict"):
        inner = state_dict.get(key) if isinstance(state_dict, Mapping) else None
        if isinstance(inner, Mapping) and not isinstance(inner, Tensor):
            return inner
    return state_dict


def convert_official(state_dict: Mapping[str, Tensor]) -> "OrderedDict[str, Tensor]":
    """The DETR authors' layout -> the toolbox DETR's keys."""
    state_dict = drop_keys(_unwrap(state_dict), ["num_batches_tracked"])
    rules = [(r"backbone\.0\.body\." + p, r) for p, r in _RESNET]
    rules += [(r"(transformer\.(?:encoder|decoder)\.layers\.\d+\.(?:self_attn|multihead_attn)\."
               r"(?:in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias))",
               r"bbox_head.\1"),
              (r"(transformer\.(?:encoder|decoder)\.layers\.\d+\.(?:linear[12]|norm[1-3])\."
               r"(?:weight|bias))", r"bbox_head.\1"),
              (r"(transformer\.decoder\.norm\.(?:weight|bias))", r"bbox_head.\1"),
              (_HEAD, r"bbox_head.\1")]
    return rename_keys(state_dict, rules, "detr-official (DETR authors' checkpoint)")


def _fuse_qkv(state_dict: Mapping[str, Tensor], layout: str) -> "OrderedDict[str, Tensor]":
    """HF's ``{q,k,v}_proj.{weight,bias}`` -> ``in_proj_{weight,bias}``
    (rows q, k, v, as ``nn.MultiheadAttention`` stacks them)."""
    pattern = re.compile(r"(.*)\.([qkv])_proj\.(weight|bias)")
    out: OrderedDict[str, Tensor] = OrderedDict()
    parts: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        match = pattern.fullmatch(key)
        if match is None:
            out[key] = value
            continue
        prefix, which, kind = match.groups()
        group = parts.setdefault((prefix, kind), {})
        group[which] = value
        if len(group) == 3:
            out[f"{prefix}.in_proj_{kind}"] = torch.cat([group[c] for c in "qkv"])
    incomplete = [f"{p}.{{q,k,v}}_proj.{k} (has {sorted(g)})" for (p, k), g in parts.items()
                  if len(g) != 3]
    if incomplete:
        raise ConversionError(f"not a {layout} state dict: attention projections incomplete: "
                              f"{incomplete[:3]}")
    return out


def convert_hf(state_dict: Mapping[str, Tensor]) -> "OrderedDict[str, Tensor]":
    """HF ``DetrForObjectDetection`` (timm backbone) -> the toolbox DETR's keys."""
    layout = "detr-hf (HF transformers DetrForObjectDetection)"
    state_dict = _fuse_qkv(drop_keys(_unwrap(state_dict), ["num_batches_tracked"]), layout)
    backbone = r"model\.backbone\.(?:conv_encoder\.)?model\."
    rules = [(backbone + p, r) for p, r in _RESNET]
    # per transformer layer: HF module name (pattern) -> the toolbox one
    layer_parts = {
        "encoder": [(r"self_attn\.in_proj_", "self_attn.in_proj_"),
                    (r"self_attn\.(?:out|o)_proj\.", "self_attn.out_proj."),
                    (r"self_attn_layer_norm\.", "norm1."), (r"(?:mlp\.)?fc1\.", "linear1."),
                    (r"(?:mlp\.)?fc2\.", "linear2."), (r"final_layer_norm\.", "norm2.")],
        "decoder": [(r"self_attn\.in_proj_", "self_attn.in_proj_"),
                    (r"self_attn\.(?:out|o)_proj\.", "self_attn.out_proj."),
                    (r"self_attn_layer_norm\.", "norm1."),
                    (r"encoder_attn\.in_proj_", "multihead_attn.in_proj_"),
                    (r"encoder_attn\.(?:out|o)_proj\.", "multihead_attn.out_proj."),
                    (r"encoder_attn_layer_norm\.", "norm2."), (r"(?:mlp\.)?fc1\.", "linear1."),
                    (r"(?:mlp\.)?fc2\.", "linear2."), (r"final_layer_norm\.", "norm3.")],
    }
    for stack, parts in layer_parts.items():
        rules += [(rf"model\.{stack}\.layers\.(\d+)\.{hf}(weight|bias)",
                   rf"bbox_head.transformer.{stack}.layers.\1.{ours}\2") for hf, ours in parts]
    rules += [
        (r"model\.decoder\.layernorm\.(weight|bias)", r"bbox_head.transformer.decoder.norm.\1"),
        (r"model\.input_projection\.(weight|bias)", r"bbox_head.input_proj.\1"),
        (r"model\.query_position_embeddings\.weight", r"bbox_head.query_embed.weight"),
        (r"class_labels_classifier\.(weight|bias)", r"bbox_head.class_embed.\1"),
        (r"bbox_predictor\.layers\.(\d+)\.(weight|bias)", r"bbox_head.bbox_embed.layers.\1.\2"),
    ]
    return rename_keys(state_dict, rules, layout)


def _is_official(keys: Sequence[str]) -> bool:
    keys = set(keys)
    return "transformer.decoder.norm.weight" in keys and "query_embed.weight" in keys \
        and any(k.startswith("backbone.0.body.") for k in keys)


def _is_hf(keys: Sequence[str]) -> bool:
    keys = set(keys)
    return "class_labels_classifier.weight" in keys and "model.decoder.layernorm.weight" in keys


LAYOUTS = [
    Layout("detr-official", "DETR authors' checkpoint (facebookresearch/detr, e.g. "
           "detr-r50-e632da11.pth)", _is_official, convert_official, CONFIG),
    Layout("detr-hf", "HF transformers DetrForObjectDetection state dict (timm ResNet-50 "
           "backbone, e.g. facebook/detr-resnet-50)", _is_hf, convert_hf, CONFIG),
]
