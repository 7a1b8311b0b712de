"""Explanations as one relevance ranking per utterance, for deletion/insertion and size.

An explanation comes from a store and is read in one of these kinds (registry :data:`KINDS`):

===========================  =============  ======================================================
kind                         store          per-token map (content rows, normalised)
===========================  =============  ======================================================
``saliency_input``           saliency/input ``I x T x F`` full-resolution SM^X
``saliency_input_aggregated`` saliency/input ``I x T'`` SM^X pooled (``max2d`` by default)
``saliency_encoder``         saliency/enc.  ``I x T'`` SM^H
``attention``                attention      ``I x T'`` CA averaged over the chosen (layer, head)s
===========================  =============  ======================================================

Deletion needs ONE ranking per utterance, not one per token.  Following SPES's sentence-level
aggregator (FBK-fairseq ``sentence_aggregator``: normalise each token's map, then sum over tokens),
the ranking of a saliency map is the sum over content tokens of its per-token normalised maps.
For cross-attention the ranking is the sum over content tokens of the averaged attention itself
(the attention mass each encoder frame receives): the frame-wise mean-variance normalisation used
for correlation would make every frame's sum exactly 0.

Spaces (where the ranked units live, and what deletion zeroes):

* ``input_cells``   ``T x F`` spectrogram cells (full-resolution SM^X only);
* ``input_frames``  ``T`` input frames, all F bins at once (a ``T'`` map upsampled by nearest
  neighbour: frame t takes encoder frame ``t // s``, the window it was pooled from);
* ``encoder_frames`` ``T'`` encoder states (all D features zeroed).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import UserError
from ..geometry import encoder_length, record_subsampling
from ..maps.heads import Pair
from ..maps.normalisers import normalise
from ..maps.pooling import upsample_nearest
from ..stores import KIND_CROSS_ATTENTION, KIND_SALIENCY, StoreError, natural_key, open_store, read_view

INPUT_CELLS, INPUT_FRAMES, ENCODER_FRAMES = "input_cells", "input_frames", "encoder_frames"

#: kind -> (store kind, saliency target or None, allowed spaces, default space)
KINDS: Dict[str, tuple] = {
    "saliency_input": (KIND_SALIENCY, "input", (INPUT_CELLS,), INPUT_CELLS),
    "saliency_input_aggregated": (KIND_SALIENCY, "input", (INPUT_FRAMES, ENCODER_FRAMES), INPUT_FRAMES),
    "saliency_encoder": (KIND_SALIENCY, "encoder", (ENCODER_FRAMES, INPUT_FRAMES), ENCODER_FRAMES),
    "attention": (KIND_CROSS_ATTENTION, None, (INPUT_FRAMES, ENCODER_FRAMES), INPUT_FRAMES),
}

SPACE_ALIASES = {"input": None, "cells": INPUT_CELLS, "frames": INPUT_FRAMES, "encoder": ENCODER_FRAMES,
                 INPUT_CELLS: INPUT_CELLS, INPUT_FRAMES: INPUT_FRAMES, ENCODER_FRAMES: ENCODER_FRAMES}


class ExplanationError(UserError, ValueError):
    """An explanation store does not fit the requested kind, or an utterance does not fit the data."""


@dataclass
class Ranking:
    """Relevance of each unit of one utterance: ``T x F`` (cells), ``T`` or ``T'`` (frames)."""

    values: np.ndarray
    space: str


