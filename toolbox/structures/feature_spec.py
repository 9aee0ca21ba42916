"""What a feature map looks like to the part that consumes it.

Backbones and necks declare their outputs as a tuple of :class:`FeatureSpec`
(``output_shape()``), as timm's ``feature_info`` and detectron2's
``ShapeSpec`` do; detectors hand that tuple to the next part as
``input_shape``, so no part guesses another's widths or strides.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class FeatureSpec:
    """One output map: ``channels`` and ``stride`` (input pixels per cell)."""

    channels: int
    stride: int

    def __post_init__(self):
        for name in ("channels", "stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"FeatureSpec.{name} must be a positive int, got {value!r}")


def specs_from(channels: Sequence[int], strides: Sequence[int]) -> tuple[FeatureSpec, ...]:
    """``FeatureSpec`` tuple from parallel ``channels`` / ``strides`` tuples."""
    channels, strides = tuple(channels), tuple(strides)
    if len(channels) != len(strides):
        raise ValueError(f"{len(channels)} channel widths {channels} but {len(strides)} "
                         f"strides {strides}")
    return tuple(FeatureSpec(int(c), int(s)) for c, s in zip(channels, strides))


def channels_of(specs: Sequence[FeatureSpec]) -> tuple[int, ...]:
    return tuple(s.channels for s in specs)


def strides_of(specs: Sequence[FeatureSpec]) -> tuple[int, ...]:
    return tuple(s.stride for s in specs)
