"""Stores -> what the page shows, and the one-line errors of ``xattn view``."""
import shutil

import numpy as np
import pytest

from fairseq_xattn.analysis.viewer.load import ViewerInputs, load_report
from fairseq_xattn.stores import StoreReader
from tests.analysis.viewer.conftest import full_view_args
from tests.analysis.viewer.runner import run_view
from tests.analysis.viewer.synthetic import write_run


def _framewise(x):
    """METHOD.md 1 by hand: per frame, over tokens, population std, a zero std counting as 1."""
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std == 0, 1, std)


def _spes(x):
    """METHOD.md 4 by hand: per token z-score (n-1 std) then min-max."""
    rows = x.reshape(len(x), -1)
    z = (rows - rows.mean(1, keepdims=True)) / rows.std(1, ddof=1, keepdims=True)
    z = (z - z.min(1, keepdims=True)) / (z.max(1, keepdims=True) - z.min(1, keepdims=True))
    return z.reshape(x.shape)


def test_loaded_views_are_the_content_rows_of_the_stores(synthetic_run):
    run = synthetic_run
    report = load_report(ViewerInputs(
        attention=str(run.attention), saliency_input=str(run.saliency_input),
        saliency_encoder=str(run.saliency_encoder), features_from=str(run.data_dir), audio_from=str(run.raw_manifest),
        timestamps=str(run.timestamps)))
    views = list(report.views())
    assert [v.utt_id for v in views] == list(run.utterances)
    for k, view in enumerate(views):
        u = run.utterances[view.utt_id]
        # the language tag (row 0) and EOS (last row) are dropped
        assert view.tokens == u.tokens and view.attention.shape == (2, 4, 15, 75)
        np.testing.assert_allclose(view.attention, u.attention[:, :, 1:-1], rtol=1e-6)
        np.testing.assert_allclose(view.saliency_input, _spes(u.saliency_input[1:-1].astype(np.float64)), atol=1e-6)
        np.testing.assert_allclose(view.saliency_encoder, _spes(u.saliency_encoder[1:-1].astype(np.float64)), atol=1e-6)
        # max2d pooling by hand: windows of 4 frames x all bins
        sx = _spes(u.saliency_input[1:-1].astype(np.float64))
        pooled = np.stack([sx[:, 4 * j: 4 * j + 4].max(axis=(1, 2)) for j in range(75)], axis=1)
        np.testing.assert_allclose(view.saliency_input_pooled, pooled, atol=1e-6)
        np.testing.assert_array_equal(view.spectrogram, u.features)
        np.testing.assert_allclose(view.audio, u.audio, atol=1 / 32768)  # PCM_16 wav
        assert [(w.word, w.start) for w in view.reference_words] == [(w, s) for w, s, _ in u.words]
        assert [w.start for w in view.hypothesis_words] == pytest.approx([s + 0.02 for _, s, _ in u.words], abs=1e-3)
        # the per-utterance r of `xattn correlate`, recomputed here from its definition
        ca = _framewise(view.attention.astype(np.float64).mean(axis=(0, 1)))
        assert view.correlations["SM^X"].full == pytest.approx(np.corrcoef(ca.ravel(), pooled.ravel())[0, 1], abs=1e-5)
        layer2 = _framewise(view.attention[1].astype(np.float64).mean(axis=0))
        assert view.correlations["SM^H"].head_avg[1] == pytest.approx(
            np.corrcoef(layer2.ravel(), view.saliency_encoder.ravel())[0, 1], abs=1e-5)
        # the odd utterances' references differ in one word of 10
        assert view.scores["wer"] == pytest.approx(10.0 if k % 2 else 0.0)
        assert (view.scores["bleu"] < 100) == bool(k % 2)
    assert any("reference word times from" in n for n in report.notes)


def test_audio_alone_gives_the_models_features(synthetic_run):
    report = load_report(ViewerInputs(attention=str(synthetic_run.attention),
                                      audio_from=str(synthetic_run.raw_manifest), ids=["test_00001_en"]))
    (view,) = report.views()
    u = synthetic_run.utterances["test_00001_en"]
    # written as 16-bit PCM, so the filterbank of the read-back audio is close, not bit-identical
    assert view.spectrogram.shape == u.features.shape
    assert np.abs(view.spectrogram - u.features).max() < 0.05 * np.ptp(u.features)
    assert view.saliency_input is None and view.correlations == {}


def test_max_utterances_keeps_the_first_ones_and_says_so(synthetic_run):
    report = load_report(ViewerInputs(attention=str(synthetic_run.attention), max_utterances=2))
    assert report.ids == ["test_00000_en", "test_00001_en"]
    assert report.notes == ["showing the first 2 of 3 utterances (--max-utterances)"]


def test_hypothesis_times_from_ctm(synthetic_run, tmp_path):
    ctm = tmp_path / "hyp.ctm"
    ctm.write_text("test_00001_en 1 0.500 0.250 river 0.9\ntest_00001_en 1 0.100 0.200 the\n")
    report = load_report(ViewerInputs(attention=str(synthetic_run.attention), timestamps=str(ctm),
                                      ids=["test_00001_en"]))
    (view,) = report.views()
    # CTM gives start and duration; words sorted by start
    assert [w.word for w in view.hypothesis_words] == ["the", "river"]
    assert [t for w in view.hypothesis_words for t in (w.start, w.end)] == pytest.approx([0.1, 0.3, 0.5, 0.75])


