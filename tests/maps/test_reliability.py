"""Split-half reliability, Spearman-Brown and the correction for attenuation, on hand-made maps."""
import math

import numpy as np
import pytest

from fairseq_xattn.maps.reliability import (
    CROSS_ATTENTION_RELIABILITY, disattenuate, map_reliability, noise_share_of_gap, per_token_reliability,
    spearman_brown, split_half_r)


def test_spearman_brown_by_hand_and_its_rule_for_non_positive_r():
    assert spearman_brown(0.5) == pytest.approx(2 / 3)            # 2 * 0.5 / 1.5
    assert spearman_brown(0.8) == pytest.approx(1.6 / 1.8)
    assert spearman_brown(0.5, factor=3) == pytest.approx(0.75)   # 1.5 / 2
    assert spearman_brown(1.0) == 1.0
    assert spearman_brown(0.0) == 0.0
    assert spearman_brown(-0.3) == 0.0                            # no measurable signal: 0, not negative
    assert math.isnan(spearman_brown(float("nan")))
    np.testing.assert_allclose(spearman_brown(np.array([0.5, -0.1, 0.8])), [2 / 3, 0.0, 1.6 / 1.8])


def test_split_half_reliability_of_hand_made_halves():
    # a and b: deviations (-1.5, -.5, .5, 1.5) and (-1.5, .5, -.5, 1.5): r = 4 / 5 = 0.8
    a = np.array([[1.0, 2.0, 3.0, 4.0]])
    b = np.array([[1.0, 3.0, 2.0, 4.0]])
    assert split_half_r(a, b, view=None) == pytest.approx(0.8)
    assert map_reliability(a, b, view=None) == pytest.approx(1.6 / 1.8)
    # one row: the SPES normalisation is affine per row, so it gives the same r
    assert map_reliability(a, b) == pytest.approx(1.6 / 1.8)
    # two rows: per token; the second row is anti-correlated (r = -1) -> 0; a constant row -> NaN
    a2 = np.vstack([a, [[1.0, 2.0, 3.0, 4.0]], [[5.0, 5.0, 5.0, 5.0]]])
    b2 = np.vstack([b, [[4.0, 3.0, 2.0, 1.0]], [[1.0, 2.0, 3.0, 4.0]]])
    rel = per_token_reliability(a2, b2)
    assert rel[0] == pytest.approx(1.6 / 1.8) and rel[1] == 0.0 and math.isnan(rel[2])


def test_reliability_recovers_the_known_noise_level():
    # signal of variance 1 plus independent noise of variance 1 in each half: r_half = 1 / (1 + 1) = 0.5,
    # the mean of the halves has noise variance 1/2: reliability 1 / (1 + 0.5) = 2/3 = Spearman-Brown(0.5)
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((4, 50000))
    half_a = signal + rng.standard_normal(signal.shape)
    half_b = signal + rng.standard_normal(signal.shape)
    assert split_half_r(half_a, half_b, view=None) == pytest.approx(0.5, abs=0.01)
    rel = map_reliability(half_a, half_b, view=None)   # (SPES' min-max scales rows by their noisy extremes)
    assert rel == pytest.approx(2 / 3, abs=0.01)
    full = (half_a + half_b) / 2
    # the whole map's correlation with its noise-free map is sqrt(reliability)
    assert np.corrcoef(full.ravel(), signal.ravel())[0, 1] == pytest.approx(math.sqrt(2 / 3), abs=0.01)
    np.testing.assert_allclose(per_token_reliability(half_a, half_b), 2 / 3, atol=0.02)

    # a deterministic map (cross-attention) that correlates 0.6 with the signal: the noisy map's r is
    # attenuated to 0.6 * sqrt(2/3); the classical correction recovers 0.6
    other = 0.6 * signal + 0.8 * rng.standard_normal(signal.shape)
    r_noisy = np.corrcoef(full.ravel(), other.ravel())[0, 1]
    assert r_noisy == pytest.approx(0.6 * math.sqrt(2 / 3), abs=0.01)
    assert disattenuate(r_noisy, rel) == pytest.approx(0.6, abs=0.015)


def test_disattenuation_formula_and_its_rule_for_non_positive_reliability():
    assert CROSS_ATTENTION_RELIABILITY == 1.0
    assert disattenuate(0.4, 0.64) == pytest.approx(0.5)                # 0.4 / sqrt(0.64 * 1)
    assert disattenuate(0.3, 0.36, 0.25) == pytest.approx(1.0)          # 0.3 / (0.6 * 0.5)
    assert disattenuate(0.5, 0.16) == pytest.approx(1.25)               # not clipped: visible
    assert math.isnan(disattenuate(0.4, 0.0))
    assert math.isnan(disattenuate(0.4, -0.2))
    assert math.isnan(disattenuate(0.4, float("nan")))
    out = disattenuate(np.array([0.4, 0.2, 0.1]), np.array([0.64, 0.0, 0.25]))
    assert out[0] == pytest.approx(0.5) and math.isnan(out[1]) and out[2] == pytest.approx(0.2)


def test_share_of_the_gap_explained_by_noise():
    # r 0.4, reliability 0.64 -> corrected 0.5: 0.1 of the 0.6 gap
    assert noise_share_of_gap(0.4, 0.64) == pytest.approx(1 / 6)
    assert noise_share_of_gap(0.4, 1.0) == pytest.approx(0.0)           # no noise: none of the gap
    assert noise_share_of_gap(0.5, 0.16) == pytest.approx(1.0)          # corrected >= 1: all of it
    assert math.isnan(noise_share_of_gap(0.4, 0.0))
