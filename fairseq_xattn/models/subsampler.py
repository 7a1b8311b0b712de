"""Convolutional front end: two stride-2 1D convolutions over time (subsampling s = 4).

Like fairseq's ``Conv1dSubsampler`` (conv, GLU, conv, GLU), but padded input frames are zeroed
before each convolution so that a frame's output never depends on how much padding follows it.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .channels_last_conv import ChannelsLastConv1d
from .masking import lengths_to_padding_mask, zero_padded_frames


def subsampled_lengths(lengths: torch.Tensor, n_convs: int = 2) -> torch.Tensor:
    """Output length of ``n_convs`` convolutions with stride 2 and padding k // 2 (odd k).

    Each maps L to floor((L - 1) / 2) + 1 = ceil(L / 2), so two give T' = ceil(T / 4).
    """
    out = lengths.clone()
    for _ in range(n_convs):
        out = torch.div(out + 1, 2, rounding_mode="floor")
    return out


class Conv1dSubsampler(nn.Module):
    """``B x T x F`` features -> ``B x T' x D`` frames, T' = ceil(T / 4).

    Args:
        in_channels: F (80 filterbanks).
        mid_channels: channels of the first convolution (halved by its GLU).
        out_channels: D, the encoder width (the second convolution outputs 2 D for its GLU).
        kernel_size: odd kernel of both convolutions (5 in the paper), padding kernel_size // 2.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, kernel_size: int = 5):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"subsampler kernel size must be odd to keep T' = ceil(T/4), got {kernel_size}")
        if mid_channels % 2 != 0:
            raise ValueError(f"subsampler conv channels must be even (GLU halves them), got {mid_channels}")
        self.convs = nn.ModuleList(
            [
                ChannelsLastConv1d(in_channels, mid_channels, kernel_size, stride=2, padding=kernel_size // 2),
                ChannelsLastConv1d(mid_channels // 2, 2 * out_channels, kernel_size, stride=2, padding=kernel_size // 2),
            ]
        )

    def forward(self, features: torch.Tensor, lengths: torch.Tensor):
        """features ``B x T x F``, lengths ``B`` -> (``B x T' x D``, lengths ``B``)."""
        x = features
        for conv in self.convs:
            # Zero what lies beyond each utterance so it reads like the convolution's own zero padding.
            x = zero_padded_frames(x, lengths_to_padding_mask(lengths, x.size(1)), channel_dim=-1)
            x = F.glu(conv(x), dim=-1)
            lengths = subsampled_lengths(lengths, n_convs=1)
        return x, lengths
