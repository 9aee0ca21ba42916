"""torchvision's Faster R-CNN state dicts -> the reference configs' models.

* ``tv-faster-rcnn``: ``fasterrcnn_resnet50_fpn`` ->
  ``configs/reference/faster_rcnn_r50_fpn_tv.py``;
* ``tv-faster-rcnn-mobilenet``: ``fasterrcnn_mobilenet_v3_large_fpn`` ->
  ``configs/reference/faster_rcnn_mobilenetv3_fpn_tv.py``.

Both take the current key names and the older ones of the published
checkpoints (``rpn.head.conv.weight``, ``fpn.inner_blocks.0.weight``, before
torchvision wrapped those convs in ``Conv2dNormActivation``).

torchvision's box predictor has ``K + 1`` rows with the background first;
the toolbox ``RoIBoxHead`` puts it last and has no box deltas for it: the
classifier's row 0 moves to the end and the first 4 rows of ``bbox_pred``
(background deltas, never used by torchvision either) are dropped, so
toolbox label ``j`` is torchvision label ``j + 1``.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from typing import Mapping, Sequence

import torch

from toolbox.convert.base import ConversionError, Layout, drop_keys, rename_keys
from toolbox.convert.tv_backbone_fpn import FPN_BLOCKS, RESNET_BODY

__all__ = ["LAYOUTS", "convert_resnet50_fpn", "convert_mobilenet_v3_fpn"]

# (pattern, replacement) for everything after the backbone's body.
_FPN_AND_HEADS = FPN_BLOCKS + [
    (r"rpn\.head\.conv(?:\.0\.0)?\.(weight|bias)", r"rpn_head.rpn_conv.\1"),
    (r"rpn\.head\.cls_logits\.(weight|bias)", r"rpn_head.rpn_cls.\1"),
    (r"rpn\.head\.bbox_pred\.(weight|bias)", r"rpn_head.rpn_reg.\1"),
    (r"roi_heads\.box_head\.fc6\.(weight|bias)", r"roi_head.shared_fcs.0.\1"),
    (r"roi_heads\.box_head\.fc7\.(weight|bias)", r"roi_head.shared_fcs.2.\1"),
    (r"roi_heads\.box_predictor\.cls_score\.(weight|bias)", r"roi_head.fc_cls.\1"),
    (r"roi_heads\.box_predictor\.bbox_pred\.(weight|bias)", r"roi_head.fc_reg.\1"),
]
_REQUIRED = ("rpn_head.rpn_cls.weight", "roi_head.fc_cls.weight", "roi_head.fc_reg.weight",
             "neck.lateral_convs.0.conv.weight")


def _predictor(state: "OrderedDict[str, torch.Tensor]", layout: str
               ) -> "OrderedDict[str, torch.Tensor]":
    """Background row of the classifier last; its 4 delta rows dropped."""
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ConversionError(f"not a {layout} state dict: no {missing[:3]} after conversion "
                              "(no RPN / box predictor / FPN weights in it)")
    for name in ("weight", "bias"):
        cls = state[f"roi_head.fc_cls.{name}"]
        reg = state[f"roi_head.fc_reg.{name}"]
        if reg.shape[0] != 4 * cls.shape[0]:
            raise ConversionError(f"{layout}: box_predictor.bbox_pred.{name} has {reg.shape[0]} "
                                  f"rows, expected 4 x {cls.shape[0]} classes")
        state[f"roi_head.fc_cls.{name}"] = torch.cat([cls[1:], cls[:1]]).contiguous()
        state[f"roi_head.fc_reg.{name}"] = reg[4:].contiguous()
    return state


def convert_resnet50_fpn(state_dict: Mapping[str, torch.Tensor]
                         ) -> "OrderedDict[str, torch.Tensor]":
    """``fasterrcnn_resnet50_fpn`` keys -> ``faster_rcnn_r50_fpn_tv.py``'s."""
    state = drop_keys(state_dict, ["num_batches_tracked"])
    state = rename_keys(state, RESNET_BODY + _FPN_AND_HEADS, "tv-faster-rcnn")
    return _predictor(state, "tv-faster-rcnn")


@lru_cache(maxsize=1)
def _mobilenet_key_map() -> tuple[tuple[str, str], ...]:
    """torchvision ``features`` module paths -> the toolbox MobileNetV3's."""
    from toolbox.models.backbones.mobilenet_v3 import MobileNetV3
    model = MobileNetV3(arch="large", taps="stage_start", out_indices=(4, 5), norm="FrozenBN")
    return tuple((k, v) for k, v in model.reference_key_map().items() if v is not None)


def convert_mobilenet_v3_fpn(state_dict: Mapping[str, torch.Tensor]
                             ) -> "OrderedDict[str, torch.Tensor]":
    """``fasterrcnn_mobilenet_v3_large_fpn`` keys ->
    ``faster_rcnn_mobilenetv3_fpn_tv.py``'s."""
    body = []
    for tv, ours in _mobilenet_key_map():
        index, _, rest = tv[len("features."):].partition(".")
        pattern = (rf"backbone\.body\.{index}\." + rest.replace(".", r"\.") if rest
                   else rf"backbone\.body\.{index}")
        body.append((pattern + r"\.(weight|bias|running_mean|running_var)",
                     rf"backbone.{ours}.\1"))
    state = drop_keys(state_dict, ["num_batches_tracked"])
    state = rename_keys(state, body + _FPN_AND_HEADS, "tv-faster-rcnn-mobilenet")
    return _predictor(state, "tv-faster-rcnn-mobilenet")


def _is_faster_rcnn(keys: Sequence[str]) -> bool:
    return any(k.startswith("rpn.head.") for k in keys) and \
        any(k.startswith("roi_heads.box_predictor.") for k in keys)


def _looks_like_resnet50(keys: Sequence[str]) -> bool:
    return _is_faster_rcnn(keys) and "backbone.body.layer1.0.conv1.weight" in keys


def _looks_like_mobilenet(keys: Sequence[str]) -> bool:
    return _is_faster_rcnn(keys) and "backbone.body.1.block.0.0.weight" in keys


LAYOUTS = [
    Layout("tv-faster-rcnn", "torchvision fasterrcnn_resnet50_fpn (COCO: box AP 37.0)",
           _looks_like_resnet50, convert_resnet50_fpn,
           config="reference/faster_rcnn_r50_fpn_tv.py"),
    Layout("tv-faster-rcnn-mobilenet",
           "torchvision fasterrcnn_mobilenet_v3_large_fpn (COCO: box AP 32.8)",
           _looks_like_mobilenet, convert_mobilenet_v3_fpn,
           config="reference/faster_rcnn_mobilenetv3_fpn_tv.py"),
]