class StoreExplanation:
    """An explanation read from a store (see the module docstring for kinds and spaces)."""

    def __init__(self, kind: str, store: str, space: Optional[str] = None, label: Optional[str] = None,
                 saliency_norm: Sequence[str] = ("spes",), aggregation: str = "max2d",
                 pairs: Optional[Sequence[Pair]] = None, drop_eos: bool = True, subsampling: Optional[int] = None):
        if kind not in KINDS:
            raise ExplanationError(f"unknown explanation kind {kind!r}; choose from {sorted(KINDS)}")
        store_kind, target, spaces, default_space = KINDS[kind]
        try:
            self.reader = open_store(store, store_kind, target)
        except StoreError as e:
            raise ExplanationError(f"explanation {kind!r}: {e}") from None
        space = SPACE_ALIASES.get(space, space) if space else default_space
        if space is None:  # 'input' means the finest input space the kind supports
            space = spaces[0] if spaces[0] != ENCODER_FRAMES else INPUT_FRAMES
        if space not in spaces:
            raise ExplanationError(f"explanation {kind!r} cannot be deleted in space {space!r}; use one of {spaces}")
        self.kind, self.space = kind, space
        self.label = label or kind
        self.store = str(store)
        self.saliency_norm = list(saliency_norm)
        self.aggregation = aggregation
        self.pairs = list(pairs) if pairs else None
        self.drop_eos = drop_eos
        self.subsampling = subsampling

    def ids(self) -> List[str]:
        return self.reader.ids()

    def _s(self, meta) -> int:
        return record_subsampling(meta, self.subsampling, f"{self.store}")

    def token_maps(self, utt_id: str) -> np.ndarray:
        """Per-token maps of the content rows, normalised (``I x T x F`` or ``I x T'``)."""
        if self.kind == "attention":  # the selected heads averaged; normalised only for the size metric
            return read_view(self.reader, utt_id, drop_eos=self.drop_eos, subsampling=self.subsampling,
                             pairs=self.pairs or "all").values
        pool = self.aggregation if self.kind == "saliency_input_aggregated" else None
        return read_view(self.reader, utt_id, drop_eos=self.drop_eos, subsampling=self.subsampling,
                         normalisation=self.saliency_norm, pool=pool).values

    def size_maps(self, utt_id: str) -> np.ndarray:
        """Maps for the size metric: per-token maps normalised with the saliency chain."""
        maps = self.token_maps(utt_id)
        return normalise(maps, self.saliency_norm) if self.kind == "attention" else maps

    def ranking(self, utt_id: str, n_frames: int, n_encoder_frames: Optional[int]) -> Ranking:
        """The utterance's ranking in this explanation's space, checked against the data's sizes."""
        maps = self.token_maps(utt_id)
        meta = self.reader.row_meta(utt_id)
        s = self._s(meta)
        where = f"utterance {utt_id!r} ({self.label}, {self.store})"
        summed = maps.sum(axis=0)
        if self.space == INPUT_CELLS:
            if summed.shape[0] != n_frames:
                raise ExplanationError(f"{where}: the saliency map has {summed.shape[0]} frames but the model's "
                                       f"features have {n_frames}")
            return Ranking(summed, INPUT_CELLS)
        t_enc = summed.shape[0]
        if self.space == INPUT_FRAMES:
            if t_enc != encoder_length(n_frames, s):
                raise ExplanationError(f"{where}: the map has T'={t_enc} encoder frames but the features' "
                                       f"{n_frames} frames give ceil({n_frames}/{s})={encoder_length(n_frames, s)}")
            return Ranking(upsample_nearest(summed, n_frames, s), INPUT_FRAMES)
        if n_encoder_frames is not None and t_enc != n_encoder_frames:
            raise ExplanationError(f"{where}: the map has T'={t_enc} encoder frames but the model's encoder "
                                   f"output has {n_encoder_frames}")
        return Ranking(summed, ENCODER_FRAMES)


class RandomExplanation:
    """Random ranking baseline in a given space, reproducible per (seed, utterance id)."""

    kind = "random"

    def __init__(self, space: str, seed: int = 1):
        self.space = space
        self.seed = seed
        self.label = f"random ({space.replace('_', ' ')})"
        self.store = None

    def ranking(self, utt_id: str, n_frames: int, n_encoder_frames: Optional[int], n_freq: int = 80) -> Ranking:
        rng = np.random.default_rng([self.seed, zlib.crc32(str(utt_id).encode())])
        if self.space == INPUT_CELLS:
            return Ranking(rng.random((n_frames, n_freq)), INPUT_CELLS)
        if self.space == INPUT_FRAMES:
            return Ranking(rng.random(n_frames), INPUT_FRAMES)
        if n_encoder_frames is None:
            raise ExplanationError("a random encoder-frame ranking needs the encoder length")
        return Ranking(rng.random(n_encoder_frames), ENCODER_FRAMES)


def check_same_ids(sources: Sequence[StoreExplanation]) -> List[str]:
    """The common utterance ids of the explanation stores; a difference is an error naming ids."""
    if not sources:
        raise ExplanationError("no explanation store given")
    base = sources[0]
    ids = set(base.ids())
    for other in sources[1:]:
        o = set(other.ids())
        if o != ids:
            only_b = sorted(ids - o, key=natural_key)[:5]
            only_o = sorted(o - ids, key=natural_key)[:5]
            raise ExplanationError(
                f"explanation stores cover different utterances: {base.store} has {only_b} that {other.store} "
                f"lacks, {other.store} has {only_o} that {base.store} lacks")
    if not ids:
        raise StoreError(f"{base.store} holds no record")
    return sorted(ids, key=natural_key)
