"""xattn faithfulness on a real (tiny) fairseq checkpoint, against fairseq-generate."""
import json
import os
import subprocess
import sys

import pytest

from fairseq_xattn.analysis.metrics import score
from tests.fixtures.tiny_s2t import USER_DIR, fairseq_cli
from .builders import write_oracle_stores

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _generate(tiny_data, ckpt, beam):
    out = subprocess.run(fairseq_cli("generate") + [
        str(tiny_data), "--user-dir", str(USER_DIR), "--task", "speech_to_text", "--config-yaml", "config.yaml",
        "--gen-subset", "test", "--path", str(ckpt), "--beam", str(beam), "--no-repeat-ngram-size", "5",
        "--batch-size", "1", "--cpu"], capture_output=True, text=True, env=ENV, check=True).stdout
    return {int(l.split("\t")[0][2:]): l.split("\t")[2] for l in out.splitlines() if l.startswith("D-")}


def test_faithfulness_cli_on_tiny_model(tiny_data, tiny_checkpoint, tmp_path):
    sx, sh, ca = write_oracle_stores(tiny_data, tmp_path)
    cmd = [sys.executable, "-m", "fairseq_xattn.cli", "faithfulness", "--checkpoint", str(tiny_checkpoint),
           "--data", str(tiny_data), "--split", "test", "--beam", "2", "--step", "25", "--max-utterances", "2",
           "--scorer", "wer_max", "--normaliser", "none", "--metric", "deletion", "insertion",
           "--explanation", f"SMX=saliency_input:{sx}", "--explanation", f"SMH=saliency_encoder:{sh}",
           "--explanation", f"CA=attention:{ca}",
           "--json", str(tmp_path / "f.json"), "--hypotheses", str(tmp_path / "h.jsonl")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "f.json").read_text())
    labels = [r["label"] for r in res["rows"]]
    assert labels == ["SMX", "SMH", "CA", "random (input cells)", "random (encoder frames)",
                      "random (input frames)"]
    assert res["percents"] == [0, 25, 50, 75, 100]
    for r in res["rows"]:
        for mode in ("deletion", "insertion"):
            curve = r["curves"][mode]
            assert len(curve) == 5 and all(0 <= v <= 100 for v in curve)
            assert 0 <= r["auc"][mode] <= 100
            # trapezoid over k%, / 100
            assert r["auc"][mode] == pytest.approx(sum((a + b) / 2 * 25 for a, b in zip(curve, curve[1:])) / 100)
        # nothing deleted = the unperturbed decoding = everything inserted
        assert r["curves"]["deletion"][0] == pytest.approx(res["unperturbed_score"])
        assert r["curves"]["insertion"][-1] == pytest.approx(res["unperturbed_score"])
        # everything deleted = nothing inserted (the same all-zero input or encoder output)
        assert r["curves"]["deletion"][-1] == pytest.approx(r["curves"]["insertion"][0])
        assert (r["size"] is None) == r["label"].startswith("random")
    assert "| SMX | input cells |" in proc.stdout

    hyps = [json.loads(l) for l in (tmp_path / "h.jsonl").read_text().splitlines()]
    # a fully zeroed encoder output carries no information: the same hypothesis for every utterance
    zeroed = {h["hyp"] for h in hyps if h["label"] == "SMH" and h["mode"] == "deletion" and h["percent"] == 100}
    assert len(zeroed) == 1
    # the unperturbed decoding is fairseq-generate's (same beam, same n-gram blocking)
    ours = {h["id"]: h["hyp"] for h in hyps if h["label"] == "SMX" and h["mode"] == "deletion" and h["percent"] == 0}
    refs = {h["id"]: h["ref"] for h in hyps if h["percent"] == 0}
    generated = _generate(tiny_data, tiny_checkpoint, beam=2)
    for i, utt in enumerate(sorted(ours)):
        assert ours[utt] == generated[i], utt
    assert res["unperturbed_score"] == pytest.approx(
        min(100, score("wer", [ours[u] for u in sorted(ours)], [refs[u] for u in sorted(ours)], normaliser="none")))


def test_faithfulness_errors_name_the_problem(tiny_data, tiny_checkpoint, tmp_path):
    sx, sh, ca = write_oracle_stores(tiny_data, tmp_path, split="train")  # ids not in the test split
    proc = subprocess.run([sys.executable, "-m", "fairseq_xattn.cli", "faithfulness", "--checkpoint",
                           str(tiny_checkpoint), "--data", str(tiny_data), "--split", "test",
                           "--explanation", f"saliency_encoder:{sh}"], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 2 and "train_0000" in proc.stderr and "'test'" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "fairseq_xattn.cli", "faithfulness", "--checkpoint",
                           str(tiny_checkpoint), "--data", str(tiny_data),
                           "--explanation", f"saliency_input:{sh}"], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 2 and "target 'input'" in proc.stderr


def test_infer_tgt_lang_picks_the_target_of_a_multilingual_model(tmp_path):
    """fairseq-generate's --infer-tgt-lang for the decoding session: the transcript (source language)
    or the translation, forced by the language tag with --prefix-size 1."""
    from pathlib import Path

    from fairseq_xattn.analysis.decoding import DecodingConfig, FairseqDecodingSession
    from tests.fixtures.tiny_dataset import make_tiny_dataset

    data = make_tiny_dataset(tmp_path / "d", size=14, seed=3, eval_size=2, vocab_size=120)
    save = tmp_path / "ckpt"
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "fairseq-train"), str(data), "--user-dir", str(USER_DIR), "--task",
                    "speech_to_text_ctc", "--train-subset", "train", "--valid-subset", "dev", "--save-dir", str(save),
                    "--cpu", "--num-workers", "0", "--criterion", "label_smoothed_cross_entropy",
                    "--ignore-prefix-size", "1", "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "20000",
                    "--max-update", "1", "--seed", "1", "--no-epoch-checkpoints", "--arch", "s2t_transformer_s",
                    "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "32",
                    "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
                    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--conv-channels", "32"],
                   capture_output=True, text=True, env=ENV, check=True)
    rows = [line.split("\t") for line in (data / "test.tsv").read_text(encoding="utf-8").splitlines()]
    test = [dict(zip(rows[0], r)) for r in rows[1:]]
    cfg = DecodingConfig(beam=1, max_len_b=3, prefix_size=1, cpu=True)
    for lang, column in ((None, "tgt_text"), ("it", "tgt_text"), ("en", "src_text")):
        session = FairseqDecodingSession(str(save / "checkpoint_last.pt"), str(data), "test", cfg, infer_tgt_lang=lang)
        utt = session.utterance(test[0]["id"])
        assert session.tgt_dict[int(utt.target[0])] == f"<lang:{lang or 'it'}>"
        assert utt.reference == test[0][column]


def test_infer_tgt_lang_is_refused_by_a_task_that_ignores_it(tiny_data, tiny_checkpoint, tmp_path):
    # the stock speech_to_text task has no such option: fairseq would drop the override silently
    sx, sh, ca = write_oracle_stores(tiny_data, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "fairseq_xattn.cli", "faithfulness", "--checkpoint",
                           str(tiny_checkpoint), "--data", str(tiny_data), "--split", "test", "--cpu",
                           "--prefix-size", "1", "--infer-tgt-lang", "en",
                           "--explanation", f"saliency_encoder:{sh}"], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--infer-tgt-lang en: the checkpoint's task (SpeechToTextTask" in proc.stderr
