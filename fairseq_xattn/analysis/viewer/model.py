"""What the viewer shows of one utterance (numpy only): the analysis view of its maps plus what was
found beside the stores (spectrogram, audio, word times, scores, correlations)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ...errors import UserError
from ...geometry import FRAME_SHIFT_SECONDS


class ViewerError(UserError, ValueError):
    """Input the viewer cannot use; the message names the file, store, flag or utterance at fault."""


@dataclass
class Correlations:
    """Pearson r of one utterance between CA and one saliency map, every view of
    :mod:`fairseq_xattn.analysis.correlate`: ``grid`` ``L x H``, ``head_avg`` ``L``, ``layer_avg`` ``H``,
    ``full`` (NaN: undefined, a constant map)."""

    grid: np.ndarray
    head_avg: np.ndarray
    layer_avg: np.ndarray
    full: float


@dataclass
class UtteranceView:
    """One utterance as the viewer draws it; content token rows only (``I`` tokens).

    ``attention`` ``L x H x I x T'`` (raw weights); ``saliency_input`` ``I x T x F`` and
    ``saliency_encoder`` ``I x T'`` normalised per token (the analysis chain); ``saliency_input_pooled``
    ``I x T'``; ``spectrogram`` ``T x F``; ``audio`` ``N`` float samples at ``sample_rate``.
    """

    utt_id: str
    tokens: List[str]
    attention: np.ndarray
    subsampling: int
    n_frames: int
    text: str = ""
    reference: Optional[str] = None
    frame_shift: float = FRAME_SHIFT_SECONDS
    saliency_input: Optional[np.ndarray] = None
    saliency_input_pooled: Optional[np.ndarray] = None
    saliency_encoder: Optional[np.ndarray] = None
    spectrogram: Optional[np.ndarray] = None
    audio: Optional[np.ndarray] = None
    sample_rate: int = 16000
    #: word times (objects with ``word``, ``start``, ``end`` in seconds: the timestamps package's
    #: ``TimedWord`` and ``RefWord``)
    hypothesis_words: Optional[Sequence] = None
    reference_words: Optional[Sequence] = None
    #: saliency symbol ("SM^X", "SM^H") -> correlations with CA
    correlations: Dict[str, Correlations] = field(default_factory=dict)
    #: metric name ("wer", "bleu") -> value of this utterance alone (None: no reference)
    scores: Dict[str, Optional[float]] = field(default_factory=dict)

    @property
    def n_encoder_frames(self) -> int:
        return int(self.attention.shape[-1])

    def check(self) -> None:
        """Shapes agree with each other (a bug, not a user error, if they do not: loaders check inputs)."""
        L, H, I, Tp = self.attention.shape
        assert len(self.tokens) == I, (self.utt_id, len(self.tokens), I)
        if self.saliency_input is not None:
            assert self.saliency_input.shape[:2] == (I, self.n_frames), (self.utt_id, self.saliency_input.shape)
            assert self.saliency_input_pooled is not None and self.saliency_input_pooled.shape == (I, Tp)
        if self.saliency_encoder is not None:
            assert self.saliency_encoder.shape == (I, Tp), (self.utt_id, self.saliency_encoder.shape)
        if self.spectrogram is not None:
            assert self.spectrogram.shape[0] == self.n_frames, (self.utt_id, self.spectrogram.shape)

