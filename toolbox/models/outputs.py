"""What a backbone or neck declares about the maps it returns.

:class:`DeclaresOutputs` is shared by :class:`~toolbox.models.backbones.base.Backbone`
and :class:`~toolbox.models.necks.base.Neck`: a component states its outputs
once, with :meth:`~DeclaresOutputs.declare_outputs` (a ``FeatureSpec`` per
returned map, finest first) and its padding constraint ``size_divisor`` (the
multiple the input sides must be padded to); the detector reads them through
:meth:`~DeclaresOutputs.output_shape` and hands them to the next part as
``input_shape``.

``out_channels`` / ``out_strides`` remain for one release as read-only views
of ``output_shape()`` (deprecated). Plugin code that still *assigns* them (or
shadows them with class attributes) keeps working: the values are read back
by ``output_shape()``, and an assignment warns.
"""
from __future__ import annotations

import warnings
from typing import Sequence

from toolbox.structures.feature_spec import FeatureSpec, channels_of, specs_from, strides_of

_LEGACY_NAMES = ("out_channels", "out_strides")


class DeclaresOutputs:
    """Mixin: the declared output maps of a module (see the module docstring)."""

    size_divisor: int = 32
    _output_specs: tuple[FeatureSpec, ...] = ()

    def declare_outputs(self, channels: Sequence[int] | None = None,
                        strides: Sequence[int] | None = None, *,
                        specs: Sequence[FeatureSpec] | None = None,
                        size_divisor: int | None = None) -> None:
        """Declare the returned maps, as parallel ``channels`` / ``strides``
        or as ``specs``, and optionally the padding multiple ``size_divisor``."""
        if specs is None:
            specs = specs_from(channels or (), strides or ())
        self._output_specs = tuple(specs)
        self.__dict__.pop("_legacy_outputs", None)
        if size_divisor is not None:
            self.size_divisor = int(size_divisor)

    def output_shape(self) -> tuple[FeatureSpec, ...]:
        """One :class:`FeatureSpec` (channels, stride) per map ``forward`` returns."""
        if self._output_specs:
            return self._output_specs
        channels, strides = (self._legacy_value(name) for name in _LEGACY_NAMES)
        return specs_from(channels, strides) if channels or strides else ()

    # -- deprecated parallel tuples (remove after one release) --------------
    @property
    def out_channels(self) -> tuple[int, ...]:
        """Deprecated: ``channels_of(self.output_shape())``."""
        return channels_of(self.output_shape())

    @out_channels.setter
    def out_channels(self, value) -> None:
        self._set_legacy("out_channels", value)

    @property
    def out_strides(self) -> tuple[int, ...]:
        """Deprecated: ``strides_of(self.output_shape())``."""
        return strides_of(self.output_shape())

    @out_strides.setter
    def out_strides(self, value) -> None:
        self._set_legacy("out_strides", value)

    def _set_legacy(self, name: str, value) -> None:
        warnings.warn(f"{type(self).__name__}: assigning '{name}' is deprecated; declare the "
                      f"outputs with self.declare_outputs(channels, strides) instead",
                      DeprecationWarning, stacklevel=4)  # the assignment in the caller
        self.__dict__.setdefault("_legacy_outputs", {})[name] = tuple(value or ())
        self._output_specs = ()

    def _legacy_value(self, name: str) -> tuple[int, ...]:
        """``name`` as assigned by old plugin code, or as a class attribute
        that shadows the property; () when neither."""
        value = self.__dict__.get("_legacy_outputs", {}).get(name)
        if value is None:
            attr = getattr(type(self), name, None)
            value = None if isinstance(attr, property) else attr
        return tuple(value) if value else ()
