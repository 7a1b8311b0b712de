"""Padding masks shared by the encoder modules (True marks a padded frame)."""
from __future__ import annotations

from typing import Optional

import torch


def lengths_to_padding_mask(lengths: torch.Tensor, max_len: Optional[int] = None) -> torch.Tensor:
    """lengths ``B`` -> mask ``B x T`` with True on padded frames."""
    if max_len is None:
        max_len = int(lengths.max())
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)


def zero_padded_frames(x: torch.Tensor, padding_mask: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """Zero the padded frames of ``x`` (``B x C x T`` with channel_dim=1, ``B x T x C`` with -1)."""
    if not bool(padding_mask.any()):
        return x
    mask = padding_mask.unsqueeze(1) if channel_dim == 1 else padding_mask.unsqueeze(-1)
    return x.masked_fill(mask, 0.0)
