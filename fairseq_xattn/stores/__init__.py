"""Stores of per-utterance arrays: one reader API for attention and saliency (see record_store)."""
from .record_store import (
    Record,
    StoreError,
    StoreReader,
    StoreWriter,
    merge_stores,
    natural_key,
    settings_differences,
    settings_mismatch_message,
)

#: Store kinds written by fairseq-xattn.
KIND_CROSS_ATTENTION = "cross_attention"
KIND_SALIENCY = "saliency"


def open_store(path, expect_kind=None) -> StoreReader:
    """Open any fairseq-xattn store (attention or saliency) for reading."""
    return StoreReader(path, expect_kind=expect_kind)


__all__ = [
    "Record", "StoreError", "StoreReader", "StoreWriter", "merge_stores", "natural_key",
    "settings_differences", "settings_mismatch_message",
    "open_store", "KIND_CROSS_ATTENTION", "KIND_SALIENCY",
]
