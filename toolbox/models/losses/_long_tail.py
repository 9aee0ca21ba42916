"""What the long-tail losses (EQL, EQLv2, BalancedSoftmax) share: checking
the per-class counts they are handed, and buffers sized only once the class
count is known, which a checkpoint must still load into."""
from __future__ import annotations

import torch
from torch import Tensor, nn

HOOK_HINT = ("the engine hands them over before training (ClassFrequencyHook); "
             "outside the engine call set_class_frequencies(instance_counts, image_counts, "
             "num_images=...) yourself")


def check_counts(owner: str, name: str, counts, length: int | None = None) -> Tensor:
    """A 1-D sequence of non-negative integer counts as a float64 tensor."""
    t = torch.as_tensor(counts, dtype=torch.float64)
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"{owner}: '{name}' must be a non-empty 1-D sequence of per-class "
                         f"counts, got shape {tuple(t.shape)}")
    if length is not None and t.numel() != length:
        raise ValueError(f"{owner}: '{name}' has {t.numel()} entries, expected {length} "
                         f"(one per class, like instance_counts)")
    if (t < 0).any() or (t != t.round()).any():
        raise ValueError(f"{owner}: '{name}' must hold non-negative integers, got {counts!r}")
    return t


def resize_empty_buffers(module: nn.Module, state_dict: dict, prefix: str) -> None:
    """Give a module's still-empty buffers the shape of the checkpoint's entries.

    Long-tail losses size their buffers when the class count becomes known
    (frequencies handed over, first batch). A freshly built instance loading a
    checkpoint adopts the stored shape instead of reporting a size mismatch.
    The resize is in place, so references held elsewhere (DDP's buffer list)
    stay valid.
    """
    for name, buf in module._buffers.items():
        incoming = state_dict.get(prefix + name)
        if buf is not None and buf.numel() == 0 and isinstance(incoming, Tensor) \
                and incoming.numel() > 0:
            buf.resize_(incoming.shape)


class EmptyBuffersLoadMixin:
    """Put before ``nn.Module`` in the bases: ``load_state_dict`` first
    resizes the still-empty buffers (:func:`resize_empty_buffers`)."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        resize_empty_buffers(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
