"""Accumulation of perturbation scores into a saliency map (SPES, METHOD.md sections 2 and 3).

    SM_i[c] = sum_n score_n,i * occluded_n[c] / sum_n occluded_n[c]     (0 where c was never occluded)

for every cell c (a ``(t, f)`` cell of the spectrogram, or an encoder frame).  Masks occlude *units*
(SLIC segments of a level, or encoder frames); a cell is occluded by a mask of level l when its unit
``labels[l][c]`` is.  So the sums are kept per level and per unit (``I x S_l`` and ``S_l``) and only
expanded to cells at the end: no ``N x T x F`` tensor is ever accumulated.  Sums are float64.
"""
from __future__ import annotations

from typing import List, Sequence

import torch


class SaliencyAccumulator:
    """Running sums for ``n_tokens`` tokens over levels with ``labels[l]`` (cells -> unit ids)."""

    def __init__(self, n_tokens: int, labels: Sequence[torch.Tensor], units_per_level: Sequence[int]):
        if len(labels) != len(units_per_level):
            raise ValueError("one label map per level is needed")
        self.n_tokens = int(n_tokens)
        self.labels = [torch.as_tensor(lab).long() for lab in labels]
        device = self.labels[0].device
        self.numerator: List[torch.Tensor] = [
            torch.zeros(self.n_tokens, int(s), dtype=torch.float64, device=device) for s in units_per_level]
        self.count: List[torch.Tensor] = [
            torch.zeros(int(s), dtype=torch.float64, device=device) for s in units_per_level]
        self.n_masks = 0

    def add(self, level: int, scores: torch.Tensor, occluded: torch.Tensor) -> None:
        """Add ``k`` masks of one level: ``scores`` k x I, ``occluded`` k x S_level (bool)."""
        occ = occluded.to(torch.float64)
        self.numerator[level] += scores.to(torch.float64).T @ occ
        self.count[level] += occ.sum(0)
        self.n_masks += int(scores.shape[0])

    def saliency(self, *others: "SaliencyAccumulator") -> torch.Tensor:
        """The map ``I x <cell shape>`` (``I x T x F`` or ``I x T'``), float64, of this accumulator's
        masks together with those of ``others`` (accumulators over the same units)."""
        parts = (self,) + others
        num = sum(sum(a.numerator[lv] for a in parts)[:, lab] for lv, lab in enumerate(self.labels))
        cnt = sum(sum(a.count[lv] for a in parts)[lab] for lv, lab in enumerate(self.labels))
        return torch.where(cnt > 0, num / cnt.clamp_min(1.0), torch.zeros_like(num))
