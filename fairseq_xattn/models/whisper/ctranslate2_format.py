"""Read a CTranslate2 Whisper folder (as faster-whisper uses it) into OpenAI's checkpoint format (numpy only).

A CTranslate2 folder holds ``model.bin`` (the weights), ``config.json`` (alignment heads, suppressed
tokens), the vocabulary (``vocabulary.json``, a JSON list, or ``vocabulary.txt``, one token a line),
and often ``tokenizer.json`` and ``preprocessor_config.json``.  :func:`read_ctranslate2_whisper`
returns the canonical checkpoint the importer turns into a fairseq model: Whisper's ``dims``, a
float32 state dict with OpenAI's parameter names, the 0-based alignment heads, the vocabulary and
the warnings to show the user.

``model.bin`` layout (binary version 6, every CTranslate2 Whisper model; little-endian)::

    u32 binary_version | str spec_name | u32 spec_revision | u32 n_variables
    n_variables x ( str name | u8 rank | rank x u32 dims | u8 dtype_id | u32 n_bytes | payload )
    u32 n_aliases | n_aliases x ( str alias | str target )

where ``str`` is a u16 length (counting a trailing NUL) followed by the bytes and the NUL, and
``dtype_id`` indexes (float32, int8, int16, int32, float16, bfloat16).  Names are ``/``-scoped
(``decoder/layer_0/attention/linear_1/weight``).  The converter writes a variable equal to an
earlier one (alphabetically) as an alias; ``X_scale`` follows the alias of ``X``.

Quantised weights: an ``int8`` weight ``q`` has a float ``weight_scale`` ``s`` per output row
(``s = 127 / max|w|``, ``q = round(w * s)``), so ``w ~ q / s`` within half a step ``0.5 / s``;
``int16`` has one scalar scale.  Both are dequantised here, with a warning.

Differences from OpenAI's layout, undone here: self-attention stores query, key and value as one
fused ``linear_0`` (``3D x D``) and cross-attention stores key and value fused in ``linear_1``
(``2D x D``), with a zero bias block for the key (OpenAI's key projections have no bias; a key bias
adds the same number to every score of a query, so softmax ignores it anyway); the output
projection is an alias of the token embedding (Whisper ties them); the sinusoidal encoder positions
are stored as a variable (OpenAI's ``encoder.positional_embedding`` buffer).
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from ...errors import UserError

MODEL_BIN = "model.bin"
CONFIG_JSON = "config.json"
PREPROCESSOR_CONFIG_JSON = "preprocessor_config.json"
VOCABULARY_FILES = ("vocabulary.json", "vocabulary.txt")

#: The only binary version a CTranslate2 Whisper model has been written with (Whisper support came
#: after version 6; the layout has not changed since).
SUPPORTED_BINARY_VERSION = 6
WHISPER_SPEC_NAME = "WhisperSpec"
#: WhisperSpec revisions 1..3 share one variable layout (2 changed config.json, 3 renumbered the
#: activation enum).
MAX_WHISPER_SPEC_REVISION = 3
#: CTranslate2's DataType enum order (include/ctranslate2/types.h).
DTYPE_NAMES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_ITEM_SIZES = {"float32": 4, "int8": 1, "int16": 2, "int32": 4, "float16": 2, "bfloat16": 2}
_NUMPY_DTYPES = {"float32": "<f4", "int8": "i1", "int16": "<i2", "int32": "<i4", "float16": "<f2",
                 "bfloat16": "<u2"}  # bfloat16 kept as its raw 16 bits until widened
_GELU_REVISION_3 = 3  # common_spec.Activation.GELU from WhisperSpec revision 3 on


class CTranslate2FormatError(UserError, ValueError):
    """A CTranslate2 folder or ``model.bin`` that this reader cannot turn into a Whisper checkpoint."""


class ModelBin(NamedTuple):
    """The raw content of a ``model.bin``: variables in their stored dtype (bfloat16 as uint16 bits)."""
    path: Path
    binary_version: int
    spec_name: str
    spec_revision: int
    variables: Dict[str, np.ndarray]
    dtypes: Dict[str, str]          # variable name -> CTranslate2 dtype name
    aliases: Dict[str, str]         # alias name -> stored variable name


class CTranslate2Whisper(NamedTuple):
    """What :func:`read_ctranslate2_whisper` returns; unpacks as a 5-tuple."""
    dims: Dict[str, int]
    state_dict: Dict[str, np.ndarray]
    alignment_heads: List[Tuple[int, int]]
    vocabulary: List[str]
    warnings: List[str]


class _Reader:
    """Sequential little-endian reads over the bytes of one file, with errors that name it."""

    def __init__(self, data: bytes, path: Path):
        self.data = data
        self.path = path
        self.pos = 0

    def take(self, n_bytes: int, what: str) -> memoryview:
        if n_bytes < 0 or self.pos + n_bytes > len(self.data):
            raise CTranslate2FormatError(
                f"{self.path}: file is truncated or corrupt: {what} needs {n_bytes} bytes at offset {self.pos}, "
                f"but the file has {len(self.data)} bytes")
        view = memoryview(self.data)[self.pos:self.pos + n_bytes]
        self.pos += n_bytes
        return view

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.take(size, what))

    def u8(self, what: str) -> int:
        return self.unpack("B", what)[0]

    def u32(self, what: str) -> int:
        return self.unpack("I", what)[0]

    def string(self, what: str) -> str:
        length = self.unpack("H", what + " length")[0]
        if length == 0:
            raise CTranslate2FormatError(f"{self.path}: corrupt {what} (zero length) at offset {self.pos - 2}")
        raw = bytes(self.take(length, what))
        if raw[-1] != 0:
            raise CTranslate2FormatError(
                f"{self.path}: corrupt {what} (no NUL terminator) at offset {self.pos - length}")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise CTranslate2FormatError(
                f"{self.path}: corrupt {what} (not UTF-8) at offset {self.pos - length}") from None


def read_model_bin(path) -> ModelBin:
    """Parse a CTranslate2 ``model.bin`` (binary version 6) without interpreting the variables."""
    path = Path(path)
    if not path.is_file():
        raise CTranslate2FormatError(f"{path}: no such file (a CTranslate2 model folder has {MODEL_BIN})")
    reader = _Reader(path.read_bytes(), path)
    binary_version = reader.u32("binary version")
    if binary_version != SUPPORTED_BINARY_VERSION:
        raise CTranslate2FormatError(
            f"{path}: unsupported CTranslate2 binary version {binary_version} "
            f"(this reader reads version {SUPPORTED_BINARY_VERSION}, the only one CTranslate2 writes Whisper "
            f"models in; is this a CTranslate2 model.bin?)")
    spec_name = reader.string("spec name")
    spec_revision = reader.u32("spec revision")
    n_variables = reader.u32("variable count")
    variables: Dict[str, np.ndarray] = {}
    dtypes: Dict[str, str] = {}
    for _ in range(n_variables):
        name = reader.string("variable name")
        rank = reader.u8(f"rank of {name}")
        shape = reader.unpack(f"{rank}I", f"shape of {name}") if rank else ()
        dtype_id = reader.u8(f"dtype of {name}")
        if dtype_id >= len(DTYPE_NAMES):
            raise CTranslate2FormatError(f"{path}: variable {name!r} has unknown dtype id {dtype_id} "
                                         f"(known: {', '.join(f'{i}={n}' for i, n in enumerate(DTYPE_NAMES))})")
        dtype = DTYPE_NAMES[dtype_id]
        n_bytes = reader.u32(f"size of {name}")
        expected = int(np.prod(shape, dtype=np.int64)) * _ITEM_SIZES[dtype]
        if n_bytes != expected:
            raise CTranslate2FormatError(f"{path}: variable {name!r} declares {n_bytes} bytes, but shape "
                                         f"{tuple(shape)} of {dtype} needs {expected}")
        payload = reader.take(n_bytes, f"data of {name}")
        variables[name] = np.frombuffer(payload, dtype=_NUMPY_DTYPES[dtype]).reshape(shape).copy()
        dtypes[name] = dtype
    aliases: Dict[str, str] = {}
    n_aliases = reader.u32("alias count")
    for _ in range(n_aliases):
        alias = reader.string("alias name")
        aliases[alias] = reader.string(f"target of alias {alias}")
    if reader.pos != len(reader.data):
        raise CTranslate2FormatError(f"{path}: {len(reader.data) - reader.pos} unexpected trailing bytes after "
                                     f"the aliases (corrupt file?)")
    return ModelBin(path, binary_version, spec_name, spec_revision, variables, dtypes, aliases)


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the upper half of a float32: widening is exact."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


class _Variables:
    """Float32 views of a ModelBin's variables by name: aliases resolved, int8/int16 dequantised,
    and every array variable that the mapping consumes ticked off, so leftovers can be reported."""

    def __init__(self, model: ModelBin):
        self.model = model
        self.used: set = set()
        self.dequantised: Dict[str, float] = {}  # stored name -> largest half-step (max |w - w_hat|)

    def _resolve(self, name: str) -> Optional[str]:
        if name in self.model.variables:
            return name
        target = self.model.aliases.get(name)
        if target is not None and target in self.model.variables:
            return target
        # An alias of X also aliases X_scale (model.cc registers both).
        for suffix in ("_scale",):
            if name.endswith(suffix):
                base_target = self.model.aliases.get(name[: -len(suffix)])
                if base_target is not None and base_target + suffix in self.model.variables:
                    return base_target + suffix
        return None

    def has(self, name: str) -> bool:
        return self._resolve(name) is not None

    def scalar(self, name: str) -> Optional[int]:
        stored = self._resolve(name)
        if stored is None:
            return None
        value = self.model.variables[stored]
        if value.ndim != 0:
            raise CTranslate2FormatError(f"{self.model.path}: {name!r} should be a scalar, has shape {value.shape}")
        self.used.add(name)
        return int(value)

    def array(self, name: str, shape: Optional[Tuple[int, ...]] = None) -> np.ndarray:
        stored = self._resolve(name)
        if stored is None:
            raise CTranslate2FormatError(f"{self.model.path}: variable {name!r} is missing (not a Whisper model "
                                         f"written by CTranslate2's converter?)")
        self.used.add(name)
        raw = self.model.variables[stored]
        dtype = self.model.dtypes[stored]
        if dtype == "float32":
            value = raw.astype(np.float32)
        elif dtype == "float16":
            value = raw.astype(np.float32)
        elif dtype == "bfloat16":
            value = _bfloat16_to_float32(raw)
        elif dtype in ("int8", "int16"):
            value = self._dequantise(name, stored, raw, dtype)
        else:
            raise CTranslate2FormatError(f"{self.model.path}: variable {name!r} has dtype {dtype}, which no "
                                         f"Whisper weight uses")
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise CTranslate2FormatError(f"{self.model.path}: variable {name!r} has shape {tuple(value.shape)}, "
                                         f"expected {tuple(shape)}")
        return np.ascontiguousarray(value, dtype=np.float32)

    def _dequantise(self, name: str, stored: str, raw: np.ndarray, dtype: str) -> np.ndarray:
        scale_name = name + "_scale"
        stored_scale = self._resolve(scale_name)
        if stored_scale is None:
            raise CTranslate2FormatError(f"{self.model.path}: {dtype} variable {name!r} has no {scale_name!r}; "
                                         f"cannot dequantise it")
        self.used.add(scale_name)
        scale_raw = self.model.variables[stored_scale]
        scale_dtype = self.model.dtypes[stored_scale]
        if scale_dtype == "bfloat16":
            scale = _bfloat16_to_float32(scale_raw)
        elif scale_dtype in ("float32", "float16"):
            scale = scale_raw.astype(np.float32)
        else:
            raise CTranslate2FormatError(f"{self.model.path}: scale {scale_name!r} has dtype {scale_dtype}")
        if dtype == "int8":
            # One scale per output row (first axis); conv weights (out x in x k) too.
            if scale.shape != raw.shape[:1]:
                raise CTranslate2FormatError(f"{self.model.path}: {scale_name!r} has shape {scale.shape}, expected "
                                             f"({raw.shape[0]},) for {name!r} of shape {raw.shape}")
            scale = scale.reshape((-1,) + (1,) * (raw.ndim - 1))
        elif scale.ndim != 0:
            raise CTranslate2FormatError(f"{self.model.path}: int16 scale {scale_name!r} should be a scalar, "
                                         f"has shape {scale.shape}")
        if np.any(scale <= 0) or not np.all(np.isfinite(scale)):
            raise CTranslate2FormatError(f"{self.model.path}: {scale_name!r} has non-positive or non-finite values")
        value = raw.astype(np.float32) / scale
        # Largest half-step over the rows that hold anything (an all-zero row is exact).
        half_steps = np.broadcast_to(0.5 / scale, raw.shape)[raw != 0]
        self.dequantised[stored] = float(half_steps.max()) if half_steps.size else 0.0
        return value

    def unused_arrays(self) -> List[str]:
        names = set(self.model.variables) | set(self.model.aliases)
        return sorted(n for n in names - self.used
                      if n in self.model.aliases or self.model.variables[n].ndim > 0)


def _layer_count(model: ModelBin, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"/layer_(\d+)/")
    indices = {int(m.group(1)) for n in list(model.variables) + list(model.aliases) for m in [pattern.match(n)] if m}
    if not indices:
        raise CTranslate2FormatError(f"{model.path}: no {prefix} layers found")
    if indices != set(range(len(indices))):
        raise CTranslate2FormatError(f"{model.path}: {prefix} layer indices are not 0..{len(indices) - 1}: "
                                     f"{sorted(indices)}")
    return len(indices)


def _split_rows(value: np.ndarray, parts: int, name: str, path: Path) -> List[np.ndarray]:
    if value.shape[0] % parts:
        raise CTranslate2FormatError(f"{path}: fused {name!r} has {value.shape[0]} rows, not divisible by {parts}")
    return [np.ascontiguousarray(p) for p in np.split(value, parts, axis=0)]


def _layer_norm(v: _Variables, ct2: str, openai: str, width: int, out: Dict[str, np.ndarray]) -> None:
    out[openai + ".weight"] = v.array(ct2 + "/gamma", (width,))
    out[openai + ".bias"] = v.array(ct2 + "/beta", (width,))


def _linear(v: _Variables, ct2: str, openai: str, shape: Tuple[int, int], out: Dict[str, np.ndarray],
            bias: bool = True) -> None:
    out[openai + ".weight"] = v.array(ct2 + "/weight", shape)
    if bias:
        out[openai + ".bias"] = v.array(ct2 + "/bias", shape[:1])


def _fused_attention_inputs(v: _Variables, ct2: str, openai: str, names: Tuple[str, ...], width: int,
                            out: Dict[str, np.ndarray], notes: List[str]) -> None:
    """Split a fused projection (``len(names) * D x D``) into OpenAI's query/key/value linears;
    the key has no bias in OpenAI's model (the stored key bias block must be zero)."""
    weights = _split_rows(v.array(ct2 + "/weight", (len(names) * width, width)), len(names), ct2, v.model.path)
    biases = _split_rows(v.array(ct2 + "/bias", (len(names) * width,)), len(names), ct2, v.model.path)
    for name, weight, bias in zip(names, weights, biases):
        out[f"{openai}.{name}.weight"] = weight
        if name == "key":
            if np.any(bias != 0):
                notes.append(f"{ct2}/bias: non-zero key bias (max |b| {np.max(np.abs(bias)):.3g}) dropped; a key "
                             f"bias shifts every score of a query equally, so attention is unchanged")
        else:
            out[f"{openai}.{name}.bias"] = bias


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CTranslate2FormatError(f"{path}: not valid JSON ({err})") from None


