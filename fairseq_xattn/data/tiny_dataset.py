"""A tiny ready-to-train dataset made from the real pipeline (espeak-ng corpus -> ``xattn prep``)
in a few seconds, for tests and smoke runs::

    from fairseq_xattn.data.tiny_dataset import make_tiny_dataset
    data = make_tiny_dataset(tmp_path, size=12)   # -> tmp_path/data (fairseq DATA folder)
    # tmp_path/corpus holds the wavs, raw manifests and word timings

``data`` holds train/dev/test/test_voices.tsv (English audio; src_text English, tgt_text Italian,
language tags <lang:en>/<lang:it>), fbank80.zip, SentencePiece models and dictionaries,
config.yaml (utterance CMVN, no SpecAugment so features are deterministic) and timings/.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def make_tiny_dataset(out_dir, size: int = 12, seed: int = 1, vocab_size: int = 150, eval_size: int = 2,
                      workers: Optional[int] = 2, specaugment: Optional[str] = None) -> Path:
    """Build ``<out_dir>/corpus`` (``size`` sentence pairs; dev, test and test_voices get
    ``eval_size`` each) and prepare ``<out_dir>/data``; returns the data folder."""
    from .corpus.build import build_corpus
    from .prep import prepare

    out_dir = Path(out_dir)
    build_corpus(out_dir / "corpus", size=size, seed=seed, workers=workers, eval_size=eval_size)
    prepare(out_dir / "corpus", out_dir / "data", vocab_size=vocab_size, specaugment=specaugment)
    return out_dir / "data"
