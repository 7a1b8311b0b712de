"""The saliency store: kind ``saliency``, array ``saliency`` (``I x T x F`` for target ``input``,
``I x T'`` for target ``encoder``), one record per utterance (rank 0).

Store-level meta: the :class:`~.explainer.ExplainSettings` that define the maps (a resumed run must
match them), ``hypotheses`` (where the tokens came from), ``schema``; shard runs add ``shard_id`` /
``shard_count`` (ignored by ``merge_stores``).  Record meta: ``tokens`` (ids incl. EOS),
``token_strings``, ``n_frames`` (T), ``n_encoder_frames`` (T'), ``subsampling``, ``prefix_len``,
``n_masks`` (masks actually used: fewer than asked after an early stop), ``units_per_level``
(segments per SLIC level, or [T']), ``positional_scores`` (reference log P(y_i | y_<i, X)).
Timing is logged, not stored, so that a resumed or sharded run gives the same store.
"""
from __future__ import annotations

from typing import Any, Dict, List

from ..generation.attention_store import infer_subsampling
from ..stores import KIND_SALIENCY, StoreWriter

SALIENCY_ARRAY = "saliency"
SCHEMA = "fairseq-xattn docs/explain.md"


def record_meta(tokens: List[int], token_strings: List[str], n_frames: int, n_encoder_frames: int,
                prefix_len: int, n_masks: int, units_per_level: List[int],
                positional_scores: List[float]) -> Dict[str, Any]:
    return {
        "tokens": [int(t) for t in tokens],
        "token_strings": list(token_strings),
        "n_frames": int(n_frames),
        "n_encoder_frames": int(n_encoder_frames),
        "subsampling": infer_subsampling(int(n_frames), int(n_encoder_frames)),
        "prefix_len": int(prefix_len),
        "n_masks": int(n_masks),
        "units_per_level": [int(u) for u in units_per_level],
        "positional_scores": [float(x) for x in positional_scores],
    }


def open_saliency_writer(path, store_meta: Dict[str, Any], float16: bool = False) -> StoreWriter:
    return StoreWriter(path, KIND_SALIENCY, {**store_meta, "schema": SCHEMA}, float16=float16)
