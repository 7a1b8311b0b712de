"""Packing of maps and audio for the page: known answers and error bounds."""
import base64
import io
import zlib

import numpy as np
import pytest

from fairseq_xattn.analysis.viewer.encode import (
    AUDIO_CODECS, BlobWriter, block_mean, delta_filter, dequantise, encode_audio, quantise, read_blob_map, undelta,
)


def test_quantise_known_answer_and_constant_group():
    q, lo, hi = quantise(np.array([[0.0, 0.5, 1.0, 0.25], [5.0, 5.0, 5.0, 5.0]]), group_axes=1)
    # 0.5 * 255 = 127.5 rounds to the even 128; 0.25 * 255 = 63.75 -> 64
    assert q.tolist() == [[0, 128, 255, 64], [0, 0, 0, 0]]
    assert lo.tolist() == [0.0, 5.0] and hi.tolist() == [1.0, 5.0]
    assert dequantise(q, lo, hi)[1].tolist() == [5.0] * 4  # a constant row comes back exactly


@pytest.mark.parametrize("bits", [8, 6, 4])
def test_quantisation_error_is_within_half_a_step_of_each_group(bits):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 5, 40)) * rng.uniform(0.01, 100, size=(2, 3, 5, 1))  # very different ranges
    q, lo, hi = quantise(x, group_axes=3, bits=bits)
    assert q.max() <= 2 ** bits - 1
    err = np.abs(dequantise(q, lo, hi, bits) - x)
    step = (hi.astype(np.float64) - lo) / (2 ** bits - 1)
    assert np.all(err <= step[..., None] / 2 * (1 + 1e-6) + 1e-6 * np.abs(x))
    # every group uses its whole range: its min and max are exact (up to float32)
    assert np.all(q.min(axis=-1) == 0) and np.all(q.max(axis=-1) == 2 ** bits - 1)


def test_quantise_treats_nan_as_the_group_minimum():
    q, lo, hi = quantise(np.array([[1.0, np.nan, 3.0]]), group_axes=1)
    assert q.tolist() == [[0, 0, 255]] and lo.tolist() == [1.0] and hi.tolist() == [3.0]


def test_delta_filter_wraps_and_inverts():
    d = delta_filter(np.array([[250, 3, 0], [1, 2, 3]], dtype=np.uint8))
    assert d.tolist() == [[250, 9, 253], [1, 1, 1]]  # 3 - 250 = -247 = 9 mod 256; 0 - 3 = 253 mod 256
    assert undelta(d).tolist() == [[250, 3, 0], [1, 2, 3]]


def test_block_mean_known_answer_with_partial_blocks():
    x = np.arange(15, dtype=float).reshape(1, 3, 5)  # rows 0..4, 5..9, 10..14
    out = block_mean(x, (2, 2))
    assert out.shape == (1, 2, 3)
    assert out[0].tolist() == [[(0 + 1 + 5 + 6) / 4, (2 + 3 + 7 + 8) / 4, (4 + 9) / 2],
                               [(10 + 11) / 2, (12 + 13) / 2, 14.0]]
    assert np.array_equal(block_mean(x, (1, 1)), x)


def test_blob_round_trip_and_delta_only_where_it_pays():
    rng = np.random.default_rng(1)
    smooth = np.cumsum(rng.normal(size=(3, 50, 80)), axis=2)         # random walks: small steps, wide range
    noise = rng.random((3, 50, 80))
    blob = BlobWriter()
    e_smooth = blob.add_map("smooth", smooth, group_axes=1, bits=6, block=[1, 1])
    e_noise = blob.add_map("noise", noise, group_axes=1)
    assert e_smooth["delta"] is True and e_noise["delta"] is False
    assert e_smooth["levels"] == 63 and e_smooth["block"] == [1, 1]
    raw = zlib.decompress(base64.b64decode(blob.encoded()))
    for entry, values, bits in ((e_smooth, smooth, 6), (e_noise, noise, 8)):
        q, lo, hi = read_blob_map(raw, entry)
        assert np.array_equal(q, quantise(values, 1, bits)[0])
        assert entry["lo"][0] % 4 == 0  # float32 sections are 4-byte aligned
        assert np.allclose(dequantise(q, lo, hi, bits), values, atol=(values.max() - values.min()) / 2 ** bits)


def _tone(seconds=1.0, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * 300 * t) * np.sin(np.pi * t / seconds)).astype(np.float32)


@pytest.mark.parametrize("codec", sorted(AUDIO_CODECS))
def test_audio_codecs_decode_to_the_same_sound(codec):
    import soundfile as sf
    import soxr

    audio = _tone()
    packed = encode_audio(audio, 16000, codec)
    assert packed["mime"] == AUDIO_CODECS[codec].mime
    decoded, rate = sf.read(io.BytesIO(base64.b64decode(packed["b64"])), dtype="float32")
    assert abs(len(decoded) / rate - 1.0) < 0.03
    reference = soxr.resample(audio, 16000, rate) if rate != 16000 else audio
    n = min(len(reference), len(decoded))
    # same loudness, and (for the waveform codecs) the same waveform
    assert abs(np.sqrt(np.mean(decoded[:n] ** 2)) / np.sqrt(np.mean(reference[:n] ** 2)) - 1) < 0.15
    if codec != "opus":  # Opus adds a pre-skip delay; the WAV codecs are sample-aligned
        assert np.corrcoef(decoded[:n], reference[:n])[0, 1] > 0.99
    assert len(packed["b64"]) < 8000 * 1.4 * 1.05  # at most 8 kB/s (+ base64 and header)
