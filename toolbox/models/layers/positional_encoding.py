"""2D positional encodings of a feature map (DETR, Carion et al. 2020, sec. 3.2).

Both take the padding mask ``[B, H, W]`` (True = padding) and return
``[B, 2 * num_feats, H, W]``: the first ``num_feats`` channels encode y,
the last ``num_feats`` encode x.

* :class:`SinePositionalEncoding`: the fixed "Attention is all you need"
  sinusoids of the running count of valid cells along each axis, normalised
  by the count at the last valid cell and multiplied by ``scale`` (2 pi), so
  an image has the same encoding alone or padded in a batch. Channel ``2i``
  is ``sin(p / T^(2i / F))`` and ``2i + 1`` is ``cos(p / T^(2i / F))``.
* :class:`LearnedPositionalEncoding`: a learned embedding per row and per
  column (at most ``row_num_embed`` x ``col_num_embed`` cells).

:func:`build_positional_encoding` builds either from a config
(``dict(type='sine' | 'learned', ...)``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["SinePositionalEncoding", "LearnedPositionalEncoding", "build_positional_encoding"]


def _check_mask(mask: Tensor, owner: str) -> None:
    if not isinstance(mask, Tensor) or mask.dim() != 3 or mask.dtype != torch.bool:
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{owner}: 'mask' must be a bool Tensor[B, H, W] (True = padding), "
                         f"got {shape}")


class SinePositionalEncoding(nn.Module):
    """Fixed sine/cosine encoding of (y, x), computed from the padding mask.

    Args:
        num_feats: channels per axis (half of ``d_model``); must be even.
        temperature: the wavelength base ``T`` (10000).
        normalize: divide the cumulative positions by their last value
            (positions in (0, 1]) before multiplying by ``scale``.
        scale: the factor applied after normalising (2 pi).
        eps: added to the normaliser.
    """

    def __init__(self, num_feats: int = 128, temperature: float = 10000.0,
                 normalize: bool = True, scale: float = 2 * math.pi, eps: float = 1e-6):
        super().__init__()
        if not isinstance(num_feats, int) or num_feats < 2 or num_feats % 2:
            raise ValueError(f"SinePositionalEncoding: 'num_feats' must be a positive even int, "
                             f"got {num_feats!r}")
        if temperature <= 0:
            raise ValueError(f"SinePositionalEncoding: 'temperature' must be > 0, "
                             f"got {temperature}")
        self.num_feats = num_feats
        self.temperature = float(temperature)
        self.normalize = bool(normalize)
        self.scale = float(scale)
        self.eps = float(eps)

    def forward(self, mask: Tensor) -> Tensor:
        _check_mask(mask, "SinePositionalEncoding")
        valid = (~mask).float()
        y = valid.cumsum(1)  # 1-based row index of each valid cell
        x = valid.cumsum(2)
        if self.normalize:
            y = y / (y[:, -1:, :] + self.eps) * self.scale
            x = x / (x[:, :, -1:] + self.eps) * self.scale
        index = torch.arange(self.num_feats, dtype=torch.float32, device=mask.device)
        pair = torch.div(index, 2, rounding_mode="floor")  # channels 2i, 2i + 1 share
        dim_t = self.temperature ** (2 * pair / self.num_feats)
        pos_x = x[..., None] / dim_t
        pos_y = y[..., None] / dim_t
        # interleave: channel 2i = sin, 2i + 1 = cos of the same frequency
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).contiguous()

    def extra_repr(self) -> str:
        return (f"num_feats={self.num_feats}, temperature={self.temperature}, "
                f"normalize={self.normalize}, scale={self.scale:.4f}")


class LearnedPositionalEncoding(nn.Module):
    """A learned embedding per row and per column (uniform init, as DETR).

    Args:
        num_feats: channels per axis (half of ``d_model``).
        row_num_embed: the largest feature-map height supported.
        col_num_embed: the largest feature-map width supported.
    """

    def __init__(self, num_feats: int = 128, row_num_embed: int = 50, col_num_embed: int = 50):
        super().__init__()
        for name, value in (("num_feats", num_feats), ("row_num_embed", row_num_embed),
                            ("col_num_embed", col_num_embed)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"LearnedPositionalEncoding: '{name}' must be a positive int, "
                                 f"got {value!r}")
        self.num_feats = num_feats
        self.row_embed = nn.Embedding(row_num_embed, num_feats)
        self.col_embed = nn.Embedding(col_num_embed, num_feats)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, mask: Tensor) -> Tensor:
        _check_mask(mask, "LearnedPositionalEncoding")
        batch, h, w = mask.shape
        if h > self.row_embed.num_embeddings or w > self.col_embed.num_embeddings:
            raise ValueError(f"LearnedPositionalEncoding: a {h}x{w} feature map exceeds the "
                             f"{self.row_embed.num_embeddings}x{self.col_embed.num_embeddings} "
                             "learned positions; raise 'row_num_embed' / 'col_num_embed'")
        y = self.row_embed(torch.arange(h, device=mask.device))  # [H, F]
        x = self.col_embed(torch.arange(w, device=mask.device))  # [W, F]
        pos = torch.cat((y[:, None, :].expand(h, w, -1), x[None, :, :].expand(h, w, -1)), dim=-1)
        return pos.permute(2, 0, 1)[None].expand(batch, -1, -1, -1)


_KINDS = {"sine": SinePositionalEncoding, "SinePositionalEncoding": SinePositionalEncoding,
          "learned": LearnedPositionalEncoding,
          "LearnedPositionalEncoding": LearnedPositionalEncoding}


def build_positional_encoding(cfg, num_feats: int) -> nn.Module:
    """Build from ``dict(type='sine' | 'learned', ...)`` (or return a module);
    ``num_feats`` fills the config when it does not set it."""
    from toolbox.registry import check_arguments
    if isinstance(cfg, nn.Module):
        return cfg
    if not isinstance(cfg, dict):
        raise TypeError(f"positional_encoding must be a dict config or a module, got {cfg!r}")
    cfg = dict(cfg)
    kind = cfg.pop("type", "sine")
    if kind not in _KINDS:
        raise ValueError(f"positional_encoding: unknown type {kind!r}; expected 'sine' or "
                         "'learned'")
    cfg.setdefault("num_feats", num_feats)
    check_arguments(_KINDS[kind], cfg, "positional_encoding")
    return _KINDS[kind](**cfg)
