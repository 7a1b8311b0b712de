import json
import sys
import types

import jiwer
import pytest
import sacrebleu
from whisper_normalizer.english import EnglishTextNormalizer

from .cli_runner import run_xattn
from fairseq_xattn.analysis.metrics import MetricError, basic_normaliser, score

HYPS = ["The cat sat on the mat.", "Twenty dollars, isn't it?", "hello world", "it rains"]
REFS = ["the cat sat on a mat", "$20, is it not?", "hello there world", "it is raining today"]


def test_wer_agrees_with_jiwer_after_whisper_normaliser():
    norm = EnglishTextNormalizer()
    direct = 100 * jiwer.wer([norm(r) for r in REFS], [norm(h) for h in HYPS])
    assert score("wer", HYPS, REFS) == pytest.approx(direct)
    assert 0 < direct < 100
    # known answer without normalisation: 'a b c' vs 'a x c' (1 sub) and 'd e' vs '' (2 del) = 3/5
    assert score("wer", ["a x c", ""], ["a b c", "d e"], normaliser="none") == pytest.approx(60.0)
    assert score("wer_max", ["a b c d e f"], ["x"], normaliser="none") == 100.0
    assert score("wer", ["a b c d e f"], ["x"], normaliser="none") == pytest.approx(600.0)


def test_bleu_chrf_agree_with_sacrebleu():
    assert score("bleu", HYPS, REFS) == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert score("chrf", HYPS, REFS) == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    assert score("bleu", REFS, REFS) == pytest.approx(100.0)


def test_basic_normaliser_for_other_languages():
    assert basic_normaliser("Perché, Signora?  È l'ORA!") == "perché signora è l ora"


def test_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the COMET path sets them process-wide
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(MetricError, match="3 hypotheses but 2 references"):
        score("wer", ["a", "b", "c"], ["a", "b"])
    with pytest.raises(MetricError, match="--comet-model"):
        score("comet", HYPS, REFS, srcs=HYPS, comet_model=None)
    with pytest.raises(MetricError, match="not available offline"):
        score("comet", HYPS, REFS, srcs=HYPS, comet_model=str(tmp_path / "wmt22-comet-da"))
    (tmp_path / "m" / "checkpoints").mkdir(parents=True)
    (tmp_path / "m" / "checkpoints" / "model.ckpt").write_bytes(b"x")
    try:
        import comet  # noqa: F401
    except ImportError:
        with pytest.raises(MetricError, match="unbabel-comet"):
            score("comet", HYPS, REFS, srcs=HYPS, comet_model=str(tmp_path / "m"))


def test_score_cli_on_generate_output(tmp_path):
    log = tmp_path / "generate-test.txt"
    lines = []
    for i, (h, r) in reversed(list(enumerate(zip(HYPS, REFS)))):
        lines += [f"S-{i}\tutt{i}", f"T-{i}\t{r}", f"H-{i}\t-0.5\t{h.lower()}", f"D-{i}\t-0.5\t{h}", f"P-{i}\t-0.1 -0.2"]
    log.write_text("\n".join(lines) + "\nGenerate test with beam=5: WER: 1.0\n")
    out = run_xattn("score", "--generate-output", log, "--metrics", "wer", "bleu", "chrf", "--json", tmp_path / "s.json")
    assert out.returncode == 0, out.stderr
    got = json.loads((tmp_path / "s.json").read_text())["scores"]
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert got["wer"] == pytest.approx(score("wer", HYPS, REFS))
    assert "| wer |" in out.stdout
    (tmp_path / "h.txt").write_text("a\nb\n")
    (tmp_path / "r.txt").write_text("a\n")
    bad = run_xattn("score", "--hyp", tmp_path / "h.txt", "--ref", tmp_path / "r.txt")
    assert bad.returncode == 2 and "h.txt has 2 lines" in bad.stderr


# --------------------------------------------------------------------------- sources for COMET
# Utterances in manifest order; fairseq-generate and the recording write them in batch (length) order.
MANIFEST = [("utt_a", "src A", "hyp A", "ref A"), ("utt_b", "src B", "hyp B", "ref B"),
            ("utt_c", "src C", "hyp C", "ref C"), ("utt_d", "src D", "hyp D", "ref D")]
WRITE_ORDER = [2, 0, 3, 1]  # not the manifest order


def _manifest(path, rows=MANIFEST, extra_columns=True):
    header = ["id", "audio", "n_frames", "tgt_text", "speaker", "src_text"] if extra_columns else ["id", "src_text"]
    lines = ["\t".join(header)]
    for utt, src, _, ref in rows:
        lines.append("\t".join([utt, f"x.zip:{len(lines)}:10", "100", ref, "spk", src] if extra_columns
                               else [utt, src]))
    path.write_text("\n".join(lines) + "\n")
    return path


