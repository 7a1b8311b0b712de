"""OpenAI's checkpoint format, the canonical form every importer converts into, and the one place
where a fairseq :class:`~.model.WhisperModel` is built from it.

Canonical checkpoint (:class:`WhisperCheckpoint`): Whisper's ``dims`` (ModelDimensions: n_mels,
n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_vocab, n_text_ctx, n_text_state,
n_text_head, n_text_layer), a state dict with OpenAI's parameter names (``encoder.conv1.weight``,
``encoder.blocks.{i}.attn.{query,key,value,out}.{weight,bias}`` (no key bias),
``encoder.blocks.{i}.{attn_ln,mlp.0,mlp.2,mlp_ln}``, ``encoder.ln_post``,
``decoder.token_embedding.weight``, ``decoder.positional_embedding``,
``decoder.blocks.{i}.{attn,attn_ln,cross_attn,cross_attn_ln,mlp.0,mlp.2,mlp_ln}``, ``decoder.ln``;
``encoder.positional_embedding`` optional), the alignment heads (0-based ``(layer, head)``) and the
vocabulary (token strings, index = token id) when the source has them.

An OpenAI ``.pt`` file (``openai/whisper``'s download) is ``{"dims": {...}, "model_state_dict":
{...}}`` in float16; it has neither alignment heads (openai/whisper keeps them in its source code;
an optional ``alignment_heads`` key, pairs or a boolean ``layers x heads`` mask, is read when
present) nor a tokenizer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from ...errors import UserError
from .model import WhisperConfig, WhisperModel, format_alignment_heads

DIMS_KEYS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
             "n_vocab", "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer")


class WhisperCheckpointError(UserError, ValueError):
    """A checkpoint of an unknown format or size (the message names the file)."""


@dataclass
class WhisperCheckpoint:
    """A Whisper model in OpenAI's format, from any source."""
    dims: Dict[str, int]
    state_dict: Dict[str, object]  # OpenAI name -> numpy array or tensor
    alignment_heads: Optional[List[Tuple[int, int]]]
    vocabulary: Optional[List[str]]
    source: str  # the file or folder it was read from, for messages
    warnings: List[str] = field(default_factory=list)


def check_dims(dims: Mapping, source: str) -> Dict[str, int]:
    """``dims`` with every ModelDimensions key as an int, heads dividing widths."""
    missing = [k for k in DIMS_KEYS if k not in dims]
    if missing:
        raise WhisperCheckpointError(f"{source}: Whisper dims lack {', '.join(missing)}")
    try:
        out = {k: int(dims[k]) for k in DIMS_KEYS}
    except (TypeError, ValueError):
        raise WhisperCheckpointError(f"{source}: Whisper dims must be integers, got {dict(dims)}") from None
    if any(v <= 0 for v in out.values()):
        raise WhisperCheckpointError(f"{source}: Whisper dims must be positive, got {out}")
    for width, heads in (("n_audio_state", "n_audio_head"), ("n_text_state", "n_text_head")):
        if out[width] % out[heads]:
            raise WhisperCheckpointError(f"{source}: {heads}={out[heads]} does not divide {width}={out[width]}")
    if out["n_mels"] not in (80, 128):
        raise WhisperCheckpointError(f"{source}: n_mels={out['n_mels']}; Whisper models use 80 or 128")
    return out


def read_openai_checkpoint(path) -> WhisperCheckpoint:
    """An OpenAI ``.pt`` (``dims`` + ``model_state_dict``) -> :class:`WhisperCheckpoint` (float32)."""
    path = Path(path)
    if not path.is_file():
        raise WhisperCheckpointError(f"{path}: no such file")
    try:
        content = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, zip errors, weights_only refusals
        raise WhisperCheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: "
                                     f"{str(e).splitlines()[0] if str(e) else ''})") from e
    if not isinstance(content, dict) or "dims" not in content or "model_state_dict" not in content:
        keys = sorted(content)[:6] if isinstance(content, dict) else type(content).__name__
        raise WhisperCheckpointError(f"{path}: not an OpenAI Whisper checkpoint (expected keys 'dims' and "
                                     f"'model_state_dict', found {keys})")
    dims = check_dims(content["dims"], str(path))
    state = {k: v.float() for k, v in content["model_state_dict"].items() if torch.is_tensor(v)}
    heads = content.get("alignment_heads")  # not in OpenAI's files; our own exports may add it
    if torch.is_tensor(heads) and heads.dtype == torch.bool:  # openai/whisper's layers x heads mask
        heads = heads.to_dense().nonzero().tolist()
    alignment_heads = None if heads is None else [(int(l), int(h)) for l, h in heads]
    return WhisperCheckpoint(dims, state, alignment_heads, None, str(path))


# --- OpenAI names -> our fairseq model's names -----------------------------------------------------

