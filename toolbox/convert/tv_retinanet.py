"""torchvision RetinaNet state dicts (``retinanet_resnet50_fpn`` and
``retinanet_resnet50_fpn_v2``) in the key space of the reference configs
``configs/reference/retinanet_r50_fpn_tv.py`` / ``..._v2_tv.py``.

Both the current module layout and the one torchvision's 2020 COCO file was
saved with are read: before torchvision's "version 2" modules, FPN convs were
bare (``inner_blocks.0.weight``, not ``inner_blocks.0.0.weight``) and each
head tower was ``Sequential(conv, relu, conv, relu, ...)`` (``conv.2.weight``
is the second conv). Tensors keep their layout: torchvision's head output
``(anchor, class)`` channel order is the toolbox's.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Sequence

from torch import Tensor

from toolbox.convert.base import ConversionError, Layout, rename_keys
from toolbox.convert.tv_backbone_fpn import FPN_BLOCKS, RESNET_BODY

__all__ = ["LAYOUTS", "convert_v1", "convert_v2"]

_WB = r"(weight|bias)"
_BACKBONE = RESNET_BODY + FPN_BLOCKS + [
    (rf"backbone\.fpn\.extra_blocks\.p6\.{_WB}", r"neck.extra_convs.0.conv.\1"),
    (rf"backbone\.fpn\.extra_blocks\.p7\.{_WB}", r"neck.extra_convs.1.conv.\1"),
]
_TOWERS = (("classification_head", "cls_convs"), ("regression_head", "reg_convs"))
_HEAD = [
    (rf"head\.classification_head\.cls_logits\.{_WB}", r"bbox_head.retina_cls.\1"),
    (rf"head\.regression_head\.bbox_reg\.{_WB}", r"bbox_head.retina_reg.\1"),
]
for _tv, _ours in _TOWERS:
    _HEAD.append((rf"head\.{_tv}\.conv\.(\d+)\.0\.{_WB}", rf"bbox_head.{_ours}.\1.conv.\2"))
_HEAD_V1_OLD = [(rf"head\.{tv}\.conv\.{2 * i}\.{_WB}", rf"bbox_head.{ours}.{i}.conv.\1")
                for tv, ours in _TOWERS for i in range(4)]
_HEAD_V2_GN = [(rf"head\.{tv}\.conv\.(\d+)\.1\.{_WB}", rf"bbox_head.{ours}.\1.gn.\2")
               for tv, ours in _TOWERS]

RULES_V1 = [(r".+\.num_batches_tracked", None)] + _BACKBONE + _HEAD + _HEAD_V1_OLD
RULES_V2 = _BACKBONE + _HEAD + _HEAD_V2_GN

# keys every converted state dict must have (a check for truncated or other-model files)
_REQUIRED = ["backbone.stem.conv.weight", "backbone.layer4.2.conv3.weight",
             "neck.lateral_convs.2.conv.weight", "neck.extra_convs.1.conv.weight",
             "bbox_head.retina_cls.weight", "bbox_head.retina_reg.weight"]
_REQUIRED_V1 = _REQUIRED + [f"bbox_head.{t}.{i}.conv.bias" for _, t in _TOWERS for i in range(4)]
_REQUIRED_V2 = _REQUIRED + [f"bbox_head.{t}.{i}.gn.weight" for _, t in _TOWERS for i in range(4)]


def _convert(state_dict: Mapping[str, Tensor], rules, required: Sequence[str],
             layout: str) -> "OrderedDict[str, Tensor]":
    out = rename_keys(state_dict, rules, layout)
    missing = [k for k in required if k not in out]
    if missing:
        raise ConversionError(f"not a {layout} state dict: it lacks what these keys are made "
                              f"from: first {missing[:5]}")
    return out


def convert_v1(state_dict: Mapping[str, Tensor]) -> "OrderedDict[str, Tensor]":
    """torchvision ``retinanet_resnet50_fpn`` -> ``retinanet_r50_fpn_tv.py``
    (``num_batches_tracked`` is dropped: the config's ResNet uses FrozenBN)."""
    return _convert(state_dict, RULES_V1, _REQUIRED_V1, "tv-retinanet")


def convert_v2(state_dict: Mapping[str, Tensor]) -> "OrderedDict[str, Tensor]":
    """torchvision ``retinanet_resnet50_fpn_v2`` -> ``retinanet_r50_fpn_v2_tv.py``
    (BatchNorm backbone: ``num_batches_tracked`` is kept)."""
    return _convert(state_dict, RULES_V2, _REQUIRED_V2, "tv-retinanet-v2")


def _is_retinanet(keys: Sequence[str]) -> bool:
    return ("head.classification_head.cls_logits.weight" in keys
            and "backbone.body.conv1.weight" in keys)


def _has_gn_head(keys: Sequence[str]) -> bool:
    return "head.classification_head.conv.0.1.weight" in keys


LAYOUTS = [
    Layout(name="tv-retinanet",
           description="torchvision retinanet_resnet50_fpn (COCO: box AP 36.4)",
           detect=lambda keys: _is_retinanet(keys) and not _has_gn_head(keys),
           convert=convert_v1, config="reference/retinanet_r50_fpn_tv.py"),
    Layout(name="tv-retinanet-v2",
           description="torchvision retinanet_resnet50_fpn_v2 (GroupNorm head; COCO: box AP 41.5)",
           detect=lambda keys: _is_retinanet(keys) and _has_gn_head(keys),
           convert=convert_v2, config="reference/retinanet_r50_fpn_v2_tv.py"),
]