def _store_out_of_order(path):
    import numpy as np

    from fairseq_xattn.stores import KIND_CROSS_ATTENTION, StoreWriter

    with StoreWriter(path, KIND_CROSS_ATTENTION, {"beam": 5}) as w:
        for k in WRITE_ORDER:
            utt, _, hyp, ref = MANIFEST[k]
            w.write(utt, {"attention": np.full((1, 1, 2, 3), 1 / 3, dtype=np.float32)},
                    {"tokens": [4, 2], "token_strings": ["w", "</s>"], "text": hyp, "reference": ref,
                     "n_frames": 12, "n_encoder_frames": 3, "subsampling": 4, "prefix_len": 0, "score": -1.0})
    return path


def _generate_log_out_of_order(path):
    lines = []
    for k in WRITE_ORDER:  # sample index k = manifest row k
        _, _, hyp, ref = MANIFEST[k]
        lines += [f"S-{k}\t", f"T-{k}\t{ref}", f"H-{k}\t-0.3\t{hyp}", f"D-{k}\t-0.3\t{hyp}", f"P-{k}\t-0.1 -0.2"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _args(**kw):
    from argparse import Namespace

    base = dict(hyp=None, ref=None, src=None, src_manifest=None, generate_output=None, store=None)
    base.update({k: (str(v) if v is not None and not isinstance(v, list) else v) for k, v in kw.items()})
    return Namespace(**base)


def _triples(scored):
    return sorted(zip(scored.srcs, scored.hyps, scored.refs))


EXPECTED = sorted((src, hyp, ref) for _, src, hyp, ref in MANIFEST)


def test_store_sources_are_joined_by_utterance_id(tmp_path):
    from fairseq_xattn.analysis.score_cli import load_inputs

    store = _store_out_of_order(tmp_path / "attn")
    scored = load_inputs(_args(store=store, src_manifest=[str(_manifest(tmp_path / "test.tsv"))]))
    assert scored.keys == [MANIFEST[k][0] for k in WRITE_ORDER]  # the store's order, kept
    assert _triples(scored) == EXPECTED  # every hypothesis with its own source
    # the positional pairing the review found: sources in manifest order against records in write order
    (tmp_path / "src.txt").write_text("".join(f"{src}\n" for _, src, _, _ in MANIFEST))
    with pytest.raises(MetricError, match="keyed by utterance id.*--src-manifest"):
        load_inputs(_args(store=store, src=tmp_path / "src.txt"))
    # a record without a source is named
    partial = _manifest(tmp_path / "partial.tsv", rows=MANIFEST[:2], extra_columns=False)
    with pytest.raises(MetricError, match=r"2 record id\(s\) are not in --src-manifest .*partial.tsv.*utt_c"):
        load_inputs(_args(store=store, src_manifest=[str(partial)]))


def test_generate_output_sources_are_joined_by_sample_index(tmp_path):
    from fairseq_xattn.analysis.score_cli import load_inputs

    log = _generate_log_out_of_order(tmp_path / "generate-test.txt")
    (tmp_path / "src.txt").write_text("".join(f"{src}\n" for _, src, _, _ in MANIFEST))
    by_lines = load_inputs(_args(generate_output=log, src=tmp_path / "src.txt"))
    assert _triples(by_lines) == EXPECTED
    by_manifest = load_inputs(_args(generate_output=log, src_manifest=[str(_manifest(tmp_path / "test.tsv"))]))
    assert _triples(by_manifest) == EXPECTED
    # a comma-joined --gen-subset is fairseq's ConcatDataset: indices run over the manifests in order
    one = _manifest(tmp_path / "one.tsv", rows=MANIFEST[:1])
    rest = _manifest(tmp_path / "rest.tsv", rows=MANIFEST[1:])
    assert _triples(load_inputs(_args(generate_output=log, src_manifest=[str(one), str(rest)]))) == EXPECTED
    # a sample fairseq-generate did not print (docs/method.md section 8: batching once dropped utterances) shifts
    # every later line of a positional pairing; by index the others keep their own source
    kept = [line for line in log.read_text().splitlines() if not line[2:].startswith("1\t")]
    (tmp_path / "dropped.txt").write_text("\n".join(kept) + "\n")
    dropped = load_inputs(_args(generate_output=tmp_path / "dropped.txt", src=tmp_path / "src.txt"))
    assert dropped.keys == [0, 2, 3]
    assert _triples(dropped) == [t for t in EXPECTED if not t[0].endswith("B")]
    # an index the sources do not cover is an error, not a shifted pairing
    with pytest.raises(MetricError, match=r"sample indices \[2, 3\] .* beyond the 2 sources"):
        load_inputs(_args(generate_output=log, src_manifest=[str(_manifest(tmp_path / "two.tsv", MANIFEST[:2]))]))


def test_hyp_files_take_parallel_sources_only(tmp_path):
    from fairseq_xattn.analysis.score_cli import load_inputs

    for name, col in (("hyp", 2), ("ref", 3), ("src", 1)):
        (tmp_path / f"{name}.txt").write_text("".join(f"{row[col]}\n" for row in MANIFEST))
    scored = load_inputs(_args(hyp=tmp_path / "hyp.txt", ref=tmp_path / "ref.txt", src=tmp_path / "src.txt"))
    assert list(zip(scored.srcs, scored.hyps, scored.refs)) == [(s, h, r) for _, s, h, r in MANIFEST]
    with pytest.raises(MetricError, match="--hyp has neither"):
        load_inputs(_args(hyp=tmp_path / "hyp.txt", ref=tmp_path / "ref.txt",
                          src_manifest=[str(_manifest(tmp_path / "test.tsv"))]))
    (tmp_path / "short.txt").write_text("a\n")
    with pytest.raises(MetricError, match="1 lines for 4 hypotheses"):
        load_inputs(_args(hyp=tmp_path / "hyp.txt", ref=tmp_path / "ref.txt", src=tmp_path / "short.txt"))


@pytest.fixture
def fake_comet(tmp_path, monkeypatch):
    """A stand-in ``comet`` package (unbabel-comet is not installed here) recording what it is given."""
    pkg = tmp_path / "fake_site" / "comet"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "import os\n"
        "ENV_AT_IMPORT = {k: os.environ.get(k) for k in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE')}\n"
        "CALLS = []\n"
        "class _Out:\n"
        "    def __init__(self, s): self.system_score = s\n"
        "class _Model:\n"
        "    def predict(self, data, batch_size, gpus, progress_bar):\n"
        "        CALLS.append({'data': data, 'gpus': gpus})\n"
        "        return _Out(sum(d['src'][-1] == d['mt'][-1] == d['ref'][-1] for d in data) / len(data))\n"
        "def load_from_checkpoint(path):\n"
        "    return _Model()\n")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delitem(sys.modules, "comet", raising=False)
    # huggingface_hub imported before (by anything): its cached constant must be switched too
    hub_constants = types.ModuleType("huggingface_hub.constants")
    hub_constants.HF_HUB_OFFLINE = False
    monkeypatch.setitem(sys.modules, "huggingface_hub.constants", hub_constants)
    monkeypatch.syspath_prepend(str(pkg.parent))
    ckpt = tmp_path / "wmt22-comet-da" / "checkpoints" / "model.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    yield ckpt.parent.parent
    sys.modules.pop("comet", None)


