"""Pooling of input saliency ``I x T x F`` to the cross-attention grid ``I x T'`` (numpy only).

Encoder frame j sees the input window ``[j*s, (j+1)*s)`` (s = 4 for two stride-2 convolutions,
kernel 5, padding 2, which give ``T' = ceil(T / s)``); the last window holds ``T - (T'-1)*s``
frames and may be partial.  Registry :data:`AGGREGATORS` (docs/method.md section 5, paper Appendix A):

* ``max2d``           max over the window's frames and all frequency bins (paper default);
* ``avg2d``           mean over the window's frames and all frequency bins;
* ``maxfreq_avgtime`` max over frequency, then mean over the window's frames.

The inverse for deletion, :func:`upsample_nearest`, copies encoder frame j to its window's input
frames (frame t takes the value of ``t // s``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..geometry import encoder_length
from ..registry import Registry

Aggregator = Callable[[np.ndarray, int], np.ndarray]

AGGREGATORS: "Registry[Aggregator]" = Registry("aggregator")
register_aggregator = AGGREGATORS.register


def _windows(sal: np.ndarray, s: int) -> np.ndarray:
    """``I x T x F`` -> ``I x T' x s x F`` padded with NaN after the last frame."""
    sal = np.asarray(sal, dtype=np.float64)
    if sal.ndim != 3:
        raise ValueError(f"expected input saliency I x T x F, got shape {sal.shape}")
    if s < 1:
        raise ValueError(f"subsampling must be >= 1, got {s}")
    n_tok, n_frames, n_freq = sal.shape
    t_enc = encoder_length(n_frames, s)
    padded = np.full((n_tok, t_enc * s, n_freq), np.nan)
    padded[:, :n_frames] = sal
    return padded.reshape(n_tok, t_enc, s, n_freq)


@register_aggregator("max2d")
def max2d(sal: np.ndarray, s: int) -> np.ndarray:
    """``I x T x F`` -> ``I x T'``: max over each ``s x F`` window."""
    return np.nanmax(_windows(sal, s), axis=(2, 3))


@register_aggregator("avg2d")
def avg2d(sal: np.ndarray, s: int) -> np.ndarray:
    """``I x T x F`` -> ``I x T'``: mean over each window's real cells."""
    return np.nanmean(_windows(sal, s), axis=(2, 3))


@register_aggregator("maxfreq_avgtime")
def maxfreq_avgtime(sal: np.ndarray, s: int) -> np.ndarray:
    """``I x T x F`` -> ``I x T'``: max over F, then mean over the window's real frames."""
    per_frame = np.max(_windows(sal, s), axis=3)  # NaN rows stay NaN (padding frames)
    return np.nanmean(per_frame, axis=2)


def aggregate(sal: np.ndarray, method: str = "max2d", subsampling: int = 4) -> np.ndarray:
    """Pool ``I x T x F`` saliency to ``I x T'`` with a registered aggregator."""
    try:
        fn = AGGREGATORS[method]
    except KeyError:
        raise ValueError(f"unknown aggregation {method!r}; choose from {sorted(AGGREGATORS)}") from None
    return fn(sal, int(subsampling))


def upsample_nearest(enc_map: np.ndarray, n_frames: int, subsampling: int = 4) -> np.ndarray:
    """``... x T'`` -> ``... x T``: input frame t takes encoder frame ``min(t // s, T'-1)``."""
    enc_map = np.asarray(enc_map)
    idx = np.minimum(np.arange(int(n_frames)) // int(subsampling), enc_map.shape[-1] - 1)
    return enc_map[..., idx]
