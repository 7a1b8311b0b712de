"""The store contract: kinds, array names, record metadata, and the analysis view of a record.

Writers (generation's recorder, explain's task) build record metadata with :func:`attention_record_meta`
and :func:`saliency_record_meta`; every reader (correlate, faithfulness, plots, timestamps, the
viewer) opens stores with :func:`open_store` and turns records into the analysis view with
:func:`analysis_view`: content rows only, then the head/layer selection, normalisation and pooling it
asks for.  Numpy only.

========================  ============  ==================================  ===================================
kind                      array         shape                               record meta (besides the common)
========================  ============  ==================================  ===================================
``cross_attention``       ``attention`` ``L x H x I x T'``                  ``text``, ``reference``, ``score``,
                                                                            ``layers``, ``heads``, ``source``
``saliency``              ``saliency``  target ``input``: ``I x T x F``;    ``n_masks``, ``units_per_level``,
                                        target ``encoder``: ``I x T'``      ``positional_scores``, reliability
========================  ============  ==================================  ===================================

Common record meta: ``tokens`` (ids incl. EOS), ``token_strings``, ``n_frames`` (T),
``n_encoder_frames`` (T'), ``subsampling`` (s), ``prefix_len`` (forced prefix rows at the start:
language tags, Whisper's task prompt).  Rows are ``prefix + content tokens + EOS``; the analysis keeps
the content rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from ..geometry import FRAME_SHIFT_SECONDS, infer_subsampling, record_subsampling
from ..maps.heads import Pair, all_pairs, expand_pairs, subset_average
from ..maps.normalisers import normalise
from ..maps.pooling import aggregate
from .record_store import Record, StoreError, StoreReader

KIND_CROSS_ATTENTION = "cross_attention"
KIND_SALIENCY = "saliency"
ATTENTION_ARRAY = "attention"
SALIENCY_ARRAY = "saliency"
ARRAY_OF_KIND = {KIND_CROSS_ATTENTION: ATTENTION_ARRAY, KIND_SALIENCY: SALIENCY_ARRAY}


@dataclass(frozen=True)
class SaliencyGrid:
    """What a saliency target's maps are over, as the analysis sees them.

    ``cell_axes``: axes after the token axis (``("T", "F")`` or ``("T'",)``); ``pooled``: the map is
    pooled to the encoder grid ``I x T'`` to meet the cross-attention; ``symbol``: its name in tables.
    """

    cell_axes: Sequence[str]
    pooled: bool
    symbol: str
    description: str

    @property
    def ndim(self) -> int:
        return 1 + len(self.cell_axes)


#: Saliency target (store meta ``target``) -> its grid.  A new explanation target adds its entry here
#: and its perturbation in ``fairseq_xattn/explain/targets.py``.
SALIENCY_GRIDS: Dict[str, SaliencyGrid] = {
    "input": SaliencyGrid(("T", "F"), True, "SM^X", "input saliency over the spectrogram"),
    "encoder": SaliencyGrid(("T'",), False, "SM^H", "encoder-output saliency"),
}


class RecordError(StoreError):
    """A record whose arrays do not match its metadata (or its store's)."""


# ----------------------------------------------------------------------------------- writing

def _common_meta(tokens: Sequence[int], token_strings: Sequence[str], n_frames: int, n_encoder_frames: int,
                 prefix_len: int, subsampling: Optional[int]) -> Dict[str, Any]:
    return {
        "tokens": [int(t) for t in tokens],
        "token_strings": [str(s) for s in token_strings],
        "n_frames": int(n_frames),
        "n_encoder_frames": int(n_encoder_frames),
        "subsampling": int(subsampling) if subsampling else infer_subsampling(int(n_frames), int(n_encoder_frames)),
        "prefix_len": int(prefix_len),
    }


def attention_record_meta(tokens: Sequence[int], token_strings: Sequence[str], text: str,
                          reference: Optional[str], n_frames: int, n_encoder_frames: int, num_layers: int,
                          num_heads: int, prefix_len: int, score: float, source: str,
                          subsampling: Optional[int] = None) -> Dict[str, Any]:
    """Per-record metadata of a ``cross_attention`` store (``subsampling`` None: inferred from T, T')."""
    return {**_common_meta(tokens, token_strings, n_frames, n_encoder_frames, prefix_len, subsampling),
            "text": text, "reference": reference, "layers": int(num_layers), "heads": int(num_heads),
            "score": float(score), "source": source}


def saliency_record_meta(tokens: Sequence[int], token_strings: Sequence[str], n_frames: int,
                         n_encoder_frames: int, prefix_len: int, n_masks: int, units_per_level: Sequence[int],
                         positional_scores: Sequence[float], subsampling: Optional[int] = None,
                         **extra: Any) -> Dict[str, Any]:
    """Per-record metadata of a ``saliency`` store; ``extra`` (e.g. reliability) is stored as given."""
    return {**_common_meta(tokens, token_strings, n_frames, n_encoder_frames, prefix_len, subsampling),
            "n_masks": int(n_masks), "units_per_level": [int(u) for u in units_per_level],
            "positional_scores": [float(x) for x in positional_scores], **extra}


# ----------------------------------------------------------------------------------- reading

def open_store(path: Union[str, Path], kind: Optional[str] = None, target: Optional[str] = None,
               flag: Optional[str] = None) -> StoreReader:
    """Open a store for reading, checking its kind and (saliency) target.

    ``flag``: the option that named the store (``--saliency-input``), for the error message.
    """
    where = f"{flag} {path}" if flag else str(path)
    try:
        reader = StoreReader(path, expect_kind=kind)
    except StoreError as e:
        raise StoreError(f"{flag}: {e}" if flag else str(e)) from None
    if target is not None or reader.kind == KIND_SALIENCY:
        found = reader.meta.get("target")
        if reader.kind == KIND_SALIENCY and found not in SALIENCY_GRIDS:
            raise StoreError(f"{where}: saliency store meta 'target' must be one of {sorted(SALIENCY_GRIDS)}, "
                             f"found {found!r}")
        if target is not None and found != target:
            raise StoreError(f"{where}: needs a saliency store of target {target!r}, this one has target {found!r}")
    return reader


@dataclass
class RecordView:
    """One record as the analysis sees it: content rows only.

    ``values``: attention ``L x H x I x T'`` (no head selection), ``I x T'`` (a selection averaged), or
    saliency ``I x T x F`` / ``I x T'`` (pooled or encoder target), float64; ``I`` counts content tokens.
    """

    utt_id: str
    rank: int
    kind: str
    target: Optional[str]
    tokens: List[str]
    token_ids: List[int]
    values: np.ndarray
    n_frames: int
    n_encoder_frames: int
    subsampling: int
    meta: Dict[str, Any] = field(repr=False)
    pairs: Optional[List[Pair]] = None
    #: attention: the stored layers and heads (before any selection)
    n_layers: int = 0
    n_heads: int = 0
    frame_shift: float = FRAME_SHIFT_SECONDS

    @property
    def encoder_frame_seconds(self) -> float:
        return self.subsampling * self.frame_shift


def content_rows(meta: Mapping, n_rows: int, drop_eos: bool = True, where: str = "") -> slice:
    """Rows of a record's token axis that the analysis keeps: after ``prefix_len``, before EOS."""
    tokens = meta.get("tokens")
    if tokens and len(tokens) != n_rows:
        raise RecordError(f"{where}: the map has {n_rows} token rows but meta 'tokens' lists {len(tokens)} ids")
    prefix_len = int(meta.get("prefix_len", 0) or 0)
    end = n_rows - 1 if drop_eos else n_rows
    if prefix_len < 0 or prefix_len >= end:
        raise RecordError(f"{where}: {n_rows} token rows with prefix_len={prefix_len}"
                          f"{' and the EOS row' if drop_eos else ''} leave no content row")
    return slice(prefix_len, end)


def analysis_view(record: Record, store_meta: Mapping[str, Any], *, drop_eos: bool = True,
                  pairs: Union[None, str, Sequence[Pair]] = None, normalisation: Union[None, str, Sequence[str]] = None,
                  pool: Optional[str] = None, subsampling: Optional[int] = None, where: str = "") -> RecordView:
    """The analysis view of one record (see :class:`RecordView`).

    * rows: the forced prefix and (``drop_eos``) the EOS row are dropped;
    * attention: ``pairs`` None keeps ``L x H x I x T'``; ``"all"`` or 1-based pairs average them to
      ``I x T'``, and then ``normalisation`` (a chain) applies to the average;
    * saliency: ``normalisation`` applies per token at the native resolution, then ``pool`` (an
      aggregator name) pools input saliency ``I x T x F`` to ``I x T'``;
    * ``subsampling`` overrides the record's (for stores of old versions that lack it).
    """
    kind = store_meta.get("kind")
    where = where or f"utterance {record.id!r}"
    if kind not in ARRAY_OF_KIND:
        raise RecordError(f"{where}: unknown store kind {kind!r}")
    values = np.asarray(record[ARRAY_OF_KIND[kind]], dtype=np.float64)
    meta = record.meta
    target = store_meta.get("target") if kind == KIND_SALIENCY else None
    s = record_subsampling(meta, subsampling, where)
    chosen = None
    L = H = 0
    if kind == KIND_CROSS_ATTENTION:
        if values.ndim != 4:
            raise RecordError(f"{where}: attention must be L x H x I x T', got shape {values.shape}")
        values = values[:, :, content_rows(meta, values.shape[2], drop_eos, where)]
        L, H = values.shape[:2]
        if pairs is not None:
            chosen = all_pairs(L, H) if isinstance(pairs, str) and pairs == "all" else \
                expand_pairs(pairs, L, H, "head selection")
            values = subset_average(values, chosen)
            if normalisation is not None:
                values = normalise(values, normalisation)
        elif normalisation is not None:
            raise ValueError("normalising attention needs a head selection (pairs) to average first")
    else:
        grid = SALIENCY_GRIDS[target]
        if values.ndim != grid.ndim:
            raise RecordError(f"{where}: saliency of target {target!r} must be I x {' x '.join(grid.cell_axes)}, "
                              f"got shape {values.shape}")
        values = values[content_rows(meta, values.shape[0], drop_eos, where)]
        if normalisation is not None:
            values = normalise(values, normalisation)
        if pool is not None and grid.pooled:
            values = aggregate(values, pool, s)
    strings = meta.get("token_strings") or [str(t) for t in meta.get("tokens", [])]
    ids = meta.get("tokens") or []
    rows = content_rows(meta, len(strings), drop_eos, where) if strings else slice(0, 0)
    return RecordView(
        utt_id=record.id, rank=record.rank, kind=kind, target=target, tokens=list(strings)[rows],
        token_ids=[int(t) for t in list(ids)[rows]] if ids else [], values=values,
        n_frames=int(meta.get("n_frames", 0) or 0), n_encoder_frames=int(meta.get("n_encoder_frames", 0) or 0),
        subsampling=s, meta=dict(meta), pairs=chosen, n_layers=L, n_heads=H,
        frame_shift=float(store_meta.get("frame_shift", FRAME_SHIFT_SECONDS) or FRAME_SHIFT_SECONDS))


def read_view(reader: StoreReader, utt_id: str, rank: int = 0, **options: Any) -> RecordView:
    """:func:`analysis_view` of one record of an open store; errors name the store and the utterance."""
    try:
        record = reader.get(utt_id, rank)
    except KeyError as e:
        raise StoreError(str(e).strip("'\"")) from None
    return analysis_view(record, reader.meta, where=f"utterance {utt_id!r} in {reader.path}", **options)


# ----------------------------------------------------------------------------------- provenance

#: Store-level keys that identify the model and data a store was made from.
PROVENANCE_KEYS = ("model_sha256", "data_sha256", "gen_subset", "infer_tgt_lang")


def provenance_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> List[str]:
    """Provenance keys that both stores record and that differ (a key one store lacks is not compared)."""
    return [k for k in PROVENANCE_KEYS if k in a and k in b and a[k] != b[k]]


def check_same_provenance(readers: Sequence[StoreReader], allow_other_model: bool = False) -> List[str]:
    """Refuse to combine stores made from different models or data; returns warnings for allowed differences.

    ``allow_other_model``: a different ``model_sha256`` is reported as a warning instead (explaining one
    model's hypotheses with another model is a legitimate experiment when asked for explicitly).
    """
    warnings: List[str] = []
    base = readers[0]
    for other in readers[1:]:
        diff = provenance_differences(base.meta, other.meta)
        if allow_other_model and "model_sha256" in diff:
            diff.remove("model_sha256")
            warnings.append(f"{other.path} was made with another model than {base.path} "
                            f"(model_sha256 {other.meta['model_sha256']} vs {base.meta['model_sha256']})")
        if diff:
            details = ", ".join(f"{k}: {base.meta[k]!r} vs {other.meta[k]!r}" for k in diff)
            raise StoreError(f"{base.path} and {other.path} come from different runs ({details}); combine stores "
                             "of the same model and data" + (" (or pass --allow-other-model to compare another "
                                                              "model's explanations)" if "model_sha256" in diff else ""))
    return warnings
