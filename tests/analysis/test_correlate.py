import csv
import json

import numpy as np
import pytest

from fairseq_xattn.analysis.correlate import (
    CorrelationConfig, CorrelationError, StorePairing, correlate, markdown_grid,
)
from .cli_runner import run_xattn
from .builders import write_attention_store, write_saliency_store

RNG = np.random.default_rng(1234)


def _perm_attention(perm, L=2, H=2, n_prefix=0, junk=None):
    """Attention whose content rows are the permutation matrix `perm` (I x T'), plus junk rows."""
    content = np.eye(len(perm))[perm]
    rows = ([junk[0]] if n_prefix else []) + list(content) + [junk[-1] if junk is not None else np.ones(len(perm))]
    one = np.asarray(rows)
    return np.broadcast_to(one, (L, H) + one.shape).copy()


def _input_saliency_from_perm(perm, s=4, F=3, n_prefix=0, junk_value=50.0):
    """Input saliency I x T x F whose max2d pooling (after SPES norm) is the permutation matrix."""
    n = len(perm)
    T = n * s - 2  # last window partial
    rows = []
    for i, j in enumerate(perm):
        m = np.zeros((T, F))
        m[j * s + (1 if j < n - 1 else 0), i % F] = 3.0 + i  # one hot cell inside window j
        rows.append(m)
    junk = RNG.random((T, F)) * junk_value
    rows = ([junk] * n_prefix) + rows + [junk]
    return np.asarray(rows)


def _cfg(**kw):
    return CorrelationConfig(**kw)


def test_identical_maps_give_one_and_flipped_give_minus_one(tmp_path):
    perm = [2, 0, 3, 1]
    att = write_attention_store(tmp_path / "att", {"u1": _perm_attention(perm)})
    sal_in = write_saliency_store(tmp_path / "sx", {"u1": _input_saliency_from_perm(perm)}, "input")
    res = correlate(StorePairing(att, sal_in, _cfg()))  # defaults: spes + max2d + frame-wise MVN
    np.testing.assert_allclose(res.grid, 1.0)
    np.testing.assert_allclose(res.full, [1.0])
    # flipped: SM^H = 1 - P on the encoder grid
    flipped = 1.0 - np.eye(4)[perm]
    sal_enc = write_saliency_store(tmp_path / "sh", {"u1": np.vstack([flipped, np.ones((1, 4))])}, "encoder")
    res = correlate(StorePairing(att, sal_enc, _cfg()))
    np.testing.assert_allclose(res.head_avg, -1.0)
    # raw maps, no normalisation: CA identical to SM -> 1, negated -> -1
    a = RNG.random((1, 1, 5, 7))
    att2 = write_attention_store(tmp_path / "att2", {"u": a})
    same = write_saliency_store(tmp_path / "same", {"u": a[0, 0]}, "encoder")
    neg = write_saliency_store(tmp_path / "neg", {"u": -a[0, 0]}, "encoder")
    none = dict(saliency_norm=("none",), attention_norm=("none",))
    assert correlate(StorePairing(att2, same, _cfg(**none))).full[0] == pytest.approx(1.0)
    assert correlate(StorePairing(att2, neg, _cfg(**none))).full[0] == pytest.approx(-1.0)


def test_language_tag_and_eos_rows_are_removed(tmp_path):
    perm = [1, 3, 0, 2]
    junk = RNG.random((2, 4)) * 10
    att = _perm_attention(perm, n_prefix=1, junk=junk)
    toks = [99, 5, 6, 7, 8, 2]
    a = write_attention_store(tmp_path / "att", {"u1": att}, tokens={"u1": toks}, prefix_len=1)
    s = write_saliency_store(tmp_path / "sx", {"u1": _input_saliency_from_perm(perm, n_prefix=1)}, "input",
                             tokens={"u1": toks}, prefix_len=1)
    np.testing.assert_allclose(correlate(StorePairing(a, s, _cfg())).full, [1.0])
    # keeping EOS lets the junk rows in: no longer a perfect correlation
    assert correlate(StorePairing(a, s, _cfg(drop_eos=False))).full[0] < 0.99


def _direct_r(ca_avg, sm):
    ca = ca_avg[:-1]  # drop EOS
    sd = ca.std(axis=0)
    sd[sd == 0] = 1
    ca = (ca - ca.mean(axis=0)) / sd
    return np.corrcoef(ca.ravel(), sm.ravel())[0, 1]


