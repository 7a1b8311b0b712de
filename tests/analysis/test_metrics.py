import json

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


def test_errors_are_clear(tmp_path):
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
