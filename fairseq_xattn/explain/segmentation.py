"""SLIC multi-granularity segmentation of a spectrogram (SPES / MFPP, docs/method.md section 2).

The spectrogram the model sees (``T x F``, after CMVN) is min-max rescaled to [0, 1] and clustered by
``skimage.segmentation.slic`` as a one-channel image, once per granularity level.  Each level gives a
label map ``T x F`` of consecutive segment ids ``0 .. S_l - 1``.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

from ..geometry import FRAME_SHIFT_SECONDS


class SegmentationError(ValueError):
    """The spectrogram cannot be segmented (empty, not 2-D, not finite)."""


def rescale_min_max(spectrogram: np.ndarray) -> np.ndarray:
    """``T x F`` -> ``T x F`` float64 in [0, 1]; a constant spectrogram becomes all zeros."""
    x = np.asarray(spectrogram, dtype=np.float64)
    lo, hi = x.min(), x.max()
    if hi <= lo:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


def n_segments_for(n_frames: int, patches_per_second: float, threshold_seconds: float,
                   frame_shift_seconds: float = FRAME_SHIFT_SECONDS) -> int:
    """Segments requested for an utterance: ``round(pps * min(duration, threshold))``, at least 1."""
    duration = n_frames * frame_shift_seconds
    return max(1, int(round(patches_per_second * min(duration, threshold_seconds))))


def slic_labels(spectrogram: np.ndarray, n_segments: int, compactness: float = 0.1,
                sigma: float = 0.0) -> np.ndarray:
    """One SLIC level: ``T x F`` spectrogram -> ``T x F`` int64 labels, consecutive from 0.

    SLIC may return fewer segments than asked (and, on some images, non-consecutive ids): the labels
    are renumbered so that ``labels.max() + 1`` is the number of segments.
    """
    from skimage.segmentation import slic

    x = np.asarray(spectrogram)
    if x.ndim != 2:
        raise SegmentationError(f"expected a T x F spectrogram, got shape {x.shape}")
    if x.size == 0:
        raise SegmentationError(f"cannot segment an empty spectrogram (shape {x.shape})")
    if not np.all(np.isfinite(x)):
        raise SegmentationError("the spectrogram has NaN or inf values")
    labels = slic(rescale_min_max(x), n_segments=int(n_segments), compactness=compactness,
                  sigma=sigma, channel_axis=None, start_label=0, enforce_connectivity=True)
    _, consecutive = np.unique(labels, return_inverse=True)
    return consecutive.reshape(x.shape).astype(np.int64)


def multi_level_labels(spectrogram: np.ndarray, patches_per_second: Sequence[float], compactness: float,
                       sigma: float, threshold_seconds: float, frame_shift_seconds: float) -> List[np.ndarray]:
    """MFPP: one ``T x F`` label map per granularity level (patches per second of audio); the defaults
    are those of the ``input_slic`` perturbation (:class:`~.perturbations.InputSlicOptions`)."""
    n_frames = int(np.shape(spectrogram)[0])
    return [
        slic_labels(spectrogram, n_segments_for(n_frames, pps, threshold_seconds, frame_shift_seconds),
                    compactness, sigma)
        for pps in patches_per_second
    ]
