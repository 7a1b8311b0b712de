"""Our fairseq Whisper computes transformers' WhisperForConditionalGeneration, weight for weight."""
import math

import pytest
import torch

from .conftest import ALIGNMENT_HEADS, N_VOCAB, NO_TIMESTAMPS, SOT
from .helpers import fairseq_batch, fairseq_whisper, hf_batch, utterance_features

ATOL = 1e-4


def _teacher_tokens(batch_size: int) -> torch.Tensor:
    """Prompt + text tokens, one row per utterance (different text so rows are not copies)."""
    rows = [[SOT, NO_TIMESTAMPS, 72, 101, 108, 108, 111, 32, 119, 3],
            [SOT, NO_TIMESTAMPS, 200, 15, 15, 99, 0, 255, 44, 7]]
    return torch.tensor(rows[:batch_size])


def _hf_logprobs(hf_model, features, tokens):
    with torch.no_grad():
        logits = hf_model(input_features=hf_batch(features), decoder_input_ids=tokens).logits
    return torch.log_softmax(logits.double(), dim=-1)


def _our_logprobs(model, features, tokens):
    src, lengths = fairseq_batch(features)
    with torch.no_grad():
        logits, _ = model(src, lengths, tokens)
    return model.get_normalized_probs((logits, None), log_probs=True).double(), logits


@pytest.mark.parametrize("source", ["huggingface", "openai"])
def test_decoder_logprobs_equal_transformers(source, hf_whisper_folder, openai_whisper_pt, hf_whisper_model,
                                             whisper_dictionary):
    path = hf_whisper_folder if source == "huggingface" else openai_whisper_pt
    model = fairseq_whisper(path, whisper_dictionary)
    features = utterance_features()
    tokens = _teacher_tokens(len(features))
    expected = _hf_logprobs(hf_whisper_model, features, tokens)
    ours, logits = _our_logprobs(model, features, tokens)
    assert logits.shape == (2, tokens.size(1), N_VOCAB + 1) and len(whisper_dictionary) == N_VOCAB + 1
    # The pad column can never be chosen and takes no probability from Whisper's tokens.
    assert torch.isneginf(ours[..., whisper_dictionary.pad()]).all()
    torch.testing.assert_close(ours[..., :N_VOCAB], expected, atol=ATOL, rtol=0)
    # a non-trivial comparison: every best token is far more likely than under a uniform distribution
    assert (expected.max(-1).values > math.log(1.0 / N_VOCAB) + 2).all()


def test_batch_equals_single_utterances(hf_whisper_folder, whisper_dictionary):
    """Each utterance of a padded batch gets exactly its own Whisper padding."""
    model = fairseq_whisper(hf_whisper_folder, whisper_dictionary)
    features = utterance_features()
    tokens = _teacher_tokens(2)
    together, _ = _our_logprobs(model, features, tokens)
    for i, f in enumerate(features):
        alone, _ = _our_logprobs(model, [f], tokens[i:i + 1])
        torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=0)


def test_alignment_heads_and_cross_attention(hf_whisper_folder, whisper_dictionary):
    from fairseq.modules import MultiheadAttention

    model = fairseq_whisper(hf_whisper_folder, whisper_dictionary)
    assert model.alignment_heads == [tuple(h) for h in ALIGNMENT_HEADS]
    modules = model.decoder.cross_attention_modules()
    assert len(modules) == 2 and all(type(m) is MultiheadAttention for m in modules)
    assert modules[1] is model.decoder.layers[1].encoder_attn


