"""Backbone -> (neck) -> dense head: RetinaNet, FCOS, SSD-style detectors.

The detector wires its parts from configs and fills in what the previous
part declares: a neck's ``in_channels`` / ``in_strides`` come from the
backbone's ``out_channels`` / ``out_strides``, and the head's
``in_channels`` / ``strides`` from the neck (or the backbone when there is
no neck), unless the config sets them. A head's ``in_channels`` is one int
when every level has the same width, else the tuple of widths.
"""
from __future__ import annotations

import inspect
from typing import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel, stack_batch
from torch import Tensor, nn

from toolbox.registry import BACKBONES, HEADS, NECKS
from toolbox.structures import DetDataSample

__all__ = ["SingleStageDetector"]

MODES = ("loss", "predict", "tensor")


def _accepts(component, name: str) -> bool:
    """Whether ``component``'s constructor takes an argument ``name``."""
    try:
        params = inspect.signature(component.__init__ if inspect.isclass(component)
                                   else component).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _declared(module: nn.Module, attr: str) -> tuple | None:
    value = getattr(module, attr, None)
    return tuple(value) if value else None


def _build(cfg, registry, where: str, fill: dict) -> nn.Module:
    """Build ``cfg`` from ``registry`` after filling the ``fill`` arguments it
    accepts but does not set (a ``None`` fill value means "not declared")."""
    if isinstance(cfg, nn.Module):
        return cfg
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise TypeError(f"SingleStageDetector: '{where}' must be a config dict with a 'type' "
                        f"key (or a built module), got {cfg!r}")
    cfg = dict(cfg)
    component = registry.get(cfg["type"])
    for key, (value, source) in fill.items():
        if key in cfg or not _accepts(component, key):
            continue
        if value is None:
            raise ValueError(f"SingleStageDetector: cannot infer {where}.{key}: the {source} "
                             f"declares no value for it; set '{key}' in the {where} config")
        cfg[key] = value
    return registry.build(cfg)


class NeckChain(nn.Sequential):
    """Necks applied in order (``neck=[dict(type='FPN'), dict(type='ASFF')]``);
    declares the last neck's outputs."""

    @property
    def out_channels(self):
        return self[-1].out_channels

    @property
    def out_strides(self):
        return self[-1].out_strides

    @property
    def size_divisor(self):
        return max(int(getattr(m, "size_divisor", 1) or 1) for m in self)


