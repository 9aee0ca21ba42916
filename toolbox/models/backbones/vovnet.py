"""VoVNet: One-Shot Aggregation backbones, V1 and V2 (eSE + identity).

* V1, Lee et al. 2019, "An Energy and GPU-Computation Efficient Backbone
  Network for Real-Time Object Detection": ``V-27-slim``, ``V-39``, ``V-57``.
* V2, Lee & Park 2020, "CenterMask: Real-Time Anchor-Free Instance
  Segmentation": every OSA block after the first of a stage adds its input
  (identity mapping) and the last block of a stage ends with effective
  squeeze-excitation (eSE): ``V-19-slim-dw-eSE``, ``V-19-dw-eSE``,
  ``V-19-slim-eSE``, ``V-19-eSE``, ``V-39-eSE``, ``V-57-eSE``, ``V-99-eSE``.

Layout: a stem of three 3x3 convs (stride 4 in all) followed by OSA stages
2..5 (paper numbering) at strides 4, 8, 16, 32; stages 3..5 open with a 3x3
stride-2 max-pool (``ceil_mode``). An OSA block runs ``layers_per_block``
3x3 convs in a chain and concatenates the block input with every conv output
once, then projects with a 1x1 conv.

Indices: ``out_indices`` counts the four OSA stages, ``0`` = stage 2
(stride 4) ... ``3`` = stage 5 (stride 32), the mmdetection convention.
``frozen_stages`` follows :class:`Backbone`: ``0`` freezes the stem, ``k``
the stem and the first ``k`` OSA stages (``stages()[k]`` is paper stage
``k + 1``).

Reference weights: :meth:`VoVNet.convert_reference_state_dict` maps timm's
``VovNet`` keys (``vovnet39a``, ``ese_vovnet39b``, ...; plain or
``features_only`` models) to this module's keys; see ``TIMM_NAMES``.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Mapping, Sequence

import torch
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from torch import nn

from toolbox.models.backbones.base import Backbone, check_frozen_stages, check_out_indices

__all__ = ["VoVNet"]

# stem: the three stem convs' widths; mid / out: per OSA stage (2..5), the
# width of the chained 3x3 convs and of the 1x1 aggregation; blocks: OSA
# blocks per stage; layers: 3x3 convs per block; ese / identity: V2 features;
# depthwise: the stem's last two convs and the block convs are depthwise
# separable (3x3 depthwise, 1x1 pointwise, one BN).
_V1 = dict(ese=False, identity=False, depthwise=False)
_V2 = dict(ese=True, identity=True, depthwise=False)
_V2_DW = dict(ese=True, identity=True, depthwise=True)
_SLIM = dict(mid=(64, 80, 96, 112))
_WIDE = dict(mid=(128, 160, 192, 224), out=(256, 512, 768, 1024))

ARCHS: dict[str, dict] = {
    # V1 (VoVNet paper; channels as in the authors' VoVNet.pytorch)
    "V-27-slim": dict(stem=(64, 64, 128), **_SLIM, out=(128, 256, 384, 512),
                      blocks=(1, 1, 1, 1), layers=5, **_V1),
    "V-39": dict(stem=(64, 64, 128), **_WIDE, blocks=(1, 1, 2, 2), layers=5, **_V1),
    "V-57": dict(stem=(64, 64, 128), **_WIDE, blocks=(1, 1, 4, 3), layers=5, **_V1),
    # V2 (CenterMask; names as in the authors' vovnet-detectron2)
    "V-19-slim-dw-eSE": dict(stem=(64, 64, 64), **_SLIM, out=(112, 256, 384, 512),
                             blocks=(1, 1, 1, 1), layers=3, **_V2_DW),
    "V-19-dw-eSE": dict(stem=(64, 64, 64), **_WIDE, blocks=(1, 1, 1, 1), layers=3, **_V2_DW),
    "V-19-slim-eSE": dict(stem=(64, 64, 128), **_SLIM, out=(112, 256, 384, 512),
                          blocks=(1, 1, 1, 1), layers=3, **_V2),
    "V-19-eSE": dict(stem=(64, 64, 128), **_WIDE, blocks=(1, 1, 1, 1), layers=3, **_V2),
    "V-39-eSE": dict(stem=(64, 64, 128), **_WIDE, blocks=(1, 1, 2, 2), layers=5, **_V2),
    "V-57-eSE": dict(stem=(64, 64, 128), **_WIDE, blocks=(1, 1, 4, 3), layers=5, **_V2),
    "V-99-eSE": dict(stem=(64, 64, 128), **_WIDE, blocks=(1, 3, 9, 3), layers=5, **_V2),
}
ARCH_KEYS = frozenset(ARCHS["V-39"])

# The timm model of the same architecture (``V-27-slim`` has none in timm;
# ``ese_vovnet19b`` exists in timm's config table but is not registered).
TIMM_NAMES = {
    "V-39": "vovnet39a", "V-57": "vovnet57a",
    "V-19-slim-dw-eSE": "ese_vovnet19b_slim_dw", "V-19-dw-eSE": "ese_vovnet19b_dw",
    "V-19-slim-eSE": "ese_vovnet19b_slim", "V-19-eSE": "ese_vovnet19b",
    "V-39-eSE": "ese_vovnet39b", "V-57-eSE": "ese_vovnet57b", "V-99-eSE": "ese_vovnet99b",
}

STRIDES = (4, 8, 16, 32)

# This module's key -> timm's key, applied in order.
_TO_TIMM = (
    (re.compile(r"^stage(\d)\.block(\d+)\."),
     lambda m: f"stages.{int(m[1]) - 2}.blocks.{int(m[2]) - 1}."),
    (re.compile(r"\.reduction\."), ".conv_reduction."),
    (re.compile(r"\.layers\.(\d+)\."), r".conv_mid.\1."),
    (re.compile(r"\.concat\."), ".conv_concat."),
    (re.compile(r"\.ese\.fc\."), ".attn.fc."),
    (re.compile(r"\.depthwise_conv\.conv\."), ".conv_dw."),
    (re.compile(r"\.pointwise_conv\.conv\."), ".conv_pw."),
    (re.compile(r"\.pointwise_conv\.bn\."), ".bn."),
)
# timm ``features_only`` models flatten ``stem.0`` / ``stages.0`` to ``stem_0``.
_TIMM_FEATURES_PREFIX = re.compile(r"^(stem|stages)_(\d+)\.")


class EffectiveSE(nn.Module):
    """eSE: gate channels with hard-sigmoid(1x1 conv(global average))."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc(x.mean((2, 3), keepdim=True)))


