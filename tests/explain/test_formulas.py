"""The formulas of docs/method.md sections 2-4 on hand-computed tiny cases."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from fairseq_xattn.explain.accumulator import SaliencyAccumulator
from fairseq_xattn.explain.perturbations import InputSlicOptions
from fairseq_xattn.maps.normalisers import normalise, paired_min_max, single_mean_std
from fairseq_xattn.explain.scorers import get_scorer
from fairseq_xattn.explain.segmentation import n_segments_for, slic_labels, multi_level_labels, SegmentationError


def test_kl_matches_hand_computation():
    ref = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
    pert = torch.log(torch.tensor([[[0.9, 0.1], [0.25, 0.75]]]))
    kl = get_scorer("kl")(ref, pert)
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert kl.shape == (1, 2)
    assert kl[0, 0].item() == pytest.approx(expected, rel=1e-6)
    assert kl[0, 1].item() == pytest.approx(0.0, abs=1e-7)


def test_kl_guards_zero_probabilities():
    ref = torch.log(torch.tensor([[1.0, 0.0, 0.0]]))            # log 0 = -inf in the reference
    kl = get_scorer("kl")(ref, torch.log(torch.tensor([[[0.0, 0.5, 0.5]], [[1.0, 0.0, 0.0]]])))
    assert torch.isfinite(kl).all()
    assert kl[0, 0].item() == pytest.approx(100.0)              # log floor: -100
    assert kl[1, 0].item() == 0.0


def test_accumulation_is_mean_score_over_occluding_masks():
    # 2 masks, 4 units; unit 3 is never occluded -> 0.
    acc = SaliencyAccumulator(1, [torch.arange(4)], [4])
    acc.add(0, torch.tensor([[1.0], [3.0]]), torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0]], dtype=torch.bool))
    assert acc.saliency().tolist() == [[2.0, 3.0, 1.0, 0.0]]


def test_accumulation_across_levels_pools_all_masks_per_cell():
    # 3 cells; level 0 groups cells {0,1},{2}; level 1 groups {0},{1,2}.
    labels = [torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1])]
    acc = SaliencyAccumulator(1, labels, [2, 2])
    acc.add(0, torch.tensor([[2.0]]), torch.tensor([[1, 0]], dtype=torch.bool))  # cells 0,1 scored 2
    acc.add(1, torch.tensor([[6.0]]), torch.tensor([[0, 1]], dtype=torch.bool))  # cells 1,2 scored 6
    # cell0: 2/1, cell1: (2+6)/2, cell2: 6/1
    assert acc.saliency().tolist() == [[2.0, 4.0, 6.0]]


def test_normalisers_method_example():
    row = np.array([[1, 2, 1, 3] * 3], dtype=float)
    z = single_mean_std(row)
    np.testing.assert_allclose(z[0, :4], [-0.866, 0.2887, -0.866, 1.4434], atol=1e-4)
    np.testing.assert_allclose(paired_min_max(np.array([[1.0, 2.0, 5.0]])), [[0.0, 0.25, 1.0]])
    assert np.all(paired_min_max(np.ones((2, 3))) == 0)        # max == min guard
    assert np.all(single_mean_std(np.ones((2, 3))) == 0)       # std 0 -> 0, not NaN
    chained = normalise(row, "spes")
    assert chained.min() == 0.0 and chained.max() == 1.0


@pytest.mark.parametrize("frames,pps,expected", [
    (410, 400, 1640), (410, 600, 2460), (100, 500, 500),
    (750, 400, 3000), (2000, 400, 3000), (2000, 600, 4500),   # longer than 7.5 s: capped
    (0, 400, 1), (1, 10, 1),                                     # a request of 0 becomes 1
])
def test_segment_counts_per_duration(frames, pps, expected):
    assert n_segments_for(frames, pps, 7.5) == expected


def test_slic_labels_are_consecutive_and_at_most_requested():
    rng = np.random.default_rng(0)
    spec = rng.standard_normal((120, 80))
    for labels, pps in zip(multi_level_labels(spec, **dataclasses.asdict(InputSlicOptions())), (400, 500, 600)):
        assert labels.shape == (120, 80)
        n = labels.max() + 1
        assert set(np.unique(labels)) == set(range(n))
        assert 1 <= n <= n_segments_for(120, pps, 7.5) * 1.2   # SLIC's grid may round slightly up


def test_constant_and_empty_spectrograms():
    labels = slic_labels(np.full((30, 80), 2.5), 40)          # constant: rescaled to zeros, still segmented
    assert labels.shape == (30, 80) and labels.min() == 0
    with pytest.raises(SegmentationError, match="empty"):
        slic_labels(np.zeros((0, 80)), 4)
    with pytest.raises(SegmentationError, match="NaN"):
        slic_labels(np.full((5, 80), np.nan), 4)


def test_kl_of_a_destroyed_prediction_is_the_largest_finite_score():
    """Perturbed NaN / +inf log-probs (the model broke) and -inf (P = 0) are a large change, never 0 or NaN."""
    ref = torch.log(torch.tensor([[0.5, 0.5, 0.0]]))             # P_ref = 0 on the last symbol
    nan, inf = float("nan"), float("inf")
    pert = torch.tensor([[[nan, nan, nan]], [[-inf, -inf, 0.0]], [[inf, math.log(0.5), -inf]],
                         [[math.log(0.5), math.log(0.5), -inf]]])
    kl = get_scorer("kl")(ref, pert)
    assert torch.isfinite(kl).all()
    # P_pert counts as 0 where it is NaN or -inf: each symbol of the reference costs 0.5 * (log 0.5 + 100).
    floor = 0.5 * (math.log(0.5) + 100) * 2
    assert kl[0, 0].item() == pytest.approx(floor, rel=1e-6)
    assert kl[1, 0].item() == pytest.approx(floor, rel=1e-6)
    # +inf is no log-probability either: P_pert = 0 on the first symbol, 0.5 on the second.
    assert kl[2, 0].item() == pytest.approx(floor / 2, rel=1e-6)
    assert kl[3, 0].item() == pytest.approx(0.0, abs=1e-6)       # same distribution, P_ref = 0 ignored
    assert (kl <= 100.0).all()                                   # bounded by -LOG_FLOOR: cannot overflow


def test_kl_is_computed_in_bounded_chunks_with_the_same_result(monkeypatch):
    from torch.profiler import ProfilerActivity, profile

    from fairseq_xattn.explain import scorers

    n, i, v = 40, 6, 512
    g = torch.Generator().manual_seed(0)
    ref = torch.log_softmax(torch.randn(i, v, generator=g), -1)
    pert = torch.log_softmax(torch.randn(n, i, v, generator=g), -1)
    whole = (ref.exp() * (ref - pert)).sum(-1).clamp_min(0.0)    # the formula on the full tensor
    monkeypatch.setattr(scorers, "CHUNK_ELEMENTS", 4 * i * v, raising=False)   # 4 masks per chunk
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        chunked = scorers.kl_divergence(ref, pert)
    assert torch.equal(chunked, whole)
    largest = max(e.cpu_memory_usage for e in prof.events())
    assert largest <= 4 * i * v * 4, f"an allocation of {largest} bytes: the N x I x V input was copied whole"
