"""What every neck shares: declared outputs like a backbone's, and one rule
for what it is given as input.

A neck takes ``input_shape`` (the previous part's ``output_shape()``, which
detectors and segmentors always pass) or, for direct construction,
``in_channels`` / ``in_strides``; :meth:`Neck.resolve_inputs` reconciles the
two, and the neck declares its own maps with ``self.declare_outputs(...)``.
"""
from __future__ import annotations

from typing import Sequence

from mmengine.model import BaseModule

from toolbox.models.outputs import DeclaresOutputs
from toolbox.structures.feature_spec import FeatureSpec, channels_of, strides_of


class Neck(DeclaresOutputs, BaseModule):
    """Base class: tuple of maps in, tuple of maps out."""

    size_divisor: int = 1

    @classmethod
    def resolve_inputs(cls, input_shape: Sequence[FeatureSpec] | None,
                       in_channels: Sequence[int] | None, in_strides: Sequence[int] | None
                       ) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
        """``(in_channels, in_strides)``: the ones given, else those of
        ``input_shape``. Given and disagreeing with ``input_shape`` is a
        ValueError naming the neck."""
        if input_shape is None:
            return (None if in_channels is None else tuple(in_channels),
                    None if in_strides is None else tuple(in_strides))
        specs = tuple(input_shape)
        if not specs or not all(isinstance(s, FeatureSpec) for s in specs):
            raise ValueError(f"{cls.__name__}: 'input_shape' must be a non-empty sequence of "
                             f"FeatureSpec, got {input_shape!r}")
        declared = {"in_channels": channels_of(specs), "in_strides": strides_of(specs)}
        given = {"in_channels": in_channels, "in_strides": in_strides}
        for name, value in given.items():
            if value is not None and tuple(value) != declared[name]:
                raise ValueError(f"{cls.__name__}: '{name}' {tuple(value)} disagrees with "
                                 f"input_shape {declared[name]}; give one of them")
        return declared["in_channels"], declared["in_strides"]
