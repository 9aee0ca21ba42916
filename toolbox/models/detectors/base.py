"""What every detector shares: the backbone and neck built from configs (see
:mod:`toolbox.models.builder` for the contract: each part is built with
``input_shape`` = the previous part's ``output_shape()``), batching images,
completing metainfo, extracting features, and the one place predictions are
mapped back to the original image (:meth:`BaseDetector._attach_predictions`).

Detectors subclass :class:`BaseDetector` (one level) and add their heads
and modes. The shared builders that used to live here (``build_component``,
``build_trunk``, ``NeckChain``, ``declared``) moved to
:mod:`toolbox.models.builder`; the old names still work for one release,
with a DeprecationWarning.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from mmengine.model import BaseModel
from torch import Tensor, nn

from toolbox.models import builder as _builder
from toolbox.models.data_preprocessors.base import batch_tensors
from toolbox.registry import HEADS
from toolbox.structures import DetDataSample, boxes_to_original

MODES = ("loss", "predict", "tensor")

_MOVED_TO_BUILDER = ("NeckChain", "build_trunk")


def __getattr__(name: str):
    if name in _MOVED_TO_BUILDER:
        warnings.warn(f"toolbox.models.detectors.base.{name} moved to "
                      f"toolbox.models.builder.{name}", DeprecationWarning, stacklevel=2)
        return getattr(_builder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def declared(module: nn.Module, attr: str) -> tuple | None:
    """Deprecated: use ``toolbox.models.builder.output_shape_of(module)``."""
    warnings.warn("toolbox.models.detectors.base.declared is deprecated; use "
                  "toolbox.models.builder.output_shape_of", DeprecationWarning, stacklevel=2)
    value = getattr(module, attr, None)
    return tuple(value) if value else None


def build_component(cfg, registry, where: str, fill: dict, owner: str) -> nn.Module:
    """Deprecated (the old ``fill`` form): use
    ``toolbox.models.builder.build_component(cfg, registry, where, owner,
    input_shape=...)``. Fills the ``fill`` entries ``{key: (value, source)}``
    the component takes and the config leaves out."""
    warnings.warn("toolbox.models.detectors.base.build_component(cfg, registry, where, fill, "
                  "owner) is deprecated; use toolbox.models.builder.build_component(cfg, "
                  "registry, where, owner, input_shape=...)", DeprecationWarning, stacklevel=2)
    if isinstance(cfg, nn.Module):
        return cfg
    cfg = _builder._config_dict(cfg, where, owner)
    accepted = _builder._legacy_parameters(registry.get(cfg["type"]))
    for key, (value, source) in fill.items():
        if key in cfg or (accepted is not None and not {key, "**"} & accepted):
            continue
        if value is None:
            raise ValueError(f"{owner}: cannot infer {where}.{key}: the {source} "
                             f"declares no value for it; set '{key}' in the {where} config")
        cfg[key] = value
    return registry.build(cfg)


class BaseDetector(BaseModel):
    """Backbone + optional neck chain, image batching and metainfo.

    ``_build_trunk`` builds both and returns the part whose outputs the heads
    see (and its name, for error messages); ``_build_head`` builds a head
    with ``input_shape`` = that part's ``output_shape()``; ``predict`` of a
    subclass hands the heads' input-coordinate results to
    ``_attach_predictions``, which maps them back (``rescale``).
    """

    def __init__(self, data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=_builder.build_preprocessor(data_preprocessor,
                                                                       "DetDataPreprocessor"),
                         init_cfg=init_cfg)
        _builder.follow_size_divisor(self)

    def _build_trunk(self, backbone, neck) -> tuple[nn.Module, str]:
        return _builder.build_trunk(self, backbone, neck)

    def _build_head(self, cfg, where: str, source: nn.Module, name: str,
                    input_shape: Sequence | None = None) -> nn.Module:
        """Build the ``HEADS`` config ``cfg`` (config key ``where``) with
        ``input_shape`` (default: ``source``'s ``output_shape()``)."""
        if isinstance(cfg, nn.Module):
            return cfg
        specs = _builder.output_shape_of(source) if input_shape is None else tuple(input_shape)
        return _builder.build_component(cfg, HEADS, where, type(self).__name__, specs, name)

    def _attach_predictions(self, data_samples: Sequence[DetDataSample], results,
                            rescale: bool = True) -> list[DetDataSample]:
        """Store each image's ``InstanceData`` (boxes in ``img_shape``
        coordinates, as heads predict them) as its ``pred_instances``; with
        ``rescale``, map the boxes back to the original image once, by
        :func:`toolbox.structures.boxes_to_original` (flip, ``crop_offset``,
        ``scale_factor``; clipped to ``ori_shape`` unless
        :meth:`_clips_to_original` says otherwise)."""
        clip = self._clips_to_original()
        for sample, instances in zip(data_samples, results):
            if rescale and "bboxes" in instances:
                instances.bboxes = boxes_to_original(instances.bboxes, sample.metainfo, clip=clip)
            sample.pred_instances = instances
        return list(data_samples)

    def _clips_to_original(self) -> bool:
        """Whether mapped-back boxes are clipped to ``ori_shape`` (override)."""
        return True

    def _preprocessor_size_divisor(self) -> int:
        return self.size_divisor if getattr(self, "backbone", None) is not None else 1

    @property
    def with_neck(self) -> bool:
        return self.neck is not None

    @property
    def size_divisor(self) -> int:
        """The multiple image sides are padded to (the largest any part needs)."""
        return _builder.trunk_size_divisor(self)

    # ---------------------------------------------------------------- helpers
    def _batch_inputs(self, inputs) -> Tensor:
        """A float [B, C, H, W] batch padded (bottom/right) to ``size_divisor``
        by the data preprocessors' rule (for direct calls: ``train_step`` /
        ``test_step`` give the preprocessor's batch, already padded)."""
        if isinstance(inputs, (list, tuple)):
            if not inputs or not all(isinstance(t, Tensor) and t.dim() == 3 for t in inputs):
                raise TypeError(f"{type(self).__name__}: 'inputs' must be a Tensor[B, C, H, W] "
                                "or a non-empty list of Tensor[C, H, W]")
        elif not isinstance(inputs, Tensor) or inputs.dim() != 4:
            shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
            raise TypeError(f"{type(self).__name__}: 'inputs' must be a Tensor[B, C, H, W], "
                            f"got {shape}")
        first = inputs if isinstance(inputs, Tensor) else inputs[0]
        if not torch.is_floating_point(first):
            raise TypeError(f"{type(self).__name__}: 'inputs' must be normalised float images, "
                            f"got {first.dtype}; normalise them in the data pipeline or a "
                            "data_preprocessor")
        return batch_tensors(inputs, self.size_divisor)

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
