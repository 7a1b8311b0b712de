"""Input feature kinds (registry ``FEATURE_KINDS``): what config.yaml's ``features:`` names (numpy only).

* ``fbank`` (default, no ``features:`` key): 80-dim Kaldi filterbanks (:mod:`.features`), any sample
  rate (resampled to 16 kHz), T = 1 + (N - 400) // 160 frames;
* ``whisper``: Whisper's log-mel (:mod:`.whisper_features`), 16 kHz audio only (no resampling), at
  most 30 s (longer audio is refused, never truncated), T = ``whisper_features.num_frames(N)``.

``xattn prep --features KIND`` writes them into ``<stem><bins>.zip``; the ``speech_to_text_ctc``
dataset computes them from audio files in a manifest, and checks the manifests' ``n_frames`` with
the kind's :meth:`FeatureKind.num_frames`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Tuple, Union

import numpy as np

from ..errors import OptionError
from ..geometry import SAMPLE_RATE
from ..registry import Registry

FBANK, WHISPER = "fbank", "whisper"


@dataclass(frozen=True)
class FeatureKind:
    name: str
    description: str
    #: ``n_samples`` at 16 kHz -> frames of the features
    num_frames: Callable[[int], int]
    #: ``(path, n_bins)`` -> ``T x n_bins`` float32 features and the duration in seconds
    compute: Callable[[Union[str, Path], int], Tuple[np.ndarray, float]]
    #: whether audio at another sample rate is resampled (else refused)
    resamples: bool
    #: longest audio accepted, in samples at 16 kHz (None: no limit)
    max_samples: Optional[int]

    def zip_name(self, n_bins: int, split: Optional[str] = None) -> str:
        """Features zip written by ``xattn prep``: ``fbank80.zip``, ``whisper80_test.zip`` ..."""
        return f"{self.name}{int(n_bins)}" + (f"_{split}" if split else "") + ".zip"

    def check_audio(self, sample_rate: int, n_frames_at_rate: int, source: str) -> int:
        """Samples at 16 kHz of an audio file (``n_frames_at_rate`` samples at ``sample_rate``) this
        kind can use; :class:`~.features.AudioError` naming ``source`` otherwise."""
        from .features import AudioError

        if sample_rate != SAMPLE_RATE and not self.resamples:
            raise AudioError(f"{source}: sample rate {sample_rate} Hz; {self.name} features need {SAMPLE_RATE} Hz "
                             "audio (resample it first, e.g. sox IN -r 16000 OUT)")
        n = n_frames_at_rate if sample_rate == SAMPLE_RATE else round(n_frames_at_rate * SAMPLE_RATE / sample_rate)
        if self.max_samples is not None and n > self.max_samples:
            raise AudioError(f"{source}: {n / SAMPLE_RATE:.2f} s of audio is longer than the "
                             f"{self.max_samples / SAMPLE_RATE:.0f} s {self.name} features take (Whisper's window; "
                             "split it into shorter segments, we do not truncate)")
        return n


FEATURE_KINDS: "Registry[FeatureKind]" = Registry("feature kind")


def _fbank_frames(n_samples: int) -> int:
    from .features import num_frames

    return num_frames(n_samples)


def _fbank(path, n_bins: int):
    from .features import audio_file_fbank

    return audio_file_fbank(path, n_bins=n_bins)


def _whisper_frames(n_samples: int) -> int:
    from .whisper_features import num_frames

    return num_frames(n_samples)


def _whisper(path, n_bins: int):
    from .whisper_features import log_mel_spectrogram, read_audio

    audio = read_audio(path)
    return log_mel_spectrogram(audio, n_mels=n_bins, source=str(path)), len(audio) / SAMPLE_RATE


def _max_whisper_samples() -> int:
    from .whisper_features import N_SAMPLES

    return N_SAMPLES


FEATURE_KINDS.register(FBANK)(FeatureKind(
    FBANK, "80-dim Kaldi log-mel filterbanks (kaldi-native-fbank; CMVN per config.yaml)",
    _fbank_frames, _fbank, resamples=True, max_samples=None))
FEATURE_KINDS.register(WHISPER)(FeatureKind(
    WHISPER, "Whisper's normalised log-mel (16 kHz, at most 30 s; no CMVN for a Whisper model)",
    _whisper_frames, _whisper, resamples=False, max_samples=_max_whisper_samples()))


def feature_kind_of(config: Mapping, where: str = "config.yaml") -> FeatureKind:
    """The kind config.yaml's ``features:`` names (``fbank`` when absent)."""
    name = config.get("features") or FBANK
    if name not in FEATURE_KINDS:
        raise OptionError(f"{where}: features: {name!r} is not a feature kind; choose from {sorted(FEATURE_KINDS)}")
    return FEATURE_KINDS[name]
