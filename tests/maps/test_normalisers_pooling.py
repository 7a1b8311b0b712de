import numpy as np
import pytest

from fairseq_xattn.maps.pooling import aggregate, encoder_length, upsample_nearest
from fairseq_xattn.maps.normalisers import normalise, resolve_chain
from fairseq_xattn.stores.schema import RecordError, content_rows


def test_single_mean_std_known_answer():
    # one token, 3 frames x 4 bins, each frame [1, 2, 1, 3]: mean 1.75, unbiased var 0.75
    x = np.tile([1.0, 2.0, 1.0, 3.0], (1, 3, 1))
    z = normalise(x, "single_mean_std")
    np.testing.assert_allclose(z[0, 0], [-0.8660254, 0.2886751, -0.8660254, 1.4433757], atol=1e-6)
    np.testing.assert_allclose(z[0, 2], z[0, 0])


def test_single_mean_std_constant_row_is_zero_and_rows_are_independent():
    x = np.stack([np.full((2, 3), 5.0), np.arange(6.0).reshape(2, 3) * 100])
    z = normalise(x, "single_mean_std")
    assert np.all(z[0] == 0)
    np.testing.assert_allclose(z[1].ravel(), (np.arange(6) - 2.5) / np.std(np.arange(6), ddof=1))


def test_paired_min_max_and_spes_chain():
    x = np.array([[2.0, 4.0, 6.0], [7.0, 7.0, 7.0]])
    np.testing.assert_allclose(normalise(x, "paired_min_max"), [[0, 0.5, 1], [0, 0, 0]])
    assert resolve_chain("spes") == ["single_mean_std", "paired_min_max"]
    # the chain is min-max of the z-scores: same as min-max of the raw row (affine, positive scale)
    np.testing.assert_allclose(normalise(x, "spes"), [[0, 0.5, 1], [0, 0, 0]])
    np.testing.assert_allclose(normalise(x, ["single_mean_std", "paired_min_max"]), normalise(x, "spes"))


def test_frame_mean_variance_population_std_and_zero_std():
    x = np.array([[1.0, 3.0], [3.0, 3.0]])  # frame 0: mean 2, pop std 1; frame 1: std 0 -> 1
    np.testing.assert_allclose(normalise(x, "frame_mean_variance"), [[-1.0, 0.0], [1.0, 0.0]])


def test_unknown_normaliser_is_named():
    with pytest.raises(ValueError, match="bogus"):
        normalise(np.zeros((2, 2)), "bogus")


def test_pooling_windows_exact_with_partial_last_window():
    t = np.arange(10)[:, None] * 10.0 + np.arange(2)[None, :]  # T=10 x F=2, cell = 10 t + f
    sal = -t[None]  # negative values: a zero-padded window would wrongly give 0
    assert encoder_length(10, 4) == 3
    np.testing.assert_allclose(aggregate(sal, "max2d", 4), [[-0.0, -40.0, -80.0]])
    np.testing.assert_allclose(aggregate(sal, "avg2d", 4), [[-15.5, -55.5, -85.5]])
    np.testing.assert_allclose(aggregate(sal, "maxfreq_avgtime", 4), [[-15.0, -55.0, -85.0]])
    np.testing.assert_allclose(aggregate(t[None], "max2d", 4), [[31.0, 71.0, 91.0]])
    np.testing.assert_allclose(aggregate(t[None], "maxfreq_avgtime", 4), [[16.0, 56.0, 86.0]])


def test_pooling_exact_multiple_and_upsampling_inverse():
    sal = np.random.default_rng(0).random((3, 8, 5))
    pooled = aggregate(sal, "max2d", 4)
    assert pooled.shape == (3, 2)
    np.testing.assert_allclose(pooled[:, 1], sal[:, 4:8].max(axis=(1, 2)))
    assert upsample_nearest(np.array([7, 8, 9]), 10, 4).tolist() == [7, 7, 7, 7, 8, 8, 8, 8, 9, 9]


def test_row_removal():
    x = np.arange(5)[:, None] * np.ones((5, 2))
    assert content_rows({"prefix_len": 1}, 5) == slice(1, 4)
    kept = x[content_rows({"tokens": [9, 10, 11, 12, 2], "prefix_len": 1}, 5)]
    assert kept[:, 0].tolist() == [1, 2, 3]
    assert x[content_rows({"prefix_len": 0}, 5, drop_eos=False)][:, 0].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(RecordError, match="utt7.*4 ids"):
        content_rows({"tokens": [1, 2, 3, 2]}, 5, where="utt7")
    with pytest.raises(RecordError, match="no content row"):
        content_rows({"prefix_len": 1}, 2)
