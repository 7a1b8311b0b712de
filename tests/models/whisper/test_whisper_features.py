"""Whisper's log-mel (data/whisper_features.py) equals transformers' WhisperFeatureExtractor."""
import numpy as np
import pytest

from fairseq_xattn.data.features import AudioError
from fairseq_xattn.data.whisper_features import (
    N_FRAMES,
    N_SAMPLES,
    SILENCE_FLOOR,
    audio_file_log_mel,
    log_mel_spectrogram,
    mel_filterbank,
    num_frames,
    pad_frames_to_window,
    read_audio,
    silence_value,
)

from .conftest import speech_like


def _signals():
    t = np.arange(20000) / 16000.0
    return {
        "speech": speech_like(28817, seed=3),  # not a multiple of the hop
        "silence": np.zeros(8000, dtype=np.float32),
        "clipping": np.clip(3.0 * np.sin(2 * np.pi * 440.0 * t), -1.0, 1.0).astype(np.float32),
        "click_at_the_end": np.concatenate([np.zeros(4050), [0.9, -0.9]]).astype(np.float32),
    }


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("name", list(_signals()))
def test_log_mel_equals_transformers(name, n_mels):
    from transformers import WhisperFeatureExtractor

    audio = _signals()[name]
    extractor = WhisperFeatureExtractor(feature_size=n_mels)
    expected = extractor(audio, sampling_rate=16000, return_tensors="np").input_features[0].T  # 3000 x n_mels
    ours = log_mel_spectrogram(audio, n_mels=n_mels)
    assert ours.dtype == np.float32 and ours.shape == (num_frames(len(audio)), n_mels)
    np.testing.assert_allclose(ours, expected[: len(ours)], atol=1e-4, rtol=0)
    # our frames + the silence value up to 30 s are exactly Whisper's whole input
    np.testing.assert_allclose(pad_frames_to_window(ours), expected, atol=1e-4, rtol=0)


def test_filterbank_equals_transformers():
    from transformers.audio_utils import mel_filter_bank

    for n_mels in (80, 128):
        expected = mel_filter_bank(num_frequency_bins=201, num_mel_filters=n_mels, min_frequency=0.0,
                                   max_frequency=8000.0, sampling_rate=16000, norm="slaney", mel_scale="slaney")
        np.testing.assert_allclose(mel_filterbank(n_mels), expected.T, atol=1e-9, rtol=0)


def test_frame_counts_and_silence_by_hand():
    # frame k covers samples [160k - 200, 160k + 200): 12000 samples reach frame (12000 + 199) // 160 = 75
    assert num_frames(12000) == 76 + 1 and num_frames(160) == 3 and num_frames(N_SAMPLES) == N_FRAMES
    silence = log_mel_spectrogram(np.zeros(1600, dtype=np.float32))
    assert np.all(silence == np.float32(SILENCE_FLOOR)) and SILENCE_FLOOR == -1.5  # (log10(1e-10) + 4) / 4
    loud = np.array([[0.5, 1.25], [0.0, -0.25]], dtype=np.float32)
    assert silence_value(loud) == pytest.approx(-0.75)  # max 1.25 - 8 / 4
    assert silence_value(np.full((2, 2), -1.0)) == -1.5


def test_audio_over_30_seconds_is_refused():
    log_mel_spectrogram(np.zeros(N_SAMPLES, dtype=np.float32))  # exactly 30 s is fine
    with pytest.raises(AudioError, match=r"long\.wav: 30\.00 s of audio is longer than Whisper's 30 s window"):
        log_mel_spectrogram(np.zeros(N_SAMPLES + 1, dtype=np.float32), source="long.wav")


def test_audio_files_need_16_khz(tmp_path):
    import soundfile as sf

    good, bad = tmp_path / "ok.wav", tmp_path / "telephone.wav"
    audio = speech_like(8000, seed=0)
    sf.write(str(good), np.stack([audio, audio], axis=1), 16000)  # stereo: averaged to mono
    sf.write(str(bad), audio, 8000)
    np.testing.assert_allclose(read_audio(good), audio, atol=1e-4)
    np.testing.assert_allclose(audio_file_log_mel(good), log_mel_spectrogram(read_audio(good)), atol=0)
    with pytest.raises(AudioError, match=r"telephone\.wav: sample rate 8000 Hz; Whisper features need 16000 Hz"):
        audio_file_log_mel(bad)
    too_long = tmp_path / "lecture.flac"
    sf.write(str(too_long), np.zeros(N_SAMPLES + 16000, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match=r"lecture\.flac: 31\.00 s of audio is longer"):
        audio_file_log_mel(too_long)
