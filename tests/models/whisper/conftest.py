"""A random small Whisper saved by transformers (no download), shared by the Whisper tests.

``hf_whisper_folder``: ``WhisperForConditionalGeneration.save_pretrained`` of a model with
d_model 64, 2 + 2 layers, 4 heads, 80 mel bins and a 1-second window (``max_source_positions`` 50,
so 100 input frames stand for Whisper's 3000), every parameter drawn at random (not transformers'
init, whose zero biases and unit LayerNorms would hide mapping errors), plus ``generation_config.json``
with alignment heads and the tokenizer files (``vocab.json``, ``merges.txt``, ``added_tokens.json``)
of an English-only Whisper-layout vocabulary of 277 tokens: the 256 byte symbols, then
``<|endoftext|>``, ``<|startoftranscript|>``, two languages, the task tokens, ``<|notimestamps|>``
and eleven timestamps.

Built once per session under pytest's tmp folder.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

N_TEXT_TOKENS = 256
SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"] + \
           ["<|%.2f|>" % (0.02 * k) for k in range(11)]
N_VOCAB = N_TEXT_TOKENS + len(SPECIALS)  # 277
EOT, SOT = N_TEXT_TOKENS, N_TEXT_TOKENS + 1
NO_TIMESTAMPS = N_TEXT_TOKENS + SPECIALS.index("<|notimestamps|>")
ALIGNMENT_HEADS = [[1, 0], [1, 3], [0, 2]]
WINDOW_FRAMES = 100  # 2 x max_source_positions: the test model's "30 s"
SMALL_CONFIG = dict(
    vocab_size=N_VOCAB, num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256,
    max_source_positions=WINDOW_FRAMES // 2, max_target_positions=40,
    pad_token_id=EOT, bos_token_id=EOT, eos_token_id=EOT, decoder_start_token_id=SOT,
    begin_suppress_tokens=None, suppress_tokens=None,
)


def _byte_symbols():
    from fairseq_xattn.models.whisper.vocabulary import byte_to_char

    return [byte_to_char(b) for b in range(256)]


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Every parameter (and the encoder's position table) drawn at random; LayerNorm weights near 1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "layer_norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.2 * noise)
            else:
                param.copy_(0.15 * noise)


@pytest.fixture(scope="session")
def hf_whisper_folder(tmp_path_factory) -> Path:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    folder = tmp_path_factory.mktemp("hf_whisper")
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(WhisperConfig(**SMALL_CONFIG)).eval()
    _randomise(model, seed=1)
    model.save_pretrained(str(folder))  # model.safetensors, config.json, generation_config.json
    generation = json.loads((folder / "generation_config.json").read_text())
    generation["alignment_heads"] = ALIGNMENT_HEADS
    (folder / "generation_config.json").write_text(json.dumps(generation))
    symbols = _byte_symbols()
    (folder / "vocab.json").write_text(json.dumps({s: i for i, s in enumerate(symbols)}, ensure_ascii=False),
                                       encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (folder / "added_tokens.json").write_text(json.dumps({s: N_TEXT_TOKENS + i for i, s in enumerate(SPECIALS)}))
    return folder


@pytest.fixture(scope="session")
def hf_whisper_model(hf_whisper_folder):
    """transformers' model loaded back from the folder (float32, eval)."""
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(str(hf_whisper_folder)).eval()


def hf_to_openai_name(name: str) -> str:
    """Rename a transformers Whisper parameter to openai/whisper's name (written independently of
    the importer's table, so the OpenAI-format test checks the importer's mapping)."""
    import re

    name = name.replace("model.", "", 1)
    rules = [
        (r"^encoder\.embed_positions\.weight$", "encoder.positional_embedding"),
        (r"^decoder\.embed_positions\.weight$", "decoder.positional_embedding"),
        (r"^decoder\.embed_tokens\.", "decoder.token_embedding."),
        (r"^encoder\.layer_norm\.", "encoder.ln_post."),
        (r"^decoder\.layer_norm\.", "decoder.ln."),
        (r"\.layers\.", ".blocks."),
        (r"\.self_attn_layer_norm\.", ".attn_ln."),
        (r"\.encoder_attn_layer_norm\.", ".cross_attn_ln."),
        (r"\.self_attn\.", ".attn."),
        (r"\.encoder_attn\.", ".cross_attn."),
        (r"\.q_proj\.", ".query."), (r"\.k_proj\.", ".key."), (r"\.v_proj\.", ".value."),
        (r"\.out_proj\.", ".out."),
        (r"\.fc1\.", ".mlp.0."), (r"\.fc2\.", ".mlp.2."), (r"\.final_layer_norm\.", ".mlp_ln."),
    ]
    for pattern, replacement in rules:
        name = re.sub(pattern, replacement, name)
    return name


@pytest.fixture(scope="session")
def openai_whisper_pt(hf_whisper_folder, hf_whisper_model, tmp_path_factory) -> Path:
    """The same weights as an OpenAI checkpoint: ``{"dims", "model_state_dict"}`` (float32, so the
    comparison with transformers stays within 1e-4; OpenAI's files are float16)."""
    c = hf_whisper_model.config
    dims = dict(n_mels=c.num_mel_bins, n_audio_ctx=c.max_source_positions, n_audio_state=c.d_model,
                n_audio_head=c.encoder_attention_heads, n_audio_layer=c.encoder_layers, n_vocab=c.vocab_size,
                n_text_ctx=c.max_target_positions, n_text_state=c.d_model, n_text_head=c.decoder_attention_heads,
                n_text_layer=c.decoder_layers)
    state = {hf_to_openai_name(k): v.clone() for k, v in hf_whisper_model.state_dict().items()
             if not k.startswith("proj_out")}
    path = tmp_path_factory.mktemp("openai_whisper") / "small.pt"
    torch.save({"dims": dims, "model_state_dict": state}, str(path))
    return path


def speech_like(n_samples: int, seed: int) -> np.ndarray:
    """Harmonic tone with a syllable-rate envelope plus a little noise, in [-1, 1] (float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / 16000.0
    f0 = 120.0 + 30.0 * np.sin(2 * np.pi * 3.0 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000.0
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, np.pi)))
    return (0.3 * envelope * voiced + 0.01 * rng.standard_normal(n_samples)).astype(np.float32)


@pytest.fixture(scope="session")
def whisper_dictionary(hf_whisper_folder):
    from fairseq_xattn.models.whisper.vocabulary import WhisperDictionary

    return WhisperDictionary.from_folder(hf_whisper_folder, N_VOCAB)
