"""Filterbanks: identical to a direct kaldi-native-fbank call, Kaldi frame count, a sine lands in its
mel bin, audio loading (resampling, mono) and clear errors."""
import numpy as np
import pytest
import soundfile as sf

from fairseq_xattn.data.features import AudioError, audio_file_fbank, compute_fbank, load_audio, num_frames


def _direct_knf(wave, sr=16000):
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = sr
    opts.mel_opts.num_bins = 80
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(sr, (wave * 32768).tolist())
    fb.input_finished()
    return np.stack([np.asarray(fb.get_frame(i)) for i in range(fb.num_frames_ready)])


def test_matches_direct_kaldi_native_fbank_call():
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16000 // 2)).astype(np.float32)
    ours = compute_fbank(wave)
    assert ours.shape == (1 + (8000 - 400) // 160, 80) == (num_frames(8000), 80)
    np.testing.assert_array_equal(ours, _direct_knf(wave).astype(np.float32))
    # dither 0: deterministic
    np.testing.assert_array_equal(ours, compute_fbank(wave))


def test_frame_count_formula():
    assert num_frames(399) == 0 and num_frames(400) == 1 and num_frames(559) == 1 and num_frames(560) == 2
    assert compute_fbank(np.zeros(399, np.float32)).shape == (0, 80)


def test_sine_peaks_in_its_mel_bin():
    # Kaldi mel scale, 80 bins between 20 Hz and 8 kHz: bin b's centre is point b+1 of 82 equally spaced mels
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    centres = np.linspace(mel(20.0), mel(8000.0), 82)[1:-1]
    t = np.arange(16000) / 16000.0
    for freq in (300.0, 1000.0, 3000.0):
        feats = compute_fbank((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
        peak = int(np.argmax(feats.mean(axis=0)))
        assert abs(peak - int(np.argmin(np.abs(centres - mel(freq))))) <= 1, freq


def test_load_audio_resamples_and_mixes_to_mono(tmp_path):
    t = np.arange(8000) / 8000.0
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "a.flac", np.stack([left, left], axis=1), 8000)
    audio = load_audio(tmp_path / "a.flac")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16000) <= 1
    assert abs(np.abs(audio).max() - 0.5) < 0.02  # mono mix of two identical channels keeps the level


def test_bad_audio_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="not found: .*missing.wav"):
        load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "garbage.wav"
    bad.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match="cannot read audio file .*garbage.wav"):
        load_audio(bad)
    sf.write(tmp_path / "short.wav", np.zeros(100, np.float32), 16000)
    with pytest.raises(AudioError, match="short.wav is shorter than one 25 ms frame"):
        audio_file_fbank(tmp_path / "short.wav")
