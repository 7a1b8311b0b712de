"""Read a Hugging Face transformers Whisper folder into the canonical (OpenAI) checkpoint.

A folder saved by ``WhisperForConditionalGeneration.save_pretrained`` (or downloaded from the hub)
holds ``config.json``, the weights (``model.safetensors``, sharded safetensors with
``model.safetensors.index.json``, or ``pytorch_model.bin``), optionally ``generation_config.json``
(``alignment_heads``: 0-based ``[layer, head]`` pairs) and the tokenizer (``tokenizer.json``, or
``vocab.json`` + ``added_tokens.json``; read by :func:`.vocabulary.read_folder_vocabulary`).

Name mapping (transformers -> OpenAI), after dropping a leading ``model.``:
``{encoder,decoder}.layers.{i}.self_attn.{q,k,v,out}_proj`` -> ``blocks.{i}.attn.{query,key,value,out}``,
``decoder.layers.{i}.encoder_attn`` -> ``cross_attn``, ``self_attn_layer_norm`` -> ``attn_ln``,
``encoder_attn_layer_norm`` -> ``cross_attn_ln``, ``fc1``/``fc2`` -> ``mlp.0``/``mlp.2``,
``final_layer_norm`` -> ``mlp_ln``, ``encoder.layer_norm`` -> ``encoder.ln_post``,
``decoder.layer_norm`` -> ``decoder.ln``, ``encoder.embed_positions.weight`` ->
``encoder.positional_embedding``, ``decoder.embed_positions.weight`` -> ``decoder.positional_embedding``,
``decoder.embed_tokens`` -> ``decoder.token_embedding``; ``proj_out.weight`` (the tied output layer)
must equal the token embedding.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .openai_format import WhisperCheckpoint, WhisperCheckpointError, check_dims
from .vocabulary import WhisperVocabularyError, read_folder_vocabulary

CONFIG_JSON = "config.json"
GENERATION_CONFIG_JSON = "generation_config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"


def is_huggingface_folder(folder) -> bool:
    """A folder with a transformers ``config.json`` (``model_type`` whisper) and weights."""
    folder = Path(folder)
    if not (folder / CONFIG_JSON).is_file():
        return False
    return any((folder / name).is_file() for name in (SAFETENSORS, SAFETENSORS_INDEX, PYTORCH_BIN))


def _read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise WhisperCheckpointError(f"{path}: not valid JSON ({e})") from None


def dims_from_config(config: Dict, source: str) -> Dict[str, int]:
    """OpenAI's dims from a transformers WhisperConfig dict; refuses what Whisper's layout cannot hold."""
    if config.get("model_type") != "whisper":
        raise WhisperCheckpointError(f"{source}: model_type {config.get('model_type')!r}, not 'whisper'")
    try:
        d_model = int(config["d_model"])
        dims = {
            "n_mels": config.get("num_mel_bins", 80),
            "n_audio_ctx": config.get("max_source_positions", 1500),
            "n_audio_state": d_model,
            "n_audio_head": config["encoder_attention_heads"],
            "n_audio_layer": config["encoder_layers"],
            "n_vocab": config["vocab_size"],
            "n_text_ctx": config.get("max_target_positions", 448),
            "n_text_state": d_model,
            "n_text_head": config["decoder_attention_heads"],
            "n_text_layer": config["decoder_layers"],
        }
    except KeyError as e:
        raise WhisperCheckpointError(f"{source}: no {e.args[0]!r}") from None
    for key in ("encoder_ffn_dim", "decoder_ffn_dim"):
        if int(config.get(key, 4 * d_model)) != 4 * d_model:
            raise WhisperCheckpointError(f"{source}: {key}={config[key]}; Whisper's feed-forward width is "
                                         f"4 x d_model = {4 * d_model}")
    if config.get("activation_function", "gelu") != "gelu":
        raise WhisperCheckpointError(f"{source}: activation_function {config['activation_function']!r}; "
                                     "Whisper uses gelu")
    if config.get("scale_embedding", False):
        raise WhisperCheckpointError(f"{source}: scale_embedding is true; Whisper does not scale embeddings")
    return check_dims(dims, source)


def _read_weights(folder: Path) -> Tuple[Dict[str, np.ndarray], str]:
    """Every tensor of the folder's weights as float32 numpy (float16/bfloat16 widened), and the
    file read (for messages)."""
    import torch

    if (folder / SAFETENSORS).is_file() or (folder / SAFETENSORS_INDEX).is_file():
        from safetensors.torch import load_file  # the torch loader reads bfloat16 too

        if (folder / SAFETENSORS).is_file():
            files = [folder / SAFETENSORS]
        else:
            index = _read_json(folder / SAFETENSORS_INDEX)
            files = [folder / name for name in sorted(set(index.get("weight_map", {}).values()))]
        tensors: Dict[str, np.ndarray] = {}
        for path in files:
            try:
                loaded = load_file(str(path))
            except Exception as e:  # safetensors raises SafetensorError, OSError, ...
                raise WhisperCheckpointError(f"{path}: cannot read safetensors ({e})") from e
            tensors.update({k: v.float().numpy() for k, v in loaded.items()})
        return tensors, str(files[0] if len(files) == 1 else folder / SAFETENSORS_INDEX)
    path = folder / PYTORCH_BIN
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise WhisperCheckpointError(f"{path}: not a readable PyTorch state dict ({type(e).__name__})") from e
    return {k: v.float().numpy() for k, v in loaded.items() if torch.is_tensor(v)}, str(path)


_LAYER_PARTS = [
    (r"self_attn\.q_proj", "attn.query"), (r"self_attn\.k_proj", "attn.key"),
    (r"self_attn\.v_proj", "attn.value"), (r"self_attn\.out_proj", "attn.out"),
    (r"encoder_attn\.q_proj", "cross_attn.query"), (r"encoder_attn\.k_proj", "cross_attn.key"),
    (r"encoder_attn\.v_proj", "cross_attn.value"), (r"encoder_attn\.out_proj", "cross_attn.out"),
    (r"self_attn_layer_norm", "attn_ln"), (r"encoder_attn_layer_norm", "cross_attn_ln"),
    (r"fc1", "mlp.0"), (r"fc2", "mlp.2"), (r"final_layer_norm", "mlp_ln"),
]
_FIXED = {
    "encoder.embed_positions.weight": "encoder.positional_embedding",
    "encoder.layer_norm.weight": "encoder.ln_post.weight",
    "encoder.layer_norm.bias": "encoder.ln_post.bias",
    "decoder.embed_tokens.weight": "decoder.token_embedding.weight",
    "decoder.embed_positions.weight": "decoder.positional_embedding",
    "decoder.layer_norm.weight": "decoder.ln.weight",
    "decoder.layer_norm.bias": "decoder.ln.bias",
}


def openai_name(hf_name: str) -> Optional[str]:
    """OpenAI's name for a transformers Whisper parameter (None when it has none, e.g. ``proj_out``)."""
    name = hf_name[len("model."):] if hf_name.startswith("model.") else hf_name
    if name in _FIXED:
        return _FIXED[name]
    if re.fullmatch(r"encoder\.conv[12]\.(weight|bias)", name):
        return name
    match = re.fullmatch(r"(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)", name)
    if match is None:
        return None
    side, layer, module, param = match.groups()
    for pattern, replacement in _LAYER_PARTS:
        if re.fullmatch(pattern, module):
            return f"{side}.blocks.{layer}.{replacement}.{param}"
    return None


