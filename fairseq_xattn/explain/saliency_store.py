"""Opening (or resuming) a saliency store for an explain run.

Kind ``saliency``, array ``saliency`` (``I x T x F`` for target ``input``, ``I x T'`` for target
``encoder``), one record per utterance (rank 0); record metadata from
:func:`fairseq_xattn.stores.saliency_record_meta` (schema: :mod:`fairseq_xattn.stores.schema`).

Store-level meta: the :class:`~.settings.ExplainSettings` that define the maps (a resumed run must
match them), ``hypotheses`` (where the tokens came from), the run identity (model and data hashes),
``schema``; shard runs add ``shard_id`` / ``shard_count`` (ignored by ``merge_stores``).  Timing is
logged, not stored, so that a resumed or sharded run gives the same store.
"""
from __future__ import annotations

from typing import Any, Dict

from ..stores import KIND_SALIENCY, StoreWriter

SCHEMA = "fairseq-xattn docs/explain.md"


def open_saliency_writer(path, store_meta: Dict[str, Any], float16: bool = False) -> StoreWriter:
    return StoreWriter(path, KIND_SALIENCY, {**store_meta, "schema": SCHEMA}, float16=float16)
