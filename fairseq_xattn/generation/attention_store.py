"""Opening (or resuming) a cross-attention store for a recording run.

Kind ``cross_attention``; one record per (utterance id, hypothesis rank); array ``attention`` of shape
``L x H x I x T'``; record metadata from :func:`fairseq_xattn.stores.attention_record_meta`.  The
schema is :mod:`fairseq_xattn.stores.schema` (documented in ``docs/generation.md``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

import numpy as np

from ..stores import ATTENTION_ARRAY, KIND_CROSS_ATTENTION, StoreWriter


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
