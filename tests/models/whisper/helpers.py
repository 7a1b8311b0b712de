"""Inputs and models shared by the Whisper tests (fixtures are in conftest.py)."""
from typing import List, Sequence, Tuple

import numpy as np
import torch

from fairseq_xattn.data.whisper_features import log_mel_spectrogram, pad_frames_to_window

from .conftest import WINDOW_FRAMES, speech_like

#: Samples of the test utterances: 0.75 s and 0.375 s (77 and 39 frames of the 100-frame window).
UTTERANCE_SAMPLES = (12000, 6000)


def utterance_features(samples: Sequence[int] = UTTERANCE_SAMPLES) -> List[np.ndarray]:
    """Whisper log-mel ``T x 80`` of speech-like signals."""
    return [log_mel_spectrogram(speech_like(n, seed=i)) for i, n in enumerate(samples)]


def fairseq_batch(features: List[np.ndarray]) -> Tuple[torch.Tensor, torch.Tensor]:
    """``B x T x 80`` zero-padded (as fairseq's collater pads) and ``B`` lengths."""
    lengths = torch.tensor([f.shape[0] for f in features])
    batch = torch.zeros(len(features), int(lengths.max()), features[0].shape[1])
    for i, f in enumerate(features):
        batch[i, : f.shape[0]] = torch.from_numpy(f)
    return batch, lengths


def hf_batch(features: List[np.ndarray]) -> torch.Tensor:
    """``B x 80 x WINDOW_FRAMES``: each utterance padded with its silence, as Whisper pads."""
    return torch.stack([torch.from_numpy(pad_frames_to_window(f, WINDOW_FRAMES).T.copy()) for f in features])


def fairseq_whisper(folder_or_pt, dictionary, pad_to_30s: bool = True):
    """Our fairseq Whisper read through the importers' readers."""
    from pathlib import Path

    from fairseq_xattn.models.whisper.huggingface_format import read_huggingface_whisper
    from fairseq_xattn.models.whisper.openai_format import model_from_checkpoint, read_openai_checkpoint

    path = Path(folder_or_pt)
    checkpoint = read_openai_checkpoint(path) if path.is_file() else read_huggingface_whisper(path)
    return model_from_checkpoint(checkpoint, dictionary, pad_to_30s=pad_to_30s)
