"""Whisper's log-mel features, computed exactly as Whisper computes them (numpy only).

Whisper (openai/whisper ``log_mel_spectrogram`` with ``padding=N_SAMPLES``, and transformers'
``WhisperFeatureExtractor``) works on 16 kHz mono audio padded with zeros to (at least) 30 s:

* STFT: ``n_fft`` 400 (25 ms), hop 160 (10 ms), periodic Hann window, centred frames (reflect
  padding of 200 samples), power ``|X|^2``; the last STFT frame is dropped.
* Slaney-style mel filterbank (librosa's default: Slaney mel scale, Slaney area normalisation),
  0-8 kHz, 80 bins (128 for large-v3).
* ``log10(max(mel, 1e-10))``, clamped from below at ``max - 8`` where the max is over the whole
  padded window, then ``(x + 4) / 4``.

We return the frames whose window holds audio (``T x n_mels``, time first, as our task's inputs):
``T = min(3000, (N + 199) // 160 + 1)`` for ``N`` samples, i.e. Whisper's ``N // 160`` content
frames plus the two or three partial frames after them (their windows still overlap the audio),
computed from the zero-padded signal as Whisper does.  Every later frame of Whisper's 30 s window
holds the same value, the log-mel of digital silence, ``max(SILENCE_FLOOR, max(features) -
DYNAMIC_RANGE)`` (:func:`silence_value`), so ``T`` frames + that value up to 3000 frames is exactly
Whisper's input; the model's encoder appends those frames itself.  Audio longer than 30 s is refused (Whisper would need a sliding window; we
never truncate silently) and so is any sample rate other than 16 kHz.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..geometry import SAMPLE_RATE

from .features import AudioError, read_audio_file

N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480000 samples in Whisper's window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 input frames = Whisper's 30 s window
MEL_BIN_CHOICES = (80, 128)
LOG_MEL_FLOOR = 1e-10  # mel power clamp before log10
DYNAMIC_RANGE_LOG10 = 8.0  # log10 values below max - 8 are clamped
#: Normalised value of a mel bin with zero power: (log10(1e-10) + 4) / 4.
SILENCE_FLOOR = (np.log10(LOG_MEL_FLOOR) + 4.0) / 4.0
#: The clamp ``max - 8`` in normalised units ((x + 4) / 4 scales differences by 1/4).
DYNAMIC_RANGE = DYNAMIC_RANGE_LOG10 / 4.0


def _hz_to_mel(freqs: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    freqs = np.atleast_1d(np.asarray(freqs, dtype=np.float64))
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mels = freqs / f_sp
    above = freqs >= min_log_hz
    mels[above] = min_log_mel + np.log(freqs[above] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    mels = np.atleast_1d(np.asarray(mels, dtype=np.float64))
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    freqs = f_sp * mels
    above = mels >= min_log_mel
    freqs[above] = min_log_hz * np.exp(logstep * (mels[above] - min_log_mel))
    return freqs


def mel_filterbank(n_mels: int, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-normalised triangular mel filters over 0..sample_rate/2: ``n_mels x (n_fft // 2 + 1)``
    float64 (the values of ``librosa.filters.mel(sr, n_fft, n_mels)``, which Whisper ships)."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_edges = np.linspace(_hz_to_mel(0.0)[0], _hz_to_mel(sample_rate / 2.0)[0], n_mels + 2)
    hz_edges = _mel_to_hz(mel_edges)  # n_mels + 2 band edges in Hz
    widths = np.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney normalisation: every filter has unit area in Hz
    weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    return weights


def _power_spectrogram(signal: np.ndarray) -> np.ndarray:
    """Centred STFT power of a float64 signal: ``frames x (N_FFT // 2 + 1)``, the last frame dropped."""
    half = N_FFT // 2
    padded = np.pad(signal, (half, half), mode="reflect")
    n_frames = 1 + (len(padded) - N_FFT) // HOP_LENGTH
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, N_FFT), strides=(padded.strides[0] * HOP_LENGTH, padded.strides[0]))
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    spectrum = np.fft.rfft(frames * window, axis=1)
    return (spectrum.real ** 2 + spectrum.imag ** 2)[:-1]


