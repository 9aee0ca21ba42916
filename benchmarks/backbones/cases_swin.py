"""Benchmark cases: toolbox SwinTransformer vs torchvision ``swin_t``.

Both modules hold the same weights (torchvision's, loaded through
``load_reference``), run in eval mode and return the same tuple of four NCHW
maps, so the timing driver can also check that their outputs agree.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torchvision.models import swin_t
from torchvision.models.feature_extraction import create_feature_extractor

from toolbox.models.backbones.swin import SwinTransformer


class TorchvisionSwinStages(nn.Module):
    """torchvision Swin returning the four stage outputs as NCHW maps.

    torchvision normalises only the last stage (``norm``); the norms of
    stages 1-3 are copies of the toolbox module's output norms, so the
    outputs are comparable one to one.
    """

    def __init__(self, model: nn.Module, stage_norms: nn.ModuleDict):
        super().__init__()
        nodes = {"features.1": "0", "features.3": "1", "features.5": "2", "norm": "3"}
        self.body = create_feature_extractor(model, return_nodes=nodes)
        self.norms = nn.ModuleList(copy.deepcopy(stage_norms[str(i)]) for i in range(3))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.body(images)
        outs = [norm(feats[str(i)]) for i, norm in enumerate(self.norms)] + [feats["3"]]
        return tuple(o.permute(0, 3, 1, 2).contiguous() for o in outs)


def cases():
    """``[(label, toolbox_module, reference_module, (H, W)), ...]``."""
    torch.manual_seed(0)
    reference = swin_t(weights=None).eval()
    ours = SwinTransformer(arch="tiny").eval()
    ours.load_reference(reference.state_dict())
    wrapped = TorchvisionSwinStages(reference, ours.out_norms).eval()
    return [
        ("swin_t 224x224", ours, wrapped, (224, 224)),
        # last stage 5x6: smaller than a window (padded, no shift there)
        ("swin_t 160x192", ours, wrapped, (160, 192)),
    ]
