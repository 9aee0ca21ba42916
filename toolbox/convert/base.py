"""What every weight layout shares: the :class:`Layout` record and renaming
a reference state dict by ordered regular-expression rules, loudly.

A layout module (``toolbox/convert/<family>.py``) defines one ``Layout`` per
checkpoint layout it reads and lists them in ``LAYOUTS``; the registry in
``toolbox/convert/__init__.py`` collects them for ``tools/convert_weights.py``.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from torch import Tensor

from toolbox.errors import ToolboxError

__all__ = ["ConversionError", "Layout", "rename_keys", "drop_keys", "state_dict_mismatch"]

StateDict = Mapping[str, Tensor]


class ConversionError(ToolboxError, ValueError):
    """A state dict does not have the layout a conversion expects."""


@dataclass(frozen=True)
class Layout:
    """One checkpoint layout the converter reads.

    Attributes:
        name: the ``--format`` value, e.g. ``'tv-retinanet'``.
        description: one line for ``--help`` and error messages.
        detect: ``keys -> bool``, True when a state dict's keys look like this
            layout (checked in registry order; make it specific).
        convert: ``state_dict -> state_dict`` in the toolbox model's key space
            (and tensor layout); raises :class:`ConversionError` naming the
            first keys it cannot place.
        config: the reference config (relative to the repository's
            ``configs/``) whose model the result loads into, or None.
        uses_model: ``convert`` is ``(state_dict, model)``: the mapping is the
            model's own (a backbone's ``convert_reference_state_dict``), so a
            config is required.
        partial: the result fills only part of the model (a backbone), for
            ``load_from`` / fine-tuning; missing keys are expected.
    """

    name: str
    description: str
    detect: Callable[[Sequence[str]], bool]
    convert: Callable[..., "OrderedDict[str, Tensor]"]
    config: str | None = None
    uses_model: bool = False
    partial: bool = False


def rename_keys(state_dict: StateDict, rules: Iterable[tuple[str, str | None]],
                layout: str) -> "OrderedDict[str, Tensor]":
    """Rename every key by the first rule whose pattern matches it in full.

    ``rules`` are ``(pattern, replacement)`` pairs for :func:`re.fullmatch`
    and :meth:`re.Match.expand` (``\\1`` back references); a ``None``
    replacement drops the key on purpose. A key no rule matches is an error
    naming the layout and the first such keys, never a silent drop.
    """
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    out: OrderedDict[str, Tensor] = OrderedDict()
    unmatched = []
    for key, value in state_dict.items():
        for pattern, repl in compiled:
            match = pattern.fullmatch(key)
            if match:
                if repl is not None:
                    new = match.expand(repl)
                    if new in out:
                        raise ConversionError(f"{layout}: keys map twice to '{new}' "
                                              f"(the second is '{key}')")
                    out[new] = value
                break
        else:
            unmatched.append(key)
    if unmatched:
        more = f" (+{len(unmatched) - 5} more)" if len(unmatched) > 5 else ""
        raise ConversionError(f"not a {layout} state dict: {len(unmatched)} key(s) have no "
                              f"place in it, first {unmatched[:5]}{more}")
    return out


def drop_keys(state_dict: StateDict, suffixes: Sequence[str]) -> "OrderedDict[str, Tensor]":
    """``state_dict`` without keys ending in one of ``suffixes`` (e.g.
    ``num_batches_tracked``, which FrozenBN layouts lack)."""
    return OrderedDict((k, v) for k, v in state_dict.items()
                       if not any(k.endswith(s) for s in suffixes))


def state_dict_mismatch(model_state: StateDict, state: StateDict, partial: bool = False,
                        show: int = 3) -> str | None:
    """None when ``state`` fits ``model_state`` (keys and shapes; with
    ``partial`` missing keys are allowed), else one line naming the first
    ``show`` missing keys, unexpected keys and shape mismatches."""
    missing = [] if partial else [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in model_state.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = []
    for what, items in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - show} more)" if len(items) > show else ""
            parts.append(f"{len(items)} {what}: {'; '.join(items[:show])}{more}")
    return " | ".join(parts) or None
