"""Audio loading and 80-dim Kaldi log-mel filterbanks (kaldi-native-fbank; no torchaudio).

Kaldi-compatible settings: 25 ms window, 10 ms shift, povey window, pre-emphasis 0.97, DC removal,
snip_edges, 16 kHz.  kaldi-native-fbank's defaults (dither 3e-5, 23 bins) are replaced by dither 0
(deterministic) and 80 bins, and float audio is scaled to the int16 range first, as Kaldi and
torchaudio.compliance.kaldi expect.  T = 1 + (n_samples - 400) // 160 frames (0 if shorter than 25 ms).
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple, Union

import numpy as np

from ..errors import UserError
from ..geometry import FRAME_SHIFT_SECONDS, SAMPLE_RATE

N_MEL_BINS = 80
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = FRAME_SHIFT_SECONDS * 1000.0


class AudioError(UserError, ValueError):
    """An audio file that cannot be read or holds no usable audio."""


def read_audio_file(path: Union[str, Path]) -> Tuple[np.ndarray, int]:
    """A wav/flac/ogg file as mono float32 in [-1, 1] (channels averaged), ``N``, and its sample rate."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types (LibsndfileError, RuntimeError, ...)
        raise AudioError(f"cannot read audio file {path}: {e}") from e
    if audio.shape[0] == 0:
        raise AudioError(f"audio file {path} holds no samples")
    audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    return np.ascontiguousarray(audio, dtype=np.float32), int(sr)


def load_audio(path: Union[str, Path], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a wav/flac/ogg file (any sample rate, any channel count) as mono float32 in [-1, 1]
    at ``sample_rate`` Hz.  Shape ``N``."""
    audio, sr = read_audio_file(path)
    if sr != sample_rate:
        import soxr

        audio = soxr.resample(audio, sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(audio, dtype=np.float32)


def fbank_options(n_bins: int = N_MEL_BINS, sample_rate: int = SAMPLE_RATE):
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = float(sample_rate)
    opts.frame_opts.dither = 0.0
    opts.frame_opts.frame_length_ms = FRAME_LENGTH_MS
    opts.frame_opts.frame_shift_ms = FRAME_SHIFT_MS
    opts.mel_opts.num_bins = n_bins
    return opts


def num_frames(n_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """Frames Kaldi produces for ``n_samples`` (snip_edges=True)."""
    win = int(sample_rate * FRAME_LENGTH_MS / 1000)
    shift = int(sample_rate * FRAME_SHIFT_MS / 1000)
    return 0 if n_samples < win else 1 + (n_samples - win) // shift


def compute_fbank(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE, n_bins: int = N_MEL_BINS) -> np.ndarray:
    """Log-mel filterbank of a mono float waveform in [-1, 1].  ``N`` -> ``T x F`` float32."""
    import kaldi_native_fbank as knf

    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"compute_fbank expects a mono waveform (N,), got shape {waveform.shape}")
    fb = knf.OnlineFbank(fbank_options(n_bins, sample_rate))
    fb.accept_waveform(float(sample_rate), (waveform * 32768.0).tolist())
    fb.input_finished()
    n = fb.num_frames_ready
    out = np.empty((n, n_bins), dtype=np.float32)
    for i in range(n):
        out[i] = fb.get_frame(i)
    return out


def audio_file_fbank(path: Union[str, Path], n_bins: int = N_MEL_BINS) -> Tuple[np.ndarray, float]:
    """Filterbank (``T x F``) and duration in seconds of an audio file, resampled to 16 kHz."""
    audio = load_audio(path)
    feats = compute_fbank(audio, SAMPLE_RATE, n_bins)
    if feats.shape[0] == 0:
        raise AudioError(f"audio file {path} is shorter than one 25 ms frame ({len(audio)} samples at 16 kHz)")
    return feats, len(audio) / SAMPLE_RATE
