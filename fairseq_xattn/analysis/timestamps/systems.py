"""Every requested timestamp system over the hypotheses of the stores (numpy only; CTC runs the model).

A *system* is one way of timing the words, named in tables and output folders:

* ``CA <method> <selection>``   cross-attention of a head selection (:mod:`.heads`) decoded by a method;
* ``SM^H <method>``, ``SM^X <method>``   a saliency store (input saliency pooled to the encoder grid);
* ``CTC``                       forced alignment with the checkpoint's CTC head (:mod:`.ctc`).

:func:`compute_systems` reads each store once and returns ``{system: {utterance: UtteranceTimestamps}}``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

from ...errors import UserError
from .heads import AUTO, HeadSelection, choose_heads, parse_selection
from .references import References
from ...stores import KIND_CROSS_ATTENTION, open_store
from .sources import MapItem, attention_items, saliency_items, saliency_symbol, store_meta
from .timing import UtteranceTimestamps

logger = logging.getLogger(__name__)

Systems = Dict[str, Dict[str, UtteranceTimestamps]]


class TimestampRequestError(UserError, ValueError):
    """Options that do not name a computable set of systems."""


@dataclass
class TimestampRequest:
    """What to time and how (the CLI's options).

    ``heads``: selection specs (:mod:`.heads`); ``auto`` needs ``dev_attention`` and ``dev_references``.
    ``ctc_checkpoint``: with ``data`` and ``split``, adds the CTC system on the hypotheses of the
    attention store (else of the first saliency store).
    """

    attention: Optional[str] = None
    saliency: Sequence[str] = ()
    methods: Sequence[str] = ("dtw",)
    heads: Sequence[str] = ("all",)
    scheme: str = "auto"
    eos_row: bool = True
    rank: int = 0
    subsampling: Optional[int] = None
    saliency_norm: Sequence[str] = ("spes",)
    aggregation: str = "max2d"
    dev_attention: Optional[str] = None
    dev_references: Optional[References] = None
    max_auto_heads: Optional[int] = None
    ctc_checkpoint: Optional[str] = None
    data: Optional[str] = None
    split: Optional[str] = None
    user_dir: Optional[str] = None
    config_yaml: Optional[str] = None
    infer_tgt_lang: Optional[str] = None
    cpu: bool = True
    score_options: Dict = field(default_factory=dict)


def _selections(req: TimestampRequest, first: MapItem, meta: Mapping) -> Dict[str, List[HeadSelection]]:
    """Head selections per method (``auto`` differs by method)."""
    fixed: List[HeadSelection] = []
    for spec in req.heads:
        if spec != AUTO:
            fixed += parse_selection(spec, first.n_layers, first.n_heads, meta)
    out = {m: list(fixed) for m in req.methods}
    if AUTO in req.heads:
        if not req.dev_attention or req.dev_references is None:
            raise TimestampRequestError("--heads auto needs a development split: --dev-attention STORE and "
                                        "--dev-reference TIMINGS")
        dev = [it for it in attention_items(req.dev_attention, req.eos_row, req.rank, subsampling=req.subsampling,
                                            flag="--dev-attention")
               if it.utt_id in req.dev_references]
        if (dev and (dev[0].n_layers, dev[0].n_heads) != (first.n_layers, first.n_heads)):
            raise TimestampRequestError(f"--dev-attention {req.dev_attention} has {dev[0].n_layers} x {dev[0].n_heads} "
                                        f"heads, --attention {req.attention} {first.n_layers} x {first.n_heads}")
        for m in req.methods:
            chosen, _ = choose_heads(dev, req.dev_references, m, req.scheme, req.max_auto_heads, **req.score_options)
            logger.info(f"--heads auto ({m}): {chosen.name}")
            out[m].append(chosen)
    return out


def _check_rank(path, flag: str, rank: int) -> None:
    """A ``--rank`` no record of the store has would time nothing: refuse it, naming the ranks there are."""
    with open_store(path, flag=flag) as reader:
        ranks = sorted({r for _, r in reader.keys()})
    if ranks and rank not in ranks:
        raise TimestampRequestError(f"--rank {rank}: {flag} {path} has no hypothesis of rank {rank} (its ranks: "
                                    f"{', '.join(map(str, ranks))})")


def compute_systems(req: TimestampRequest) -> Systems:
    """``{system name: {utterance id: timed words}}`` for every source, method and selection."""
    if not req.attention and not req.saliency:
        raise TimestampRequestError("give --attention STORE and/or --saliency STORE")
    systems: Systems = {}
    hypotheses: List[MapItem] = []
    if req.attention:
        meta = store_meta(req.attention, KIND_CROSS_ATTENTION, flag="--attention")
        _check_rank(req.attention, "--attention", req.rank)
        selections: Optional[Dict[str, List[HeadSelection]]] = None
        for item in attention_items(req.attention, req.eos_row, req.rank, subsampling=req.subsampling,
                                    flag="--attention"):
            if selections is None:
                selections = _selections(req, item, meta)
            for method in req.methods:
                for sel in selections[method]:
                    name = f"CA {method} {sel.name}"
                    systems.setdefault(name, {})[item.utt_id] = item.timestamps(method, sel.pairs, req.scheme, name)
            item.maps = item.maps[:0]  # keep the tokens for CTC, not the maps
            item._prepared.clear()
            hypotheses.append(item)
    for path in req.saliency:
        symbol = saliency_symbol(path, flag="--saliency")
        _check_rank(path, "--saliency", req.rank)
        for item in saliency_items(path, req.saliency_norm, req.aggregation, req.eos_row, req.rank,
                                   subsampling=req.subsampling, flag="--saliency"):
            for method in req.methods:
                name = f"{symbol} {method}"
                systems.setdefault(name, {})[item.utt_id] = item.timestamps(method, None, req.scheme, name)
            if not req.attention and path == req.saliency[0]:
                item.maps = item.maps[:0]
                item._prepared.clear()
                hypotheses.append(item)
    if req.ctc_checkpoint:
        systems["CTC"] = ctc_system(req, hypotheses)
    return systems


def ctc_system(req: TimestampRequest, hypotheses: Sequence[MapItem]) -> Dict[str, UtteranceTimestamps]:
    """CTC forced alignment of the hypotheses with the checkpoint's CTC head."""
    from .ctc import checkpoint_ctc_log_probs, ctc_timestamps

    if not req.data or not req.split:
        raise TimestampRequestError("--ctc CHECKPOINT needs --data DIR and --split NAME (the split the stores were "
                                    "made from)")
    by_id = {h.utt_id: h for h in hypotheses}
    if any(not h.token_ids for h in hypotheses):
        raise TimestampRequestError("--ctc: the store records have no token ids ('tokens' meta)")
    out: Dict[str, UtteranceTimestamps] = {}
    for utt_id, log_probs, blank in checkpoint_ctc_log_probs(req.ctc_checkpoint, req.data, req.split, list(by_id),
                                                             req.user_dir, req.config_yaml, req.infer_tgt_lang,
                                                             req.cpu):
        h = by_id[utt_id]
        if log_probs.shape[0] != h.maps.shape[2]:
            raise TimestampRequestError(f"--ctc {req.ctc_checkpoint}: utterance {utt_id!r} has {log_probs.shape[0]} CTC "
                                        f"frames but {h.maps.shape[2]} encoder frames in the store: another model "
                                        "or other features than the store's?")
        out[utt_id] = ctc_timestamps(utt_id, log_probs, h.token_ids, h.tokens, blank, h.subsampling, h.n_frames,
                                     h.frame_shift, req.scheme, "CTC", h.text)
    return out
