"""Accumulation of perturbation scores into a saliency map (SPES, METHOD.md sections 2 and 3).

    SM_i[c] = sum_n score_n,i * occluded_n[c] / sum_n occluded_n[c]     (0 where c was never occluded)

for every cell c (a ``(t, f)`` cell of the spectrogram, or an encoder frame).  Masks occlude *units*
(SLIC segments of a level, or encoder frames); a cell is occluded by a mask of level l when its unit
``labels[l][c]`` is.  So the sums are kept per level and per unit (``I x S_l`` and ``S_l``) and only
expanded to cells at the end: no ``N x T x F`` tensor is ever accumulated.  Sums are float64.

The implementation is the ``paper`` estimator of :mod:`.estimators` (the registry of estimators of
the same population map); :class:`SaliencyAccumulator` is it without an occlusion probability.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .estimators import PaperEstimator


class SaliencyAccumulator(PaperEstimator):
    """Running sums for ``n_tokens`` tokens over levels with ``labels[l]`` (cells -> unit ids)."""

    def __init__(self, n_tokens: int, labels: Sequence[torch.Tensor], units_per_level: Sequence[int]):
        super().__init__(n_tokens, labels, units_per_level, p=float("nan"))  # the ratio does not use p
