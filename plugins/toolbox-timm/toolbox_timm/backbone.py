"""TimmBackbone: any timm model in features-only mode, as a toolbox backbone."""
from __future__ import annotations

import os

import timm
from torch import nn

from toolbox.models.backbones.base import Backbone


class TimmBackbone(Backbone):
    """Wraps ``timm.create_model(model_name, features_only=True)``.

    The declared outputs (``output_shape()``) come from timm's ``feature_info``.
    Pretrained weights load only from a local file (``pretrained_file``: a
    state dict of the full timm model, e.g. saved with ``torch.save(
    model.state_dict(), path)``); timm filters the classifier itself.
    Nothing is ever downloaded.

    Args:
        model_name: a timm model name, e.g. ``'resnet18'``, ``'convnext_tiny'``.
        out_indices: which of timm's feature levels to return.
        pretrained_file: local path to the weights, or None for random init.
        frozen_stages: freeze the first ``k + 1`` returned-feature modules
            (timm's feature modules in order), -1 for none.
        model_kwargs: extra keyword arguments for ``timm.create_model``.
    """

    def __init__(self, model_name: str, out_indices=(1, 2, 3, 4), pretrained_file=None,
                 frozen_stages: int = -1, norm_eval: bool = False, model_kwargs=None,
                 init_cfg=None):
        super().__init__(frozen_stages=frozen_stages, norm_eval=norm_eval, init_cfg=init_cfg)
        if model_name not in timm.list_models():
            close = timm.list_models(f"*{model_name.split('_')[0]}*")[:5]
            raise ValueError(f"TimmBackbone: unknown timm model '{model_name}'"
                             + (f"; similar: {', '.join(close)}" if close else ""))
        kwargs = dict(model_kwargs or {})
        if pretrained_file is not None:
            if not os.path.isfile(pretrained_file):
                raise FileNotFoundError(
                    f"TimmBackbone: pretrained_file '{pretrained_file}' does not exist")
            kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(pretrained_file)))
        self.model = timm.create_model(model_name, features_only=True,
                                       out_indices=tuple(out_indices), **kwargs)
        info = self.model.feature_info
        self.declare_outputs(channels=info.channels(), strides=info.reduction(),
                             size_divisor=max(32, max(info.reduction())))

    def stages(self):
        return [m for _, m in self.model.named_children() if isinstance(m, nn.Module)]

    def forward(self, x):
        return tuple(self.model(x))
