"""When has a saliency map converged?  Used for the optional early stop and the convergence curves.

Criterion (``early_stop``): every ``interval`` masks (from ``min_masks`` on), the current map is
compared with the map at the previous check; both are normalised per token with the SPES chain
(single_mean_std then paired_min_max, as the analysis does) and flattened, and the explanation stops
when their Pearson correlation reaches ``threshold``.  Masks come in the same order whatever the
stop, so an early-stopped map is exactly the N-mask prefix of the full run.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .normalisers import normalise


def map_correlation(a: np.ndarray, b: np.ndarray, chain: str = "spes") -> float:
    """Pearson r of two ``I x ...`` maps after per-token normalisation (1.0 if both are constant)."""
    x = normalise(np.asarray(a), chain).ravel()
    y = normalise(np.asarray(b), chain).ravel()
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    if den == 0:
        return 1.0 if np.allclose(x, y) else 0.0
    return float((x * y).sum() / den)


class ConvergenceMonitor:
    """Decides the early stop; ``threshold`` <= 0 disables it."""

    def __init__(self, threshold: float = 0.0, interval: int = 1000, min_masks: int = 2000):
        if threshold > 1:
            raise ValueError(f"early-stop threshold is a correlation, at most 1 (got {threshold})")
        if threshold > 0 and interval < 1:
            raise ValueError(f"early-stop interval must be >= 1 mask (got {interval})")
        self.threshold = threshold
        self.interval = interval
        self.min_masks = min_masks
        self._previous: Optional[np.ndarray] = None
        self.last_correlation: Optional[float] = None

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def is_check_point(self, n_masks: int) -> bool:
        return self.enabled and n_masks % self.interval == 0

    def converged(self, n_masks: int, saliency: np.ndarray) -> bool:
        """Call at check points with the map of the first ``n_masks`` masks."""
        previous, self._previous = self._previous, saliency
        if previous is None:
            return False
        self.last_correlation = map_correlation(previous, saliency)
        return n_masks >= self.min_masks and self.last_correlation >= self.threshold
