"""Estimators of the SPES saliency map from (mask, score) pairs (registry ``ESTIMATORS``).

The target of every estimator is the paper's population map: for a cell c and level l with unit
``u = labels[l][c]``, ``mu_l(u) = E[s | u occluded]`` (s: the token's score, KL), cells combined over
levels with the weights of the paper's pooled ratio, ``N_l / N`` (masks of level l over all masks)::

    SM[c] = sum_l (N_l / N) * mu_l(labels[l][c])

Because every mask occludes each unit independently with probability p (every design keeps that,
:mod:`.mask_designs`), ``mu_l(u) = E[s] + (1 - p) * D_l(u)`` with ``D_l(u) = E[s | u occluded] -
E[s | u kept]``.  ``E[s]`` is the same for every cell of a level, and the analysis normalises each
token's row (z-score, min-max), which removes a constant: the noise that matters is the noise of D.

* ``paper`` (default): ``sum_n s_n o_n[c] / sum_n o_n[c]`` pooled over levels (SPES, METHOD.md).
  Its noise in D includes ``(p - p_hat_u) * D_l(u)``: the fluctuation of the unit's occlusion count.
* ``difference``: ``mean(s) + (1 - p) * (mean of s over the masks occluding u - mean over the masks
  keeping u)``, per level.  Uses every mask and the known p instead of the count; identical to
  ``paper`` under the ``balanced`` design (whose counts are exact).
* ``regression``: per level, a linear regression of the scores on the mask bits (with intercept);
  with independent bits the population least-squares coefficient of a unit is ``D_l(u)``, so
  ``mean(s) + (1 - p) * beta_u`` targets the same map, while the fit removes the score variance that
  the *other* units explain (the main noise of ``paper`` when the score is roughly additive).  With
  fewer masks than units (and for noise) the coefficients are ridge-regularised; the ridge weight is
  chosen per token and level by empirical Bayes (MacKay's evidence fixed point: ``lambda =
  sigma_residual^2 / tau^2`` with the effective number of parameters), so a noisy token shrinks
  towards the marginal differences.  Biased towards 0 by the shrinkage (a scale per level and token,
  mostly removed by the per-token normalisation); measured in scripts/bench/bench_estimators.py.
  Cost: an ``S_l x S_l`` co-occlusion matrix per level and split-half (float64; about 8 MB for
  1000 units, 160 MB for the 4500 units of 7.5 s at 600 patches/s) and one eigendecomposition per
  level when the map is read.

Guards shared by all: a cell never occluded gets 0 (as the paper's); a unit occluded by every mask
of its level (p = 1) gets the mean score of those masks (no kept masks to compare with).

Every estimator keeps additive sufficient statistics, so the map of several accumulators (the two
split-halves) is the map of all their masks: ``saliency(*others)``.
"""
from __future__ import annotations

from typing import Sequence, Type

import torch

from ..registry import Registry

ESTIMATORS: "Registry[Type[Estimator]]" = Registry("saliency estimator")


register_estimator = ESTIMATORS.register_class


def build_estimator(name: str, n_tokens: int, labels: Sequence[torch.Tensor], units_per_level: Sequence[int],
                    p: float) -> "Estimator":
    return ESTIMATORS.get(name)(n_tokens, labels, units_per_level, p)


class Estimator:
    """Per-level sufficient statistics of (score, mask) pairs; ``saliency`` turns them into a map.

    Per level l (``S_l`` units, ``I`` tokens): ``n`` masks, ``sum_s`` and ``sum_s2`` (I), ``numerator``
    (``I x S_l``: sum of scores over the masks occluding a unit), ``count`` (``S_l``) and, when
    ``needs_gram``, ``gram`` (``S_l x S_l``: masks occluding both units).  Float64.
    """

    name = ""
    needs_gram = False

    def __init__(self, n_tokens: int, labels: Sequence[torch.Tensor], units_per_level: Sequence[int], p: float):
        if len(labels) != len(units_per_level):
            raise ValueError("one label map per level is needed")
        self.n_tokens = int(n_tokens)
        self.p = float(p)
        self.labels = [torch.as_tensor(lab).long() for lab in labels]
        dev = self.labels[0].device
        f64 = dict(dtype=torch.float64, device=dev)
        self.units = [int(s) for s in units_per_level]
        self.n = [torch.zeros((), **f64) for _ in self.units]
        self.sum_s = [torch.zeros(self.n_tokens, **f64) for _ in self.units]
        self.sum_s2 = [torch.zeros(self.n_tokens, **f64) for _ in self.units]
        self.numerator = [torch.zeros(self.n_tokens, s, **f64) for s in self.units]
        self.count = [torch.zeros(s, **f64) for s in self.units]
        self.gram = [torch.zeros(s, s, **f64) if self.needs_gram else None for s in self.units]
        self.n_masks = 0

    def add(self, level: int, scores: torch.Tensor, occluded: torch.Tensor) -> None:
        """Add ``k`` masks of one level: ``scores`` k x I, ``occluded`` k x S_level (bool)."""
        occ = occluded.to(torch.float64)
        s = scores.to(torch.float64)
        self.n[level] += s.shape[0]
        self.sum_s[level] += s.sum(0)
        self.sum_s2[level] += (s * s).sum(0)
        self.numerator[level] += s.T @ occ
        self.count[level] += occ.sum(0)
        if self.needs_gram:
            self.gram[level] += occ.T @ occ
        self.n_masks += int(s.shape[0])

    def _pooled(self, others, attr: str, level: int) -> torch.Tensor:
        return sum(getattr(a, attr)[level] for a in (self,) + tuple(others))

    def unit_estimates(self, level: int, others=()) -> torch.Tensor:
        """``I x S_l``: the estimate of ``mu_l(u)`` from this accumulator's masks and ``others``'."""
        raise NotImplementedError

    def saliency(self, *others: "Estimator") -> torch.Tensor:
        """The map ``I x <cell shape>`` (float64) of the masks of this accumulator and ``others``."""
        total = sum(float(self._pooled(others, "n", lv)) for lv in range(len(self.units)))
        out = None
        for lv, lab in enumerate(self.labels):
            n_l = float(self._pooled(others, "n", lv))
            if n_l == 0:
                continue
            part = (n_l / total) * self.unit_estimates(lv, others)[:, lab]
            out = part if out is None else out + part
        if out is None:
            return torch.zeros(self.n_tokens, *self.labels[0].shape, dtype=torch.float64,
                               device=self.labels[0].device)
        return out

    def _guarded(self, level: int, others, centred: torch.Tensor) -> torch.Tensor:
        """``centred`` (I x S_l, the estimate where defined) with the shared guards applied."""
        n = self._pooled(others, "n", level)
        cnt = self._pooled(others, "count", level)
        mean_occ = self._pooled(others, "numerator", level) / cnt.clamp_min(1.0)
        out = torch.where(cnt >= n, mean_occ, centred)
        return torch.where(cnt > 0, out, torch.zeros_like(out))


