"""Deterministic occlusion masks: mask ``n`` of an utterance depends only on (seed, utterance id, n)
and the mask design (:mod:`.mask_designs`, default ``bernoulli``: the paper's i.i.d. bits).

Masks are drawn in fixed blocks of ``BLOCK`` masks per granularity level, each block from its own
``torch.Generator`` seeded by a hash of (seed, utterance id, level, block).  Whatever range of masks a
forward batch asks for, a mask is always the same row of the same block: the maps do not depend on
the mask batch size, on how fairseq batched the utterances, on their order or on sharding.  Bits are
always drawn by CPU generators and only then moved to the model's device (``device``): CPU and CUDA
generators give different streams, so drawing on the model's device would make the maps depend on it
(and a run resumed on another device would mix two streams).  The masks are small booleans
(``masks x segments`` or ``masks x T'``), so the copy costs nothing next to a forward pass.

Order of the masks: global index ``n`` belongs to level ``n % L`` (its ``n // L``-th mask), so every
prefix of the sequence is split evenly across the levels (what early stopping and convergence curves
need), and the total ``N`` is split as evenly as possible: the first ``N % L`` levels get one more.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from ..errors import OptionError
from .mask_designs import build_mask_design

#: Masks per generator block.  Part of the definition of the masks: changing it changes the maps.
BLOCK = 64


def stable_seed(*parts) -> int:
    """A 63-bit seed from any printable parts (stable across processes, unlike ``hash``)."""
    digest = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


@dataclass
class MaskBatch:
    """The masks of one forward batch, grouped by level.

    ``rows[l]``: LongTensor k_l, positions of the level-l masks within the batch;
    ``occluded[l]``: BoolTensor ``k_l x S_l``, True where a unit (segment / encoder frame) is occluded;
    ``halves[l]``: LongTensor k_l, the split-half (0/1) of each mask (the design's ``half_of``).
    """

    size: int
    rows: Dict[int, torch.Tensor]
    occluded: Dict[int, torch.Tensor]
    halves: Optional[Dict[int, torch.Tensor]] = None


class MaskSampler:
    """Occlusion of ``units_per_level[l]`` units with probability ``p`` (per unit and mask), drawn by
    the mask design ``design``, reproducible per utterance.

    ``device``: where the masks are delivered (the model's device); it never changes their bits.
    """

    def __init__(self, units_per_level: Sequence[int], p: float, seed: int, utt_id: str,
                 device: torch.device = torch.device("cpu"), design: str = "bernoulli"):
        if not 0.0 <= p <= 1.0:
            raise OptionError(f"occlusion probability must be in [0, 1], got {p}")
        if not units_per_level or min(units_per_level) < 1:
            raise ValueError(f"every level needs at least one unit, got {list(units_per_level)}")
        self.units = [int(u) for u in units_per_level]
        self.p = float(p)
        self.seed = int(seed)
        self.utt_id = str(utt_id)
        self.device = torch.device(device)
        self.design = build_mask_design(design, self.p)
        self._cache: Dict[tuple, torch.Tensor] = {}

    @property
    def n_levels(self) -> int:
        return len(self.units)

    def _block(self, level: int, block: int) -> torch.Tensor:
        """``BLOCK x S_level`` bool on the CPU: block ``block`` of level ``level``."""
        key = (level, block)
        if key not in self._cache:
            # CPU generator whatever the model's device: the bits must not depend on it.
            gen = torch.Generator(device="cpu")
            gen.manual_seed(stable_seed(self.seed, self.utt_id, level, block))
            bits = self.design.draw_block(gen, BLOCK, self.units[level])
            if len(self._cache) >= 4 * len(self.units):  # a batch spans few blocks: bound memory
                self._cache.clear()
            self._cache[key] = bits
        return self._cache[key]

    def level_masks(self, level: int, start: int, count: int) -> torch.Tensor:
        """Masks ``start .. start+count-1`` of one level: ``count x S_level`` bool on ``device``."""
        out: List[torch.Tensor] = []
        j, end = start, start + count
        while j < end:
            block, offset = divmod(j, BLOCK)
            take = min(BLOCK - offset, end - j)
            out.append(self._block(level, block)[offset:offset + take])
            j += take
        if not out:
            return torch.zeros(0, self.units[level], dtype=torch.bool, device=self.device)
        return torch.cat(out).to(self.device)  # one copy per level and batch

    def batch(self, start: int, count: int) -> MaskBatch:
        """Global masks ``start .. start+count-1`` (level ``n % L``, level index ``n // L``)."""
        L = self.n_levels
        n = torch.arange(start, start + count)
        rows, occluded, halves = {}, {}, {}
        for level in range(L):
            sel = (n % L == level).nonzero().flatten()
            if len(sel) == 0:
                continue
            first = int(n[sel[0]]) // L
            rows[level] = sel.to(self.device)
            occluded[level] = self.level_masks(level, first, len(sel))
            halves[level] = self.design.half_of(n[sel] // L, n[sel], BLOCK).to(self.device)
        return MaskBatch(count, rows, occluded, halves)