def test_encoder_output_geometry(hf_whisper_folder, whisper_dictionary):
    """30 s mode: all window frames attended (mask all False), encoder_lengths = ceil(T/2) of the audio.
    Real-frames mode: T' = ceil(T/2) frames, padding masked, and its convolution front-end equals the
    30 s mode's on those frames (only self-attention sees less)."""
    features = utterance_features()
    src, lengths = fairseq_batch(features)
    assert lengths.tolist() == [77, 39]  # (12000 + 199) // 160 + 1 and (6000 + 199) // 160 + 1
    padded = fairseq_whisper(hf_whisper_folder, whisper_dictionary)
    out = padded.encoder(src, lengths)
    assert out["encoder_out"][0].shape == (50, 2, 64)
    assert not out["encoder_padding_mask"][0].any()
    assert out["encoder_lengths"][0].tolist() == [39, 20]

    real = fairseq_whisper(hf_whisper_folder, whisper_dictionary, pad_to_30s=False)
    conv_outputs = {}
    for name, model in (("padded", padded), ("real", real)):
        model.encoder.conv2.register_forward_hook(lambda m, i, o, name=name: conv_outputs.__setitem__(name, o))
    out_real = real.encoder(src, lengths)
    padded.encoder(src, lengths)
    assert out_real["encoder_out"][0].shape == (39, 2, 64)
    assert out_real["encoder_padding_mask"][0].sum(1).tolist() == [0, 19]
    assert out_real["encoder_lengths"][0].tolist() == [39, 20]
    for b, n in enumerate([39, 20]):
        torch.testing.assert_close(conv_outputs["real"][b, :, :n], conv_outputs["padded"][b, :, :n], atol=1e-6, rtol=0)
    # ... but the states differ: Whisper's self-attention also reads the padding frames
    assert not torch.allclose(out_real["encoder_out"][0][:20, 1], out["encoder_out"][0][:20, 1], atol=1e-3)


def test_real_frames_mode_is_batch_invariant(hf_whisper_folder, whisper_dictionary):
    model = fairseq_whisper(hf_whisper_folder, whisper_dictionary, pad_to_30s=False)
    features = utterance_features()
    tokens = _teacher_tokens(2)
    together, _ = _our_logprobs(model, features, tokens)
    alone, _ = _our_logprobs(model, [features[1]], tokens[1:])
    torch.testing.assert_close(together[1], alone[0], atol=1e-5, rtol=0)


def test_inputs_the_model_cannot_take(hf_whisper_folder, whisper_dictionary):
    from fairseq_xattn.models.whisper import WhisperModelError

    model = fairseq_whisper(hf_whisper_folder, whisper_dictionary)
    with pytest.raises(WhisperModelError, match=r"101 frames is longer than Whisper's 30 s window \(100 frames\)"):
        model.encoder(torch.zeros(1, 101, 80), torch.tensor([101]))
    with pytest.raises(WhisperModelError, match=r"expects 80 log-mel bins, got 128"):
        model.encoder(torch.zeros(1, 10, 128), torch.tensor([10]))
    assert model.max_positions() == (100, 40)


def test_config_from_the_command_line_and_archs():
    """fairseq's argparse bridge builds the dataclass; an arch fills only what the user left unset."""
    import argparse

    from fairseq.dataclass.utils import gen_parser_from_dataclass
    from fairseq.models import ARCH_CONFIG_REGISTRY

    from fairseq_xattn.models.whisper.model import WhisperConfig, complete_config

    parser = argparse.ArgumentParser()
    gen_parser_from_dataclass(parser, WhisperConfig(), delete_default=True)
    args = parser.parse_args(["--no-pad-to-30s", "--n-text-layer", "3"])
    ARCH_CONFIG_REGISTRY["whisper_large"](args)
    cfg = complete_config(args)
    assert (cfg.n_mels, cfg.n_audio_state, cfg.n_audio_layer, cfg.n_text_layer) == (128, 1280, 32, 3)
    assert cfg.no_pad_to_30s and cfg.n_audio_ctx == 1500 and cfg.n_text_ctx == 448


def test_padding_value_is_whisper_silence(hf_whisper_folder, hf_whisper_model, whisper_dictionary):
    """The frames appended up to the window matter: the utterance's silence value reproduces
    transformers (test above), a zero padding (fairseq's collater value) does not."""
    model = fairseq_whisper(hf_whisper_folder, whisper_dictionary)
    features = utterance_features()
    tokens = _teacher_tokens(2)
    expected = _hf_logprobs(hf_whisper_model, features, tokens)
    src, lengths = fairseq_batch(features)
    with torch.no_grad():
        logits, _ = model(src, lengths, tokens, padding_value=torch.zeros(2))
    zero_padded = torch.log_softmax(logits.double(), -1)[..., :N_VOCAB]
    assert (zero_padded - expected).abs().max() > 1e-2
    with torch.no_grad():  # the explicit silence value is the default
        from fairseq_xattn.data.whisper_features import silence_value

        values = torch.tensor([silence_value(f) for f in features])
        pinned, _ = model(src, lengths, tokens, padding_value=values)
    torch.testing.assert_close(torch.log_softmax(pinned.double(), -1)[..., :N_VOCAB], expected, atol=ATOL, rtol=0)
