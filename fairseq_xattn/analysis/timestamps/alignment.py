"""Token x frame score maps -> one frame span per token (numpy only).

Input: a stack of maps ``K x I x T'`` (K selected attention heads, or one saliency map pooled to the
encoder grid) over the content tokens, optionally followed by the EOS row.  A method (registry
:data:`TIMESTAMP_METHODS`) first prepares each map on its own, then decodes the mean of the prepared
maps into half-open frame spans ``[first, end)`` per token row:

* ``dtw``     as openai/whisper's ``timing.py``: each map z-normalised per frame over the tokens
              (population std; a constant frame counts std 1, see
              :func:`~fairseq_xattn.maps.normalisers.frame_mean_variance`), median-filtered along
              frames (width 7, reflect padding), mean over maps, then the monotonic DTW path from
              (0, 0) to (I-1, T'-1) over the cost ``-matrix`` (steps: next token and frame, next frame,
              next token).  A token's span is the frames its row holds on the path: every token and
              every frame is covered, in order.  With the EOS row kept (default, as Whisper keeps the
              row that predicts end-of-text), trailing silence goes to EOS, not to the last word.
* ``argmax``  the peak frame of each token's row (AlignAtt's attended frame); a token lasts from its
              peak to the next row's peak (at least one frame), so word ends come from the next
              word's onset, or from the EOS row's peak for the last word.
* ``mass``    the central interval holding :data:`MASS_SHARE` of the row's attention mass (rows
              clipped at 0 and normalised to sum 1): the frames between the (1-share)/2 and
              (1+share)/2 quantiles of the cumulative mass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ...maps.normalisers import frame_mean_variance
from ...registry import Registry

#: Median filter width of Whisper's word timing (``medfilt_width``).
MEDIAN_FILTER_WIDTH = 7
#: Share of a token's attention mass inside its span for method ``mass``.
MASS_SHARE = 0.8


@dataclass
class TokenSpans:
    """Half-open frame spans ``[first[i], end[i])`` of the ``I`` rows; ``path``: the DTW path as
    ``(rows, frames)`` index arrays when the method has one."""

    first: np.ndarray
    end: np.ndarray
    path: Optional[tuple] = None

    def __post_init__(self):
        self.first = np.asarray(self.first, dtype=np.int64)
        self.end = np.asarray(self.end, dtype=np.int64)


@dataclass(frozen=True)
class AlignmentMethod:
    """``prepare``: ``K x I x T'`` -> ``K x I x T'`` (each map alone, so prepared maps of single heads
    can be averaged into any selection); ``decode``: mean prepared map ``I x T'`` -> spans."""

    prepare: Callable[[np.ndarray], np.ndarray]
    decode: Callable[[np.ndarray], TokenSpans]
    description: str


TIMESTAMP_METHODS: "Registry[AlignmentMethod]" = Registry("timestamp method")


def _stack(maps: np.ndarray) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[1] == 0 or maps.shape[2] == 0:
        raise ValueError(f"expected maps K x I x T' with I, T' > 0, got shape {maps.shape}")
    return maps


def median_filter(x: np.ndarray, width: int = MEDIAN_FILTER_WIDTH) -> np.ndarray:
    """Running median of odd ``width`` along the last axis, reflect-padded (edges not repeated);
    returned unchanged when the axis is too short to reflect (``T' <= width // 2``), as Whisper does."""
    if width < 1 or width % 2 == 0:
        raise ValueError(f"median filter width must be odd and positive, got {width}")
    x = np.asarray(x, dtype=np.float64)
    pad = width // 2
    if pad == 0 or x.shape[-1] <= pad:
        return x.copy()
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.median(windows, axis=-1)


def whisper_prepare(maps: np.ndarray, width: int = MEDIAN_FILTER_WIDTH) -> np.ndarray:
    """Whisper's preparation of each map ``I x T'`` of ``K x I x T'``: z-score per frame over the
    tokens, then the median filter along frames."""
    maps = _stack(maps)
    return np.stack([median_filter(frame_mean_variance(m), width) for m in maps])


