import json

import numpy as np
import pytest

from fairseq_xattn.analysis.plots import PlotError, load_utterance_maps
from .cli_runner import run_xattn
from .builders import write_attention_store, write_saliency_store

RNG = np.random.default_rng(7)


@pytest.fixture
def stores(tmp_path):
    I, T = 5, 37
    Tp = -(-T // 4)
    toks = {"u1": [11, 12, 13, 14, 2]}
    a = write_attention_store(tmp_path / "att", {"u1": RNG.dirichlet(np.ones(Tp), size=(3, 2, I))}, tokens=toks)
    sx = write_saliency_store(tmp_path / "sx", {"u1": RNG.random((I, T, 80))}, "input", tokens=toks)
    sh = write_saliency_store(tmp_path / "sh", {"u1": RNG.random((I, Tp))}, "encoder", tokens=toks)
    return a, sx, sh


def test_utterance_maps_use_the_analysis_rows_and_normalisation(stores):
    a, sx, sh = stores
    m = load_utterance_maps("u1", attention=a, saliency_input=sx, saliency_encoder=sh, pairs=[(3, 2)])
    assert m.tokens == ["w11", "w12", "w13", "w14"]  # EOS row dropped
    assert m.sm_x.shape == (4, 37, 80) and m.sm_x_pooled.shape == (4, 10) and m.sm_h.shape == (4, 10)
    assert m.ca.shape == (4, 10) and m.ca_label == "CA (layer 3, head 2)"
    np.testing.assert_allclose(m.sm_x.reshape(4, -1).max(axis=1), 1.0)  # spes chain: per-token [0, 1]
    with pytest.raises(PlotError, match="'nope'"):
        load_utterance_maps("nope", attention=a)
    with pytest.raises(PlotError, match="target 'input'"):
        load_utterance_maps("u1", saliency_input=sh)


def _run(*args):
    return run_xattn("plot", *args)


def test_plot_cli_writes_png_and_pdf(stores, tmp_path):
    a, sx, sh = stores
    out = _run("utterance", "--id", "u1", "--attention", a, "--saliency-input", sx, "--saliency-encoder", sh,
               "--layer", "3", "--out", tmp_path / "figs" / "u1")
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("u1.png", "u1.pdf", "u1_tokens.png", "u1_tokens.pdf"):
        path = tmp_path / "figs" / name
        assert path.stat().st_size > 5000, name
    assert (tmp_path / "figs" / "u1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "figs" / "u1.pdf").read_bytes()[:5] == b"%PDF-"
    summary = {"n_utterances": 3, "grid": [[{"mean": 0.1 * (l + h)} for h in range(2)] for l in range(3)],
               "head_avg": [{"mean": 0.5}] * 3, "layer_avg": [{"mean": None}] * 2, "full_avg": {"mean": 0.6}}
    (tmp_path / "c.json").write_text(json.dumps(summary))
    assert _run("grid", "--json", tmp_path / "c.json", "--out", tmp_path / "grid", "--formats", "png").returncode == 0
    assert (tmp_path / "grid.png").exists() and not (tmp_path / "grid.pdf").exists()
    faith = {"scorer": "wer_max", "percents": [0, 50, 100], "n_utterances": 2, "rows": [
        {"label": "SMX", "kind": "saliency_input", "curves": {"deletion": [10, 80, 100]}, "auc": {"deletion": 67.5}},
        {"label": "random", "kind": "random", "curves": {"deletion": [10, 30, 100]}, "auc": {"deletion": 42.5}}]}
    (tmp_path / "f.json").write_text(json.dumps(faith))
    assert _run("curves", "--json", tmp_path / "f.json", "--out", tmp_path / "del").returncode == 0
    bad = _run("curves", "--json", tmp_path / "f.json", "--mode", "insertion", "--out", tmp_path / "ins")
    assert bad.returncode == 2 and "no insertion curve" in bad.stderr
