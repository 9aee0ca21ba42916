"""DETR's encoder-decoder transformer (Carion et al. 2020, sec. 3.2 and appendix A.3).

Post-norm layers (``x = norm(x + dropout(sublayer(x)))``) on
``torch.nn.MultiheadAttention``. The positional encodings are added to the
queries and keys of every attention, never to the values: the spatial
encoding of the image features in the encoder and in the decoder's
cross-attention, the learned object queries in the decoder. The decoder
starts from zeros and returns the output of every layer after one shared
final LayerNorm (for the auxiliary losses).

Tensors are sequence-first inside (``[S, B, C]``, as ``nn.MultiheadAttention``
defaults to); :meth:`DETRTransformer.forward` takes and returns the usual
layouts. Module names follow ``torch.nn.TransformerEncoderLayer`` /
``TransformerDecoderLayer`` (``self_attn``, ``multihead_attn``, ``linear1``,
``linear2``, ``norm1``..``norm3``), so their state dicts load as they are.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DETRTransformer", "DETREncoderLayer", "DETRDecoderLayer"]

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def _with_pos(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


class _FeedForward(nn.Module):
    """Shared by both layers: ``linear2(dropout(act(linear1(x))))``."""

    def _init_ffn(self, d_model: int, dim_feedforward: int, dropout: float, activation: str):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"{type(self).__name__}: 'activation' must be one of "
                             f"{sorted(_ACTIVATIONS)}, got {activation!r}")
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.activation = _ACTIVATIONS[activation]

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class DETREncoderLayer(_FeedForward):
    """Self-attention (pos on q, k) + FFN, each followed by add & LayerNorm."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str = "relu"):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self._init_ffn(d_model, dim_feedforward, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, src: Tensor, key_padding_mask: Tensor | None = None,
                pos: Tensor | None = None) -> Tensor:
        q = k = _with_pos(src, pos)
        attended = self.self_attn(q, k, src, key_padding_mask=key_padding_mask,
                                  need_weights=False)[0]
        src = self.norm1(src + self.dropout1(attended))
        return self.norm2(src + self.dropout2(self._ffn(src)))