def test_comet_is_offline_at_import_on_its_0_1_scale_and_sees_joined_sources(tmp_path, fake_comet):
    store = _store_out_of_order(tmp_path / "attn")
    out = run_xattn("score", "--store", store, "--src-manifest", _manifest(tmp_path / "test.tsv"),
                    "--metrics", "comet", "--comet-model", fake_comet, "--cpu", "--json", tmp_path / "s.json")
    assert out.returncode == 0, out.stderr
    import comet  # the fake, as imported by the scorer

    assert comet.ENV_AT_IMPORT == {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    assert sys.modules["huggingface_hub.constants"].HF_HUB_OFFLINE is True
    (call,) = comet.CALLS
    assert call["gpus"] == 0  # --cpu
    assert sorted((d["src"], d["mt"], d["ref"]) for d in call["data"]) == EXPECTED
    # every triple agrees (A/A/A, ...): 1.0 on COMET's scale, not 100
    assert json.loads((tmp_path / "s.json").read_text())["scores"]["comet"] == 1.0
    assert "| comet | 1.0000 | higher |" in out.stdout
    # without sources COMET is refused before any model is loaded
    bad = run_xattn("score", "--store", store, "--metrics", "comet", "--comet-model", fake_comet)
    assert bad.returncode == 2 and "--src-manifest" in bad.stderr
    bad = run_xattn("score", "--store", store, "--src", tmp_path / "s.json", "--metrics", "comet",
                    "--comet-model", fake_comet)
    assert bad.returncode == 2 and "keyed by utterance id" in bad.stderr


def test_comet_uses_a_gpu_when_there_is_one(monkeypatch):
    import torch

    from fairseq_xattn.analysis.metrics import comet_gpus

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert comet_gpus() == 1 and comet_gpus(cpu=True) == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert comet_gpus() == 0
