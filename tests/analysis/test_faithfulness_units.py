import numpy as np
import pytest

from fairseq_xattn.analysis.faithfulness import auc, keep_masks, percent_steps, size_curve


def test_keep_masks_deletion_and_insertion_counts_and_order():
    values = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.0, 0.2, 0.8, 0.6, 0.4])
    pct = [0, 20, 50, 100]
    dele = keep_masks(values, pct, "deletion")
    assert dele.sum(axis=1).tolist() == [10, 8, 5, 0]
    # 20% of 10 units: the two most relevant (0.9 at 1, 0.8 at 7) go first
    assert np.flatnonzero(~dele[1]).tolist() == [1, 7]
    ins = keep_masks(values, pct, "insertion")
    assert ins.sum(axis=1).tolist() == [0, 2, 5, 10]
    assert np.flatnonzero(ins[1]).tolist() == [1, 7]
    np.testing.assert_array_equal(ins[2], ~dele[2])
    # SPES count: floor(N * k / 100) on 2-D maps, flattened
    assert keep_masks(np.arange(12.0).reshape(3, 4), [5, 25], "deletion").sum(axis=1).tolist() == [12, 9]


def test_auc_known_answers():
    pct = percent_steps(5)
    assert len(pct) == 21 and pct[0] == 0 and pct[-1] == 100
    assert auc(np.full(21, 100.0), pct) == pytest.approx(100.0)
    assert auc(pct.astype(float), pct) == pytest.approx(50.0)  # the diagonal: area 5000 / 100
    with pytest.raises(ValueError, match="divide 100"):
        percent_steps(7)


def test_size_known_answer():
    # one sample, cells 0, 0.5, 1: share >= t is 100% at t=0, 2/3 for 0<t<=0.5, 1/3 for 0.5<t<=1
    t, curve, area = size_curve([np.array([0.0, 0.5, 1.0])])
    assert curve[0] == pytest.approx(100.0) and curve[10] == pytest.approx(200 / 3) and curve[-1] == pytest.approx(100 / 3)
    expected = np.trapezoid([100 * np.mean(np.array([0, 0.5, 1.0]) >= x) for x in t], t)
    assert area == pytest.approx(expected)
    # averaged over samples
    _, c2, _ = size_curve([np.array([1.0]), np.array([0.0, 0.0])])
    assert c2[-1] == pytest.approx(50.0)
