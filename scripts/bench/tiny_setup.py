"""A small trained model for benchmarks that have no real one: synthetic espeak corpus -> xattn prep
-> fairseq-train (xattn_conformer_tiny, a few hundred updates).  Cached in the work folder."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fairseq_xattn.data.corpus.build import build_corpus
from fairseq_xattn.data.prep import prepare

REPO = Path(__file__).resolve().parents[2]


def tiny_model(workdir: Path, size: int = 200, eval_size: int = 20, max_update: int = 300):
    """``(data folder, checkpoint)`` of a tiny ASR model trained here (reused when present)."""
    workdir = Path(workdir)
    data, ckpt = workdir / "data", workdir / "ckpt" / "checkpoint_last.pt"
    if not (data / "config.yaml").exists():
        build_corpus(workdir / "corpus", size=size, seed=1, workers=2, eval_size=eval_size)
        prepare(workdir / "corpus", data, vocab_size=120, specaugment=None)
    if not ckpt.exists():
        print(f"training a tiny model in {ckpt.parent} ({max_update} updates) ...", flush=True)
        fairseq_train = str(Path(sys.executable).parent / "fairseq-train")
        subprocess.run([
            fairseq_train, str(data), "--user-dir", str(REPO / "fairseq_xattn"), "--task", "speech_to_text_ctc",
            "--train-subset", "train", "--valid-subset", "dev", "--arch", "xattn_conformer_tiny",
            "--criterion", "ctc_multi_loss", "--label-smoothing", "0.1", "--optimizer", "adam", "--lr", "2e-3",
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "100", "--max-tokens", "20000",
            "--max-update", str(max_update), "--save-dir", str(ckpt.parent), "--no-epoch-checkpoints",
            "--disable-validation", "--num-workers", "0", "--seed", "1", "--log-format", "simple",
            "--log-interval", "50", "--cpu"], check=True)
    return data, ckpt
