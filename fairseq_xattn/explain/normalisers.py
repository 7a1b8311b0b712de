"""Per-token saliency normalisers (SPES): the single implementation lives in
:mod:`fairseq_xattn.analysis.normalisers` (numpy only); explain re-exports it so that the early-stop
criterion and the analysis normalise maps identically.

* ``single_mean_std``: per token row, ``(x - mean) / std`` with the unbiased std; NaN/inf -> 0.
* ``paired_min_max``: per token row, ``(x - min) / (max - min)``; a constant row -> 0.
* chain ``spes`` = single_mean_std then paired_min_max.
"""
from fairseq_xattn.analysis.normalisers import (  # noqa: F401
    CHAINS,
    NORMALISERS,
    normalise,
    paired_min_max,
    register_normaliser,
    resolve_chain,
    single_mean_std,
)
