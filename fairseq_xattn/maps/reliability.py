"""Reliability of sampled explanation maps and attenuation-corrected correlation (numpy only).

A saliency map estimated from N random masks is its population map (infinitely many masks) plus
sampling noise.  Its *reliability* is the share of the map's variance that is signal: the squared
correlation of the map with its population map.  Estimated by splitting the masks into two
independent halves (the explainer keeps one accumulator per half), correlating the two half maps
(``r_half``) and applying the Spearman-Brown correction for doubling the number of masks::

    reliability = 2 r_half / (1 + r_half)

(noise variance falling as 1/N: each half has twice the noise variance of the whole map).
``sqrt(reliability)`` is then the expected correlation of the whole map with its population map
(the early stop's criterion, :mod:`fairseq_xattn.explain.convergence`).

Rule for ``r_half <= 0``: the halves share no measurable signal, so the reliability is 0 (the
formula would give a negative "share of variance").  A NaN ``r_half`` (a constant half map, nothing
to correlate) gives a NaN reliability.

Attenuation (Spearman 1904): noise in either map pulls their correlation towards 0; the classical
correction estimates the correlation of the two population maps::

    r_corrected = r / sqrt(reliability_a * reliability_b)

Cross-attention is deterministic (one forward pass, no sampling): its reliability is 1
(:data:`CROSS_ATTENTION_RELIABILITY`).  Rule: a reliability <= 0 or NaN leaves nothing to correct
with and gives NaN (undefined, never a division by 0 or a huge value).  The classical formula is
not clipped: a corrected value above 1 in magnitude means the reliabilities were themselves
underestimated by sampling error (it is reported as it is, so that this stays visible).
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np

from .correlation import pearson
from .normalisers import normalise

#: Cross-attention comes from one deterministic forward pass: no sampling noise.
CROSS_ATTENTION_RELIABILITY = 1.0

ArrayLike = Union[float, np.ndarray]


def spearman_brown(r_half: ArrayLike, factor: float = 2.0) -> ArrayLike:
    """Reliability of a map with ``factor`` times the masks of a part whose split-half r is ``r_half``:
    ``k r / (1 + (k - 1) r)``; ``r <= 0`` gives 0, NaN stays NaN (elementwise on arrays)."""
    r = np.asarray(r_half, dtype=np.float64)
    k = float(factor)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(r > 0, k * r / (1.0 + (k - 1.0) * r), 0.0)
    rel = np.where(np.isnan(r), np.nan, np.minimum(rel, 1.0))
    return float(rel) if rel.ndim == 0 else rel


def split_half_r(half_a: np.ndarray, half_b: np.ndarray,
                 view: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> float:
    """Pearson r of two half maps (any equal shapes) after ``view`` (e.g. normalisation + pooling);
    NaN when either is constant."""
    a, b = np.asarray(half_a, dtype=np.float64), np.asarray(half_b, dtype=np.float64)
    if view is not None:
        a, b = view(a), view(b)
    return pearson(a, b)


def spes_view(x: np.ndarray) -> np.ndarray:
    """The analysis' per-token normalisation of a saliency map (``I x ...``): SPES chain."""
    return normalise(x, "spes")


def map_reliability(half_a: np.ndarray, half_b: np.ndarray,
                    view: Optional[Callable[[np.ndarray], np.ndarray]] = spes_view) -> float:
    """Spearman-Brown corrected split-half reliability of the whole map (``I x ...`` halves), after
    ``view`` (default: per-token SPES normalisation, as the analysis correlates the maps)."""
    return spearman_brown(split_half_r(half_a, half_b, view))


def per_token_reliability(half_a: np.ndarray, half_b: np.ndarray) -> np.ndarray:
    """``I`` reliabilities, one per token row of two ``I x ...`` half maps.

    Per-token normalisation (SPES: z-score then min-max) is affine per row, so it does not change a
    row's correlation: the rows are correlated as they are.  A constant row gives NaN.
    """
    a = np.asarray(half_a, dtype=np.float64)
    b = np.asarray(half_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"expected two I x ... half maps of one shape, got {a.shape} and {b.shape}")
    rows_a, rows_b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return np.array([spearman_brown(pearson(x, y)) for x, y in zip(rows_a, rows_b)], dtype=np.float64)


def disattenuate(r: ArrayLike, reliability_a: ArrayLike,
                 reliability_b: ArrayLike = CROSS_ATTENTION_RELIABILITY) -> ArrayLike:
    """Classical correction for attenuation ``r / sqrt(rel_a * rel_b)`` (elementwise on arrays).

    A reliability <= 0 or NaN (no measurable signal) gives NaN.  Not clipped (see module doc).
    """
    r = np.asarray(r, dtype=np.float64)
    rel = np.asarray(reliability_a, dtype=np.float64) * np.asarray(reliability_b, dtype=np.float64)
    ok = (np.asarray(reliability_a) > 0) & (np.asarray(reliability_b) > 0) & np.isfinite(rel)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(ok, r / np.sqrt(np.where(ok, rel, 1.0)), np.nan)
    return float(out) if out.ndim == 0 else out


def noise_share_of_gap(r: float, reliability_a: float,
                       reliability_b: float = CROSS_ATTENTION_RELIABILITY) -> float:
    """Share of the gap ``1 - |r|`` that sampling noise explains: ``(|r_corrected| - |r|) / (1 - |r|)``
    with the corrected value capped at 1 (NaN when undefined; 0 for a perfect r).  E.g. r = 0.4 with a
    saliency reliability of 0.64 corrects to 0.5: noise explains 0.1 of the 0.6 gap, 1/6."""
    corrected = disattenuate(r, reliability_a, reliability_b)
    if not np.isfinite(corrected) or not np.isfinite(r):
        return float("nan")
    gap = 1.0 - abs(r)
    if gap <= 0:
        return 0.0
    return float((min(abs(corrected), 1.0) - abs(r)) / gap)
