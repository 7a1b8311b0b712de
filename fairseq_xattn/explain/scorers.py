"""Scores of a perturbation, per output token (registry ``SCORERS``).

A scorer maps the reference log-probabilities ``I x V`` and the perturbed ones ``N x I x V`` to a
score ``N x I`` (higher = the perturbation changed token i's prediction more).

* ``kl``: KL(P_ref || P_pert) over the whole vocabulary (SPES).  Guards, so that the score is always
  finite and never hides a change:

  - vocabulary entries with P_ref = 0 contribute 0 (0 log 0 = 0);
  - log-probabilities are clamped to ``[LOG_FLOOR, 0]`` (``LOG_FLOOR`` = -100, about log 4e-44), so
    P_pert = 0 gives a large finite score; a non-finite perturbed log-probability (NaN, +inf: no
    probability at all) counts as probability 0 too: the perturbation destroyed the prediction, which
    must score high, not 0.  Every term is then at most ``P_ref(v) * 100``: the KL lies in
    ``[0, -LOG_FLOOR]`` (up to rounding) and cannot overflow;
  - NaN or +inf in the reference counts as P_ref = 0 (the explainer refuses such references first).

  Memory: the ``N x I x V`` input is processed in chunks of at most ``CHUNK_ELEMENTS`` elements with
  one temporary per chunk, so the scorer adds a bounded amount to the model's own output tensors
  whatever the mask batch size.  The chunking does not change the result (each ``(n, i)`` score is
  reduced over V on its own).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..registry import Registry

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SCORERS: "Registry[Scorer]" = Registry("scorer")
register_scorer = SCORERS.register
get_scorer = SCORERS.get

#: Floor for log-probabilities inside the KL: keeps log(0) finite.
LOG_FLOOR = -100.0

#: Elements (masks x tokens x vocabulary) per scorer chunk: 2^22 float32 = 16 MB per temporary.
CHUNK_ELEMENTS = 1 << 22


def _clean_logprobs(logprobs: torch.Tensor) -> torch.Tensor:
    """Log-probabilities clamped to ``[LOG_FLOOR, 0]``, non-finite -> ``LOG_FLOOR``; a new float32 tensor."""
    return torch.nan_to_num(logprobs.float(), nan=LOG_FLOOR, posinf=LOG_FLOOR,
                            neginf=LOG_FLOOR).clamp_(LOG_FLOOR, 0.0)


@register_scorer("kl")
def kl_divergence(ref_logprobs: torch.Tensor, pert_logprobs: torch.Tensor) -> torch.Tensor:
    """``I x V`` reference, ``N x I x V`` perturbed log-probs -> ``N x I`` KL(ref || pert), float32."""
    ref = _clean_logprobs(ref_logprobs)  # I x V
    # exact 0 where the reference says 0 (or is not a log-probability); in [0, 1]
    p_ref = torch.nan_to_num(ref_logprobs.float(), nan=-math.inf, posinf=-math.inf).clamp_max(0.0).exp()
    n, i, v = pert_logprobs.shape
    out = torch.empty(n, i, dtype=torch.float32, device=pert_logprobs.device)
    step = max(1, CHUNK_ELEMENTS // max(1, i * v))
    for start in range(0, n, step):
        # ref - pert, then times P_ref, in place on the chunk's one temporary: k x I x V
        diff = _clean_logprobs(pert_logprobs[start:start + step]).neg_().add_(ref).mul_(p_ref)
        out[start:start + step] = diff.sum(-1)
    # Rounding can make a KL of identical distributions slightly negative; KL >= 0.
    return out.clamp_min_(0.0)
