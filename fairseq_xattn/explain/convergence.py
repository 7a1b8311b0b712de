"""When has a saliency map converged?  Used for the optional early stop and the convergence curves.

Criterion (split-half reliability): the masks are split by the parity of their index into two
independent halves, each with its own accumulator.  At every check (each ``interval`` masks, from
``min_masks`` on) the maps of the two halves are normalised per token with the SPES chain
(single_mean_std then paired_min_max, as the analysis does) and correlated: ``r_half``.  If a map is
the truth plus noise whose variance falls as 1/N, then ``a = (1/r_half - 1) / 2`` is the
noise-to-signal ratio of the whole N-mask map, and its expected correlation with the converged map
is ``1 / sqrt(1 + a)`` = ``sqrt(2 r_half / (1 + r_half))``: the square root of the Spearman-Brown
reliability (:mod:`fairseq_xattn.maps.reliability`).  The explanation stops when that estimate
reaches ``threshold`` (e.g. 0.99).  It works with every estimator (:mod:`.estimators`): each half is
the estimator's map of its own masks; for block designs the halves are whole blocks
(:mod:`.mask_designs`).
Masks come in the same order whatever the stop, so an early-stopped map is exactly the N-mask prefix
of the full run.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..errors import OptionError
from ..maps.correlation import pearson
from ..maps.normalisers import normalise
from ..maps.reliability import spearman_brown


def map_correlation(a: np.ndarray, b: np.ndarray, chain: str = "spes") -> float:
    """Pearson r of two ``I x ...`` maps after per-token normalisation.

    Two halves that are both constant after normalisation (nothing learned yet, or a map that cannot
    vary) count as agreeing when they are equal (1.0) and as unrelated otherwise (0.0).
    """
    x = normalise(np.asarray(a), chain)
    y = normalise(np.asarray(b), chain)
    r = pearson(x, y)
    if np.isnan(r):
        return 1.0 if np.allclose(x, y) else 0.0
    return r


def predicted_correlation(r_half: float) -> float:
    """Expected correlation of the whole map with the converged map, from the split-half r."""
    if r_half <= 0:
        return 0.0
    if r_half >= 1:
        return 1.0
    return math.sqrt(spearman_brown(r_half))


class ConvergenceMonitor:
    """Decides the early stop; ``threshold`` <= 0 disables it."""

    def __init__(self, threshold: float = 0.0, interval: int = 500, min_masks: int = 2000):
        if threshold >= 1:
            raise OptionError(f"early-stop threshold is a correlation below 1 (got {threshold})")
        if threshold > 0 and interval < 2:
            raise OptionError(f"early-stop interval must be >= 2 masks (got {interval})")
        self.threshold = threshold
        self.interval = interval
        self.min_masks = min_masks
        self.last_estimate: Optional[float] = None

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def is_check_point(self, n_masks: int) -> bool:
        return self.enabled and n_masks >= self.min_masks and n_masks % self.interval == 0

    def converged(self, half_a: np.ndarray, half_b: np.ndarray) -> bool:
        """Call at check points with the maps of the even- and odd-indexed masks so far."""
        self.last_estimate = predicted_correlation(map_correlation(half_a, half_b))
        return self.last_estimate >= self.threshold
