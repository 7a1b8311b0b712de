"""Frame geometry: how input frames, encoder frames and seconds relate (pure Python).

* Input frames (``T``) are 10 ms apart: 80-dim Kaldi filterbanks for our models, Whisper's log-mel
  (25 ms windows, 10 ms hop) for Whisper.
* An encoder that subsamples time by ``s`` has ``T' = ceil(T / s)`` frames; encoder frame ``j``
  covers the input window ``[j*s, (j+1)*s)`` (the last window may be partial).  ``s`` is 4 for our
  Conformer (two stride-2 convolutions) and 2 for Whisper (one stride-2 convolution).
* Encoder frame ``j`` starts at ``j * s * frame_shift`` seconds.

Every store record carries ``n_frames`` (T), ``n_encoder_frames`` (T') and ``subsampling`` (s);
readers take ``s`` from there (:func:`record_subsampling`), never from a guess.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional

from .errors import UserError

#: Seconds between input frames (the filterbank / log-mel hop).
FRAME_SHIFT_SECONDS = 0.01
#: Subsampling of our Conformer (``xattn_conformer``): two stride-2 convolutions.
CONFORMER_SUBSAMPLING = 4
#: Subsampling of Whisper's audio encoder: one stride-2 convolution (3000 frames -> 1500 states).
WHISPER_SUBSAMPLING = 2
#: Audio sample rate of every model here (filterbanks and Whisper's log-mel).
SAMPLE_RATE = 16000


class GeometryError(UserError, ValueError):
    """Frame counts that no subsampling explains."""


def encoder_length(n_frames: int, subsampling: int) -> int:
    """``T' = ceil(T / s)``."""
    if subsampling < 1:
        raise GeometryError(f"subsampling must be >= 1, got {subsampling}")
    return int(math.ceil(int(n_frames) / int(subsampling)))


def infer_subsampling(n_frames: int, n_encoder_frames: int) -> int:
    """The ``s`` with ``ceil(T / s) == T'`` for one utterance, from the powers of two a stride-2
    convolution stack gives (``round(T / T')`` is wrong for short inputs: T=13, T'=4 gives 3, not 4).

    Used once, when a record is written, where the model's own factor is not known to the writer;
    readers take the recorded ``subsampling``.
    """
    if n_encoder_frames <= 0:
        raise GeometryError(f"an utterance with {n_frames} frames has {n_encoder_frames} encoder frames")
    for s in (1, 2, 4, 8, 16, 32):
        if math.ceil(n_frames / s) == n_encoder_frames:
            return s
    raise GeometryError(f"no subsampling s in 1..32 gives ceil({n_frames} / s) = {n_encoder_frames} encoder frames")


def record_subsampling(meta: Mapping, override: Optional[int] = None, where: str = "") -> int:
    """The subsampling ``s`` of a store record (its ``subsampling`` meta), or ``override`` when given."""
    if override is not None:
        return int(override)
    s = meta.get("subsampling")
    if not s:
        raise GeometryError(f"{where}: the record has no 'subsampling' (a store from an old version?); "
                            "give the encoder's subsampling explicitly (--subsampling)")
    return int(s)


def encoder_frame_seconds(subsampling: int, frame_shift: float = FRAME_SHIFT_SECONDS) -> float:
    """Duration of one encoder frame in seconds (``s * frame_shift``)."""
    return float(subsampling) * float(frame_shift)


def encoder_frame_start(j, subsampling: int, frame_shift: float = FRAME_SHIFT_SECONDS):
    """Start time in seconds of encoder frame ``j`` (a number or a numpy array)."""
    return j * encoder_frame_seconds(subsampling, frame_shift)


def input_frame_to_encoder_frame(t, subsampling: int, n_encoder_frames: Optional[int] = None):
    """Encoder frame holding input frame ``t`` (``t // s``, clipped to ``T' - 1`` when given)."""
    j = t // int(subsampling)
    if n_encoder_frames is not None:
        import numpy as np

        j = np.minimum(j, int(n_encoder_frames) - 1)
    return j