def dtw_path(cost: np.ndarray):
    """Minimum-cost monotonic path through ``cost`` (``N x M``) from (0, 0) to (N-1, M-1) with steps
    (+1, +1), (0, +1), (+1, 0); ties prefer the diagonal, then the frame step.

    Returns ``(rows, cols)``: int arrays of the path's cells in order; every row and every column of
    ``cost`` appears, both non-decreasing.
    """
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    step = np.zeros((n + 1, m + 1), dtype=np.int8)  # 0 diagonal, 1 frame step (j-1), 2 token step (i-1)
    # Anti-diagonals d = i + j depend only on d-1 and d-2: each is one vectorised update.
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        candidates = np.stack([acc[i - 1, j - 1], acc[i, j - 1], acc[i - 1, j]])
        best = np.argmin(candidates, axis=0)
        acc[i, j] = cost[i - 1, j - 1] + candidates[best, np.arange(len(i))]
        step[i, j] = best
    rows, cols = [], []
    i, j = n, m
    while True:
        rows.append(i - 1)
        cols.append(j - 1)
        if i == 1 and j == 1:
            break
        s = step[i, j]
        if i == 1:  # only frame steps are left along the first row
            s = 1
        elif j == 1:
            s = 2
        if s == 0:
            i, j = i - 1, j - 1
        elif s == 1:
            j -= 1
        else:
            i -= 1
    return np.array(rows[::-1], dtype=np.int64), np.array(cols[::-1], dtype=np.int64)


def spans_of_path(rows: np.ndarray, cols: np.ndarray, n_rows: int) -> TokenSpans:
    """Frame span of each row along a path that visits every row."""
    first = np.full(n_rows, -1, dtype=np.int64)
    end = np.zeros(n_rows, dtype=np.int64)
    for r, c in zip(rows, cols):
        if first[r] < 0:
            first[r] = c
        end[r] = max(end[r], c + 1)
    if (first < 0).any():
        raise ValueError(f"the path misses rows {np.flatnonzero(first < 0).tolist()}")
    return TokenSpans(first, end, (rows, cols))


def decode_dtw(matrix: np.ndarray) -> TokenSpans:
    matrix = np.asarray(matrix, dtype=np.float64)
    rows, cols = dtw_path(-matrix)
    return spans_of_path(rows, cols, matrix.shape[0])


def decode_argmax(matrix: np.ndarray) -> TokenSpans:
    peaks = np.argmax(np.asarray(matrix, dtype=np.float64), axis=1)
    end = peaks + 1
    end[:-1] = np.maximum(peaks[1:], peaks[:-1] + 1)
    return TokenSpans(peaks, end)


def mass_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows clipped at 0 and normalised to sum 1 (an all-zero row becomes uniform): ``I x T'``."""
    x = np.clip(np.asarray(matrix, dtype=np.float64), 0.0, None)
    total = x.sum(axis=1, keepdims=True)
    return np.where(total > 0, x / np.where(total > 0, total, 1.0), 1.0 / x.shape[1])


def decode_mass(matrix: np.ndarray, share: float = MASS_SHARE) -> TokenSpans:
    cumulative = np.cumsum(mass_rows(matrix), axis=1)
    low = (1.0 - share) / 2.0
    tol = 1e-9  # float sums of exact shares (0.25 + ... ) must reach their quantile
    first = np.argmax(cumulative > low + tol, axis=1)
    end = np.argmax(cumulative >= 1.0 - low - tol, axis=1) + 1
    return TokenSpans(first, np.maximum(end, first + 1))


def _identity(maps: np.ndarray) -> np.ndarray:
    return _stack(maps)


TIMESTAMP_METHODS.register("dtw")(AlignmentMethod(
    whisper_prepare, decode_dtw, "Whisper: z-score per frame, median filter 7, mean, monotonic DTW"))
TIMESTAMP_METHODS.register("argmax")(AlignmentMethod(
    _identity, decode_argmax, "peak frame per token (AlignAtt); a token lasts until the next token's peak"))
TIMESTAMP_METHODS.register("mass")(AlignmentMethod(
    _identity, decode_mass, f"central interval holding {MASS_SHARE:.0%} of each token's attention mass"))


def align(maps: np.ndarray, method: str = "dtw") -> TokenSpans:
    """Spans of the rows of ``maps`` (``K x I x T'``, or one map ``I x T'``) under ``method``."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 2:
        maps = maps[None]
    m = TIMESTAMP_METHODS.get(method)
    return m.decode(m.prepare(maps).mean(axis=0))
