"""UNETR's ViT encoder (Hatamizadeh et al., WACV 2022, https://arxiv.org/abs/2103.10504).

The image (2D) or volume (3D) is cut into non-overlapping 16^d patches,
each linearly embedded (a strided conv, or a linear layer on the flattened
patch: MONAI's ``proj_type='conv'`` / ``'perceptron'``), a learned position
embedding is added, and pre-norm transformer blocks (LayerNorm,
multi-head self-attention, LayerNorm, GELU MLP) follow. The hidden states
after the blocks ``out_indices`` are returned as maps ``[B, hidden, *S/16]``;
the last block's state goes through the final LayerNorm when it is returned.

**Which blocks.** The paper feeds z3, z6, z9 and z12 to the decoder; MONAI's
``UNETR`` (and the authors' released code) takes ``hidden_states_out[3]``,
``[6]``, ``[9]``, i.e. the outputs of the 4th, 7th and 10th blocks, and the
normed last one. The default ``out_indices=(3, 6, 9, 11)`` (0-based blocks)
follows MONAI so that its weights give the same network.

**The raw input as a level.** UNETR's first skip is a conv block on the
image itself. With ``with_input=True`` (the default) the backbone returns the
input tensor as level 0 (``output_shape()[0] = FeatureSpec(in_channels, 1)``)
before the transformer maps, so a decoder head receives everything it needs
through the usual ``head(backbone(x))`` contract and infers all its widths
from ``output_shape()`` (its ``input_shape``).

The position embedding is learned for ``img_size``: inputs must have that
size (use sliding-window inference for larger ones), unless
``interpolate_pos_embed=True`` resizes it (bicubic / trilinear) to the input's
patch grid. Weights: :meth:`ViT.convert_reference_state_dict` maps MONAI's
``ViT`` or ``UNETR`` (``vit.*``) keys.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolbox.models.backbones.base import Backbone, check_frozen_stages, check_out_indices

__all__ = ["ViT"]

PROJ_TYPES = ("conv", "perceptron")


def _size_tuple(name: str, value, spatial_dims: int) -> tuple[int, ...]:
    values = (value,) * spatial_dims if isinstance(value, int) else tuple(value)
    if len(values) != spatial_dims or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                          for v in values):
        raise ValueError(f"ViT: {name} must be a positive int or {spatial_dims} positive ints, "
                         f"got {value!r}")
    return values


class PatchEmbedding(nn.Module):
    """Patches -> tokens ``[B, N, hidden]`` plus a learned position embedding.

    ``proj_type='conv'``: a conv with kernel = stride = patch size;
    ``'perceptron'``: a linear layer on each patch flattened in the order
    (patch axes..., channel), as MONAI's einops pattern does.
    """

    def __init__(self, in_channels: int, img_size: tuple[int, ...], patch_size: tuple[int, ...],
                 hidden_size: int, proj_type: str = "conv", dropout_rate: float = 0.0):
        super().__init__()
        self.spatial_dims = len(img_size)
        self.patch_size = patch_size
        self.proj_type = proj_type
        self.grid_size = tuple(s // p for s, p in zip(img_size, patch_size))
        if proj_type == "conv":
            conv = nn.Conv2d if self.spatial_dims == 2 else nn.Conv3d
            self.proj = conv(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)
        else:
            self.proj = nn.Linear(in_channels * math.prod(patch_size), hidden_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, math.prod(self.grid_size), hidden_size))
        self.dropout = nn.Dropout(dropout_rate)

    def _patches(self, x: Tensor) -> Tensor:
        """[B, C, *S] -> [B, N, prod(patch) * C], patch axes first, channel last."""
        b, c = x.shape[:2]
        grid = [s // p for s, p in zip(x.shape[2:], self.patch_size)]
        split = [b, c]
        for g, p in zip(grid, self.patch_size):
            split += [g, p]
        x = x.reshape(split)
        d = self.spatial_dims
        grid_axes = [2 + 2 * i for i in range(d)]
        patch_axes = [3 + 2 * i for i in range(d)]
        x = x.permute(0, *grid_axes, *patch_axes, 1)
        return x.reshape(b, math.prod(grid), -1)

    def forward(self, x: Tensor, pos_embed: Tensor) -> Tensor:
        if self.proj_type == "conv":
            tokens = self.proj(x).flatten(2).transpose(1, 2)
        else:
            tokens = self.proj(self._patches(x))
        return self.dropout(tokens + pos_embed)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (head-major
    q/k/v split as MONAI's ``SABlock``: the qkv output is (3, heads, dim))."""

    def __init__(self, hidden_size: int, num_heads: int, qkv_bias: bool = False,
                 dropout_rate: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=qkv_bias)
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.attn_drop = dropout_rate
        self.proj_drop = nn.Dropout(dropout_rate)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads
                                      ).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_dim: int, qkv_bias: bool = False,
                 dropout_rate: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size)
        self.attn = SelfAttention(hidden_size, num_heads, qkv_bias, dropout_rate)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.mlp = nn.Sequential(OrderedDict(
            fc1=nn.Linear(hidden_size, mlp_dim), act=nn.GELU(), drop1=nn.Dropout(dropout_rate),
            fc2=nn.Linear(mlp_dim, hidden_size), drop2=nn.Dropout(dropout_rate)))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(Backbone):
    """UNETR's ViT encoder; returns ``(input, *maps)`` (see the module docstring).

    Args:
        in_channels: image channels (1 for CT).
        img_size: input size the position embedding is learned for (an int
            or one per spatial axis); a multiple of ``patch_size``.
        spatial_dims: 2 (images) or 3 (volumes).
        patch_size: patch side (16 in UNETR).
        hidden_size, num_layers, num_heads, mlp_dim: transformer size
            (ViT-B: 768, 12, 12, 3072).
        proj_type: 'conv' or 'perceptron' (linear on flattened patches).
        qkv_bias: bias of the qkv projection (MONAI: False).
        dropout_rate: dropout of the embedding, attention and MLP.
        out_indices: blocks (0-based) whose outputs are returned.
        with_input: also return the input itself as the first level.
        interpolate_pos_embed: accept inputs of other sizes by resizing the
            position embedding to their patch grid.
        frozen_stages: -1 trains all; k >= 0 freezes the patch embedding
            (with the position embedding) and blocks 1..k.
        norm_eval: accepted for a uniform interface (LayerNorm only).
    """

    def __init__(self, in_channels: int = 1, img_size: int | Sequence[int] = 96,
                 spatial_dims: int = 3, patch_size: int | Sequence[int] = 16,
                 hidden_size: int = 768, num_layers: int = 12, num_heads: int = 12,
                 mlp_dim: int = 3072, proj_type: str = "conv", qkv_bias: bool = False,
                 dropout_rate: float = 0.0, out_indices: Sequence[int] = (3, 6, 9, 11),
                 with_input: bool = True, interpolate_pos_embed: bool = False,
                 frozen_stages: int = -1, norm_eval: bool = False, init_cfg=None):
        super().__init__(frozen_stages=frozen_stages, norm_eval=norm_eval, init_cfg=init_cfg)
        if spatial_dims not in (2, 3):
            raise ValueError(f"ViT: spatial_dims must be 2 or 3, got {spatial_dims!r}")
        for name, value in (("in_channels", in_channels), ("hidden_size", hidden_size),
                            ("num_layers", num_layers), ("num_heads", num_heads),
                            ("mlp_dim", mlp_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ViT: {name} must be a positive int, got {value!r}")
        if hidden_size % num_heads:
            raise ValueError(f"ViT: hidden_size ({hidden_size}) must be divisible by num_heads "
                             f"({num_heads})")
        if proj_type not in PROJ_TYPES:
            raise ValueError(f"ViT: proj_type must be one of {PROJ_TYPES}, got {proj_type!r}")
        if not 0.0 <= dropout_rate <= 1.0:
            raise ValueError(f"ViT: dropout_rate must be in [0, 1], got {dropout_rate!r}")
        img_size = _size_tuple("img_size", img_size, spatial_dims)
        patch_size = _size_tuple("patch_size", patch_size, spatial_dims)
        if any(s % p for s, p in zip(img_size, patch_size)):
            raise ValueError(f"ViT: img_size {img_size} must be a multiple of patch_size "
                             f"{patch_size}")
        self.out_indices = check_out_indices(out_indices, num_layers, "ViT",
                                             " (0-based transformer blocks)")
        check_frozen_stages(frozen_stages, num_layers, "ViT", " (0: the patch embedding)")
        self.in_channels = in_channels
        self.spatial_dims = spatial_dims
        self.img_size = img_size
        self.patch_size = patch_size
        self.hidden_size = hidden_size
        self.with_input = with_input
        self.interpolate_pos_embed = interpolate_pos_embed

        self.patch_embed = PatchEmbedding(in_channels, img_size, patch_size, hidden_size,
                                          proj_type, dropout_rate)
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden_size, num_heads, mlp_dim, qkv_bias, dropout_rate)
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden_size)

        stride = max(patch_size)
        self.declare_outputs(((in_channels,) if with_input else ()) + (hidden_size,) * len(
            self.out_indices), ((1,) if with_input else ()) + (stride,) * len(self.out_indices),
            size_divisor=stride)
        self._init_like_monai()

    def _init_like_monai(self) -> None:
        """Truncated-normal (std 0.02) linear weights and position embedding,
        zero biases, unit LayerNorms (MONAI's / ViT's initialisation)."""
        nn.init.trunc_normal_(self.patch_embed.pos_embed, std=0.02, a=-2.0, b=2.0)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stages(self) -> Sequence[nn.Module]:
        return [self.patch_embed, *self.blocks]

    def _pos_embed_for(self, grid: tuple[int, ...]) -> Tensor:
        pos = self.patch_embed.pos_embed
        own = self.patch_embed.grid_size
        if grid == own:
            return pos
        if not self.interpolate_pos_embed:
            size = tuple(g * p for g, p in zip(grid, self.patch_size))
            raise ValueError(
                f"ViT: input of spatial size {size} but the position embedding is learned for "
                f"img_size {self.img_size}; feed windows of img_size (sliding-window inference: "
                f"test_cfg=dict(mode='slide', roi_size={self.img_size})) or set "
                f"interpolate_pos_embed=True")
        mode = "bicubic" if self.spatial_dims == 2 else "trilinear"
        maps = pos.transpose(1, 2).reshape(1, -1, *own)
        maps = F.interpolate(maps, size=grid, mode=mode, align_corners=False)
        return maps.flatten(2).transpose(1, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        expected = 2 + self.spatial_dims
        if x.dim() != expected or x.shape[1] != self.in_channels:
            raise ValueError(f"ViT: expected input [B, {self.in_channels}, "
                             f"{', '.join('DHW'[-self.spatial_dims:])}] ({expected} dims), got "
                             f"{tuple(x.shape)}")
        if any(s % p for s, p in zip(x.shape[2:], self.patch_size)):
            raise ValueError(f"ViT: input size {tuple(x.shape[2:])} must be a multiple of "
                             f"patch_size {self.patch_size} (pad it to size_divisor)")
        grid = tuple(s // p for s, p in zip(x.shape[2:], self.patch_size))
        tokens = self.patch_embed(x, self._pos_embed_for(grid))
        outs = [x] if self.with_input else []
        last = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            tokens = block(tokens)
            if index in self.out_indices:
                state = self.norm(tokens) if index == last else tokens
                outs.append(state.transpose(1, 2).reshape(x.shape[0], -1, *grid))
            if index >= self.out_indices[-1]:
                break
        return tuple(outs)

    # -- reference weights --------------------------------------------------
    def convert_reference_state_dict(self, state_dict: Mapping[str, Tensor]
                                     ) -> "OrderedDict[str, Tensor]":
        """Map MONAI's ``ViT`` keys, or a ``UNETR``'s ``vit.*`` keys (its
        decoder keys are left out), to this module's keys. MONAI's unused
        cross-attention LayerNorm (``norm_cross_attn``, present even without
        cross-attention) and classification parts are dropped."""
        if any(k.startswith("vit.") for k in state_dict):
            state_dict = {k[len("vit."):]: v for k, v in state_dict.items() if k.startswith("vit.")}
        module_map: dict[str, str | None] = {
            "patch_embedding.patch_embeddings": "patch_embed.proj",       # conv
            "patch_embedding.patch_embeddings.1": "patch_embed.proj",     # perceptron
            "norm": "norm", "cls_token": None, "classification_head": None,
        }
        for i in range(len(self.blocks)):
            for theirs, ours in (("norm1", "norm1"), ("norm2", "norm2"),
                                 ("attn.qkv", "attn.qkv"), ("attn.out_proj", "attn.proj"),
                                 ("mlp.linear1", "mlp.fc1"), ("mlp.linear2", "mlp.fc2"),
                                 ("norm_cross_attn", None), ("cross_attn", None)):
                module_map[f"blocks.{i}.{theirs}"] = None if ours is None else f"blocks.{i}.{ours}"
        renamed = OrderedDict()
        rest = OrderedDict()
        for key, value in state_dict.items():
            if key == "patch_embedding.position_embeddings":
                renamed["patch_embed.pos_embed"] = value
            elif key == "cls_token":
                continue
            else:
                rest[key] = value
        renamed.update(self._rename_reference_keys(rest, module_map, "MONAI ViT/UNETR"))
        return renamed