def test_views_and_subsets_match_direct_computation(tmp_path):
    L, H, I, Tp = 3, 4, 6, 9
    atts = {f"u{k}": RNG.dirichlet(np.ones(Tp), size=(L, H, I)) for k in range(3)}
    sals = {u: RNG.random((I, Tp)) for u in atts}
    a = write_attention_store(tmp_path / "att", atts)
    s = write_saliency_store(tmp_path / "sh", sals, "encoder")
    subsets = {"pair": [(1, 2), (3, 4)], "layer2": [(2, -1)]}
    res = correlate(StorePairing(a, s, _cfg(saliency_norm=("none",), subsets=subsets)))
    summ = res.summary()
    for k, u in enumerate(res.ids):
        att, sm = atts[u], sals[u][:-1]
        assert res.grid[k, 2, 1] == pytest.approx(_direct_r(att[2, 1], sm))
        assert res.head_avg[k, 1] == pytest.approx(_direct_r(att[1].mean(0), sm))
        assert res.layer_avg[k, 3] == pytest.approx(_direct_r(att[:, 3].mean(0), sm))
        assert res.full[k] == pytest.approx(_direct_r(att.mean((0, 1)), sm))
        assert res.subsets["pair"][k] == pytest.approx(_direct_r((att[0, 1] + att[2, 3]) / 2, sm))
        assert res.subsets["layer2"][k] == pytest.approx(res.head_avg[k, 1])
    direct = [_direct_r(atts[u][0, 1] / 2 + atts[u][2, 3] / 2, sals[u][:-1]) for u in res.ids]
    assert summ["subsets"]["pair"]["mean"] == pytest.approx(np.mean(direct))
    assert summ["subsets"]["pair"]["std"] == pytest.approx(np.std(direct, ddof=1))
    assert summ["subsets"]["pair"]["n"] == 3
    table = markdown_grid(summ)
    assert table.splitlines()[0] == "| head | l=1 | l=2 | l=3 | l-AVG |"
    assert table.splitlines()[-1].startswith("| h-AVG |")
    assert f"{summ['full_avg']['mean']:.3f}" in table.splitlines()[-1]


def test_mismatched_stores_name_the_utterance(tmp_path):
    att = {"a1": RNG.random((1, 1, 3, 5)), "a2": RNG.random((1, 1, 3, 5))}
    a = write_attention_store(tmp_path / "att", att)
    s = write_saliency_store(tmp_path / "s1", {"a1": RNG.random((3, 5))}, "encoder")
    with pytest.raises(CorrelationError, match="'a2'"):
        StorePairing(a, s, _cfg())
    assert StorePairing(a, s, _cfg(intersect=True)).ids == ["a1"]
    s2 = write_saliency_store(tmp_path / "s2", {"a1": RNG.random((3, 5)), "a2": RNG.random((3, 5))}, "encoder",
                              tokens={"a1": [4, 5, 2], "a2": [4, 6, 2]})
    with pytest.raises(CorrelationError, match="'a2'.*different token sequences"):
        correlate(StorePairing(a, s2, _cfg()))
    s3 = write_saliency_store(tmp_path / "s3", {"a1": RNG.random((3, 5)), "a2": RNG.random((3, 6))}, "encoder")
    with pytest.raises(CorrelationError, match="'a2'.*different T'.*5.*6"):
        correlate(StorePairing(a, s3, _cfg()))
    # input saliency of 25 frames pools to 7 encoder frames, not 5
    s4 = write_saliency_store(tmp_path / "s4", {"a1": RNG.random((3, 20, 2)), "a2": RNG.random((3, 25, 2))}, "input")
    with pytest.raises(CorrelationError, match="'a2'.*different T'.*25 frames"):
        correlate(StorePairing(a, s4, _cfg()))


def test_cli_writes_markdown_csv_json(tmp_path):
    L, H, I, Tp = 2, 2, 4, 5
    atts = {f"u{k}": RNG.dirichlet(np.ones(Tp), size=(L, H, I)) for k in range(2)}
    a = write_attention_store(tmp_path / "att", atts)
    s = write_saliency_store(tmp_path / "sx", {u: RNG.random((I, Tp * 4 - 1, 3)) for u in atts}, "input")
    out = run_xattn("correlate", "--attention", a, "--saliency", s, "--subset", "deep=2:*",
                    "--csv", tmp_path / "r.csv", "--json", tmp_path / "r.json")
    assert out.returncode == 0, out.stderr
    assert "| h-AVG |" in out.stdout and "| deep | 2:1 2:2 |" in out.stdout
    summ = json.loads((tmp_path / "r.json").read_text())
    assert summ["n_utterances"] == 2 and len(summ["grid"]) == L and len(summ["grid"][0]) == H
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    full = [r for r in rows if r["view"] == "full"][0]
    assert float(full["mean"]) == pytest.approx(summ["full_avg"]["mean"])
    deep = [r for r in rows if r["view"] == "subset"][0]
    layer2 = [r for r in rows if r["view"] == "layer" and r["layer"] == "2"][0]
    assert float(deep["mean"]) == pytest.approx(float(layer2["mean"]))
    bad = run_xattn("correlate", "--attention", a, "--saliency", s, "--subset", "x=9:1")
    assert bad.returncode == 2 and "(9, 1)" in bad.stderr and "Traceback" not in bad.stderr