class DETRDecoderLayer(_FeedForward):
    """Self-attention among queries, cross-attention to the memory, FFN.

    ``self_attn_mask`` ([N, N] bool, True = blocked; None by default) keeps
    queries from seeing others (DN-DETR's denoising groups);
    ``cross_query_pos`` (None: ``query_pos``) is the positional query of the
    cross-attention alone (Conditional DETR's spatial query)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str = "relu"):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self._init_ffn(d_model, dim_feedforward, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor, memory_key_padding_mask: Tensor | None = None,
                pos: Tensor | None = None, query_pos: Tensor | None = None,
                self_attn_mask: Tensor | None = None,
                cross_query_pos: Tensor | None = None) -> Tensor:
        q = k = _with_pos(tgt, query_pos)
        attended = self.self_attn(q, k, tgt, attn_mask=self_attn_mask, need_weights=False)[0]
        tgt = self.norm1(tgt + self.dropout1(attended))
        cross_pos = query_pos if cross_query_pos is None else cross_query_pos
        attended = self.multihead_attn(_with_pos(tgt, cross_pos), _with_pos(memory, pos), memory,
                                       key_padding_mask=memory_key_padding_mask,
                                       need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout2(attended))
        return self.norm3(tgt + self.dropout3(self._ffn(tgt)))


class _Encoder(nn.Module):
    def __init__(self, layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, src, key_padding_mask=None, pos=None):
        for layer in self.layers:
            src = layer(src, key_padding_mask=key_padding_mask, pos=pos)
        return src


class _Decoder(nn.Module):
    def __init__(self, layer: nn.Module, num_layers: int, d_model: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt, memory, memory_key_padding_mask=None, pos=None, query_pos=None):
        outputs = []
        for layer in self.layers:
            tgt = layer(tgt, memory, memory_key_padding_mask=memory_key_padding_mask, pos=pos,
                        query_pos=query_pos)
            outputs.append(self.norm(tgt))
        return torch.stack(outputs)


class DETRTransformer(nn.Module):
    """DETR's transformer: ``num_encoder_layers`` + ``num_decoder_layers``
    post-norm layers of width ``d_model``.

    ``forward(src [B, C, H, W], mask [B, H, W] (True = padding),
    query_embed [Q, C], pos [B, C, H, W]) -> (hs [L, B, Q, C], memory
    [B, C, H, W])`` where ``hs`` holds every decoder layer's normalised
    output. Any module with this ``forward`` and a ``d_model`` attribute can
    replace it in :class:`~toolbox.models.heads.detr_head.DETRHead`.
    """

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu"):
        super().__init__()
        if not isinstance(d_model, int) or not isinstance(nhead, int) or nhead < 1 \
                or d_model < 1 or d_model % nhead:
            raise ValueError(f"DETRTransformer: 'd_model' ({d_model!r}) must be a positive int "
                             f"divisible by 'nhead' ({nhead!r})")
        if not isinstance(num_decoder_layers, int) or num_decoder_layers < 1:
            raise ValueError(f"DETRTransformer: 'num_decoder_layers' must be >= 1, got "
                             f"{num_decoder_layers!r}")
        if not isinstance(num_encoder_layers, int) or num_encoder_layers < 0:
            raise ValueError(f"DETRTransformer: 'num_encoder_layers' must be >= 0, got "
                             f"{num_encoder_layers!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"DETRTransformer: 'dropout' must be in [0, 1), got {dropout}")
        self.d_model = d_model
        self.nhead = nhead
        self.encoder = _Encoder(DETREncoderLayer(d_model, nhead, dim_feedforward, dropout,
                                                 activation), num_encoder_layers)
        self.decoder = _Decoder(DETRDecoderLayer(d_model, nhead, dim_feedforward, dropout,
                                                 activation), num_decoder_layers, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Xavier-uniform for every matrix (as DETR)."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def encode(self, src: Tensor, mask: Tensor, pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The encoder alone, sequence first: ``(memory [HW, B, C], mask
        [B, HW], pos [HW, B, C])`` from the :meth:`forward` layouts (for
        decoders driven from outside, e.g. anchor-box queries)."""
        self._check_inputs(src, mask, pos)
        src = src.flatten(2).permute(2, 0, 1)
        pos = pos.flatten(2).permute(2, 0, 1)
        mask = mask.flatten(1)
        return self.encoder(src, key_padding_mask=mask, pos=pos), mask, pos

    def _check_inputs(self, src: Tensor, mask: Tensor, pos: Tensor) -> None:
        if src.dim() != 4 or src.shape[1] != self.d_model:
            raise ValueError(f"DETRTransformer: 'src' must be [B, {self.d_model}, H, W], got "
                             f"{tuple(src.shape)}")
        if mask.shape != (src.shape[0], *src.shape[2:]) or pos.shape != src.shape:
            raise ValueError(f"DETRTransformer: 'mask' {tuple(mask.shape)} / 'pos' "
                             f"{tuple(pos.shape)} do not match 'src' {tuple(src.shape)}")

    def forward(self, src: Tensor, mask: Tensor, query_embed: Tensor, pos: Tensor
                ) -> tuple[Tensor, Tensor]:
        self._check_inputs(src, mask, pos)
        batch, channels, h, w = src.shape
        src = src.flatten(2).permute(2, 0, 1)            # [HW, B, C]
        pos = pos.flatten(2).permute(2, 0, 1)
        query_pos = query_embed[:, None, :].expand(-1, batch, -1)  # [Q, B, C]
        mask = mask.flatten(1)                            # [B, HW]
        memory = self.encoder(src, key_padding_mask=mask, pos=pos)
        tgt = torch.zeros_like(query_pos)
        hs = self.decoder(tgt, memory, memory_key_padding_mask=mask, pos=pos,
                          query_pos=query_pos)            # [L, Q, B, C]
        return hs.transpose(1, 2), memory.permute(1, 2, 0).reshape(batch, channels, h, w)