def read_huggingface_whisper(folder, require_vocabulary: bool = True) -> WhisperCheckpoint:
    """A transformers Whisper folder -> :class:`WhisperCheckpoint` (OpenAI names, float32 numpy)."""
    folder = Path(folder)
    if not (folder / CONFIG_JSON).is_file():
        raise WhisperCheckpointError(f"{folder}: no {CONFIG_JSON} (not a Hugging Face model folder)")
    if not is_huggingface_folder(folder):
        raise WhisperCheckpointError(f"{folder}: no weights ({SAFETENSORS}, {SAFETENSORS_INDEX} or {PYTORCH_BIN})")
    config_path = folder / CONFIG_JSON
    dims = dims_from_config(_read_json(config_path), str(config_path))
    tensors, weights_path = _read_weights(folder)
    state: Dict[str, np.ndarray] = {}
    unknown = []
    projection = None
    for name, value in tensors.items():
        if name in ("proj_out.weight", "model.proj_out.weight"):
            projection = value
            continue
        target = openai_name(name)
        if target is None:
            unknown.append(name)
        else:
            state[target] = value
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise WhisperCheckpointError(f"{weights_path}: {len(unknown)} tensor(s) that a Whisper model does not "
                                     f"have: {shown}")
    embedding = state.get("decoder.token_embedding.weight")
    if projection is not None and embedding is not None and not np.array_equal(projection, embedding):
        raise WhisperCheckpointError(f"{weights_path}: proj_out.weight differs from the token embedding; Whisper "
                                     "ties them (tie_word_embeddings), so this model cannot be imported")

    warnings: List[str] = []
    alignment_heads = None
    generation_path = folder / GENERATION_CONFIG_JSON
    if generation_path.is_file():
        heads = _read_json(generation_path).get("alignment_heads")
        if heads is not None:
            alignment_heads = [(int(layer), int(head)) for layer, head in heads]
    vocabulary = None
    if require_vocabulary:
        try:
            vocabulary = read_folder_vocabulary(folder, dims["n_vocab"])
        except WhisperVocabularyError as e:
            raise WhisperCheckpointError(str(e)) from None
    return WhisperCheckpoint(dims, state, alignment_heads, vocabulary, str(folder), warnings)
