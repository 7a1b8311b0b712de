"""The cross-attention store: what one record holds, how it is written, and how to read it back.

Kind ``cross_attention``; one record per (utterance id, hypothesis rank); array ``attention`` of
shape ``L x H x I x T'``.  The schema is documented in ``docs/generation.md``.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ..stores import KIND_CROSS_ATTENTION, Record, StoreReader, StoreWriter

ATTENTION_ARRAY = "attention"
_LANG_TAG = re.compile(r"^<lang:.*>$")


def infer_subsampling(n_frames: int, n_encoder_frames: int) -> int:
    """The encoder's time subsampling factor ``s`` (``T' = ceil(T / s)``), from one utterance.

    ``round(T / T')`` is wrong for short inputs (T=13, T'=4 gives 3, not 4): prefer the power of two
    that reproduces ``T'`` exactly, as stride-2 convolution stacks do.
    """
    if n_encoder_frames <= 0:
        raise ValueError(f"an utterance with {n_frames} frames has {n_encoder_frames} encoder frames")
    for s in (1, 2, 4, 8, 16, 32):
        if math.ceil(n_frames / s) == n_encoder_frames:
            return s
    return max(1, round(n_frames / n_encoder_frames))


def leading_lang_tags(token_strings: Sequence[str]) -> int:
    """Number of language-tag tokens (``<lang:xx>``) at the start of a target."""
    n = 0
    for s in token_strings:
        if not _LANG_TAG.match(s):
            break
        n += 1
    return n


def record_meta(tokens: Sequence[int], token_strings: Sequence[str], text: str, reference: Optional[str],
                n_frames: int, n_encoder_frames: int, num_layers: int, num_heads: int, prefix_len: int,
                score: float, source: str) -> Dict[str, Any]:
    """Per-record metadata of the cross-attention store (schema in docs/generation.md)."""
    return {
        "tokens": [int(t) for t in tokens],
        "token_strings": list(token_strings),
        "text": text,
        "reference": reference,
        "n_frames": int(n_frames),
        "n_encoder_frames": int(n_encoder_frames),
        "subsampling": infer_subsampling(int(n_frames), int(n_encoder_frames)),
        "layers": int(num_layers),
        "heads": int(num_heads),
        "prefix_len": int(prefix_len),
        "score": float(score),
        "source": source,
    }


def open_attention_store(path: Union[str, Path]) -> StoreReader:
    """Open a cross-attention store for random access by utterance id (``reader.get(utt_id, rank)``)."""
    return StoreReader(path, expect_kind=KIND_CROSS_ATTENTION)


def read_attention(path: Union[str, Path], utt_id: str, rank: int = 0, dtype=np.float32) -> Tuple[np.ndarray, Dict]:
    """``(L x H x I x T' array, meta)`` of one hypothesis, as ``dtype`` (float16 stores widen)."""
    with open_attention_store(path) as reader:
        record: Record = reader.get(utt_id, rank)
        return record[ATTENTION_ARRAY].astype(dtype, copy=False), record.meta


class AttentionStoreWriter:
    """Opens (or resumes) a cross-attention store; records already present are kept, not rewritten.

    Resuming is only allowed when ``store_meta`` (the run's settings: model, data, generation
    options, see :mod:`.run_settings`) equals the stored one, so the kept records are those this run
    would write; otherwise :class:`~fairseq_xattn.stores.StoreError` names the differing settings.
    """

    def __init__(self, path: Union[str, Path], store_meta: Dict[str, Any], float16: bool = False):
        self.writer = StoreWriter(path, KIND_CROSS_ATTENTION, meta=store_meta, float16=float16, resume=True)
        self.meta = self.writer.meta
        self.existing = self.writer.done()
        self.skipped = 0

    def write(self, utt_id: str, rank: int, attention: np.ndarray, meta: Dict[str, Any]) -> bool:
        """Append one record; False if the store already had it (a resumed run)."""
        if (str(utt_id), int(rank)) in self.existing:
            self.skipped += 1
            return False
        self.writer.write(utt_id, {ATTENTION_ARRAY: attention}, meta, rank=rank)
        return True

    def close(self) -> None:
        self.writer.close()
