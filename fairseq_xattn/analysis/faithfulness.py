"""Deletion / insertion curves, their AUC, and the size metric of explanations (docs/method.md section 6).

Deletion: rank the units of an utterance (cells, input frames or encoder frames; see
:mod:`.explanations`) by relevance; for k = 0, 5, ..., 100 zero the top ``floor(N * k / 100)``
units (SPES's count), decode every perturbed copy with the real model (beam search through
fairseq, :mod:`.decoding`) and score the corpus at each k (``wer_max`` for ASR, BLEU for ST).
Insertion keeps only the top units and zeroes the rest.  AUC: trapezoid rule over k in percent,
divided by 100 (the paper's scale: 0..100 for ``wer_max``; higher is better for deletion+WER).

Size: per sample, the share (%) of cells of the normalised per-token maps that are >= t, for
t = 0, 0.05, ..., 1; averaged over samples; trapezoid over t (0..100, lower is more compact).
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..errors import OptionError
from .explanations import ENCODER_FRAMES, INPUT_CELLS, INPUT_FRAMES, Ranking

logger = logging.getLogger(__name__)

MODES = ("deletion", "insertion")


def percent_steps(step: int = 5) -> np.ndarray:
    """``0, step, ..., 100``; ``step`` must divide 100."""
    if step <= 0 or 100 % step:
        raise OptionError(f"--step {step}: the percentage step must divide 100 (1, 2, 4, 5, 10, 20, 25 or 50)")
    return np.arange(0, 101, step)


def keep_masks(values: np.ndarray, percents: Sequence[int], mode: str = "deletion") -> np.ndarray:
    """``S x N`` boolean keep-masks over the flattened units of ``values`` (True = untouched).

    Deletion zeroes the ``N * k // 100`` most relevant units; insertion keeps only them.  Ties are
    broken by position (stable sort), so the masks are deterministic.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    flat = np.asarray(values, dtype=np.float64).ravel()
    n = flat.size
    order = np.argsort(-flat, kind="stable")
    masks = np.ones((len(percents), n), dtype=bool)
    for s, k in enumerate(percents):
        top = n * int(k) // 100
        if mode == "deletion":
            masks[s, order[:top]] = False
        else:
            masks[s, order[top:]] = False
    return masks


def auc(scores: Sequence[float], percents: Sequence[float]) -> float:
    """Trapezoid area under the curve over k in percent, divided by 100 (paper scale)."""
    return float(np.trapezoid(np.asarray(scores, dtype=np.float64), np.asarray(percents, dtype=np.float64)) / 100.0)


def size_curve(samples: Sequence[np.ndarray], thresholds: Optional[np.ndarray] = None):
    """Mean share (%) of cells >= each threshold over samples; returns (thresholds, curve, AUC)."""
    thresholds = np.round(np.linspace(0.0, 1.0, 21), 10) if thresholds is None else np.asarray(thresholds)
    if not len(samples):
        raise ValueError("size needs at least one sample")
    shares = np.array([[100.0 * float(np.mean(np.asarray(m) >= t)) for t in thresholds] for m in samples])
    curve = shares.mean(axis=0)
    return thresholds, curve, float(np.trapezoid(curve, thresholds))


def perturb_inputs(features, ranking: Ranking, masks: np.ndarray):
    """``T x F`` features and ``S x N`` keep masks -> ``S x T x F`` copies with the dropped units zeroed."""
    import torch

    T, F = features.shape
    keep = torch.as_tensor(masks, device=features.device)
    if ranking.space == INPUT_CELLS:
        keep = keep.view(-1, T, F)
    elif ranking.space == INPUT_FRAMES:
        keep = keep.view(-1, T, 1)
    else:
        raise ValueError(f"cannot perturb input features in space {ranking.space!r}")
    return features.unsqueeze(0) * keep.to(features.dtype)


@dataclass
class CurveResult:
    label: str
    kind: str
    space: str
    store: Optional[str]
    curves: Dict[str, List[float]] = field(default_factory=dict)
    aucs: Dict[str, float] = field(default_factory=dict)
    size: Optional[float] = None
    size_curve: Optional[List[float]] = None

    def as_dict(self) -> Dict:
        return {"label": self.label, "kind": self.kind, "space": self.space, "store": self.store,
                "curves": self.curves, "auc": self.aucs, "size": self.size, "size_curve": self.size_curve}