_ATTENTION = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "out": "out_proj"}
_BLOCK = {"attn_ln": "self_attn_layer_norm", "cross_attn_ln": "encoder_attn_layer_norm",
          "mlp.0": "fc1", "mlp.2": "fc2", "mlp_ln": "final_layer_norm"}


def _fairseq_name(name: str) -> Optional[str]:
    """Our parameter name for an OpenAI one (None for names we do not know)."""
    fixed = {
        "encoder.positional_embedding": "encoder.embed_positions",
        "encoder.ln_post.weight": "encoder.layer_norm.weight",
        "encoder.ln_post.bias": "encoder.layer_norm.bias",
        "decoder.token_embedding.weight": "decoder.embed_tokens.weight",
        "decoder.positional_embedding": "decoder.embed_positions.weight",
        "decoder.ln.weight": "decoder.layer_norm.weight",
        "decoder.ln.bias": "decoder.layer_norm.bias",
    }
    if name in fixed:
        return fixed[name]
    parts = name.split(".")
    if parts[0] == "encoder" and parts[1] in ("conv1", "conv2"):
        return name
    if len(parts) < 5 or parts[1] != "blocks" or parts[0] not in ("encoder", "decoder"):
        return None
    side, layer, rest = parts[0], parts[2], ".".join(parts[3:])
    module, _, param = rest.rpartition(".")
    prefix = f"{side}.layers.{layer}"
    if module in _BLOCK:
        return f"{prefix}.{_BLOCK[module]}.{param}"
    attention, _, projection = module.partition(".")
    if attention in ("attn", "cross_attn") and projection in _ATTENTION:
        if attention == "cross_attn" and side != "decoder":
            return None
        return f"{prefix}.{'self_attn' if attention == 'attn' else 'encoder_attn'}.{_ATTENTION[projection]}.{param}"
    return None


def fairseq_state_dict(checkpoint: WhisperCheckpoint, model: WhisperModel) -> Dict[str, torch.Tensor]:
    """The canonical state dict renamed for ``model``, float32, shapes checked against the model.
    Zero key biases fill fairseq's ``k_proj.bias`` (exact: see WhisperTextDecoder); the tied output
    projection shares the embedding; a missing encoder position table keeps the model's sinusoids."""
    source = checkpoint.source
    target = model.state_dict()
    out: Dict[str, torch.Tensor] = {}
    unknown = []
    for name, value in checkpoint.state_dict.items():
        ours = _fairseq_name(name)
        if ours is None or ours not in target:
            unknown.append(name)
            continue
        tensor = torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value).float()
        if tuple(tensor.shape) != tuple(target[ours].shape):
            raise WhisperCheckpointError(
                f"{source}: {name} has shape {tuple(tensor.shape)}, but a Whisper of dims {checkpoint.dims} "
                f"needs {tuple(target[ours].shape)} (a checkpoint of another size, or wrong dims)")
        out[ours] = tensor
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise WhisperCheckpointError(f"{source}: {len(unknown)} parameter(s) that a Whisper model does not have: {shown}")
    for name, value in target.items():
        if name.endswith("k_proj.bias") and name not in out:
            out[name] = torch.zeros_like(value)
    out["decoder.output_projection.weight"] = out.get("decoder.embed_tokens.weight")
    out.setdefault("encoder.embed_positions", target["encoder.embed_positions"])
    for name, value in target.items():  # fairseq's own buffers (decoder.version)
        if name.endswith("version"):
            out.setdefault(name, value)
    missing = sorted(n for n in target if out.get(n) is None)
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise WhisperCheckpointError(f"{source}: {len(missing)} Whisper parameter(s) missing (our names): {shown}")
    return out


def model_config(dims: Mapping[str, int], alignment_heads: Optional[List[Tuple[int, int]]] = None,
                 pad_to_30s: bool = True) -> WhisperConfig:
    """Our model config for Whisper ``dims`` (everything but n_vocab, which the dictionary gives)."""
    return WhisperConfig(
        **{k: int(dims[k]) for k in DIMS_KEYS if k != "n_vocab"},
        no_pad_to_30s=not pad_to_30s,
        alignment_heads=format_alignment_heads(alignment_heads),
    )


def model_from_checkpoint(checkpoint: WhisperCheckpoint, dictionary, pad_to_30s: bool = True) -> WhisperModel:
    """The fairseq Whisper of a canonical checkpoint, in eval mode."""
    n_vocab = len(dictionary) - 1
    if n_vocab != checkpoint.dims["n_vocab"]:
        raise WhisperCheckpointError(f"{checkpoint.source}: n_vocab {checkpoint.dims['n_vocab']}, but the dictionary "
                                     f"has {n_vocab} Whisper tokens (+ pad)")
    model = WhisperModel.from_config(model_config(checkpoint.dims, checkpoint.alignment_heads, pad_to_30s), dictionary)
    model.load_state_dict(fairseq_state_dict(checkpoint, model), strict=True)
    return model.eval()