# ----------------------------------------------------------------------------------- errors

def _error(result):
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xattn view: error: "), result.stderr
    return lines[0]


def test_stores_of_different_runs_are_refused(tmp_path):
    other = write_run(tmp_path / "other", n_utterances=1, seed=1, provenance={"model_sha256": "another",
                                                                               "gen_subset": "test"})
    mine = write_run(tmp_path / "mine", n_utterances=1, seed=1)
    line = _error(run_view("--attention", mine.attention, "--saliency-input", other.saliency_input,
                           "--out", tmp_path / "x.html"))
    assert "model_sha256" in line and str(mine.attention) in line and str(other.saliency_input) in line
    assert not (tmp_path / "x.html").exists()


def test_missing_utterance_is_named(synthetic_run, tmp_path):
    line = _error(run_view(*full_view_args(synthetic_run, tmp_path / "x.html"), "--ids", "test_00001_en", "nope"))
    assert "'nope'" in line and str(synthetic_run.attention) in line


def test_utterance_missing_from_a_saliency_store_is_named(synthetic_run, tmp_path):
    run = write_run(tmp_path / "run", n_utterances=2, seed=3)
    # a saliency store holding only the first utterance
    reader = StoreReader(run.saliency_encoder)
    from fairseq_xattn.stores import StoreWriter

    meta = {k: v for k, v in reader.meta.items() if k not in ("format", "version", "kind", "float16")}
    with StoreWriter(tmp_path / "sh1", reader.kind, meta) as w:
        rec = reader.get("test_00000_en")
        w.write(rec.id, rec.arrays, rec.meta)
    line = _error(run_view("--attention", run.attention, "--saliency-encoder", tmp_path / "sh1",
                           "--ids", "test_00001_en", "--out", tmp_path / "x.html"))
    assert "'test_00001_en'" in line and "--saliency-encoder" in line
    # without --ids the shared utterances are shown, with a note
    ok = run_view("--attention", run.attention, "--saliency-encoder", tmp_path / "sh1", "--out", tmp_path / "y.html")
    assert ok.returncode == 0 and "1 of 2 utterances" in ok.stderr


def test_missing_side_data_is_named(synthetic_run, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_run.data_dir, data)
    lines = (data / "test.tsv").read_text().splitlines()
    (data / "test.tsv").write_text("\n".join(l for l in lines if "test_00002_en" not in l) + "\n")
    args = ["--attention", synthetic_run.attention, "--out", tmp_path / "x.html"]
    line = _error(run_view(*args, "--features-from", data))
    assert "'test_00002_en'" in line and "--features-from" in line
    stamps = tmp_path / "words.jsonl"
    stamps.write_text(synthetic_run.timestamps.read_text().splitlines()[0] + "\n")  # the first utterance only
    line = _error(run_view(*args, "--timestamps", stamps))
    assert "'test_00001_en'" in line and str(stamps) in line


def test_features_of_another_data_folder_are_refused(synthetic_run, tmp_path):
    other = write_run(tmp_path / "other", n_utterances=3, seed=5, seconds=2.0)
    line = _error(run_view("--attention", synthetic_run.attention, "--features-from", other.data_dir,
                           "--out", tmp_path / "x.html"))
    assert "test_00000_en" in line and "frames" in line and str(other.data_dir) in line


def test_bad_flags_are_one_line(synthetic_run, tmp_path):
    line = _error(run_view("--attention", synthetic_run.attention, "--saliency-block", "2by2", "--out", tmp_path / "x"))
    assert "--saliency-block" in line
    line = _error(run_view("--attention", synthetic_run.saliency_input, "--out", tmp_path / "x"))
    assert "--attention" in line and "cross_attention" in line


def test_side_data_of_an_explained_subset_is_found(tmp_path):
    """Stores of a split with no manifest or timing file of its own (the demo explains a subset of test):
    features and reference times come from the data folder's files that list the ids."""
    run = write_run(tmp_path / "run", n_utterances=2, seed=4, provenance={"gen_subset": "explain_subset"})
    report = load_report(ViewerInputs(attention=str(run.attention), features_from=str(run.data_dir)))
    for view in report.views():
        u = run.utterances[view.utt_id]
        np.testing.assert_array_equal(view.spectrogram, u.features)
        assert [w.word for w in view.reference_words] == [w for w, _, _ in u.words]
    assert report.notes == [f"reference word times from {run.data_dir / 'timings' / 'test.jsonl'}"]


def test_other_model_is_a_note_when_allowed(tmp_path):
    other = write_run(tmp_path / "other", n_utterances=1, seed=1, provenance={"model_sha256": "another"})
    mine = write_run(tmp_path / "mine", n_utterances=1, seed=1)
    ok = run_view("--attention", mine.attention, "--saliency-input", other.saliency_input, "--allow-other-model",
                  "--out", tmp_path / "x.html")
    assert ok.returncode == 0 and "another model" in ok.stderr


def test_viewer_imports_neither_torch_nor_fairseq():
    import subprocess
    import sys

    code = ("import sys, fairseq_xattn.analysis.viewer.cli, fairseq_xattn.analysis.viewer.load, "
            "fairseq_xattn.analysis.viewer.builder; print(sorted(m for m in ('torch', 'fairseq') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
