"""Mask designs (registry ``MASK_DESIGNS``): how the bits of one block of masks are drawn.

Every design draws one block of ``BLOCK`` masks of one level from one CPU generator seeded by
(seed, utterance id, level, block) (:mod:`.masks`): mask ``n`` of an utterance depends only on
(seed, utterance id, n) and the design, never on batching, order, sharding or the device.

Every design keeps the law of ONE mask: each unit occluded with probability ``p``, independently of
the other units of the mask.  So every mask is distributed as the paper's, and every estimator
(:mod:`.estimators`) targets the same population map.  What a design changes is the dependence
*between* the masks of a block, which can cancel sampling noise:

* ``bernoulli`` (default, the paper's): every bit independent, Bernoulli(p).
* ``balanced``: every unit is occluded in exactly ``k`` of the block's 64 masks, at random rows;
  ``k = floor(64 p)`` or ``floor(64 p) + 1`` at random with ``E[k] = 64 p`` (so a row's bit is
  Bernoulli(p) whatever p; for p = 0.5 always 32).  Removes the fluctuation of each unit's occlusion
  count (the term ``(p - p_hat_u) * effect_u`` of the paper estimator; a stratified / 1-D Latin
  hypercube design per unit).
* ``antithetic`` (p = 0.5 only): masks come in pairs, a Bernoulli(0.5) mask and its complement.  A
  score that is additive in the bits then has the same sum in every pair.  Other p would change the
  complement's occlusion probability (1 - p), hence the target: refused.

The split-half reliability (:mod:`fairseq_xattn.maps.reliability`) needs two *independent* halves:
``half_of`` says which half a mask belongs to.  ``bernoulli``: the parity of the global mask index
(every mask is independent).  Block designs: the parity of the block within its level, so that the
dependent masks of a block (a pair, a balanced block) stay in one half.
"""
from __future__ import annotations

from typing import Type

import torch

from ..registry import Registry

MASK_DESIGNS: "Registry[Type[MaskDesign]]" = Registry("mask design")


register_mask_design = MASK_DESIGNS.register_class


class MaskDesign:
    name = ""
    #: True when masks within a block are dependent (halves must then be whole blocks).
    block_dependent = False

    def __init__(self, p: float):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"occlusion probability must be in [0, 1], got {p}")
        self.p = float(p)

    def draw_block(self, generator: torch.Generator, block_size: int, n_units: int) -> torch.Tensor:
        """``block_size x n_units`` bool (True = occluded), from ``generator`` only (CPU)."""
        raise NotImplementedError

    def half_of(self, level_index: torch.Tensor, global_index: torch.Tensor, block_size: int) -> torch.Tensor:
        """0/1 per mask: its split-half (``level_index``: index within its level; ``global_index``: n)."""
        if self.block_dependent:
            return (level_index // block_size) % 2
        return global_index % 2


def build_mask_design(name: str, p: float) -> MaskDesign:
    return MASK_DESIGNS.get(name)(p)


@register_mask_design("bernoulli")
class BernoulliDesign(MaskDesign):
    """The paper's i.i.d. masks (the bits of the original ``MaskSampler``: ``rand < p``)."""

    def draw_block(self, generator, block_size, n_units):
        return torch.rand(block_size, n_units, generator=generator, device="cpu") < self.p


@register_mask_design("balanced")
class BalancedDesign(MaskDesign):
    """Each unit occluded in exactly ``k`` rows of the block (``k`` randomly rounded ``block * p``)."""

    block_dependent = True

    def draw_block(self, generator, block_size, n_units):
        target = block_size * self.p
        base = int(target // 1)
        extra = torch.rand(n_units, generator=generator, device="cpu") < (target - base)
        k = base + extra.long()                                         # n_units: occlusions of each unit
        # a random permutation of the rows per unit: rank of a uniform draw within its column
        ranks = torch.rand(block_size, n_units, generator=generator, device="cpu").argsort(0).argsort(0)
        return ranks < k.unsqueeze(0)


@register_mask_design("antithetic")
class AntitheticDesign(MaskDesign):
    """Pairs (mask, complement); p must be 0.5."""

    block_dependent = True

    def __init__(self, p: float):
        super().__init__(p)
        if self.p != 0.5:
            raise ValueError(f"the antithetic mask design needs p = 0.5 (a complement occludes with 1 - p), got {p}")

    def draw_block(self, generator, block_size, n_units):
        if block_size % 2:
            raise ValueError("the antithetic design needs an even block size")
        first = torch.rand(block_size // 2, n_units, generator=generator, device="cpu") < 0.5
        return torch.stack([first, ~first], 1).reshape(block_size, n_units)
