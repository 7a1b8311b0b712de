"""Pearson correlation of two maps: the one definition the analysis and the early stop use."""
from __future__ import annotations

import numpy as np


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of the flattened maps (any equal shapes); NaN when either is constant or has < 2 cells.

    A constant map has no variance to correlate: r is undefined, and callers decide what that means
    (the analysis leaves the utterance out of the mean and counts it).
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"cannot correlate maps of {x.size} and {y.size} cells")
    if x.size < 2:
        return float("nan")
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    if den == 0 or not np.isfinite(den):
        return float("nan")
    return float(np.clip((x * y).sum() / den, -1.0, 1.0))
