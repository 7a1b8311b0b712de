"""CTC forced alignment of a hypothesis: the non-attention baseline (numpy; torch/fairseq only inside
the functions that run a model).

:func:`ctc_viterbi` finds the most probable CTC path of a label sequence through ``T' x V``
log-probabilities (the usual blank-extended sequence of ``2U + 1`` states: a label may be followed by
itself only through a blank); a token's span is the frames where the path emits it, so blanks between
words (pauses) belong to no word.  Our ``xattn_conformer`` has such a head on its encoder output, over
the target dictionary, blank = the dictionary's ``bos()`` (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

from ...errors import UserError
from ...geometry import FRAME_SHIFT_SECONDS
from .alignment import TokenSpans
from .timing import UtteranceTimestamps, timed_words


class CtcAlignmentError(UserError, ValueError):
    """A hypothesis that the CTC output cannot align (too few frames, no CTC head)."""


@dataclass
class CtcAlignment:
    """``states``: the path's state per frame (``2k+1`` emits label ``k``, even states are blanks);
    ``spans``: frames of each label; ``log_prob``: the path's log-probability."""

    states: np.ndarray
    spans: TokenSpans
    log_prob: float


def ctc_viterbi(log_probs: np.ndarray, labels: Sequence[int], blank: int) -> CtcAlignment:
    """Best CTC path of ``labels`` through ``log_probs`` (``T' x V``); ties prefer staying in a state,
    then the step from the previous state.  ValueError when ``T'`` frames cannot hold the labels."""
    lp = np.asarray(log_probs, dtype=np.float64)
    labels = [int(x) for x in labels]
    if lp.ndim != 2:
        raise ValueError(f"log_probs must be T' x V, got shape {lp.shape}")
    if any(x == blank for x in labels):
        raise ValueError(f"the labels hold the blank id {blank}")
    n_frames = lp.shape[0]
    ext = np.full(2 * len(labels) + 1, blank, dtype=np.int64)
    ext[1::2] = labels
    n_states = len(ext)
    # a skip over a blank (s-2 -> s) is allowed into a label that differs from the label before the blank
    can_skip = np.zeros(n_states, dtype=bool)
    can_skip[3::2] = ext[3::2] != ext[1:-2:2]
    score = np.full(n_states, -np.inf)
    score[0] = lp[0, ext[0]]
    if n_states > 1:
        score[1] = lp[0, ext[1]]
    back = np.zeros((n_frames, n_states), dtype=np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, n_frames):
        stay = score
        step = np.concatenate([[-np.inf], score[:-1]])
        skip = np.where(can_skip, np.concatenate([[-np.inf, -np.inf], score[:-2]]), -np.inf)
        candidates = np.stack([stay, step, skip])
        choice = np.argmax(candidates, axis=0)
        score = candidates[choice, np.arange(n_states)] + lp[t, ext]
        back[t] = choice
    ends = [n_states - 1] + ([n_states - 2] if n_states > 1 else [])
    last = max(ends, key=lambda s: score[s])
    if not np.isfinite(score[last]):
        repeats = sum(1 for a, b in zip(labels, labels[1:]) if a == b)
        raise ValueError(f"{len(labels)} labels ({repeats} repeated) need at least {len(labels) + repeats} "
                         f"frames, the CTC output has {n_frames}")
    states = np.empty(n_frames, dtype=np.int64)
    s = last
    for t in range(n_frames - 1, -1, -1):
        states[t] = s
        s -= int(back[t, s])
    first = np.full(len(labels), -1, dtype=np.int64)
    end = np.zeros(len(labels), dtype=np.int64)
    for t, st in enumerate(states):
        if st % 2 == 1:
            k = st // 2
            if first[k] < 0:
                first[k] = t
            end[k] = t + 1
    return CtcAlignment(states, TokenSpans(first, end), float(score[last]))


def ctc_timestamps(utt_id: str, log_probs: np.ndarray, token_ids: Sequence[int], tokens: Sequence[str], blank: int,
                   subsampling: int, n_frames: Optional[int] = None, frame_shift: float = FRAME_SHIFT_SECONDS,
                   scheme: str = "auto", system: str = "CTC", text: str = "") -> UtteranceTimestamps:
    """Timed words of a hypothesis (content ``token_ids`` and their strings) by CTC forced alignment;
    a token's confidence is its mean posterior over the frames that emit it."""
    try:
        alignment = ctc_viterbi(log_probs, token_ids, blank)
    except ValueError as e:
        raise CtcAlignmentError(f"utterance {utt_id!r}: cannot align the hypothesis with CTC: {e}") from None
    lp = np.asarray(log_probs, dtype=np.float64)
    confidence = [float(np.mean(np.exp(lp[a:b, tok]))) for a, b, tok in
                  zip(alignment.spans.first, alignment.spans.end, token_ids)]
    words = timed_words(tokens, alignment.spans, confidence, subsampling, n_frames, frame_shift, scheme)
    return UtteranceTimestamps(utt_id, words, system, text)


def model_ctc_log_probs(model, features, which: str = "tgt") -> Tuple[np.ndarray, int]:
    """``(T' x V log-probabilities, blank id)`` of one utterance's features (``T x F`` tensor) from a
    model with CTC heads (``xattn_conformer``'s ``get_ctc_output``)."""
    import torch

    head = getattr(model, "ctc_tgt_head" if which == "tgt" else "ctc_src_head", None)
    if head is None or not hasattr(model, "get_ctc_output"):
        raise CtcAlignmentError(f"the model ({type(model).__name__}) has no {which} CTC head; CTC timestamps need "
                                "an xattn_conformer checkpoint with one")
    with torch.no_grad():
        feats = features.unsqueeze(0)
        encoder_out = model.encoder(src_tokens=feats, src_lengths=torch.tensor([feats.shape[1]], device=feats.device))
        lprobs, lengths = model.get_ctc_output(encoder_out, which)
    return lprobs[: int(lengths[0]), 0].float().cpu().numpy(), int(head.blank_index)


def checkpoint_ctc_log_probs(checkpoint: str, data: str, split: str, utt_ids: Sequence[str],
                             user_dir: Optional[str] = None, config_yaml: Optional[str] = None,
                             infer_tgt_lang: Optional[str] = None,
                             cpu: bool = True) -> Iterator[Tuple[str, np.ndarray, int]]:
    """``(utterance id, T' x V log-probabilities, blank id)`` for each id of ``split``, from a fairseq
    checkpoint with our model's target CTC head (loaded as the faithfulness analysis loads it)."""
    import torch

    from ..decoding import DecodingConfig, FairseqDecodingSession

    session = FairseqDecodingSession(checkpoint, data, split, DecodingConfig(cpu=cpu), config_yaml=config_yaml,
                                     user_dir=user_dir, infer_tgt_lang=infer_tgt_lang, checkpoint_flag="--ctc")
    with torch.no_grad():
        for utt_id in utt_ids:
            try:
                utt = session.utterance(utt_id)
            except KeyError as e:
                raise CtcAlignmentError(str(e).strip("'\"")) from None
            log_probs, blank = model_ctc_log_probs(session.model, utt.features.to(session.device))
            yield utt_id, log_probs, blank
