"""What every backbone shares: declared outputs, freezing, norm_eval, weights.

A backbone subclasses :class:`Backbone`, declares its returned maps once in
its constructor with ``self.declare_outputs(channels, strides,
size_divisor=...)`` (read back as ``output_shape()``, a
:class:`~toolbox.structures.FeatureSpec` per map; see
:mod:`toolbox.models.outputs`), and lists its stages (stem first) in
:meth:`stages` so that ``frozen_stages=k`` freezes the stem and stages ``1..k``.
``spatial_dims`` (2; 3 for volumes) says how many spatial axes inputs have.

A backbone that is ``self.stem`` followed by a chain of stages declares them
with :meth:`Backbone._declare_stage_chain` and inherits ``stages()`` and
``forward()``. Also shared: argument checks (:func:`check_out_indices`,
:func:`check_frozen_stages`), torchvision's CNN initialisation
(:func:`init_like_torchvision`) and renaming a reference state dict by module
path (:meth:`Backbone._rename_reference_keys`).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Mapping, Sequence

import torch
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from toolbox.models.outputs import DeclaresOutputs


def check_out_indices(out_indices, num_outputs: int, who: str, hint: str = ""
                      ) -> tuple[int, ...]:
    """``out_indices`` as a tuple of strictly increasing ints in
    ``[0, num_outputs)``; otherwise a ValueError from ``who`` (``hint``: what
    the indices mean, appended to the message)."""
    try:
        indices = tuple(out_indices)
    except TypeError:
        indices = None
    if (not indices or any(not isinstance(i, int) or isinstance(i, bool) for i in indices)
            or any(not 0 <= i < num_outputs for i in indices)
            or any(a >= b for a, b in zip(indices, indices[1:]))):
        raise ValueError(f"{who}: out_indices must be a non-empty, strictly increasing sequence "
                         f"of ints in [0, {num_outputs - 1}]{hint}, got {out_indices!r}")
    return indices


def check_frozen_stages(frozen_stages, num_stages: int, who: str, hint: str = "") -> int:
    """``frozen_stages`` if it is an int in ``[-1, num_stages]`` (-1: nothing
    frozen), else a ValueError from ``who`` (``hint`` appended)."""
    if not (isinstance(frozen_stages, int) and -1 <= frozen_stages <= num_stages):
        raise ValueError(f"{who}: frozen_stages must be an int in [-1, {num_stages}]{hint}, "
                         f"got {frozen_stages!r}")
    return frozen_stages


def init_like_torchvision(module: nn.Module) -> None:
    """torchvision's CNN initialisation: Kaiming-normal conv weights (fan-out,
    ReLU gain), zero conv biases, BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Backbone(DeclaresOutputs, BaseModule):
    """Base class for feature extractors returning a tuple of maps."""

    size_divisor: int = 32
    spatial_dims: int = 2
    _stage_names: tuple[str, ...] | None = None  # set by _declare_stage_chain

    def __init__(self, frozen_stages: int = -1, norm_eval: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

    # -- declared outputs (detectron2's ShapeSpec, timm's feature_info) ----
    @property
    def feature_info(self) -> list[dict]:
        return [dict(num_chs=spec.channels, reduction=spec.stride, index=i)
                for i, spec in enumerate(self.output_shape())]

    def stages(self) -> Sequence[nn.Module]:
        """The stem followed by each stage, in forward order (override, or
        declare a stage chain); none by default."""
        if self._stage_names is None:
            return []
        return [self.stem] + [getattr(self, name) for name in self._stage_names]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Override, or declare a stage chain."""
        return self._forward_stage_chain(x)

    # -- a stem followed by a chain of stages ------------------------------
    def _declare_stage_chain(self, stage_names: Sequence[str], out_indices: Sequence[int],
                             channels: Sequence[int], strides: Sequence[int]) -> None:
        """For a backbone that runs ``self.stem`` and then the submodules
        ``stage_names`` in order: record them, so that :meth:`stages` and
        :meth:`forward` work, and declare as outputs the maps of the stages
        ``out_indices`` (``channels`` / ``strides``: one entry per stage)."""
        self._stage_names = tuple(stage_names)
        self._keep = tuple(i in out_indices for i in range(len(self._stage_names)))
        kept = [strides[i] for i in out_indices]
        self.declare_outputs([channels[i] for i in out_indices], kept, size_divisor=max(kept))

    def _forward_stage_chain(self, x: torch.Tensor,
                             out_transforms: Sequence[nn.Module] | None = None
                             ) -> tuple[torch.Tensor, ...]:
        """Run the stem and the declared stages; return the maps of those in
        ``out_indices``, each through ``out_transforms[stage index]`` if given."""
        if self._stage_names is None:
            raise NotImplementedError(f"{type(self).__name__} must define forward() or "
                                      f"declare its stages with _declare_stage_chain()")
        x = self.stem(x)
        outs = []
        for index, (name, keep) in enumerate(zip(self._stage_names, self._keep)):
            x = getattr(self, name)(x)
            if keep:
                outs.append(x if out_transforms is None else out_transforms[index](x))
        return tuple(outs)

    # -- training behaviour -------------------------------------------------
    def freeze_stages(self) -> None:
        for index, stage in enumerate(self.stages()):
            if index > self.frozen_stages:
                break
            stage.eval()
            for p in stage.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_stages >= 0:
            self.freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # -- reference weights --------------------------------------------------
    def convert_reference_state_dict(self, state_dict: Mapping[str, torch.Tensor]
                                     ) -> "OrderedDict[str, torch.Tensor]":
        """Map a reference library's keys to this module's keys (override)."""
        return OrderedDict(state_dict)

    def _rename_reference_keys(self, state_dict: Mapping[str, torch.Tensor],
                               module_map: Mapping[str, str | None], source: str
                               ) -> "OrderedDict[str, torch.Tensor]":
        """Rename each key through the longest of its module prefixes found in
        ``module_map`` (a reference module path -> this module's path, or None
        to drop the key: a classifier, a stage that is not built). A key with
        no such prefix is a KeyError saying it is not part of a ``source``
        state dict."""
        renamed: OrderedDict[str, torch.Tensor] = OrderedDict()
        unknown = []
        for key, value in state_dict.items():
            parts = key.split(".")
            for cut in range(len(parts) - 1, 0, -1):
                prefix = ".".join(parts[:cut])
                if prefix in module_map:
                    if module_map[prefix] is not None:
                        renamed[".".join([module_map[prefix], *parts[cut:]])] = value
                    break
            else:
                unknown.append(key)
        if unknown:
            raise KeyError(f"{type(self).__name__}.convert_reference_state_dict: {len(unknown)} "
                           f"key(s) are not part of a {source} state dict, e.g. {unknown[:5]}")
        return renamed

    def load_reference(self, source, *, strict: bool = True,
                       convert: Callable | None = None):
        """Load a reference state dict (a path to a local file, or a mapping).

        ``convert`` defaults to :meth:`convert_reference_state_dict`; keys the
        mapping drops (classifier heads) are ignored by design. Returns the
        ``load_state_dict`` result.
        """
        if not isinstance(source, Mapping):
            source = torch.load(source, map_location="cpu", weights_only=True)
            if isinstance(source, Mapping) and "state_dict" in source:
                source = source["state_dict"]
        mapped = (convert or self.convert_reference_state_dict)(source)
        return self.load_state_dict(mapped, strict=strict)
