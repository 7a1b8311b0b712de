"""Scores of a perturbation, per output token (registry ``SCORERS``).

A scorer maps the reference log-probabilities ``I x V`` and the perturbed ones ``N x I x V`` to a
score ``N x I`` (higher = the perturbation changed token i's prediction more).

* ``kl``: KL(P_ref || P_pert) over the whole vocabulary (SPES).  Guards: vocabulary entries with
  P_ref = 0 contribute 0 (0 log 0 = 0); perturbed log-probabilities are clamped at ``LOG_FLOOR``
  (about log 4e-44) so that P_pert = 0 gives a large finite score, never inf or NaN.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..registry import Registry

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SCORERS: "Registry[Scorer]" = Registry("scorer")
register_scorer = SCORERS.register
get_scorer = SCORERS.get

#: Floor for log-probabilities inside the KL: keeps log(0) finite.
LOG_FLOOR = -100.0


@register_scorer("kl")
def kl_divergence(ref_logprobs: torch.Tensor, pert_logprobs: torch.Tensor) -> torch.Tensor:
    """``I x V`` reference, ``N x I x V`` perturbed log-probs -> ``N x I`` KL(ref || pert), float32."""
    ref = ref_logprobs.float().clamp_min(LOG_FLOOR)
    pert = pert_logprobs.float().clamp_min(LOG_FLOOR)
    p_ref = ref_logprobs.float().exp()  # exact 0 where the reference says 0
    kl = (p_ref * (ref - pert)).sum(-1)  # N x I
    # Rounding can make a KL of identical distributions slightly negative; KL >= 0.
    return torch.nan_to_num(kl, nan=0.0, posinf=0.0).clamp_min(0.0)