def test_header_names_the_saliency_and_pools_only_input_saliency(tmp_path):
    L, H, I, Tp = 2, 2, 4, 5
    atts = {f"u{k}": RNG.dirichlet(np.ones(Tp), size=(L, H, I)) for k in range(3)}
    a = write_attention_store(tmp_path / "att", atts)
    sx = write_saliency_store(tmp_path / "sx", {u: RNG.random((I, Tp * 4, 3)) for u in atts}, "input")
    sh = write_saliency_store(tmp_path / "sh", {u: RNG.random((I, Tp)) for u in atts}, "encoder")
    out_x = run_xattn("correlate", "--attention", a, "--saliency", sx, "--aggregation", "avg2d", "--view", "layers")
    assert out_x.returncode == 0, out_x.stderr
    assert out_x.stdout.splitlines()[0] == ("Pearson r, CA vs SM^X (input saliency, avg2d pooling), "
                                            "mean over 3 utterances")
    out_h = run_xattn("correlate", "--attention", a, "--saliency", sh, "--view", "layers",
                      "--json", tmp_path / "h.json")
    assert out_h.returncode == 0, out_h.stderr
    header = out_h.stdout.splitlines()[0]
    assert header == "Pearson r, CA vs SM^H (encoder-output saliency, no pooling), mean over 3 utterances"
    assert "max2d" not in header
    assert json.loads((tmp_path / "h.json").read_text())["config"]["aggregation"] is None
    # and the pooling option indeed changes nothing for SM^H
    other = run_xattn("correlate", "--attention", a, "--saliency", sh, "--view", "layers", "--aggregation", "avg2d")
    assert other.stdout == out_h.stdout


def test_reliability_and_attenuation_corrected_r_by_hand(tmp_path):
    """Two utterances whose r is known (+1 and -1 of a hand-made pair) and whose saliency maps record
    reliabilities 0.64 and 0.25: corrected r = r / sqrt(rel) = 1.25 and -2.0 per utterance."""
    a = RNG.dirichlet(np.ones(5), size=(1, 1, 4))  # L=1, H=1, I=4 (3 content rows + EOS), T'=5
    att = write_attention_store(tmp_path / "att", {"u1": a, "u2": a})
    sal = write_saliency_store(tmp_path / "sh", {"u1": a[0, 0], "u2": -a[0, 0]}, "encoder",
                               extra_meta={"u1": {"reliability": 0.64}, "u2": {"reliability": 0.25}})
    cfg = CorrelationConfig(saliency_norm=("none",), attention_norm=("none",))
    result = correlate(StorePairing(att, sal, cfg))
    np.testing.assert_allclose(result.full, [1.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(result.reliability, [0.64, 0.25])
    summary = result.summary()
    assert summary["reliability"]["mean"] == pytest.approx((0.64 + 0.25) / 2)
    assert summary["corrected"]["full_avg"]["mean"] == pytest.approx((1 / 0.8 - 1 / 0.5) / 2)
    # raw mean 0, corrected mean -0.375: the correction removes 0.375 of the distance from 1
    assert summary["noise_share_of_gap"] == pytest.approx(0.375)
    # without recorded reliabilities there is nothing to correct
    plain = write_saliency_store(tmp_path / "plain", {"u1": a[0, 0], "u2": a[0, 0]}, "encoder")
    assert correlate(StorePairing(att, plain, cfg)).summary()["reliability"] is None


def test_the_reliability_paragraph_warns_that_pooled_input_maps_are_under_corrected():
    from fairseq_xattn.analysis.correlate import markdown_reliability

    summary = {"reliability": {"mean": 0.9, "n": 2}, "full_avg": {"mean": 0.2, "std": 0.0, "n": 2},
               "corrected": {"full_avg": {"mean": 0.21, "std": 0.0, "n": 2}}, "noise_share_of_gap": 0.0125}
    encoder = markdown_reliability({**summary, "config": {"aggregation": None}})
    pooled = markdown_reliability({**summary, "config": {"aggregation": "max2d"}})
    assert "explains 1% of the gap" in encoder and "lower bound" not in encoder
    assert pooled.startswith(encoder) and "For pooled input maps read the corrected r as a lower bound" in pooled
