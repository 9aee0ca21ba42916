"""Building blocks of the Swin Transformer backbone (see ``swin.py``).

All tensors inside the stages are channels-last, ``(B, H, W, C)``. Window
attention pads the map to a multiple of the window size, skips the cyclic
shift along an axis whose padded length is a single window (as torchvision
does), and crops the padding away again, so any map size works.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import MLP, StochasticDepth

# the block classes are parts of SwinTransformer, not components
__all__ = ["SHIFT_MASK_VALUE", "relative_position_index", "shifted_window_mask",
           "window_partition", "window_reverse"]

# Added to the attention logits of token pairs from different regions of a
# shifted window (the value of the reference implementations, not -inf).
SHIFT_MASK_VALUE = -100.0


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """(B, H, W, C) with H, W multiples of the window -> (B * nW, ws * ws, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_reverse(windows: Tensor, window_size: int, batch: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nW, ws * ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(batch, height // window_size, width // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, c)


def relative_position_index(window_size: int) -> Tensor:
    """(N, N) index into the (2 ws - 1)^2 bias table for each token pair of a window."""
    rows, cols = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    d_row = rows[:, None] - rows[None, :] + window_size - 1
    d_col = cols[:, None] - cols[None, :] + window_size - 1
    return d_row * (2 * window_size - 1) + d_col


def shifted_window_mask(height: int, width: int, window_size: int, shift: tuple[int, int],
                        device=None) -> Tensor:
    """(nW, N, N) additive mask for a map rolled by ``-shift``.

    After the cyclic roll, the last window along a shifted axis holds tokens
    from two sides of the map; tokens may only attend to tokens of their own
    region. ``height``/``width`` are the padded sizes.
    """
    def region_ids(length: int, s: int) -> Tensor:
        ids = torch.zeros(length, dtype=torch.long, device=device)
        if s > 0:
            ids[length - window_size:length - s] = 1
            ids[length - s:] = 2
        return ids

    regions = region_ids(height, shift[0])[:, None] * 3 + region_ids(width, shift[1])[None, :]
    regions = window_partition(regions[None, :, :, None], window_size).squeeze(-1)  # nW, N
    different = regions[:, :, None] != regions[:, None, :]
    return torch.zeros(different.shape, device=device).masked_fill_(different, SHIFT_MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside (shifted) windows with a relative position bias."""

    def __init__(self, dims: int, num_heads: int, window_size: int):
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.qkv = nn.Linear(dims, dims * 3)
        self.proj = nn.Linear(dims, dims)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Derived from the window size alone, so not part of the state dict.
        self.register_buffer("relative_position_index", relative_position_index(window_size),
                             persistent=False)

    def relative_position_bias(self) -> Tensor:
        """(heads, N, N) bias gathered from the table."""
        n = self.window_size ** 2
        bias = self.relative_position_bias_table[self.relative_position_index.flatten()]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: Tensor, shift: tuple[int, int], shift_mask: Tensor | None) -> Tensor:
        """``x``: (B, Hp, Wp, C), already padded to window multiples."""
        b, h, w, c = x.shape
        ws, heads = self.window_size, self.num_heads
        if shift_mask is not None:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        windows = window_partition(x, ws)  # B*nW, N, C
        num_windows, n = windows.shape[0] // b, windows.shape[1]

        qkv = self.qkv(windows).view(b * num_windows, n, 3, heads, c // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B*nW, heads, N, d
        bias = self.relative_position_bias().unsqueeze(0)  # 1, heads, N, N
        if shift_mask is not None:  # one mask per window, repeated over the batch
            bias = (bias + shift_mask.unsqueeze(1)).unsqueeze(0).expand(b, -1, -1, -1, -1)
            bias = bias.reshape(b * num_windows, heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        out = out.transpose(1, 2).reshape(-1, n, c)
        out = window_reverse(self.proj(out), ws, b, h, w)
        if shift_mask is not None:
            out = torch.roll(out, shifts=shift, dims=(1, 2))
        return out


class SwinBlock(nn.Module):
    """Pre-norm transformer block: (shifted) window attention, then an MLP."""

    def __init__(self, dims: int, num_heads: int, window_size: int, shifted: bool,
                 mlp_ratio: float, drop_path: float):
        super().__init__()
        self.window_size = window_size
        self.shifted = shifted
        self.norm1 = nn.LayerNorm(dims)
        self.attn = WindowAttention(dims, num_heads, window_size)
        self.norm2 = nn.LayerNorm(dims)
        self.mlp = MLP(dims, [int(dims * mlp_ratio), dims], activation_layer=nn.GELU,
                       inplace=None, dropout=0.0)
        self.drop_path = StochasticDepth(drop_path, "row")

    def forward(self, x: Tensor, shift: tuple[int, int], shift_mask: Tensor | None) -> Tensor:
        b, h, w, _ = x.shape
        ws = self.window_size
        y = self.norm1(x)
        pad_h, pad_w = (-h) % ws, (-w) % ws
        if pad_h or pad_w:  # zero-pad after the norm, like the reference
            y = F.pad(y, (0, 0, 0, pad_w, 0, pad_h))
        y = self.attn(y, shift, shift_mask if self.shifted else None)
        if pad_h or pad_w:
            y = y[:, :h, :w]
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhoods -> one token: (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C)."""

    def __init__(self, dims: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dims)
        self.reduction = nn.Linear(4 * dims, 2 * dims, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        h, w = x.shape[1] // 2, x.shape[2] // 2
        # Concatenation order (row, col) offsets: (0,0), (1,0), (0,1), (1,1),
        # the order of the original implementation and torchvision.
        x = x.view(b, h, 2, w, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h, w, 4 * c)
        return self.reduction(self.norm(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection; pads the image to patch multiples first."""

    def __init__(self, in_channels: int, dims: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dims, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dims)

    def forward(self, images: Tensor) -> Tensor:
        p = self.patch_size
        pad_h, pad_w = (-images.shape[2]) % p, (-images.shape[3]) % p
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))
        return self.norm(self.proj(images).permute(0, 2, 3, 1))


class SwinStage(nn.Module):
    """Optional patch merging, then ``depth`` blocks alternating plain and shifted windows."""

    def __init__(self, in_dims: int, dims: int, depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float, drop_path: Sequence[float], downsample: bool):
        super().__init__()
        self.window_size = window_size
        self.downsample = PatchMerging(in_dims) if downsample else None
        self.blocks = nn.ModuleList(
            SwinBlock(dims, num_heads, window_size, shifted=i % 2 == 1, mlp_ratio=mlp_ratio,
                      drop_path=drop_path[i])
            for i in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        ws = self.window_size
        padded = [-(-size // ws) * ws for size in x.shape[1:3]]
        # No shift along an axis that one window covers entirely.
        shift = tuple(ws // 2 if size > ws else 0 for size in padded)
        mask = None
        if any(shift) and len(self.blocks) > 1:
            mask = shifted_window_mask(padded[0], padded[1], ws, shift, device=x.device)
        for block in self.blocks:
            x = block(x, shift, mask)
        return x
