"""Layouts whose mapping a toolbox model carries itself: a backbone's
reference classification weights (torchvision, timm: each backbone's
``convert_reference_state_dict``) and a whole segmentor's reference (MONAI's
``UNETR`` through ``EncoderDecoder.convert_reference_state_dict``)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from toolbox.convert.base import ConversionError, Layout

__all__ = ["LAYOUTS"]


def _backbone(state_dict, model) -> "OrderedDict":
    backbone = getattr(model, "backbone", None)
    if backbone is None or not hasattr(backbone, "convert_reference_state_dict"):
        raise ConversionError(f"format 'backbone': the config's model "
                              f"({type(model).__name__}) has no backbone with a reference mapping")
    try:
        mapped = backbone.convert_reference_state_dict(state_dict)
    except KeyError as exc:
        raise ConversionError(f"format 'backbone': {exc.args[0] if exc.args else exc}") from None
    return OrderedDict((f"backbone.{k}", v) for k, v in mapped.items())


def _whole_segmentor(state_dict, model) -> "OrderedDict":
    convert = getattr(model, "convert_reference_state_dict", None)
    if convert is None:
        raise ConversionError(f"format 'monai-unetr': the config's model "
                              f"({type(model).__name__}) has no reference mapping")
    try:
        return convert(state_dict)
    except KeyError as exc:
        raise ConversionError(f"format 'monai-unetr': {exc.args[0] if exc.args else exc}") from None


def _looks_like_monai_unetr(keys: Sequence[str]) -> bool:
    return any(k.startswith("vit.patch_embedding.") for k in keys) and \
        any(k.startswith("encoder1.") for k in keys)


LAYOUTS = [
    Layout("monai-unetr", "MONAI's UNETR state dict -> the config's EncoderDecoder (ViT + "
           "UNETRHead)", _looks_like_monai_unetr, _whole_segmentor,
           config="unetr/unetr_btcv_96.py", uses_model=True),
    Layout("backbone", "a torchvision / timm classification state dict -> the config's "
           "backbone only (for load_from; the rest keeps its initialisation)",
           lambda keys: False, _backbone, uses_model=True, partial=True),
]
