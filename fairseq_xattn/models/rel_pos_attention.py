"""Multi-head self-attention with relative sinusoidal positions (Transformer-XL, as in Conformer).

score(i, j) = [(q_i + u) . k_j + (q_i + v) . W_pos p(i - j)] / sqrt(d_k), where p(r) is the
sinusoidal encoding of the relative position r (ESPnet's ``RelPositionMultiHeadedAttention``,
"latest" version with positions T-1 .. -(T-1)).  The positional term is computed once per layer as
a ``B x H x T x T`` bias and handed to ``F.scaled_dot_product_attention`` together with the
key-padding mask, so inference (many forward passes for SPES) runs in torch's fused kernel.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dropout import dropout


def relative_positional_encoding(length: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Sinusoidal encodings of relative positions T-1, T-2, ..., -(T-1): ``(2T - 1) x D``.

    Row k encodes position r = T - 1 - k; sin on even features, cos on odd ones (Vaswani et al.).
    """
    if dim % 2 != 0:
        raise ValueError(f"relative positional encoding needs an even width, got {dim}")
    positions = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32).unsqueeze(1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = positions * inv_freq  # (2T-1) x D/2
    enc = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(1)
    return enc if dtype is None else enc.to(dtype)


def relative_shift(scores: torch.Tensor) -> torch.Tensor:
    """``B x H x T x (2T-1)`` scores against positions T-1..-(T-1) -> ``B x H x T x T``.

    Output [i, j] = input [i, T - 1 - (i - j)], i.e. the score for relative position i - j
    (Transformer-XL's pad-and-reshape trick, no loop over time).
    """
    b, h, t, n_pos = scores.shape
    padded = torch.cat([scores.new_zeros(b, h, t, 1), scores], dim=-1)  # B x H x T x 2T
    padded = padded.view(b, h, n_pos + 1, t)
    return padded[:, :, 1:].reshape(b, h, t, n_pos)[:, :, :, : n_pos // 2 + 1]


class RelPositionMultiHeadAttention(nn.Module):
    """Self-attention ``B x T x D`` -> ``B x T x D`` with relative positions; padded keys masked.

    Parameters: q, k, v, out projections (with bias), ``linear_pos`` (no bias) and the per-head
    biases ``pos_bias_u`` / ``pos_bias_v`` (``H x d_k``).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"encoder width {embed_dim} is not divisible by {num_heads} attention heads")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.linear_pos = nn.Linear(embed_dim, embed_dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(num_heads, self.head_dim))
        self.pos_bias_v = nn.Parameter(torch.empty(num_heads, self.head_dim))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``B x T x D`` -> ``B x H x T x d_k``."""
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, pos_enc: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """x ``B x T x D``; pos_enc ``(2T-1) x D`` from :func:`relative_positional_encoding`;
        padding_mask ``B x T`` (True = padded key)."""
        b, t, _ = x.shape
        q = self._heads(self.q_proj(x))
        k = self._heads(self.k_proj(x))
        v = self._heads(self.v_proj(x))
        p = self.linear_pos(pos_enc).view(1, -1, self.num_heads, self.head_dim).transpose(1, 2)  # 1 x H x 2T-1 x dk

        q_v = q + self.pos_bias_v.unsqueeze(1)
        pos_scores = relative_shift(torch.matmul(q_v, p.transpose(-2, -1)))  # B x H x T x T
        scale = 1.0 / math.sqrt(self.head_dim)
        q_u = q + self.pos_bias_u.unsqueeze(1)
        key_mask = padding_mask.view(b, 1, 1, t)
        # Padded keys get -inf; every query row keeps at least one valid key, so no NaN.
        if self.training and self.dropout > 0:
            # With attention dropout torch's CPU kernels fall back to an unfused path that also scans
            # the mask for all -inf rows; the explicit computation is the same maths, and cheaper.
            scores = torch.matmul(q_u, k.transpose(-2, -1)).add_(pos_scores).mul_(scale)
            weights = dropout(torch.softmax(scores.masked_fill(key_mask, float("-inf")), dim=-1), self.dropout)
            context = torch.matmul(weights, v)
        else:
            bias = (pos_scores * scale).masked_fill(key_mask, float("-inf"))
            context = F.scaled_dot_product_attention(q_u, k, v, attn_mask=bias, scale=scale)  # B x H x T x dk
        return self.out_proj(context.transpose(1, 2).reshape(b, t, self.embed_dim))
