"""Benchmark cases: toolbox VoVNet vs timm ``VovNet`` (``features_only``).

For each case timm's model is built randomly initialised; its state dict is
loaded into the toolbox module through ``load_reference`` and into timm's
``features_only`` model (``out_indices=(1, 2, 3, 4)``: strides 4..32). Both
run in eval mode and return the same tuple of four NCHW maps, so the timing
driver can also check that their outputs agree.
"""
from __future__ import annotations

import timm
import torch
from torch import nn

from toolbox.models.backbones.vovnet import VoVNet

ARCHS = (("V-39", "vovnet39a"), ("V-39-eSE", "ese_vovnet39b"),
         ("V-19-dw-eSE", "ese_vovnet19b_dw"))


class TimmFeatures(nn.Module):
    """timm ``features_only`` model returning a tuple (timm returns a list)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(images))


def _pair(arch: str, timm_name: str) -> tuple[nn.Module, nn.Module]:
    state = timm.create_model(timm_name, pretrained=False, num_classes=0).state_dict()
    reference = timm.create_model(timm_name, pretrained=False, features_only=True,
                                  out_indices=(1, 2, 3, 4))
    reference.load_state_dict({k.replace("stem.", "stem_", 1).replace("stages.", "stages_", 1): v
                               for k, v in state.items()})
    ours = VoVNet(arch=arch)
    ours.load_reference(state)
    return ours.eval(), TimmFeatures(reference).eval()


def cases():
    """``[(label, toolbox_module, reference_module, (H, W)), ...]``."""
    torch.manual_seed(0)
    out = []
    for arch, timm_name in ARCHS:
        ours, reference = _pair(arch, timm_name)
        out.append((f"{arch} / timm {timm_name} 224x224", ours, reference, (224, 224)))
    return out
