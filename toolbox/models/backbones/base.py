"""What every backbone shares: declared outputs, freezing, norm_eval, weights.

A backbone subclasses :class:`Backbone`, sets ``out_channels`` /
``out_strides`` (one entry per returned map) and ``size_divisor`` in its
constructor, and lists its stages (stem first) in :meth:`stages` so that
``frozen_stages=k`` freezes the stem and stages ``1..k``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Mapping, Sequence

import torch
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class Backbone(BaseModule):
    """Base class for feature extractors returning a tuple of maps."""

    out_channels: tuple[int, ...] = ()
    out_strides: tuple[int, ...] = ()
    size_divisor: int = 32

    def __init__(self, frozen_stages: int = -1, norm_eval: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

    # -- declared outputs (detectron2's ShapeSpec, timm's feature_info) ----
    @property
    def feature_info(self) -> list[dict]:
        return [dict(num_chs=c, reduction=s, index=i)
                for i, (c, s) in enumerate(zip(self.out_channels, self.out_strides))]

    def stages(self) -> Sequence[nn.Module]:
        """The stem followed by each stage, in forward order (override)."""
        return []

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
