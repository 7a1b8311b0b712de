"""Stores of per-utterance arrays (numpy only): the format (:mod:`.record_store`) and the contract
every writer and reader shares (:mod:`.schema`: kinds, array names, record meta, the analysis view)."""
from .record_store import (
    Record,
    StoreError,
    StoreReader,
    StoreWriter,
    is_partition_key,
    merge_stores,
    natural_key,
    run_settings,
    settings_differences,
    settings_mismatch_message,
)
from .schema import (
    ATTENTION_ARRAY,
    KIND_CROSS_ATTENTION,
    KIND_SALIENCY,
    SALIENCY_ARRAY,
    SALIENCY_GRIDS,
    RecordError,
    RecordView,
    analysis_view,
    attention_record_meta,
    check_same_provenance,
    content_rows,
    open_store,
    read_view,
    saliency_record_meta,
)

__all__ = [
    "Record", "StoreError", "StoreReader", "StoreWriter", "is_partition_key", "merge_stores", "natural_key", "run_settings",
    "settings_differences", "settings_mismatch_message",
    "ATTENTION_ARRAY", "KIND_CROSS_ATTENTION", "KIND_SALIENCY", "SALIENCY_ARRAY", "SALIENCY_GRIDS",
    "RecordError", "RecordView", "analysis_view", "attention_record_meta", "check_same_provenance",
    "content_rows", "open_store", "read_view", "saliency_record_meta",
]
