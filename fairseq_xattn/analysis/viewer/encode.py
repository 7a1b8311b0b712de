"""Compact binary encodings for the HTML viewer (numpy only; audio codecs import soundfile lazily).

Maps travel as one zlib-deflated blob per utterance, which the page inflates with the browser's
``DecompressionStream`` when the utterance is opened:

* each map is quantised to ``2**bits`` levels (8 bits for the maps whose values the page reports,
  fewer for pictures) with its own ``lo``/``hi`` per *group* (the leading axes named by
  ``group_axes``: e.g. per layer, head and token for attention ``L x H x I x T'``, so every drawn row
  keeps the levels for its own range); ``q = round((x - lo) / (hi - lo) * levels)``, a constant
  group is all 0, and the page reads back ``lo + q / levels * (hi - lo)``: the error is at most
  ``(hi - lo) / (2 * levels)`` (plus float32 rounding of ``lo``/``hi``);
* the bytes are delta-filtered along the last axis (``d[0] = q[0]``, ``d[k] = q[k] - q[k-1] mod 256``)
  when that deflates smaller (smooth maps such as spectrograms; the idea of PNG's "Sub" filter);
  noisy maps (saliency) are stored as they are;
* ``lo`` and ``hi`` are little-endian float32.

Pictures that the page only shows (input saliency ``I x T x F``) may be block-averaged first
(:func:`block_mean`): at 10 ms x 1 bin they are mostly estimation noise, which no lossless coder shrinks.

Audio is re-encoded with a registered codec (:data:`AUDIO_CODECS`); every one decodes in Chromium's
``decodeAudioData`` (tested), which the page uses for playback of the whole utterance and of a span.
"""
from __future__ import annotations

import base64
import io
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import numpy as np

from ...registry import Registry

def quantise(values: np.ndarray, group_axes: int, bits: int = 8) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``values`` (any shape) -> ``(q uint8 same shape, lo float32, hi float32)``, ``lo``/``hi`` of shape
    ``values.shape[:group_axes]`` (a scalar array for ``group_axes = 0``); ``q`` in ``0 .. 2**bits - 1``.

    Non-finite cells are treated as the group's minimum (a map should not have them; this keeps a
    stray NaN from blanking the whole group).
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    levels = 2 ** bits - 1
    x = np.asarray(values, dtype=np.float64)
    if not 0 <= group_axes < max(x.ndim, 1):
        raise ValueError(f"group_axes must be in 0..{x.ndim - 1} for shape {x.shape}, got {group_axes}")
    groups = x.reshape(int(np.prod(x.shape[:group_axes], dtype=np.int64)), -1)
    finite = np.isfinite(groups)
    lo = np.where(finite, groups, np.inf).min(axis=1)
    hi = np.where(finite, groups, -np.inf).max(axis=1)
    empty = ~np.isfinite(lo)
    lo[empty], hi[empty] = 0.0, 0.0
    # round the range to float32 first: the page dequantises with these float32 numbers
    lo32, hi32 = lo.astype(np.float32), hi.astype(np.float32)
    lo, span = lo32.astype(np.float64), hi32.astype(np.float64) - lo32.astype(np.float64)
    safe = np.where(span > 0, span, 1.0)
    scaled = np.where(finite, (groups - lo[:, None]) / safe[:, None], 0.0)
    q = np.clip(np.rint(scaled * levels), 0, levels).astype(np.uint8)
    q[span <= 0] = 0
    shape = x.shape[:group_axes]
    return q.reshape(x.shape), lo32.reshape(shape), hi32.reshape(shape)


def dequantise(q: np.ndarray, lo: np.ndarray, hi: np.ndarray, bits: int = 8) -> np.ndarray:
    """Inverse of :func:`quantise` (what the page computes), float64."""
    levels = 2 ** bits - 1
    q = np.asarray(q, dtype=np.float64)
    g = np.ndim(lo)
    lo = np.asarray(lo, dtype=np.float64).reshape(np.shape(lo) + (1,) * (q.ndim - g))
    hi = np.asarray(hi, dtype=np.float64).reshape(np.shape(hi) + (1,) * (q.ndim - g))
    return lo + q / levels * (hi - lo)