def num_frames(n_samples: int) -> int:
    """Frames of Whisper's centred STFT whose 400-sample window overlaps ``n_samples`` of audio
    (frame ``k`` covers samples ``[160 k - 200, 160 k + 200)``), at most the 3000 of the window."""
    return min(N_FRAMES, (int(n_samples) + N_FFT // 2 - 1) // HOP_LENGTH + 1)


def log_mel_spectrogram(audio: np.ndarray, n_mels: int = 80, source: str = "audio") -> np.ndarray:
    """Whisper's normalised log-mel of the audio: mono float waveform ``N`` at 16 kHz ->
    ``T x n_mels`` float32, ``T = num_frames(N)`` (the frames whose window holds audio).

    ``source`` names the audio in error messages (a file name).  Raises :class:`AudioError` for
    audio over 30 s, shorter than one hop, or not mono.
    """
    if n_mels not in MEL_BIN_CHOICES:
        raise AudioError(f"{source}: Whisper uses 80 or 128 mel bins, got n_mels={n_mels}")
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise AudioError(f"{source}: expected a mono waveform (N,), got shape {audio.shape}")
    n = audio.shape[0]
    if n > N_SAMPLES:
        raise AudioError(f"{source}: {n / SAMPLE_RATE:.2f} s of audio is longer than Whisper's 30 s window "
                         "(split it into segments of at most 30 s; we do not truncate)")
    if n < HOP_LENGTH:
        raise AudioError(f"{source}: {n} samples is shorter than one 10 ms frame")
    # Whisper appends 30 s of zeros; frames further than n_fft/2 past the audio are all-zero windows
    # (log10 of the floor, never above the max), so N_FFT zeros give the same frames and the same max.
    signal = np.concatenate([audio.astype(np.float64), np.zeros(N_FFT)])
    mel = _power_spectrogram(signal) @ mel_filterbank(n_mels).T  # frames x n_mels
    log_mel = np.log10(np.maximum(mel, LOG_MEL_FLOOR))
    log_mel = np.maximum(log_mel, log_mel.max() - DYNAMIC_RANGE_LOG10)
    return ((log_mel[: num_frames(n)] + 4.0) / 4.0).astype(np.float32)


def silence_value(features) -> float:
    """Normalised log-mel of the zero padding Whisper appends after the audio of ``features``
    (``T x n_mels``, from :func:`log_mel_spectrogram`): ``max(SILENCE_FLOOR, max - DYNAMIC_RANGE)``.

    Exact: every frame with audio is in ``features``, the others hold this value."""
    return float(max(SILENCE_FLOOR, float(np.max(features)) - DYNAMIC_RANGE))


def read_audio(path: Union[str, Path]) -> np.ndarray:
    """A wav/flac file as mono float32 at 16 kHz (channels averaged, as Whisper's ffmpeg call does).
    No resampling: any other rate is an :class:`AudioError` naming the file."""
    audio, rate = read_audio_file(path)
    if rate != SAMPLE_RATE:
        raise AudioError(f"{path}: sample rate {rate} Hz; Whisper features need {SAMPLE_RATE} Hz audio "
                         "(resample it first, e.g. sox IN -r 16000 OUT)")
    return audio


def audio_file_log_mel(path: Union[str, Path], n_mels: int = 80) -> np.ndarray:
    """Whisper's log-mel (``T x n_mels`` float32) of a 16 kHz audio file of at most 30 s."""
    return log_mel_spectrogram(read_audio(path), n_mels=n_mels, source=str(path))


def pad_frames_to_window(features: np.ndarray, n_frames: Optional[int] = None) -> np.ndarray:
    """``T x n_mels`` -> ``N_FRAMES x n_mels`` (or ``n_frames``), the appended frames holding
    :func:`silence_value`: the input Whisper's encoder sees for this audio."""
    n_frames = N_FRAMES if n_frames is None else n_frames
    if features.shape[0] > n_frames:
        raise AudioError(f"{features.shape[0]} frames exceed the {n_frames}-frame window")
    out = np.full((n_frames, features.shape[1]), silence_value(features), dtype=np.float32)
    out[: features.shape[0]] = features
    return out
