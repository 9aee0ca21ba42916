"""Swin Transformer backbone (Liu et al., ICCV 2021, https://arxiv.org/abs/2103.14030).

A patch embedding (stride 4) followed by four stages of window attention
blocks; stages 2-4 start with a 2x patch merging. Each returned stage output
has its own LayerNorm and is given as an NCHW map at strides 4/8/16/32.

Any input size works: the stem zero-pads the image to a multiple of the patch
size, patch merging pads odd maps by one row/column, and window attention pads
each map to window multiples and crops back. ``size_divisor`` is therefore
``patch_size * 2 ** (num_stages - 1)`` = 32 (the strides of the outputs), not a
multiple of the window size.

Weights: :meth:`SwinTransformer.convert_reference_state_dict` maps torchvision's
``swin_t`` / ``swin_s`` / ``swin_b`` state dicts (``features.*``, ``norm``).
Semantics match torchvision's, which pads to window multiples and does not
shift along an axis whose padded length is one window (a map of at most 7x7
is a single unshifted window). One difference: torchvision's stem drops the
pixels beyond the last whole patch, this stem pads them (equal for inputs that
are multiples of 4).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from toolbox.models.backbones.swin_blocks import PatchEmbed, SwinStage
from toolbox.models.backbones.base import Backbone, check_frozen_stages

__all__ = ["SwinTransformer"]

# arch -> (embed_dims, depths, num_heads), from the paper's Table 1 / section 3.3.
ARCH_SETTINGS = {
    "tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "small": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "base": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "large": (192, (2, 2, 18, 2), (6, 12, 24, 48)),
}


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"SwinTransformer: {name} must be a positive int, got {value!r}")
    return value


class SwinTransformer(Backbone):
    """Swin Transformer returning the LayerNorm-ed outputs of the selected stages.

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large'.
        in_channels: image channels.
        patch_size: stride of the patch embedding.
        window_size: side of the square attention windows.
        mlp_ratio: MLP hidden size / embedding size.
        drop_path_rate: stochastic depth rate of the last block; it rises
            linearly from 0 over all blocks.
        out_indices: stages to return (0-based).
        frozen_stages: -1 trains everything; k >= 0 freezes the patch
            embedding and stages 1..k (with their output norms).
        norm_eval: accepted for a uniform interface; Swin has only LayerNorm,
            which has no running statistics, so it changes nothing.
        embed_dims, depths, num_heads: override the arch (small test configs).
    """

    def __init__(self, arch: str = "tiny", in_channels: int = 3, patch_size: int = 4,
                 window_size: int = 7, mlp_ratio: float = 4.0, drop_path_rate: float = 0.2,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1,
                 norm_eval: bool = False, embed_dims: int | None = None,
                 depths: Sequence[int] | None = None, num_heads: Sequence[int] | None = None,
                 init_cfg=None):
        super().__init__(frozen_stages=frozen_stages, norm_eval=norm_eval, init_cfg=init_cfg)
        if arch not in ARCH_SETTINGS:
            raise ValueError(f"SwinTransformer: unknown arch {arch!r}; expected one of "
                             f"{sorted(ARCH_SETTINGS)}")
        arch_dims, arch_depths, arch_heads = ARCH_SETTINGS[arch]
        embed_dims = _positive_int("embed_dims", arch_dims if embed_dims is None else embed_dims)
        depths = tuple(arch_depths if depths is None else depths)
        num_heads = tuple(arch_heads if num_heads is None else num_heads)
        if not depths or len(num_heads) != len(depths):
            raise ValueError(f"SwinTransformer: depths {depths} and num_heads {num_heads} must "
                             "be non-empty and of the same length (one entry per stage)")
        for name, value in [("in_channels", in_channels), ("patch_size", patch_size),
                            ("window_size", window_size)] + \
                [(f"depths[{i}]", d) for i, d in enumerate(depths)] + \
                [(f"num_heads[{i}]", h) for i, h in enumerate(num_heads)]:
            _positive_int(name, value)
        num_stages = len(depths)
        dims = [embed_dims * 2 ** i for i in range(num_stages)]
        for i, (d, h) in enumerate(zip(dims, num_heads)):
            if d % h:
                raise ValueError(f"SwinTransformer: stage {i} has {d} channels, not divisible "
                                 f"by num_heads[{i}]={h}")
        out_indices = tuple(out_indices)
        if not out_indices or any(not isinstance(i, int) or not 0 <= i < num_stages
                                  for i in out_indices) or len(set(out_indices)) != len(out_indices):
            raise ValueError(f"SwinTransformer: out_indices must be distinct stage indices in "
                             f"[0, {num_stages - 1}], got {out_indices}")
        check_frozen_stages(frozen_stages, num_stages, "SwinTransformer")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"SwinTransformer: drop_path_rate must be in [0, 1), "
                             f"got {drop_path_rate}")

        self.arch = arch
        self.out_indices = tuple(sorted(out_indices))
        self.declare_outputs([dims[i] for i in self.out_indices],
                             [patch_size * 2 ** i for i in self.out_indices],
                             size_divisor=patch_size * 2 ** (num_stages - 1))

        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.patch_embed = PatchEmbed(in_channels, embed_dims, patch_size)
        self.layers = nn.ModuleList()  # the stages (``stages()`` is the Backbone API)
        for i, depth in enumerate(depths):
            first = sum(depths[:i])
            self.layers.append(SwinStage(
                dims[i - 1] if i else dims[0], dims[i], depth, num_heads[i], window_size,
                mlp_ratio, rates[first:first + depth], downsample=i > 0))
        self.out_norms = nn.ModuleDict({str(i): nn.LayerNorm(dims[i]) for i in self.out_indices})
        self._init_weights()
        if frozen_stages >= 0:
            self.freeze_stages()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for name, p in self.named_parameters():
            if name.endswith("relative_position_bias_table"):
                nn.init.trunc_normal_(p, std=0.02)

    def stages(self) -> list[nn.Module]:
        return [self.patch_embed, *self.layers]

    def freeze_stages(self) -> None:
        super().freeze_stages()
        for i in range(self.frozen_stages):
            norm = self.out_norms[str(i)] if str(i) in self.out_norms else None
            if norm is not None:
                norm.eval()
                norm.requires_grad_(False)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        if images.dim() != 4 or images.shape[1] != self.patch_embed.proj.in_channels:
            raise ValueError(f"SwinTransformer.forward: images must be (N, "
                             f"{self.patch_embed.proj.in_channels}, H, W), got "
                             f"{tuple(images.shape)}")
        x = self.patch_embed(images)
        outs = []
        for i, stage in enumerate(self.layers):
            x = stage(x)
            if i in self.out_indices:
                outs.append(self.out_norms[str(i)](x).permute(0, 3, 1, 2).contiguous())
                if i == self.out_indices[-1]:
                    break
        return tuple(outs)

    # -- reference weights ------------------------------------------------
    def convert_reference_state_dict(self, state_dict: Mapping[str, Tensor]
                                     ) -> "OrderedDict[str, Tensor]":
        """Map torchvision ``swin_t/s/b`` keys to this module's keys.

        ``features.0`` (conv, permute, norm) -> ``patch_embed``; odd
        ``features.{2i+1}`` -> ``layers.i.blocks``; even ``features.{2i}``
        (patch merging) -> ``layers.i.downsample``; the final ``norm`` ->
        the last stage's output norm (dropped if that stage is not returned).
        ``head.*`` and the derived ``relative_position_index`` buffers are
        dropped. torchvision has no norms on stages 1-3: those output norms
        are filled with the LayerNorm defaults (weight 1, bias 0). Keys that
        are not torchvision's pass through unchanged (own checkpoints).
        """
        last = len(self.layers) - 1
        out = OrderedDict()
        for key, value in state_dict.items():
            if key.startswith("head.") or key.endswith("relative_position_index"):
                continue
            m = re.match(r"features\.(\d+)\.(.*)$", key)
            if m:
                index, rest = int(m.group(1)), m.group(2)
                if index == 0:
                    rest = rest.replace("0.", "proj.", 1) if rest.startswith("0.") else \
                        rest.replace("2.", "norm.", 1)
                    key = f"patch_embed.{rest}"
                elif index % 2:
                    key = f"layers.{index // 2}.blocks.{rest}"
                else:
                    key = f"layers.{index // 2}.downsample.{rest}"
            elif key.startswith("norm."):
                if last not in self.out_indices:
                    continue
                key = f"out_norms.{last}.{key[len('norm.'):]}"
            out[key] = value
        for i in self.out_indices:
            norm = self.out_norms[str(i)]
            out.setdefault(f"out_norms.{i}.weight", torch.ones_like(norm.weight))
            out.setdefault(f"out_norms.{i}.bias", torch.zeros_like(norm.bias))
        return out