def delta_filter(q: np.ndarray) -> np.ndarray:
    """Byte deltas along the last axis (mod 256); :func:`undelta` inverts it."""
    q = np.asarray(q, dtype=np.uint8)
    out = q.copy()
    if q.shape[-1] > 1:
        out[..., 1:] = q[..., 1:] - q[..., :-1]  # uint8 arithmetic wraps mod 256
    return out


def undelta(d: np.ndarray) -> np.ndarray:
    return np.cumsum(np.asarray(d, dtype=np.uint8), axis=-1, dtype=np.uint8)


def block_mean(values: np.ndarray, block: Tuple[int, ...]) -> np.ndarray:
    """Mean over blocks of the trailing axes (``block`` gives one size per trailing axis); a partial
    last block averages the cells it has.  ``I x T x F`` with block ``(2, 2)`` ->
    ``I x ceil(T/2) x ceil(F/2)``."""
    x = np.asarray(values, dtype=np.float64)
    lead = x.ndim - len(block)
    if lead < 0 or any(int(b) < 1 for b in block):
        raise ValueError(f"bad block {block} for shape {x.shape}")
    for k, b in enumerate(block):
        axis, b = lead + k, int(b)
        if b == 1:
            continue
        n = x.shape[axis]
        m = -(-n // b)
        pad = [(0, 0)] * x.ndim
        pad[axis] = (0, m * b - n)
        padded = np.pad(x, pad, constant_values=np.nan)
        shape = padded.shape[:axis] + (m, b) + padded.shape[axis + 1:]
        x = np.nanmean(padded.reshape(shape), axis=axis + 1)
    return x


@dataclass
class Section:
    """Where one array lies in an utterance blob (byte offset and dtype ``u8`` or ``f32``)."""

    offset: int
    length: int  # elements
    dtype: str

    def as_json(self) -> List:
        return [self.offset, self.length, self.dtype]


class BlobWriter:
    """Collects the maps of one utterance into one byte string; :meth:`encoded` deflates and base64s it."""

    def __init__(self):
        self._parts: List[bytes] = []
        self._size = 0
        self.maps: Dict[str, Dict] = {}

    def _add(self, data: bytes, length: int, dtype: str) -> Section:
        pad = (-self._size) % 4  # keeps float32 arrays 4-byte aligned inside the inflated buffer
        if pad:
            self._parts.append(b"\0" * pad)
            self._size += pad
        section = Section(self._size, length, dtype)
        self._parts.append(data)
        self._size += len(data)
        return section

    def add_map(self, name: str, values: np.ndarray, group_axes: int, bits: int = 8, **extra) -> Dict:
        """Quantise ``values`` (see :func:`quantise`) and record it under ``name``; returns its description
        ``{"shape", "group_axes", "levels", "delta", "q": [offset, length, "u8"], "lo": [...], "hi": [...]}``
        plus ``extra`` (e.g. the block size of a block-averaged picture)."""
        values = np.asarray(values)
        q, lo, hi = quantise(values, group_axes, bits)
        filtered = delta_filter(q).tobytes()
        # keep the delta filter only where it pays (smooth maps); level 1 is enough to compare
        delta = len(zlib.compress(filtered, 1)) < len(zlib.compress(q.tobytes(), 1))
        entry = {
            "shape": [int(n) for n in values.shape],
            "group_axes": int(group_axes),
            "levels": 2 ** int(bits) - 1,
            "delta": bool(delta),
            "q": self._add(filtered if delta else q.tobytes(), q.size, "u8").as_json(),
            "lo": self._add(lo.astype("<f4").tobytes(), lo.size, "f32").as_json(),
            "hi": self._add(hi.astype("<f4").tobytes(), hi.size, "f32").as_json(),
            **extra,
        }
        self.maps[name] = entry
        return entry

    def raw(self) -> bytes:
        return b"".join(self._parts)

    def encoded(self, level: int = 9) -> str:
        """zlib (RFC 1950, what ``DecompressionStream('deflate')`` reads), then base64."""
        return base64.b64encode(zlib.compress(self.raw(), level)).decode("ascii")


def read_blob_map(raw: bytes, entry: Dict) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one map from an inflated blob the way the page does: ``(q, lo, hi)`` (tests use it)."""
    def take(section, dtype):
        offset, length, _ = section
        width = np.dtype(dtype).itemsize
        return np.frombuffer(raw[offset: offset + length * width], dtype=dtype)

    shape = tuple(entry["shape"])
    q = take(entry["q"], np.uint8).reshape(shape)
    if entry["delta"]:
        q = undelta(q)
    group_shape = shape[: entry["group_axes"]]
    return q, take(entry["lo"], "<f4").reshape(group_shape), take(entry["hi"], "<f4").reshape(group_shape)


# ----------------------------------------------------------------------------------- audio

@dataclass(frozen=True)
class AudioCodec:
    """Encodes a mono float waveform in [-1, 1]; ``mime`` is what the page labels the bytes with."""

    mime: str
    description: str
    encode: Callable[[np.ndarray, int], bytes]


AUDIO_CODECS: "Registry[AudioCodec]" = Registry("audio codec")


def _resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return np.asarray(audio, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(audio, dtype=np.float32), rate, target, quality="HQ").astype(np.float32)


def _soundfile_bytes(audio: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), rate, format=fmt, subtype=subtype)
    return buf.getvalue()


#: libsndfile's Opus "compression level" (0 best quality .. 1 smallest): 0.96 gives about 16 kbit/s,
#: where wideband Opus speech is clear (measured: 6.1 kB for 3 s of our synthetic speech)
OPUS_COMPRESSION_LEVEL = 0.96


def _opus(audio: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    # Opus takes 8/12/16/24/48 kHz input; 16 kHz keeps the whole band of our features
    buf = io.BytesIO()
    audio = np.clip(_resample(audio, rate, 16000), -1.0, 1.0)
    try:
        sf.write(buf, audio, 16000, format="OGG", subtype="OPUS", compression_level=OPUS_COMPRESSION_LEVEL)
    except TypeError:  # soundfile < 0.13 has no compression_level: libsndfile's default (~28 kbit/s)
        buf = io.BytesIO()
        sf.write(buf, audio, 16000, format="OGG", subtype="OPUS")
    return buf.getvalue()


def _ulaw(audio: np.ndarray, rate: int) -> bytes:
    return _soundfile_bytes(_resample(audio, rate, 8000), 8000, "WAV", "ULAW")


def _pcm8(audio: np.ndarray, rate: int) -> bytes:
    return _soundfile_bytes(_resample(audio, rate, 8000), 8000, "WAV", "PCM_U8")


AUDIO_CODECS.register("opus")(AudioCodec("audio/ogg", "Ogg Opus, 16 kHz mono, ~16 kbit/s (smallest; "
                                                      "Chromium and Firefox play it)", _opus))
AUDIO_CODECS.register("ulaw")(AudioCodec("audio/wav", "WAV mu-law, 8 kHz mono (8 kB/s)", _ulaw))
AUDIO_CODECS.register("pcm8")(AudioCodec("audio/wav", "WAV 8-bit PCM, 8 kHz mono (8 kB/s; plays everywhere)",
                                         _pcm8))


def encode_audio(audio: np.ndarray, sample_rate: int, codec: str = "opus") -> Dict[str, str]:
    """``{"mime", "b64"}`` of ``audio`` (``N`` mono float samples at ``sample_rate``)."""
    chosen = AUDIO_CODECS.get(codec)
    return {"mime": chosen.mime, "b64": base64.b64encode(chosen.encode(audio, int(sample_rate))).decode("ascii")}