class SingleStageDetector(BaseModel):
    """A one-stage detector: ``bbox_head(neck(backbone(images)))``.

    Args:
        backbone: a ``BACKBONES`` config (or module) declaring
            ``out_channels`` / ``out_strides``.
        neck: an optional ``NECKS`` config, or a list of them applied in order
            (each one's ``in_channels`` / ``in_strides`` filled from the previous).
        bbox_head: a ``HEADS`` config with ``loss`` and ``predict``.
        data_preprocessor: defaults to mmengine's ``BaseDataPreprocessor``
            (moves data to the device; images arrive normalised and padded).
        init_cfg: mmengine initialisation config.

    ``forward(inputs, data_samples=None, mode='tensor')``: ``'loss'`` returns
    the head's loss dict, ``'predict'`` the input ``DetDataSample`` objects
    with ``pred_instances`` (original-image coordinates) added, ``'tensor'``
    the head's raw outputs.
    """

    def __init__(self, backbone, neck=None, bbox_head=None, data_preprocessor=None,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if bbox_head is None:
            raise ValueError("SingleStageDetector: 'bbox_head' is required (a HEADS config)")
        self.backbone = _build(backbone, BACKBONES, "backbone", {})
        source, name = self.backbone, "backbone"
        self.neck = None
        if neck is not None:
            chain = []
            for cfg in (neck if isinstance(neck, (list, tuple)) else [neck]):
                chain.append(_build(cfg, NECKS, "neck", {
                    "in_channels": (_declared(source, "out_channels"), name),
                    "in_strides": (_declared(source, "out_strides"), name)}))
                source, name = chain[-1], "neck"
            self.neck = chain[0] if len(chain) == 1 else NeckChain(*chain)
        channels = _declared(source, "out_channels")
        if channels is not None and len(set(channels)) == 1:
            channels = channels[0]
        self.bbox_head = _build(bbox_head, HEADS, "bbox_head", {
            "in_channels": (channels, name),
            "strides": (_declared(source, "out_strides"), name)})

    @property
    def with_neck(self) -> bool:
        return self.neck is not None

    @property
    def size_divisor(self) -> int:
        """The multiple image sides are padded to (the largest any part needs)."""
        parts = (self.backbone, self.neck)
        return max([int(getattr(p, "size_divisor", 1) or 1) for p in parts if p is not None])

    # ---------------------------------------------------------------- helpers
    def _batch_inputs(self, inputs) -> Tensor:
        """A float [B, C, H, W] batch padded (bottom/right) to ``size_divisor``."""
        divisor = self.size_divisor
        if isinstance(inputs, (list, tuple)):
            if not inputs or not all(isinstance(t, Tensor) and t.dim() == 3 for t in inputs):
                raise TypeError("SingleStageDetector: 'inputs' must be a Tensor[B, C, H, W] "
                                "or a non-empty list of Tensor[C, H, W]")
            inputs = stack_batch(list(inputs), pad_size_divisor=divisor)
        if not isinstance(inputs, Tensor) or inputs.dim() != 4:
            shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
            raise TypeError(f"SingleStageDetector: 'inputs' must be a Tensor[B, C, H, W], got {shape}")
        if not torch.is_floating_point(inputs):
            raise TypeError(f"SingleStageDetector: 'inputs' must be normalised float images, got "
                            f"{inputs.dtype}; normalise them in the data pipeline or a "
                            "data_preprocessor")
        pad_h = -inputs.shape[-2] % divisor
        pad_w = -inputs.shape[-1] % divisor
        if pad_h or pad_w:
            inputs = F.pad(inputs, (0, pad_w, 0, pad_h))
        return inputs

    @staticmethod
    def _complete_metainfo(inputs: Tensor, data_samples, raw_inputs) -> list:
        """Record the padded batch shape; give samples without an ``img_shape``
        their unpadded image size."""
        if data_samples is None:
            data_samples = [DetDataSample() for _ in range(inputs.shape[0])]
        if len(data_samples) != inputs.shape[0]:
            raise ValueError(f"SingleStageDetector: {len(data_samples)} data samples for "
                             f"{inputs.shape[0]} images")
        batch_shape = tuple(inputs.shape[-2:])
        for index, sample in enumerate(data_samples):
            meta = {"batch_input_shape": batch_shape}
            if "img_shape" not in sample.metainfo:
                raw = raw_inputs[index] if isinstance(raw_inputs, (list, tuple)) else raw_inputs
                meta["img_shape"] = tuple(raw.shape[-2:])
                meta.setdefault("ori_shape", meta["img_shape"])
            sample.set_metainfo({k: v for k, v in meta.items() if k == "batch_input_shape"
                                 or k not in sample.metainfo})
        return data_samples

    def extract_feat(self, inputs: Tensor) -> tuple[Tensor, ...]:
        feats = self.backbone(inputs)
        if self.neck is not None:
            feats = self.neck(feats)
        return tuple(feats)

    # ----------------------------------------------------------------- modes
    def loss(self, inputs, data_samples: Sequence[DetDataSample]) -> dict[str, Tensor]:
        if data_samples is None:
            raise ValueError("SingleStageDetector: mode='loss' needs data_samples with "
                             "gt_instances")
        batch = self._batch_inputs(inputs)
        data_samples = self._complete_metainfo(batch, data_samples, inputs)
        return self.bbox_head.loss(self.extract_feat(batch), data_samples)

    def predict(self, inputs, data_samples=None, rescale: bool = True) -> list[DetDataSample]:
        batch = self._batch_inputs(inputs)
        data_samples = self._complete_metainfo(batch, data_samples, inputs)
        results = self.bbox_head.predict(self.extract_feat(batch), data_samples, rescale=rescale)
        for sample, instances in zip(data_samples, results):
            sample.pred_instances = instances
        return list(data_samples)

    def forward(self, inputs, data_samples=None, mode: str = "tensor"):
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        if mode == "tensor":
            return self.bbox_head(self.extract_feat(self._batch_inputs(inputs)))
        raise ValueError(f"SingleStageDetector: 'mode' must be one of {MODES}, got {mode!r}")