@register_estimator("paper")
class PaperEstimator(Estimator):
    """SPES: mean score over the masks that occluded the cell, pooled over levels (a ratio of sums)."""

    def saliency(self, *others):
        num = sum(self._pooled(others, "numerator", lv)[:, lab] for lv, lab in enumerate(self.labels))
        cnt = sum(self._pooled(others, "count", lv)[lab] for lv, lab in enumerate(self.labels))
        return torch.where(cnt > 0, num / cnt.clamp_min(1.0), torch.zeros_like(num))

    def unit_estimates(self, level, others=()):
        cnt = self._pooled(others, "count", level)
        return self._pooled(others, "numerator", level) / cnt.clamp_min(1.0)


@register_estimator("difference")
class DifferenceEstimator(Estimator):
    """``mean(s) + (1 - p) * (mean_occluded - mean_kept)`` per level (a control variate on the count)."""

    def unit_estimates(self, level, others=()):
        n = self._pooled(others, "n", level)
        cnt = self._pooled(others, "count", level)
        num = self._pooled(others, "numerator", level)
        total = self._pooled(others, "sum_s", level)
        mean_occ = num / cnt.clamp_min(1.0)
        mean_kept = (total[:, None] - num) / (n - cnt).clamp_min(1.0)
        est = total[:, None] / n.clamp_min(1.0) + (1.0 - self.p) * (mean_occ - mean_kept)
        return self._guarded(level, others, est)


@register_estimator("regression")
class RegressionEstimator(Estimator):
    """Ridge regression of the scores on the bits, per level; ridge weight by empirical Bayes."""

    needs_gram = True
    #: fixed-point iterations of the evidence maximisation
    ITERATIONS = 30

    def unit_estimates(self, level, others=()):
        n = self._pooled(others, "n", level)
        cnt = self._pooled(others, "count", level)
        num = self._pooled(others, "numerator", level)
        total = self._pooled(others, "sum_s", level)
        nf = float(n)
        if nf < 2:
            return self._guarded(level, others, num / cnt.clamp_min(1.0))
        gram = self._pooled(others, "gram", level) - torch.outer(cnt, cnt) / nf   # S x S, centred bits
        cross = num - torch.outer(total, cnt) / nf                                # I x S
        yy = (self._pooled(others, "sum_s2", level) - total * total / nf).clamp_min(0.0)  # I
        beta = ridge_evidence(gram, cross, yy, nf, self.ITERATIONS)
        est = (total / nf)[:, None] + (1.0 - self.p) * beta
        return self._guarded(level, others, est)


def ridge_evidence(gram: torch.Tensor, cross: torch.Tensor, yy: torch.Tensor, n: float,
                   iterations: int = 30) -> torch.Tensor:
    """Ridge coefficients ``I x S`` for centred normal equations, one ridge weight per row (token).

    ``gram`` = Z'Z (``S x S``, centred bits), ``cross`` = (Z'y)' (``I x S``), ``yy`` = |y - mean|^2 (I),
    ``n`` observations.  Evidence fixed point (MacKay 1992): with ``gamma = sum_k e_k / (e_k + lambda)``
    (effective parameters), ``tau^2 = |beta|^2 / gamma``, ``sigma^2 = RSS / (n - gamma)``,
    ``lambda = sigma^2 / tau^2``; all in the eigenbasis of ``gram`` (one decomposition for all rows).
    """
    eig, vec = torch.linalg.eigh(gram)
    eig = eig.clamp_min(0.0)                                   # S
    q = cross @ vec                                            # I x S: projections of Z'y
    q2 = q * q
    scale = max(float(eig.mean()), 1e-12)
    lam = torch.full((q.shape[0], 1), scale, dtype=q.dtype, device=q.device)
    lo, hi = scale * 1e-8, scale * 1e8
    for _ in range(iterations):
        den = eig + lam                                        # I x S
        gamma = (eig / den).sum(1, keepdim=True)
        norm2 = (q2 / (den * den)).sum(1, keepdim=True)
        rss = yy[:, None] - (q2 * (2.0 / den - eig / (den * den))).sum(1, keepdim=True)
        sigma2 = rss.clamp_min(0.0) / (n - gamma).clamp_min(1.0)
        tau2 = norm2 / gamma.clamp_min(1e-12)
        lam = torch.where(tau2 > 0, sigma2 / tau2.clamp_min(1e-300), torch.full_like(lam, hi)).clamp(lo, hi)
    return (q / (eig + lam)) @ vec.T
