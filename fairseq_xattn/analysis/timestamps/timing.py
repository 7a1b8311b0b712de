"""Token spans -> timed words in seconds on the input audio (numpy only).

Encoder frame ``j`` spans ``[j*s*shift, (j+1)*s*shift)`` seconds (:mod:`fairseq_xattn.geometry`); a
word runs from the first frame of its first token to the end of its last token's span (for methods
whose token spans may overlap or go backwards, ``argmax``, the earliest first frame and the latest
end of its tokens), its end clipped to the audio's length ``T * shift``.  Its confidence is the mean
of its tokens' probabilities when they are known (``positional_scores``: log-probabilities), else
the mean share of each token's attention mass that its span holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ...geometry import FRAME_SHIFT_SECONDS, encoder_frame_start
from .alignment import TokenSpans, mass_rows
from .words import group_words


@dataclass
class TimedWord:
    """A word with its time span in seconds and a confidence in [0, 1]."""

    word: str
    start: float
    end: float
    confidence: float


@dataclass
class UtteranceTimestamps:
    """The timed words of one hypothesis; ``system``: where the times come from (method and source)."""

    utt_id: str
    words: List[TimedWord]
    system: str = ""
    text: str = ""
    extra: Dict = field(default_factory=dict)


def span_mass(matrix: np.ndarray, spans: TokenSpans) -> np.ndarray:
    """Share of each row's mass (clipped at 0, normalised) inside its span: ``I x T'`` -> ``I``."""
    rows = mass_rows(matrix)
    cumulative = np.concatenate([np.zeros((rows.shape[0], 1)), np.cumsum(rows, axis=1)], axis=1)
    idx = np.arange(rows.shape[0])
    first = np.clip(spans.first, 0, rows.shape[1])
    end = np.clip(spans.end, 0, rows.shape[1])
    return np.clip(cumulative[idx, end] - cumulative[idx, first], 0.0, 1.0)


def timed_words(tokens: Sequence[str], spans: TokenSpans, token_confidence: Sequence[float], subsampling: int,
                n_frames: Optional[int] = None, frame_shift: float = FRAME_SHIFT_SECONDS,
                scheme: str = "auto") -> List[TimedWord]:
    """Words of the content ``tokens`` timed by the first ``len(tokens)`` rows of ``spans``
    (rows after them, the EOS row, only shaped the alignment).

    ``n_frames``: input frames T, to clip the last word to the audio (None: no clipping).
    """
    if len(spans.first) < len(tokens) or len(token_confidence) < len(tokens):
        raise ValueError(f"{len(tokens)} tokens but {len(spans.first)} spans and "
                         f"{len(token_confidence)} confidences")
    audio_end = None if n_frames is None else n_frames * frame_shift
    out = []
    for w in group_words(tokens, scheme):
        rows = list(w.rows)
        first = int(min(spans.first[r] for r in rows))
        end = int(max(spans.end[r] for r in rows))
        start_s = float(encoder_frame_start(first, subsampling, frame_shift))
        end_s = float(encoder_frame_start(end, subsampling, frame_shift))
        if audio_end is not None:
            end_s = min(end_s, audio_end)
            start_s = min(start_s, end_s)
        out.append(TimedWord(w.text, start_s, end_s, float(np.mean([token_confidence[r] for r in rows]))))
    # Words back to back, as Whisper reports them: token spans along a path may share their boundary
    # frame, so a word ends where the next one starts (a word squeezed into one frame gets no length).
    for k in range(len(out) - 1):
        if out[k].end > out[k + 1].start:
            end = max(out[k + 1].start, out[k].start)
            out[k] = TimedWord(out[k].word, min(out[k].start, end), end, out[k].confidence)
    return out


def token_probabilities(meta: Dict, content: slice, n_rows: int) -> Optional[np.ndarray]:
    """``exp(positional_scores)`` of the content rows when the record has one score per row, else None."""
    scores = meta.get("positional_scores")
    if scores is None or len(scores) != n_rows:
        return None
    return np.exp(np.asarray(scores, dtype=np.float64)[content])