def read_ctranslate2_vocabulary(folder) -> List[str]:
    """The token strings of a CTranslate2 folder: ``vocabulary.json`` (a JSON list) or ``vocabulary.txt``
    (one token a line), index = token id."""
    folder = Path(folder)
    json_path, txt_path = (folder / name for name in VOCABULARY_FILES)
    if json_path.is_file():
        tokens = _read_json(json_path)
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise CTranslate2FormatError(f"{json_path}: expected a JSON list of token strings")
        return tokens
    if txt_path.is_file():
        lines = txt_path.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return [line[:-1] if line.endswith("\r") else line for line in lines]
    raise CTranslate2FormatError(f"{folder}: no vocabulary ({' or '.join(VOCABULARY_FILES)}) in the CTranslate2 folder")


def is_ctranslate2_folder(folder) -> bool:
    """True for a folder with ``model.bin`` and ``config.json`` (what CTranslate2's converters write)."""
    folder = Path(folder)
    return (folder / MODEL_BIN).is_file() and (folder / CONFIG_JSON).is_file()


def default_alignment_heads(n_text_layer: int, n_text_head: int) -> List[Tuple[int, int]]:
    """Whisper's fallback: every head of the last half of the decoder layers (0-based pairs)."""
    return [(layer, head) for layer in range(n_text_layer // 2, n_text_layer) for head in range(n_text_head)]


def read_ctranslate2_whisper(folder) -> CTranslate2Whisper:
    """A CTranslate2 Whisper folder -> ``(dims, state_dict, alignment_heads, vocabulary, warnings)``.

    ``dims``: OpenAI's ModelDimensions as a dict (n_mels, n_audio_ctx, n_audio_state, n_audio_head,
    n_audio_layer, n_vocab, n_text_ctx, n_text_state, n_text_head, n_text_layer).
    ``state_dict``: OpenAI parameter names -> float32 arrays (int8/int16 weights dequantised,
    float16/bfloat16 widened exactly), including ``encoder.positional_embedding``
    (``n_audio_ctx x n_audio_state``) and ``decoder.positional_embedding`` (``n_text_ctx x n_text_state``).
    ``alignment_heads``: 0-based ``(layer, head)`` pairs from config.json (Whisper's default, all heads
    of the last half of the layers, with a warning, when config.json has none).
    ``vocabulary``: ``n_vocab`` token strings (byte-level BPE, index = token id).
    ``warnings``: sentences for the user (dequantisation, dropped non-zero key biases, defaults used).
    Raises :class:`CTranslate2FormatError` (a ValueError) naming the file at fault.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CTranslate2FormatError(f"{folder}: not a folder (expected a CTranslate2 model folder with "
                                     f"{MODEL_BIN}, {CONFIG_JSON} and a vocabulary)")
    model = read_model_bin(folder / MODEL_BIN)
    if model.spec_name != WHISPER_SPEC_NAME:
        raise CTranslate2FormatError(f"{model.path}: a CTranslate2 {model.spec_name!r} model, not a Whisper model "
                                     f"({WHISPER_SPEC_NAME})")
    if not 1 <= model.spec_revision <= MAX_WHISPER_SPEC_REVISION:
        raise CTranslate2FormatError(f"{model.path}: {WHISPER_SPEC_NAME} revision {model.spec_revision} is not "
                                     f"supported (this reader knows revisions 1..{MAX_WHISPER_SPEC_REVISION})")
    warnings: List[str] = []
    v = _Variables(model)

    # Dimensions, from the shapes themselves.
    conv1 = v.array("encoder/conv1/weight")
    if conv1.ndim != 3 or conv1.shape[2] != 3:
        raise CTranslate2FormatError(f"{model.path}: encoder/conv1/weight has shape {conv1.shape}, expected "
                                     f"(n_audio_state, n_mels, 3)")
    n_audio_state, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
    encoder_positions = v.array("encoder/position_encodings/encodings")
    embeddings = v.array("decoder/embeddings/weight")
    decoder_positions = v.array("decoder/position_encodings/encodings")
    n_vocab, n_text_state = (int(d) for d in embeddings.shape)
    dims = {
        "n_mels": n_mels,
        "n_audio_ctx": int(encoder_positions.shape[0]),
        "n_audio_state": n_audio_state,
        "n_audio_head": v.scalar("encoder/num_heads"),
        "n_audio_layer": _layer_count(model, "encoder"),
        "n_vocab": n_vocab,
        "n_text_ctx": int(decoder_positions.shape[0]),
        "n_text_state": n_text_state,
        "n_text_head": v.scalar("decoder/num_heads"),
        "n_text_layer": _layer_count(model, "decoder"),
    }
    for key, width in (("n_audio_head", n_audio_state), ("n_text_head", n_text_state)):
        if dims[key] is None:
            raise CTranslate2FormatError(f"{model.path}: {key.replace('n_', '').replace('_head', '')} num_heads "
                                         f"is missing")
        if dims[key] < 1 or width % dims[key]:
            raise CTranslate2FormatError(f"{model.path}: {dims[key]} heads do not divide the width {width}")
    _check_flags(v, model)

    state: Dict[str, np.ndarray] = {}
    notes: List[str] = []
    d_a, d_t = n_audio_state, n_text_state
    state["encoder.conv1.weight"] = conv1
    state["encoder.conv1.bias"] = v.array("encoder/conv1/bias", (d_a,))
    state["encoder.conv2.weight"] = v.array("encoder/conv2/weight", (d_a, d_a, 3))
    state["encoder.conv2.bias"] = v.array("encoder/conv2/bias", (d_a,))
    if encoder_positions.shape[1] != d_a:
        raise CTranslate2FormatError(f"{model.path}: encoder/position_encodings/encodings has width "
                                     f"{encoder_positions.shape[1]}, expected {d_a}")
    state["encoder.positional_embedding"] = encoder_positions
    for i in range(dims["n_audio_layer"]):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        _fused_attention_inputs(v, f"{src}/self_attention/linear_0", f"{dst}.attn", ("query", "key", "value"),
                                d_a, state, notes)
        _linear(v, f"{src}/self_attention/linear_1", f"{dst}.attn.out", (d_a, d_a), state)
        _layer_norm(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln", d_a, state)
        _mlp(v, src, dst, d_a, state)
    _layer_norm(v, "encoder/layer_norm", "encoder.ln_post", d_a, state)

    state["decoder.token_embedding.weight"] = embeddings
    if decoder_positions.shape[1] != d_t:
        raise CTranslate2FormatError(f"{model.path}: decoder/position_encodings/encodings has width "
                                     f"{decoder_positions.shape[1]}, expected {d_t}")
    state["decoder.positional_embedding"] = decoder_positions
    for i in range(dims["n_text_layer"]):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        _fused_attention_inputs(v, f"{src}/self_attention/linear_0", f"{dst}.attn", ("query", "key", "value"),
                                d_t, state, notes)
        _linear(v, f"{src}/self_attention/linear_1", f"{dst}.attn.out", (d_t, d_t), state)
        _layer_norm(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln", d_t, state)
        _linear(v, f"{src}/attention/linear_0", f"{dst}.cross_attn.query", (d_t, d_t), state)
        # The cross-attention keys/values read the encoder output (width d_a == d_t in every Whisper).
        _fused_attention_inputs(v, f"{src}/attention/linear_1", f"{dst}.cross_attn", ("key", "value"),
                                d_t, state, notes)
        _linear(v, f"{src}/attention/linear_2", f"{dst}.cross_attn.out", (d_t, d_t), state)
        _layer_norm(v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln", d_t, state)
        _mlp(v, src, dst, d_t, state)
    _layer_norm(v, "decoder/layer_norm", "decoder.ln", d_t, state)

    # Whisper's logits use the token embedding; CTranslate2 keeps a projection, normally an alias of it.
    projection = v.array("decoder/projection/weight", (n_vocab, d_t))
    if not np.array_equal(projection, embeddings):
        raise CTranslate2FormatError(f"{model.path}: decoder/projection/weight differs from the token embedding; "
                                     f"Whisper ties them, so this is not a Whisper model this reader can import")
    if v.has("decoder/projection/bias"):
        bias = v.array("decoder/projection/bias", (n_vocab,))
        if np.any(bias != 0):
            raise CTranslate2FormatError(f"{model.path}: decoder/projection/bias is non-zero; Whisper's output "
                                         f"layer has no bias")

    leftovers = v.unused_arrays()
    if leftovers:
        shown = ", ".join(leftovers[:5]) + (" ..." if len(leftovers) > 5 else "")
        raise CTranslate2FormatError(f"{model.path}: {len(leftovers)} variable(s) that a Whisper model does not "
                                     f"have: {shown}")

    n_mels = _check_feature_size(folder, n_mels)
    alignment_heads = _alignment_heads(folder, dims, warnings)
    vocabulary = read_ctranslate2_vocabulary(folder)
    if len(vocabulary) != n_vocab:
        vocab_file = next(folder / n for n in VOCABULARY_FILES if (folder / n).is_file())
        raise CTranslate2FormatError(f"{vocab_file}: {len(vocabulary)} tokens, but the model's embedding "
                                     f"({model.path}) has {n_vocab}")

    if v.dequantised:
        dtypes = sorted({model.dtypes[n] for n in v.dequantised})
        warnings.append(
            f"{model.path}: {len(v.dequantised)} {'/'.join(dtypes)} weight matrices dequantised to float32 "
            f"(w = q / scale); they differ from the original float weights by up to half a quantisation "
            f"step, here at most {max(v.dequantised.values()):.3g}")
    warnings.extend(f"{model.path}: {note}" for note in notes)
    return CTranslate2Whisper(dims, state, alignment_heads, vocabulary, warnings)


def _mlp(v: _Variables, src: str, dst: str, width: int, out: Dict[str, np.ndarray]) -> None:
    hidden = v.array(f"{src}/ffn/linear_0/weight").shape[0]
    _linear(v, f"{src}/ffn/linear_0", f"{dst}.mlp.0", (hidden, width), out)
    _linear(v, f"{src}/ffn/linear_1", f"{dst}.mlp.2", (width, hidden), out)
    _layer_norm(v, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln", width, out)


def _check_flags(v: _Variables, model: ModelBin) -> None:
    """The decoder flags a Whisper conversion always sets; anything else is another architecture."""
    expected = {"decoder/pre_norm": 1, "decoder/scale_embeddings": 0, "decoder/alibi": 0,
                "decoder/start_from_zero_embedding": 0}
    if model.spec_revision >= 3:
        expected["decoder/activation"] = _GELU_REVISION_3
    for name, value in expected.items():
        stored = v.scalar(name)
        if stored is not None and stored != value:
            raise CTranslate2FormatError(f"{model.path}: {name} = {stored}, but a Whisper model has {value}")


def _check_feature_size(folder: Path, n_mels: int) -> int:
    path = folder / PREPROCESSOR_CONFIG_JSON
    if not path.is_file():
        return n_mels
    config = _read_json(path)
    feature_size = config.get("feature_size") if isinstance(config, dict) else None
    if feature_size is not None and int(feature_size) != n_mels:
        raise CTranslate2FormatError(f"{path}: feature_size {feature_size} disagrees with the {n_mels} mel bins "
                                     f"that encoder/conv1/weight of {folder / MODEL_BIN} expects")
    return n_mels


def _alignment_heads(folder: Path, dims: Dict[str, int], warnings: List[str]) -> List[Tuple[int, int]]:
    path = folder / CONFIG_JSON
    if not path.is_file():
        raise CTranslate2FormatError(f"{path}: missing (a CTranslate2 folder has {CONFIG_JSON} beside {MODEL_BIN})")
    config = _read_json(path)
    if not isinstance(config, dict):
        raise CTranslate2FormatError(f"{path}: expected a JSON object")
    raw = config.get("alignment_heads")
    n_layers, n_heads = dims["n_text_layer"], dims["n_text_head"]
    if not raw:
        warnings.append(f"{path}: no alignment_heads; using Whisper's default, every head of the last half of "
                        f"the decoder layers ({n_layers // 2}..{n_layers - 1}, 0-based)")
        return default_alignment_heads(n_layers, n_heads)
    heads = []
    for pair in raw:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, int) for x in pair)):
            raise CTranslate2FormatError(f"{path}: alignment_heads entry {pair!r} is not a [layer, head] pair")
        layer, head = pair
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise CTranslate2FormatError(f"{path}: alignment head {pair!r} is outside the model's {n_layers} "
                                         f"decoder layers x {n_heads} heads (0-based)")
        heads.append((layer, head))
    return heads
