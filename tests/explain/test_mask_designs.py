"""Mask designs: the law of one mask, the structure of a block, determinism and batch invariance."""
import pytest
import torch

from fairseq_xattn.explain.mask_designs import MASK_DESIGNS, build_mask_design
from fairseq_xattn.explain.masks import BLOCK, MaskSampler, stable_seed

DESIGNS = sorted(MASK_DESIGNS)


def _p_for(design):
    return 0.5 if design == "antithetic" else 0.7


def test_registry_lists_the_designs_and_refuses_unknown_ones():
    assert {"bernoulli", "balanced", "antithetic"} <= set(DESIGNS)
    with pytest.raises(ValueError, match="choose from"):
        build_mask_design("sobol", 0.5)


def test_bernoulli_draws_the_bits_of_the_original_sampler():
    # the default's bits must not change: block b of level l is rand(64, S) < p from stable_seed(...)
    sampler = MaskSampler([7, 5], 0.5, seed=3, utt_id="u1")
    gen = torch.Generator().manual_seed(stable_seed(3, "u1", 1, 2))
    expected = torch.rand(BLOCK, 5, generator=gen) < 0.5
    assert torch.equal(sampler.level_masks(1, 2 * BLOCK, BLOCK), expected)


@pytest.mark.parametrize("p,counts", [(0.5, {32}), (0.7, {44, 45}), (0.25, {16})])
def test_balanced_blocks_occlude_every_unit_a_fixed_number_of_times(p, counts):
    sampler = MaskSampler([300], p, seed=1, utt_id="u", design="balanced")
    per_unit = torch.stack([sampler.level_masks(0, b * BLOCK, BLOCK).sum(0) for b in range(20)])  # 20 x 300
    assert set(per_unit.unique().tolist()) == counts
    # a row's bit is Bernoulli(p): the mean count over blocks and units is 64 p (0.7: 44.8)
    assert per_unit.double().mean().item() == pytest.approx(BLOCK * p, abs=0.1)


def test_balanced_bits_are_independent_across_units_within_a_mask():
    # two units' bits in the same mask: P(both) = p^2 (0.25 for p = 0.5)
    sampler = MaskSampler([2], 0.5, seed=5, utt_id="x", design="balanced")
    bits = sampler.level_masks(0, 0, 200 * BLOCK).double()
    assert (bits[:, 0] * bits[:, 1]).mean().item() == pytest.approx(0.25, abs=0.01)


def test_antithetic_pairs_are_complements_and_other_p_is_refused():
    sampler = MaskSampler([40], 0.5, seed=1, utt_id="u", design="antithetic")
    block = sampler.level_masks(0, 0, BLOCK)
    assert torch.equal(block[1::2], ~block[0::2])
    assert block[0::2].double().mean().item() == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="p = 0.5"):
        MaskSampler([40], 0.7, seed=1, utt_id="u", design="antithetic")


@pytest.mark.parametrize("design", DESIGNS)
def test_masks_do_not_depend_on_how_they_are_requested(design):
    units = [9, 4, 6]
    p = _p_for(design)
    whole = MaskSampler(units, p, seed=2, utt_id="utt", design=design).batch(0, 500)
    # another sampler (a fresh process, another batch size): the same masks and halves in pieces
    pieces = MaskSampler(units, p, seed=2, utt_id="utt", design=design)
    starts = [0, 1, 64, 65, 200, 333, 500]
    for lv in range(3):
        got_occ, got_half = [], []
        for a, b in zip(starts, starts[1:]):
            part = pieces.batch(a, b - a)
            if lv in part.rows:
                got_occ.append(part.occluded[lv])
                got_half.append(part.halves[lv])
        assert torch.equal(torch.cat(got_occ), whole.occluded[lv])
        assert torch.equal(torch.cat(got_half), whole.halves[lv])
    # other utterances, seeds or designs give other masks
    other = MaskSampler(units, p, seed=2, utt_id="utt2", design=design).batch(0, 500)
    assert not torch.equal(other.occluded[0], whole.occluded[0])


@pytest.mark.parametrize("design", DESIGNS)
def test_split_halves_are_independent_blocks_or_parities(design):
    sampler = MaskSampler([5, 5, 5], _p_for(design), seed=1, utt_id="u", design=design)
    batch = sampler.batch(0, 3 * 4 * BLOCK)
    for lv in range(3):
        halves = batch.halves[lv]
        n = batch.rows[lv] * 0 + torch.arange(lv, 3 * 4 * BLOCK, 3)  # global indices of the level's masks
        if design == "bernoulli":
            assert torch.equal(halves, n % 2)                      # parity of the global index (as before)
        else:
            # whole blocks of the level: 64 masks in half 0, 64 in half 1, ...
            assert torch.equal(halves, (torch.arange(4 * BLOCK) // BLOCK) % 2)
