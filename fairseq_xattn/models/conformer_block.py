"""One Conformer block (Gulati et al. 2020): x + FFN/2, + MHSA(rel pos), + Conv, + FFN/2, LayerNorm.

Every sub-module is pre-norm with its own residual.  Frame-local modules (FFN, LayerNorm) need no
masking; the convolution module zeroes padded frames before its depthwise convolution and computes
batch-norm statistics on valid frames only, so padding never leaks into valid frames.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .channels_last_conv import ChannelsLastConv1d
from .dropout import Dropout
from .masking import zero_padded_frames
from .rel_pos_attention import RelPositionMultiHeadAttention


class FeedForwardModule(nn.Module):
    """LayerNorm -> Linear(D, FFN) -> SiLU -> dropout -> Linear(FFN, D) -> dropout; ``B x T x D``."""

    def __init__(self, embed_dim: int, ffn_dim: int, dropout: float, activation_dropout: float):
        super().__init__()
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, embed_dim)
        self.activation_dropout = Dropout(activation_dropout)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation_dropout(F.silu(self.fc1(self.layer_norm(x))))
        return self.dropout(self.fc2(x))


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over channels whose training statistics come from valid frames only.

    Input ``B x T x C`` (channels last) with padding_mask ``B x T``; padded frames come out as 0.
    Same parameters and running buffers as ``nn.BatchNorm1d``, so eval mode is the plain
    per-channel affine map.
    """

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        valid = ~padding_mask
        normed = super().forward(x[valid])  # N x C, statistics over the N valid frames
        return x.new_zeros(x.shape).index_put((valid,), normed)


class ConvolutionModule(nn.Module):
    """LayerNorm -> pointwise (D -> 2D) -> GLU -> depthwise (kernel K) -> BatchNorm -> SiLU ->
    pointwise (D -> D) -> dropout; ``B x T x D`` with padding_mask ``B x T``.

    The pointwise convolutions are ``nn.Linear`` on channels-last frames (the same weights as a
    kernel-1 Conv1d, but a plain matrix product instead of a slow 1x1 convolution and two transposes).
    """

    def __init__(self, embed_dim: int, kernel_size: int, dropout: float):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"depthwise convolution kernel must be odd ('same' padding), got {kernel_size}")
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.pointwise_in = nn.Linear(embed_dim, 2 * embed_dim)
        self.depthwise = ChannelsLastConv1d(
            embed_dim, embed_dim, kernel_size, padding=kernel_size // 2, groups=embed_dim
        )
        self.batch_norm = MaskedBatchNorm1d(embed_dim)
        self.pointwise_out = nn.Linear(embed_dim, embed_dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        x = F.glu(self.pointwise_in(self.layer_norm(x)), dim=-1)  # B x T x D
        # Padded frames must read as the convolution's zero padding for the frames next to them.
        x = zero_padded_frames(x, padding_mask, channel_dim=-1)
        x = self.depthwise(x)
        x = F.silu(self.batch_norm(x, padding_mask))
        return self.dropout(self.pointwise_out(x))


class ConformerBlock(nn.Module):
    """``B x T x D`` -> ``B x T x D`` (padding_mask ``B x T``, pos_enc ``(2T-1) x D``)."""

    def __init__(
        self,
        embed_dim: int,
        ffn_dim: int,
        num_heads: int,
        depthwise_kernel_size: int,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
    ):
        super().__init__()
        self.ffn1 = FeedForwardModule(embed_dim, ffn_dim, dropout, activation_dropout)
        self.attn_layer_norm = nn.LayerNorm(embed_dim)
        self.self_attn = RelPositionMultiHeadAttention(embed_dim, num_heads, attention_dropout)
        self.attn_dropout = Dropout(dropout)
        self.conv = ConvolutionModule(embed_dim, depthwise_kernel_size, dropout)
        self.ffn2 = FeedForwardModule(embed_dim, ffn_dim, dropout, activation_dropout)
        self.final_layer_norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor, pos_enc: torch.Tensor) -> torch.Tensor:
        x = torch.add(x, self.ffn1(x), alpha=0.5)  # half-step (Macaron) FFN
        x = x + self.attn_dropout(self.self_attn(self.attn_layer_norm(x), pos_enc, padding_mask))
        x = x + self.conv(x, padding_mask)
        x = torch.add(x, self.ffn2(x), alpha=0.5)
        return self.final_layer_norm(x)
