"""How many masked copies go through the model per forward pass.

Many masks per forward amortise the per-call overhead (measured 1.8x for full passes, 3.7x for
decoder-only passes on the demo-size model on CPU), but memory grows with masks x frames.  The
automatic size fills a budget of ``mask x frame`` cells (frames: T for the input target, T' for the
encoder target), capped per target, and is a multiple of the mask block when large enough.
"""
from __future__ import annotations

from .masks import BLOCK

#: Upper bound of the automatic size per target (beyond it no speed-up was measured).
AUTO_CAP = {"input": 64, "encoder": 256}


def auto_mask_batch_size(target: str, n_frames: int, budget_mask_frames: int = 32768) -> int:
    """Masks per forward for an utterance of ``n_frames`` (T or T') frames."""
    cap = AUTO_CAP.get(target, 64)
    size = max(1, min(cap, budget_mask_frames // max(1, n_frames)))
    if size >= BLOCK:
        size -= size % BLOCK
    return size
