"""Stores (and the data beside them) -> :class:`UtteranceView` per utterance (numpy only).

Maps come from :func:`fairseq_xattn.stores.read_view`, the one analysis view of a record (content
rows only; saliency normalised per token, then input saliency pooled for the correlations);
the per-utterance correlations are those of ``xattn correlate`` (:func:`..correlate.correlate`),
and the scores those of ``xattn score`` on the one utterance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

from ...maps.normalisers import resolve_chain
from ...maps.pooling import AGGREGATORS, aggregate
from ...stores import (KIND_CROSS_ATTENTION, KIND_SALIENCY, SALIENCY_GRIDS, check_same_provenance, natural_key,
                       open_store, read_view)
from ..correlate import CorrelationConfig, CorrelationError, StorePairing, correlate
from ..metrics import MetricError, score
from .model import Correlations, UtteranceView, ViewerError
from .sources import (AudioSource, SpectrogramSource, read_hypothesis_times, read_reference_times,
                      reference_timings_beside)


@dataclass
class ViewerInputs:
    """What ``xattn view`` was given (paths and settings)."""

    attention: str
    saliency_input: Optional[str] = None
    saliency_encoder: Optional[str] = None
    ids: Optional[Sequence[str]] = None
    max_utterances: Optional[int] = 100
    saliency_norm: Sequence[str] = ("spes",)
    aggregation: str = "max2d"
    features_from: Optional[str] = None
    audio_from: Optional[str] = None
    timestamps: Optional[str] = None
    reference_timings: Optional[str] = None
    wer_normaliser: str = "whisper_english"
    #: saliency stores may come from another model than the attention store (a note instead of an error)
    allow_other_model: bool = False


@dataclass
class LoadedReport:
    """The shown ids, checked; :meth:`views` reads their data one utterance at a time."""

    ids: List[str]
    read_view: Callable[[str], UtteranceView] = field(repr=False)
    settings: Dict = field(default_factory=dict)
    #: what the user should know (ids left out, files found automatically)
    notes: List[str] = field(default_factory=list)

    def views(self) -> Iterator[UtteranceView]:
        for utt in self.ids:
            yield self.read_view(utt)


def _choose_ids(readers: Dict[str, "object"], wanted: Optional[Sequence[str]], limit: Optional[int],
                notes: List[str]) -> List[str]:
    attention = readers["--attention"]
    if wanted:
        for utt in wanted:
            for flag, reader in readers.items():
                if utt not in reader:
                    raise ViewerError(f"utterance {utt!r} is not in {flag} {reader.path}")
        ids = list(dict.fromkeys(str(u) for u in wanted))
    else:
        ids = attention.ids()
        for flag, reader in readers.items():
            if reader is attention:
                continue
            present = [u for u in ids if u in reader]
            if len(present) < len(ids):
                notes.append(f"{len(ids) - len(present)} of {len(ids)} utterances of {attention.path} are not in "
                             f"{flag} {reader.path}; showing the {len(present)} they share")
            ids = present
        if not ids:
            raise ViewerError(f"the stores share no utterance id ({', '.join(str(r.path) for r in readers.values())})")
        ids = sorted(ids, key=natural_key)
    if limit is not None and len(ids) > limit:
        notes.append(f"showing the first {limit} of {len(ids)} utterances (--max-utterances)")
        ids = ids[:limit]
    return ids


def _utterance_correlations(attention: str, saliency: str, flag: str, ids: List[str],
                            cfg: CorrelationConfig) -> Dict[str, Correlations]:
    """Per-utterance r between CA and one saliency store, exactly as ``xattn correlate`` computes them."""
    pairing = StorePairing(attention, saliency, cfg)
    pairing.ids = list(ids)  # only the shown utterances (ids were checked against both stores)
    try:
        result = correlate(pairing)
    except CorrelationError as e:
        raise ViewerError(f"{flag}: {e}") from None
    return {utt: Correlations(result.grid[k], result.head_avg[k], result.layer_avg[k], float(result.full[k]))
            for k, utt in enumerate(result.ids)}


def _score(name: str, text: str, reference: Optional[str], **options) -> Optional[float]:
    if reference is None or not str(reference).strip():
        return None
    try:
        return float(score(name, [text], [reference], **options))
    except MetricError:  # e.g. a reference that normalises to nothing: WER undefined
        return None


def load_report(inputs: ViewerInputs) -> LoadedReport:
    """Open and check everything (stores, ids, side data, correlations); raises :class:`ViewerError` (or
    :class:`StoreError`) naming what is wrong.  The maps are read by :meth:`LoadedReport.views`."""
    if inputs.aggregation not in AGGREGATORS:
        raise ViewerError(f"--aggregation {inputs.aggregation!r}: choose from {sorted(AGGREGATORS)}")
    try:
        resolve_chain(list(inputs.saliency_norm))
    except ValueError as e:
        raise ViewerError(f"--saliency-norm: {e}") from None
    readers = {"--attention": open_store(inputs.attention, KIND_CROSS_ATTENTION, flag="--attention")}
    if inputs.saliency_input:
        readers["--saliency-input"] = open_store(inputs.saliency_input, KIND_SALIENCY, "input", flag="--saliency-input")
    if inputs.saliency_encoder:
        readers["--saliency-encoder"] = open_store(inputs.saliency_encoder, KIND_SALIENCY, "encoder",
                                                   flag="--saliency-encoder")
    notes: List[str] = check_same_provenance(list(readers.values()), inputs.allow_other_model)
    ids = _choose_ids(readers, inputs.ids, inputs.max_utterances, notes)
    attention = readers["--attention"]
    split = attention.meta.get("gen_subset")

    cfg = CorrelationConfig(aggregation=inputs.aggregation, saliency_norm=tuple(inputs.saliency_norm),
                            intersect=True, allow_other_model=inputs.allow_other_model)
    correlations: Dict[str, Dict[str, Correlations]] = {}
    for flag, symbol in (("--saliency-input", SALIENCY_GRIDS["input"].symbol),
                         ("--saliency-encoder", SALIENCY_GRIDS["encoder"].symbol)):
        if flag in readers:
            path = inputs.saliency_input if flag == "--saliency-input" else inputs.saliency_encoder
            correlations[symbol] = _utterance_correlations(inputs.attention, path, flag, ids, cfg)

    spectrograms = SpectrogramSource(inputs.features_from, ids, split) if inputs.features_from else None
    audio = AudioSource(inputs.audio_from, ids) if inputs.audio_from else None
    hyp_words = read_hypothesis_times(inputs.timestamps, ids) if inputs.timestamps else {}
    ref_path = inputs.reference_timings
    if ref_path:
        ref_words = read_reference_times(ref_path, ids)
    else:
        found, ref_words = reference_timings_beside(ids, inputs.features_from, inputs.audio_from, split)
        if found:
            notes.append(f"reference word times from {found}")

    chain = list(inputs.saliency_norm)

    def read_utterance(utt: str) -> UtteranceView:
        att = read_view(attention, utt)
        meta = att.meta
        view = UtteranceView(utt_id=utt, tokens=att.tokens, attention=att.values.astype(np.float32),
                             subsampling=att.subsampling, n_frames=att.n_frames, text=str(meta.get("text", "")),
                             reference=meta.get("reference"), frame_shift=att.frame_shift)
        for flag, reader in readers.items():
            if reader is attention:
                continue
            sal = read_view(reader, utt, normalisation=chain)
            if sal.meta.get("tokens") != meta.get("tokens"):
                raise ViewerError(f"utterance {utt!r}: {flag} {reader.path} holds another token sequence than "
                                  f"--attention {attention.path}")
            if sal.target == "input":
                if sal.values.shape[1] != att.n_frames:
                    raise ViewerError(f"utterance {utt!r}: {flag} {reader.path} has {sal.values.shape[1]} frames, "
                                      f"--attention {attention.path} says {att.n_frames}")
                view.saliency_input = sal.values.astype(np.float32)
                view.saliency_input_pooled = aggregate(sal.values, inputs.aggregation, att.subsampling)
            else:
                view.saliency_encoder = sal.values.astype(np.float32)
        if spectrograms is not None:
            spec = spectrograms.get(utt)
            if spec.ndim != 2 or spec.shape[0] != att.n_frames:
                raise ViewerError(f"utterance {utt!r}: the features in --features-from {inputs.features_from} "
                                  f"have shape {spec.shape}, the stores say {att.n_frames} frames: another data "
                                  "folder than the one these stores were made from?")
            view.spectrogram = spec.astype(np.float32)
        if audio is not None:
            samples, rate = audio.get(utt)
            view.audio, view.sample_rate = samples, rate
            if view.spectrogram is None:  # the model's own features, computed the way `xattn prep` does
                from ...data.features import compute_fbank

                spec = compute_fbank(samples, rate)
                if spec.shape[0] != att.n_frames:
                    raise ViewerError(f"utterance {utt!r}: the audio of --audio-from {inputs.audio_from} gives "
                                      f"{spec.shape[0]} frames, the stores say {att.n_frames}: another recording?")
                view.spectrogram = spec
        view.hypothesis_words = hyp_words.get(utt)
        view.reference_words = ref_words.get(utt)
        view.correlations = {symbol: per_utt[utt] for symbol, per_utt in correlations.items()}
        view.scores = {"wer": _score("wer", view.text, view.reference, normaliser=inputs.wer_normaliser),
                       "bleu": _score("bleu", view.text, view.reference)}
        view.check()
        return view

    settings = {
        "attention": str(inputs.attention),
        "saliency_input": inputs.saliency_input and str(inputs.saliency_input),
        "saliency_encoder": inputs.saliency_encoder and str(inputs.saliency_encoder),
        "saliency_norm": resolve_chain(chain),
        "aggregation": inputs.aggregation,
        "attention_norm_for_r": list(cfg.attention_norm),
        "wer_normaliser": inputs.wer_normaliser,
        "model_sha256": attention.meta.get("model_sha256"),
        "gen_subset": split,
    }
    return LoadedReport(ids, read_utterance, settings, notes)

