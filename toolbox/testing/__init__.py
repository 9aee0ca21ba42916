"""``toolbox.testing``: the plugin author's testing kit (public API).

Tiny inputs (:func:`det_batch`, :func:`det_sample`, :func:`seg_batch`,
:func:`seg_sample`, :func:`feature_maps`), contract checkers
(:func:`check_backbone`, :func:`check_neck`, :func:`check_loss`,
:func:`check_head`, :func:`check_seg_head`, :func:`check_transform`), plugin
isolation (:func:`isolated_plugins`, the ``toolbox_plugins`` pytest fixture
in :mod:`toolbox.testing.fixtures`, :func:`make_distribution`) and a smoke
run (:func:`smoke_train`). See ``docs/plugin_authoring.md``.
"""
from toolbox.testing.contracts import (ContractError, check_backbone, check_head, check_loss,
                                       check_neck, check_seg_head, check_transform)
from toolbox.testing.data import det_batch, det_sample, feature_maps, seg_batch, seg_sample
from toolbox.testing.plugins import isolated_plugins, make_distribution
from toolbox.testing.smoke import smoke_train

__all__ = [
    "ContractError", "check_backbone", "check_head", "check_loss", "check_neck",
    "check_seg_head", "check_transform", "det_batch", "det_sample", "feature_maps",
    "isolated_plugins", "make_distribution", "seg_batch", "seg_sample", "smoke_train",
]
