"""Convert reference checkpoints (torchvision detection, the DETR authors',
HF transformers' DETR, torchvision / timm backbones, MONAI's UNETR) into
toolbox checkpoints: ``tools/convert_weights.py`` and :func:`convert_checkpoint`.

Every layout is a :class:`~toolbox.convert.base.Layout` listed in a family
module's ``LAYOUTS``; :data:`LAYOUTS` collects them in detection order.
"""
from __future__ import annotations

import io
import os
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import torch

from toolbox.convert.base import ConversionError, Layout, state_dict_mismatch

__all__ = ["LAYOUTS", "ConversionError", "Layout", "convert_checkpoint", "convert_state_dict",
           "detect_layout", "get_layout", "read_state_dict"]

CONFIG_ROOT = Path(__file__).resolve().parents[2] / "configs"


def _collect() -> list[Layout]:
    import importlib
    layouts = []
    for module in ("tv_retinanet", "tv_faster_rcnn", "detr", "model_layouts"):
        try:
            layouts += importlib.import_module(f"toolbox.convert.{module}").LAYOUTS
        except ModuleNotFoundError as exc:  # a family not written yet
            if exc.name != f"toolbox.convert.{module}":
                raise
    return layouts


LAYOUTS: list[Layout] = _collect()


def get_layout(name: str) -> Layout:
    for layout in LAYOUTS:
        if layout.name == name:
            return layout
    raise ConversionError(f"unknown weight format {name!r}; known: "
                          f"{', '.join(layout.name for layout in LAYOUTS)}")


def detect_layout(state_dict: Mapping, source: str = "the state dict") -> Layout:
    keys = list(state_dict)
    for layout in LAYOUTS:
        if layout.detect(keys):
            return layout
    raise ConversionError(f"cannot tell the layout of {source} (first keys {keys[:3]}); "
                          f"give --format, one of: {', '.join(x.name for x in LAYOUTS)}")


def read_state_dict(path: str) -> "OrderedDict[str, torch.Tensor]":
    """A state dict from ``path``, loaded with ``weights_only=True``; the
    DETR authors' ``{'model': ...}`` and mmengine's ``{'state_dict': ...}``
    wrappers are unwrapped. Errors name the file."""
    if not os.path.isfile(path):
        raise ConversionError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torn, not a torch file, or unsafe pickle
        raise ConversionError(f"cannot read {path} as a weights-only torch checkpoint: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f"{path} holds no state dict (a mapping of names to tensors)")
    return OrderedDict(obj)


def _build_model(config):
    from mmengine.config import Config

    from toolbox.registry import MODELS
    cfg = config if isinstance(config, Config) else Config.fromfile(str(config))
    return MODELS.build(cfg.model)


def _resolve_config(layout: Layout, config):
    if config is not None:
        return config
    if layout.config is not None and (CONFIG_ROOT / layout.config).is_file():
        return CONFIG_ROOT / layout.config
    return None


def convert_state_dict(state_dict: Mapping, format: str | None = None, config=None,
                       source: str = "the state dict"
                       ) -> tuple["OrderedDict[str, torch.Tensor]", Layout, object]:
    """(converted state dict, its layout, the config it was checked against).

    The layout is ``format`` or detected. With a config (given, or the
    layout's reference config) the result is checked against the model it
    builds: every key present with its shape, nothing left over (a backbone
    layout may leave the rest of the model out).
    """
    layout = get_layout(format) if format else detect_layout(state_dict, source)
    config = _resolve_config(layout, config)
    model = _build_model(config) if config is not None else None
    if layout.uses_model:
        if model is None:
            raise ConversionError(f"format {layout.name!r} converts through the model: "
                                  "give the config (--config)")
        converted = layout.convert(state_dict, model)
    else:
        converted = layout.convert(state_dict)
    if model is not None:
        problem = state_dict_mismatch(model.state_dict(), converted, partial=layout.partial)
        if problem:
            raise ConversionError(f"{source} converted as {layout.name!r} does not fit the "
                                  f"model of {config}: {problem}")
    return converted, layout, config


def convert_checkpoint(src: str, dst: str, format: str | None = None, config=None) -> dict:
    """Convert the checkpoint file ``src`` and write a toolbox checkpoint
    ``dst`` (``{'state_dict', 'meta'}``, written atomically) that
    ``tools/test.py``, ``tools/infer.py`` and ``Inferencer`` load (or
    ``load_from`` for a backbone). Returns the ``meta`` written."""
    state = read_state_dict(src)
    converted, layout, checked = convert_state_dict(state, format, config, source=src)
    meta = dict(converted_from=os.path.abspath(src), format=layout.name,
                checked_against=str(checked) if checked is not None else None,
                num_tensors=len(converted))
    buffer = io.BytesIO()
    torch.save(dict(state_dict=converted, meta=meta), buffer)
    from toolbox.engine.checkpoint import atomic_write_bytes
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    atomic_write_bytes(buffer.getvalue(), dst)
    return meta