def _conv(in_channels: int, out_channels: int, kernel_size: int, norm_cfg: dict,
          stride: int = 1, depthwise: bool = False) -> nn.Module:
    """Conv-norm-ReLU, or depthwise conv + pointwise conv-norm-ReLU."""
    common = dict(stride=stride, padding=kernel_size // 2, norm_cfg=norm_cfg,
                  act_cfg=dict(type="ReLU"), bias=False)
    if depthwise:
        return DepthwiseSeparableConvModule(in_channels, out_channels, kernel_size,
                                            dw_norm_cfg=None, dw_act_cfg=None, **common)
    return ConvModule(in_channels, out_channels, kernel_size, **common)


class OSABlock(nn.Module):
    """One-Shot Aggregation: chained 3x3 convs, one concat, one 1x1 conv.

    With ``depthwise`` and an input wider than ``mid_channels``, a 1x1 conv
    first reduces the input of the chain (the concat still takes the input).
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int,
                 num_layers: int, *, ese: bool, identity: bool, depthwise: bool,
                 norm_cfg: dict):
        super().__init__()
        if identity and in_channels != out_channels:
            raise ValueError(f"OSABlock: identity mapping needs in_channels == out_channels, "
                             f"got {in_channels} and {out_channels}")
        self.identity = identity
        channels = in_channels
        self.reduction = None
        if depthwise and in_channels != mid_channels:
            self.reduction = _conv(in_channels, mid_channels, 1, norm_cfg)
            channels = mid_channels
        layers = []
        for _ in range(num_layers):
            layers.append(_conv(channels, mid_channels, 3, norm_cfg, depthwise=depthwise))
            channels = mid_channels
        self.layers = nn.ModuleList(layers)
        self.concat = _conv(in_channels + num_layers * mid_channels, out_channels, 1, norm_cfg)
        self.ese = EffectiveSE(out_channels) if ese else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        feats = [x]
        if self.reduction is not None:
            x = self.reduction(x)
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        x = self.concat(torch.cat(feats, dim=1))
        if self.ese is not None:
            x = self.ese(x)
        return x + identity if self.identity else x


class VoVNet(Backbone):
    """VoVNet V1 / V2 backbone returning OSA stage maps at strides 4..32.

    Args:
        arch: a name in :data:`ARCHS` (e.g. ``'V-39-eSE'``, ``'V-57'``) or a
            dict with the keys of those entries for a custom network.
        out_indices: OSA stages to return, increasing, in ``0..3``
            (0 = stage 2 at stride 4, 3 = stage 5 at stride 32); stages after
            the last one returned are not built.
        frozen_stages: ``-1`` freezes nothing, ``0`` the stem, ``k`` the stem
            and the first ``k`` OSA stages (at most 4).
        norm_eval: keep every BatchNorm in eval mode during training.
        norm_cfg: mmcv norm config of every conv (``BN``, ``SyncBN``, ...).
    """

    def __init__(self, arch: str | dict = "V-39-eSE",
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1, norm_eval: bool = False,
                 norm_cfg: dict | None = None, init_cfg=None):
        super().__init__(frozen_stages=frozen_stages, norm_eval=norm_eval, init_cfg=init_cfg)
        spec = self._resolve_arch(arch)
        self.arch = arch if isinstance(arch, str) else "custom"
        self.out_indices = check_out_indices(
            out_indices, len(STRIDES), "VoVNet",
            " (OSA stages: 0 = stage 2 at stride 4, 3 = stage 5 at stride 32)")
        check_frozen_stages(frozen_stages, len(STRIDES), "VoVNet",
                            " (-1 = none, 0 = stem, k = stem + k OSA stages)")
        norm_cfg = dict(type="BN", requires_grad=True) if norm_cfg is None else norm_cfg
        if not isinstance(norm_cfg, dict) or "type" not in norm_cfg:
            raise ValueError(f"VoVNet: norm_cfg must be an mmcv norm config dict such as "
                             f"dict(type='BN'), got {norm_cfg!r}")

        s0, s1, s2 = spec["stem"]
        dw = spec["depthwise"]
        self.stem = nn.Sequential(
            _conv(3, s0, 3, norm_cfg, stride=2),
            _conv(s0, s1, 3, norm_cfg, depthwise=dw),
            _conv(s1, s2, 3, norm_cfg, stride=2, depthwise=dw),
        )
        # stages after the last output are not built
        stage_names = [f"stage{i + 2}" for i in range(max(self.out_indices) + 1)]
        in_channels = s2
        for index, name in enumerate(stage_names):
            layers = OrderedDict()
            if index > 0:
                layers["pool"] = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
            num_blocks = spec["blocks"][index]
            for b in range(num_blocks):
                layers[f"block{b + 1}"] = OSABlock(
                    in_channels, spec["mid"][index], spec["out"][index], spec["layers"],
                    ese=spec["ese"] and b == num_blocks - 1,
                    identity=spec["identity"] and b > 0,
                    depthwise=dw, norm_cfg=norm_cfg)
                in_channels = spec["out"][index]
            self.add_module(name, nn.Sequential(layers))

        self._declare_stage_chain(stage_names, self.out_indices, spec["out"], STRIDES)
        if frozen_stages >= 0:
            self.freeze_stages()

    # -- construction helpers ---------------------------------------------
    @staticmethod
    def _resolve_arch(arch) -> dict:
        if isinstance(arch, str):
            if arch not in ARCHS:
                raise ValueError(f"VoVNet: unknown arch {arch!r}; expected one of "
                                 f"{', '.join(ARCHS)} or a dict with keys {sorted(ARCH_KEYS)}")
            return ARCHS[arch]
        if isinstance(arch, Mapping):
            if set(arch) != ARCH_KEYS:
                raise ValueError(f"VoVNet: a custom arch dict needs exactly the keys "
                                 f"{sorted(ARCH_KEYS)}, got {sorted(arch)}")
            for key in ("mid", "out", "blocks"):
                if len(arch[key]) != 4:
                    raise ValueError(f"VoVNet: arch['{key}'] needs 4 entries (stages 2..5), "
                                     f"got {arch[key]!r}")
            if len(arch["stem"]) != 3:
                raise ValueError(f"VoVNet: arch['stem'] needs 3 widths, got {arch['stem']!r}")
            return dict(arch)
        raise ValueError(f"VoVNet: arch must be a name ({', '.join(ARCHS)}) or a dict, "
                         f"got {type(arch).__name__}")

    # -- Backbone contract (stages() and forward(): the declared stage chain) --
    @property
    def stage_names(self) -> tuple[str, ...]:
        """The OSA stages built (``stage2`` onwards), in forward order."""
        return self._stage_names

    # -- reference weights --------------------------------------------------
    @staticmethod
    def timm_key(key: str) -> str:
        """The timm ``VovNet`` state-dict key of one of this module's keys."""
        for pattern, replacement in _TO_TIMM:
            key = pattern.sub(replacement, key)
        return key

    def _unbuilt_stage(self, timm_key: str) -> bool:
        match = re.match(r"stages\.(\d+)\.", timm_key)
        return match is not None and len(self.stage_names) <= int(match[1]) < 4

    def convert_reference_state_dict(self, state_dict: Mapping[str, torch.Tensor]
                                     ) -> "OrderedDict[str, torch.Tensor]":
        """Map a timm ``VovNet`` state dict (plain or ``features_only``).

        The classifier (``head.*``) and the stages this instance does not
        build are dropped; any other key without a counterpart here raises,
        as it means the reference is another arch.
        """
        ours = {self.timm_key(key): key for key in self.state_dict()}
        mapped, unexpected = OrderedDict(), []
        for key, value in state_dict.items():
            ref_key = _TIMM_FEATURES_PREFIX.sub(r"\1.\2.", key)
            if ref_key in ours:
                mapped[ours[ref_key]] = value
            elif not (ref_key.startswith("head.") or self._unbuilt_stage(ref_key)):
                unexpected.append(key)
        if unexpected:
            raise KeyError(f"VoVNet(arch={self.arch!r}): {len(unexpected)} reference key(s) have "
                           f"no counterpart, e.g. {unexpected[:3]}; is the state dict a timm "
                           f"VovNet of another arch (see TIMM_NAMES)?")
        return mapped
