"""What every detector shares: building backbone and neck from configs with
their inputs filled in from what the previous part declares, batching
images, completing metainfo, extracting features.

Detectors subclass :class:`BaseDetector` (one level) and add their heads
and modes; the helpers here also serve the segmentors.
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel, stack_batch
from torch import Tensor, nn

from toolbox.registry import BACKBONES, NECKS
from toolbox.structures import DetDataSample

MODES = ("loss", "predict", "tensor")


def _accepts(component, name: str) -> bool:
    """Whether ``component``'s constructor takes an argument ``name``."""
    try:
        params = inspect.signature(component.__init__ if inspect.isclass(component)
                                   else component).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def declared(module: nn.Module, attr: str) -> tuple | None:
    value = getattr(module, attr, None)
    return tuple(value) if value else None


def build_component(cfg, registry, where: str, fill: dict, owner: str) -> nn.Module:
    """Build ``cfg`` from ``registry`` after filling the ``fill`` arguments it
    accepts but does not set (a ``None`` fill value means "not declared");
    errors name the ``owner`` model."""
    if isinstance(cfg, nn.Module):
        return cfg
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise TypeError(f"{owner}: '{where}' must be a config dict with a 'type' "
                        f"key (or a built module), got {cfg!r}")
    cfg = dict(cfg)
    component = registry.get(cfg["type"])
    for key, (value, source) in fill.items():
        if key in cfg or not _accepts(component, key):
            continue
        if value is None:
            raise ValueError(f"{owner}: cannot infer {where}.{key}: the {source} "
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


def build_trunk(model: nn.Module, backbone, neck) -> tuple[nn.Module, str]:
    """Set ``model.backbone`` and ``model.neck`` (None, one neck or a
    :class:`NeckChain`), each neck's inputs filled from the part before it.
    Returns the part whose outputs the heads see, and its name."""
    owner = type(model).__name__
    model.backbone = build_component(backbone, BACKBONES, "backbone", {}, owner)
    source, name = model.backbone, "backbone"
    model.neck = None
    if neck is not None:
        chain = []
        for cfg in (neck if isinstance(neck, (list, tuple)) else [neck]):
            chain.append(build_component(cfg, NECKS, "neck", {
                "in_channels": (declared(source, "out_channels"), name),
                "in_strides": (declared(source, "out_strides"), name)}, owner))
            source, name = chain[-1], "neck"
        model.neck = chain[0] if len(chain) == 1 else NeckChain(*chain)
    return source, name


class BaseDetector(BaseModel):
    """Backbone + optional neck chain, image batching and metainfo.

    ``_build_trunk`` builds both and returns the part whose outputs the heads
    see (and its name, for error messages); ``_head_inputs`` gives what a
    head's ``in_channels`` / ``strides`` are filled from.
    """

    def _build_part(self, cfg, registry, where: str, fill: dict) -> nn.Module:
        return build_component(cfg, registry, where, fill, type(self).__name__)

    def _build_trunk(self, backbone, neck) -> tuple[nn.Module, str]:
        return build_trunk(self, backbone, neck)

    @staticmethod
    def _head_inputs(source: nn.Module, name: str) -> dict:
        """``in_channels`` (one int when every level has the same width) and
        ``strides`` of ``source``, as ``fill`` entries for :func:`build_component`."""
        channels = declared(source, "out_channels")
        if channels is not None and len(set(channels)) == 1:
            channels = channels[0]
        return {"in_channels": (channels, name),
                "strides": (declared(source, "out_strides"), name)}

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
                raise TypeError(f"{type(self).__name__}: 'inputs' must be a Tensor[B, C, H, W] "
                                "or a non-empty list of Tensor[C, H, W]")
            inputs = stack_batch(list(inputs), pad_size_divisor=divisor)
        if not isinstance(inputs, Tensor) or inputs.dim() != 4:
            shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
            raise TypeError(f"{type(self).__name__}: 'inputs' must be a Tensor[B, C, H, W], "
                            f"got {shape}")
        if not torch.is_floating_point(inputs):
            raise TypeError(f"{type(self).__name__}: 'inputs' must be normalised float images, "
                            f"got {inputs.dtype}; normalise them in the data pipeline or a "
                            "data_preprocessor")
        pad_h = -inputs.shape[-2] % divisor
        pad_w = -inputs.shape[-1] % divisor
        if pad_h or pad_w:
            inputs = F.pad(inputs, (0, pad_w, 0, pad_h))
        return inputs

    def _complete_metainfo(self, inputs: Tensor, data_samples, raw_inputs) -> list:
        """Record the padded batch shape; give samples without an ``img_shape``
        their unpadded image size."""
        if data_samples is None:
            data_samples = [DetDataSample() for _ in range(inputs.shape[0])]
        if len(data_samples) != inputs.shape[0]:
            raise ValueError(f"{type(self).__name__}: {len(data_samples)} data samples for "
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
    def forward(self, inputs, data_samples=None, mode: str = "tensor"):
        """``'loss'``: the loss dict; ``'predict'``: the samples with
        ``pred_instances``; ``'tensor'``: the heads' raw outputs."""
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        if mode == "tensor":
            return self.forward_tensor(inputs, data_samples)
        raise ValueError(f"{type(self).__name__}: 'mode' must be one of {MODES}, got {mode!r}")

    def forward_tensor(self, inputs, data_samples=None):
        raise NotImplementedError