@dataclass
class FaithfulnessResult:
    scorer: str
    percents: List[int]
    n_utterances: int
    rows: List[CurveResult]
    unperturbed_score: float
    ids: List[str] = field(default_factory=list)
    references: List[str] = field(default_factory=list)
    #: label -> mode -> step -> one hypothesis per id
    hypotheses: Dict[str, Dict[str, List[List[str]]]] = field(default_factory=dict)

    def as_dict(self) -> Dict:
        return {"scorer": self.scorer, "percents": self.percents, "n_utterances": self.n_utterances,
                "unperturbed_score": self.unperturbed_score, "rows": [r.as_dict() for r in self.rows]}

    def markdown(self) -> str:
        modes = [m for m in MODES if any(m in r.aucs for r in self.rows)]
        head = "| explanation | space | " + " | ".join(f"{m} AUC" for m in modes) + " | size |"
        lines = [head, "|---" * (len(modes) + 3) + "|"]
        for r in self.rows:
            cells = [f"{r.aucs[m]:.2f}" if m in r.aucs else "" for m in modes]
            size = "n/a" if r.size is None else f"{r.size:.2f}"
            lines.append(f"| {r.label} | {r.space.replace('_', ' ')} | " + " | ".join(cells) + f" | {size} |")
        return "\n".join(lines)


def run_faithfulness(session, explanations: Sequence, ids: Sequence[str], modes: Sequence[str] = ("deletion",),
                     step: int = 5, scorer: Callable[[List[str], List[str]], float] = None, scorer_name: str = "wer_max",
                     with_size: bool = True, progress: bool = True) -> FaithfulnessResult:
    """Deletion/insertion curves of every explanation (stores and random baselines) on ``ids``.

    ``session`` is a :class:`.decoding.FairseqDecodingSession`; each (utterance, explanation, mode)
    is decoded as one batch of ``len(percents)`` perturbed copies.
    """
    percents = percent_steps(step)
    hyps = {(i, m): [[] for _ in percents] for i in range(len(explanations)) for m in modes}
    refs: List[str] = []
    size_samples: Dict[int, List[np.ndarray]] = {i: [] for i, e in enumerate(explanations) if e.kind != "random"}
    for n_done, utt_id in enumerate(ids):
        utt = session.utterance(utt_id)
        refs.append(utt.reference)
        T, F = utt.features.shape
        enc_out = None
        if any(e.space == ENCODER_FRAMES for e in explanations):
            from .encoder_override import encoder_length_of

            enc_out = session.encode(utt)
            t_enc = encoder_length_of(enc_out)
        else:
            t_enc = None
        for i, expl in enumerate(explanations):
            if expl.kind == "random":
                ranking = expl.ranking(utt_id, T, t_enc, n_freq=F)
            else:
                ranking = expl.ranking(utt_id, T, t_enc)
                if with_size:
                    size_samples[i].append(expl.size_maps(utt_id))
            for mode in modes:
                masks = keep_masks(ranking.values, percents, mode)
                if ranking.space == ENCODER_FRAMES:
                    import torch

                    from .encoder_override import zero_encoder_frames

                    expanded = session.model.encoder.reorder_encoder_out(
                        enc_out, torch.zeros(len(percents), dtype=torch.long, device=session.device))
                    texts = session.decode_encoder_outputs(
                        utt, zero_encoder_frames(expanded, torch.as_tensor(masks, device=session.device)))
                else:
                    texts = session.decode_inputs(utt, perturb_inputs(utt.features, ranking, masks))
                for s, text in enumerate(texts):
                    hyps[(i, mode)][s].append(text)
        if progress:
            sys.stderr.write(f"\rfaithfulness: {n_done + 1}/{len(ids)} utterances")
            sys.stderr.flush()
    if progress:
        sys.stderr.write("\n")
    rows = []
    for i, expl in enumerate(explanations):
        row = CurveResult(expl.label, expl.kind, expl.space, expl.store)
        for mode in modes:
            curve = [float(scorer(h, refs)) for h in hyps[(i, mode)]]
            row.curves[mode] = curve
            row.aucs[mode] = auc(curve, percents)
        if with_size and expl.kind != "random":
            _, curve, area = size_curve(size_samples[i])
            row.size, row.size_curve = area, [float(c) for c in curve]
        rows.append(row)
    first_mode = modes[0]
    # k = 0 of a deletion curve is the unperturbed decoding (any explanation)
    unperturbed = rows[0].curves["deletion"][0] if "deletion" in modes else rows[0].curves[first_mode][-1]
    texts = {expl.label: {m: hyps[(i, m)] for m in modes} for i, expl in enumerate(explanations)}
    return FaithfulnessResult(scorer_name, [int(p) for p in percents], len(ids), rows, float(unperturbed),
                              list(ids), refs, texts)
