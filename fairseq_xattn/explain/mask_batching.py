"""How many masked copies go through the model per forward pass.

Many masks per forward amortise the per-call overhead (measured 1.8x for full passes, 3.7x for
decoder-only passes on the demo-size model on CPU), but memory grows with the batch in two ways:

* activations: ``masks x frames`` (frames: T for the input target, T' for the encoder target);
* output distributions: ``masks x I x V`` float32 (tokens x vocabulary).  The decoder's logits, their
  log-softmax and the scorer's temporaries are each a tensor of that size; with a 16k vocabulary and
  60 tokens, 256 masks would be ~1 GB per copy.

The automatic size fills both budgets (``budget_mask_frames`` cells and ``budget_logits`` elements),
is capped per target, and is a multiple of the mask block when large enough.  The scorer works in
chunks of its own (:mod:`.scorers`), so a batch forced larger by the user adds no scorer copies.
"""
from __future__ import annotations

from .masks import BLOCK

#: Upper bound of the automatic size per target (beyond it no speed-up was measured).
AUTO_CAP = {"input": 64, "encoder": 256}

#: Default ``masks x frames`` budget (``--explain-budget``).
BUDGET_MASK_FRAMES = 32768
#: Default ``masks x tokens x vocabulary`` budget (``--explain-budget-logits``): 2^25 float32 = 128 MB per
#: copy of the N x I x V log-probabilities.
BUDGET_LOGITS = 1 << 25


def auto_mask_batch_size(target: str, n_frames: int, budget_mask_frames: int = BUDGET_MASK_FRAMES,
                         n_tokens: int = 1, vocab_size: int = 0, budget_logits: int = BUDGET_LOGITS) -> int:
    """Masks per forward for an utterance of ``n_frames`` (T or T') frames and ``n_tokens`` (I) output
    tokens over ``vocab_size`` (V) symbols (0: the output size is not counted)."""
    cap = AUTO_CAP.get(target, 64)
    size = min(cap, budget_mask_frames // max(1, n_frames))
    if vocab_size > 0:
        size = min(size, budget_logits // max(1, n_tokens * vocab_size))
    size = max(1, size)
    if size >= BLOCK:
        size -= size % BLOCK
    return size
