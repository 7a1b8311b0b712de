"""Hypotheses and their token x frame maps, read from attention and saliency stores (numpy only).

Records are turned into the analysis view by :func:`fairseq_xattn.stores.analysis_view` with the
EOS row kept: the alignment uses it (see :mod:`.alignment`), the words never include it.  A
:class:`MapItem` holds one hypothesis: the stack of maps ``K x I x T'`` (content rows + EOS row) --
every head of an attention record (``L*H`` maps, selections average some of them), or the one map of
a saliency record (input saliency pooled to the encoder grid) -- and caches each method's prepared
maps, so that many head selections of one record cost one preparation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from ...geometry import FRAME_SHIFT_SECONDS
from ...maps.heads import Pair
from ...stores import KIND_CROSS_ATTENTION, KIND_SALIENCY, SALIENCY_GRIDS, analysis_view, open_store
from .alignment import TIMESTAMP_METHODS
from .timing import UtteranceTimestamps, span_mass, timed_words, token_probabilities


@dataclass
class MapItem:
    """One hypothesis with its maps.

    ``maps``: ``K x I x T'`` with ``I = len(tokens) + eos_row``; ``n_layers x n_heads == K`` for
    attention (map ``k`` is layer ``k // n_heads + 1``, head ``k % n_heads + 1``), ``1 x 1`` for saliency.
    ``probabilities``: per content token, when the record has ``positional_scores``.
    """

    utt_id: str
    tokens: List[str]
    maps: np.ndarray
    subsampling: int
    n_frames: int
    n_layers: int = 1
    n_heads: int = 1
    eos_row: bool = True
    frame_shift: float = FRAME_SHIFT_SECONDS
    probabilities: Optional[np.ndarray] = None
    text: str = ""
    token_ids: List[int] = field(default_factory=list)
    _prepared: Dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def indices(self, pairs: Optional[Sequence[Pair]]) -> np.ndarray:
        """Map indices of 1-based (layer, head) pairs (None: every map)."""
        if pairs is None:
            return np.arange(self.maps.shape[0])
        return np.array([(layer - 1) * self.n_heads + (head - 1) for layer, head in pairs], dtype=np.int64)

    def prepared(self, method: str) -> np.ndarray:
        if method not in self._prepared:
            self._prepared[method] = TIMESTAMP_METHODS.get(method).prepare(self.maps).astype(np.float32)
        return self._prepared[method]

    def timestamps(self, method: str, pairs: Optional[Sequence[Pair]] = None, scheme: str = "auto",
                   system: str = "") -> UtteranceTimestamps:
        """Timed words from the mean of the selected maps under ``method``."""
        idx = self.indices(pairs)
        spans = TIMESTAMP_METHODS.get(method).decode(self.prepared(method)[idx].mean(axis=0, dtype=np.float64))
        n = len(self.tokens)
        confidence = self.probabilities
        if confidence is None:
            confidence = span_mass(self.maps[idx].mean(axis=0), spans)[:n]
        words = timed_words(self.tokens, spans, confidence, self.subsampling, self.n_frames, self.frame_shift, scheme)
        return UtteranceTimestamps(self.utt_id, words, system, self.text)


def _item(view, eos_row: bool, text: str, n_layers: int = 1, n_heads: int = 1) -> MapItem:
    """A :class:`MapItem` of an analysis view read with ``drop_eos=False``."""
    values = view.values
    maps = values.reshape(-1, *values.shape[-2:]) if values.ndim == 4 else values[None]
    n_content = maps.shape[1] - 1
    if not eos_row:
        maps = maps[:, :n_content]
    content = slice(int(view.meta.get("prefix_len", 0) or 0), int(view.meta.get("prefix_len", 0) or 0) + n_content)
    probabilities = token_probabilities(view.meta, content, len(view.meta.get("tokens") or []))
    return MapItem(view.utt_id, list(view.tokens[:n_content]), maps, view.subsampling, view.n_frames, n_layers,
                   n_heads, eos_row, view.frame_shift, probabilities, text, list(view.token_ids[:n_content]))


def attention_items(path, eos_row: bool = True, rank: int = 0, ids: Optional[Sequence[str]] = None,
                    subsampling: Optional[int] = None, flag: Optional[str] = None) -> Iterator[MapItem]:
    """The hypotheses (of ``rank``) of a cross-attention store; maps: every head, ``L*H x I x T'``.
    ``flag``: the option that named the store, for error messages."""
    reader = open_store(path, KIND_CROSS_ATTENTION, flag=flag)
    wanted = None if ids is None else set(ids)
    with reader:
        for utt_id, r in reader.keys():
            if r != rank or (wanted is not None and utt_id not in wanted):
                continue
            record = reader.get(utt_id, r)
            view = analysis_view(record, reader.meta, drop_eos=False, subsampling=subsampling,
                                 where=f"utterance {utt_id!r} in {reader.path}")
            L, H = view.values.shape[:2]
            yield _item(view, eos_row, str(record.meta.get("text", "")), L, H)


def saliency_items(path, normalisation: Sequence[str] = ("spes",), pool: str = "max2d", eos_row: bool = True,
                   rank: int = 0, ids: Optional[Sequence[str]] = None,
                   subsampling: Optional[int] = None, flag: Optional[str] = None) -> Iterator[MapItem]:
    """The hypotheses of a saliency store, each one map ``1 x I x T'`` (input saliency pooled)."""
    reader = open_store(path, KIND_SALIENCY, flag=flag)
    wanted = None if ids is None else set(ids)
    with reader:
        for utt_id, r in reader.keys():
            if r != rank or (wanted is not None and utt_id not in wanted):
                continue
            record = reader.get(utt_id, r)
            view = analysis_view(record, reader.meta, drop_eos=False, normalisation=list(normalisation) or None,
                                 pool=pool, subsampling=subsampling, where=f"utterance {utt_id!r} in {reader.path}")
            yield _item(view, eos_row, str(record.meta.get("text", "")))


def saliency_symbol(path, flag: Optional[str] = None) -> str:
    """``SM^X`` or ``SM^H``: the table name of a saliency store's target."""
    with open_store(path, KIND_SALIENCY, flag=flag) as reader:
        return SALIENCY_GRIDS[reader.meta["target"]].symbol


def store_meta(path, kind: Optional[str] = None, flag: Optional[str] = None) -> Dict:
    with open_store(path, kind, flag=flag) as reader:
        return dict(reader.meta)
