"""xattn_conformer + ctc_multi_loss through the real fairseq-train and fairseq-generate (subprocesses)
on tiny espeak data with source transcripts, Italian translations and language tags."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
USER_DIR = REPO / "fairseq_xattn"
BIN = Path(sys.executable).parent
SMALL_MODEL = ["--arch", "xattn_conformer_tiny", "--encoder-layers", "2", "--decoder-layers", "1",
               "--ctc-src-layer", "1", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
               "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64", "--conv-channels", "32",
               "--depthwise-conv-kernel-size", "7"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tests.fixtures.tiny_dataset import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("xattn_e2e"), size=8, seed=5, eval_size=2, vocab_size=100)


def _run(cmd):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{cmd[0]} failed:\n{proc.stderr[-3000:]}"
    return proc


def test_train_logs_each_term_and_generate_decodes_every_utterance(data, tmp_path):
    save = tmp_path / "ckpt"
    proc = _run([BIN / "fairseq-train", data, "--user-dir", USER_DIR, "--task", "speech_to_text_ctc",
                 "--train-subset", "train", "--valid-subset", "dev", "--save-dir", save, "--cpu",
                 "--num-workers", "0", "--criterion", "ctc_multi_loss", "--ignore-prefix-size", "1",
                 "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "20000", "--max-update", "2",
                 "--seed", "1", "--no-epoch-checkpoints", "--multitask-asr-prob", "0.5",
                 "--log-format", "json", "--log-interval", "1", *SMALL_MODEL])
    log = proc.stdout + proc.stderr
    records = [json.loads(m) for m in re.findall(r"(\{\"epoch\".*\})", log)]
    train = [r for r in records if "train_loss" in r]
    assert train, log[-2000:]
    r = {k: float(v) for k, v in train[-1].items() if k.startswith("train_") and k[6:] in
         ("loss", "ce_loss", "ctc_src_loss", "ctc_tgt_loss", "nll_loss")}
    assert set(r) == {"train_loss", "train_ce_loss", "train_ctc_src_loss", "train_ctc_tgt_loss", "train_nll_loss"}
    assert r["train_ctc_src_loss"] > 0 and r["train_ctc_tgt_loss"] > 0
    combined = 5.0 * r["train_ce_loss"] + 1.0 * r["train_ctc_src_loss"] + 2.0 * r["train_ctc_tgt_loss"]
    assert r["train_loss"] == pytest.approx(combined, abs=0.01)  # logged values are rounded to 3 decimals

    ckpt = save / "checkpoint_last.pt"
    proc = _run([BIN / "fairseq-generate", data, "--user-dir", USER_DIR, "--task", "speech_to_text_ctc",
                 "--gen-subset", "train", "--path", ckpt, "--cpu", "--beam", "2", "--max-len-b", "4",
                 "--max-tokens", "20000", "--prefix-size", "1", "--infer-tgt-lang", "en", "--num-workers", "0"])
    hyps = re.findall(r"^H-(\d+)\t", proc.stdout, flags=re.M)
    n_train = len((data / "train.tsv").read_text().strip().splitlines()) - 1
    assert sorted(int(h) for h in hyps) == list(range(n_train))
