"""read_ctranslate2_whisper on folders written by CTranslate2's own converter from a random small
transformers Whisper (no download): the weights come back under OpenAI's names, exactly for float32
(and float16/bfloat16 after their rounding), within half a quantisation step for int8/int16, with
the warning; malformed files raise errors naming the file."""
import json
import shutil
import struct

import numpy as np
import pytest

from fairseq_xattn.models.whisper.ctranslate2_format import (
    DTYPE_NAMES, CTranslate2FormatError, default_alignment_heads, is_ctranslate2_folder, read_ctranslate2_whisper,
    read_model_bin,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ctranslate2 = pytest.importorskip("ctranslate2")

from fairseq_xattn.models.whisper.vocabulary import byte_to_char  # noqa: E402

N_MELS = 80
CONFIG = dict(num_mel_bins=N_MELS, d_model=16, encoder_layers=2, decoder_layers=3, encoder_attention_heads=2,
              decoder_attention_heads=4, encoder_ffn_dim=32, decoder_ffn_dim=24, max_source_positions=30,
              max_target_positions=20)
ALIGNMENT_HEADS = [[1, 0], [2, 3], [0, 2]]
SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"] + \
           ["<|%.2f|>" % (0.02 * k) for k in range(5)]
TOKENS = [byte_to_char(b) for b in range(256)] + ["Ġh", "Ġhe"] + SPECIALS
QUANTISATIONS = ("float32", "float16", "bfloat16", "int8", "int16")


def hf_to_openai(name):
    """transformers parameter name -> openai/whisper's (an independent table, not the reader's)."""
    name = name.replace("model.", "", 1)
    table = [("encoder.embed_positions.weight", "encoder.positional_embedding"),
             ("decoder.embed_positions.weight", "decoder.positional_embedding"),
             ("decoder.embed_tokens.", "decoder.token_embedding."), ("encoder.layer_norm.", "encoder.ln_post."),
             ("decoder.layer_norm.", "decoder.ln."), (".layers.", ".blocks."),
             (".self_attn_layer_norm.", ".attn_ln."), (".encoder_attn_layer_norm.", ".cross_attn_ln."),
             (".final_layer_norm.", ".mlp_ln."), (".self_attn.", ".attn."), (".encoder_attn.", ".cross_attn."),
             (".q_proj.", ".query."), (".k_proj.", ".key."), (".v_proj.", ".value."), (".out_proj.", ".out."),
             (".fc1.", ".mlp.0."), (".fc2.", ".mlp.2.")]
    for old, new in table:
        name = name.replace(old, new)
    return name


def write_tokenizer(folder):
    """A Whisper-layout byte-level BPE tokenizer (tokenizer.json + vocab.json/merges.txt) for the converter."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    eot = TOKENS.index("<|endoftext|>")
    merges = [("Ġ", "h"), ("Ġh", "e")]
    vocab = {t: i for i, t in enumerate(TOKENS[:eot])}
    tokenizer = Tokenizer(BPE(vocab, merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in TOKENS[eot:]])
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "WhisperTokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """``(hf state dict as OpenAI-named float32 arrays, dims, {quantisation: CTranslate2 folder})``."""
    from ctranslate2.converters import TransformersConverter
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    root = tmp_path_factory.mktemp("ct2_whisper")
    hf = root / "hf"
    eot = TOKENS.index("<|endoftext|>")
    config = WhisperConfig(vocab_size=len(TOKENS), pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
                           decoder_start_token_id=eot + 1, begin_suppress_tokens=None, suppress_tokens=None, **CONFIG)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            # LayerNorm gains stay 1 so that CTranslate2 writes them as aliases of one another.
            if not ("layer_norm" in name and name.endswith("weight")):
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    model.save_pretrained(str(hf))
    # The converter takes the heads from the generation config; transformers drops extra keys of a
    # generation config marked "_from_model_config", so the mark goes.
    generation = json.loads((hf / "generation_config.json").read_text())
    generation.pop("_from_model_config", None)
    generation["alignment_heads"] = ALIGNMENT_HEADS
    (hf / "generation_config.json").write_text(json.dumps(generation))
    write_tokenizer(hf)
    expected = {hf_to_openai(k): v.detach().numpy().astype(np.float32)
                for k, v in model.state_dict().items() if not k.startswith("proj_out")}
    dims = dict(n_mels=N_MELS, n_audio_ctx=CONFIG["max_source_positions"], n_audio_state=CONFIG["d_model"],
                n_audio_head=CONFIG["encoder_attention_heads"], n_audio_layer=CONFIG["encoder_layers"],
                n_vocab=len(TOKENS), n_text_ctx=CONFIG["max_target_positions"], n_text_state=CONFIG["d_model"],
                n_text_head=CONFIG["decoder_attention_heads"], n_text_layer=CONFIG["decoder_layers"])
    folders = {}
    for quantisation in QUANTISATIONS:
        folders[quantisation] = root / f"ct2_{quantisation}"
        TransformersConverter(str(hf)).convert(str(folders[quantisation]), quantization=quantisation, force=True)
    return expected, dims, folders


def copy_folder(folders, tmp_path, quantisation="float32"):
    target = tmp_path / f"copy_{quantisation}"
    shutil.copytree(folders[quantisation], target)
    return target


def test_float32_weights_are_exactly_the_hf_weights(converted):
    expected, dims, folders = converted
    dims_read, state, heads, vocabulary, warnings = read_ctranslate2_whisper(folders["float32"])
    assert dims_read == dims
    assert set(state) == set(expected)
    for name, value in expected.items():
        assert state[name].dtype == np.float32 and state[name].shape == value.shape, name
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    assert heads == [tuple(p) for p in ALIGNMENT_HEADS]
    assert vocabulary == TOKENS
    assert warnings == []
    # the key projections have no bias, as in OpenAI's model
    assert not any(k.endswith(("attn.key.bias",)) for k in state)


def test_the_float32_file_has_the_aliases_the_reader_resolves(converted):
    _, _, folders = converted
    model = read_model_bin(folders["float32"] / "model.bin")
    assert model.spec_name == "WhisperSpec" and model.binary_version == 6
    assert model.aliases["decoder/projection/weight"] == "decoder/embeddings/weight"  # tied output layer
    assert any(a.endswith("layer_norm/gamma") for a in model.aliases)  # the unit gains


@pytest.mark.parametrize("quantisation,widen", [
    ("float16", lambda w: w.astype(np.float16).astype(np.float32)),
    ("bfloat16", lambda w: torch.from_numpy(w).to(torch.bfloat16).float().numpy()),
])
def test_half_precision_weights_are_the_rounded_hf_weights(converted, quantisation, widen):
    expected, dims, folders = converted
    dims_read, state, _, _, warnings = read_ctranslate2_whisper(folders[quantisation])
    assert dims_read == dims and warnings == []
    stored = read_model_bin(folders[quantisation] / "model.bin")
    assert {dtype for name, dtype in stored.dtypes.items() if stored.variables[name].ndim > 0} == {quantisation}
    for name, value in expected.items():
        np.testing.assert_array_equal(state[name], widen(value), err_msg=name)


def _is_quantised(name, value):
    """Matrices (linear, conv, token embedding) are quantised; biases, norms and position tables are not."""
    return value.ndim >= 2 and "positional_embedding" not in name


def _fused_group(name):
    """CTranslate2 stores self-attention q/k/v as one matrix and cross-attention k/v as one."""
    for member, group in ((".attn.query.", ".attn.qkv."), (".attn.key.", ".attn.qkv."), (".attn.value.", ".attn.qkv."),
                          (".cross_attn.key.", ".cross_attn.kv."), (".cross_attn.value.", ".cross_attn.kv.")):
        if member in name:  # ".attn.key." is not in ".cross_attn.key." ("_attn")
            return name.replace(member, group)
    return name


@pytest.mark.parametrize("quantisation", ["int8", "int16"])
def test_quantised_weights_are_dequantised_within_half_a_step(converted, quantisation):
    expected, dims, folders = converted
    dims_read, state, _, _, warnings = read_ctranslate2_whisper(folders[quantisation])
    assert dims_read == dims
    assert len(warnings) == 1 and quantisation in warnings[0] and "dequantised" in warnings[0]
    assert str(folders[quantisation] / "model.bin") in warnings[0]
    n_quantised = 0
    for name, value in expected.items():
        got = state[name]
        if not _is_quantised(name, value):
            np.testing.assert_array_equal(got, value, err_msg=name)
            continue
        n_quantised += 1
        flat = value.reshape(value.shape[0], -1)
        if quantisation == "int8":  # one scale per output row: step = max|row| / 127
            half_step = 0.5 * np.abs(flat).max(axis=1, keepdims=True) / 127.0
        else:  # int16: one scale per stored (fused) matrix, 10 bits: step = max|w| / 1024
            group = [v for n, v in expected.items() if _fused_group(n) == _fused_group(name)]
            half_step = np.full((flat.shape[0], 1), 0.5 * max(np.abs(v).max() for v in group) / 1024.0)
        error = np.abs(got.reshape(flat.shape) - flat)
        assert np.all(error <= half_step * (1 + 1e-5) + 1e-8), name
        assert np.any(error > 0), name  # it really was quantised
    # conv1, conv2, token embedding; q, k, v, out, fc1, fc2 per encoder layer; + cross q, k, v, out per decoder layer
    assert n_quantised == 3 + 6 * CONFIG["encoder_layers"] + 10 * CONFIG["decoder_layers"]


def test_folder_detection_and_default_alignment_heads(converted, tmp_path):
    _, _, folders = converted
    assert is_ctranslate2_folder(folders["float32"]) and not is_ctranslate2_folder(tmp_path)
    folder = copy_folder(folders, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config.pop("alignment_heads")
    (folder / "config.json").write_text(json.dumps(config))
    result = read_ctranslate2_whisper(folder)
    # 3 decoder layers x 4 heads: Whisper's default is every head of layers 1 and 2
    assert result.alignment_heads == default_alignment_heads(3, 4) == [(l, h) for l in (1, 2) for h in range(4)]
    assert len(result.warnings) == 1 and "config.json" in result.warnings[0]


def test_vocabulary_txt_and_preprocessor_config(converted, tmp_path):
    _, _, folders = converted
    folder = copy_folder(folders, tmp_path)
    (folder / "vocabulary.json").unlink()
    (folder / "vocabulary.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    (folder / "preprocessor_config.json").write_text(json.dumps({"feature_size": N_MELS}))
    assert read_ctranslate2_whisper(folder).vocabulary == TOKENS
    (folder / "preprocessor_config.json").write_text(json.dumps({"feature_size": 128}))
    with pytest.raises(CTranslate2FormatError, match="preprocessor_config.json: feature_size 128"):
        read_ctranslate2_whisper(folder)


def test_vocabulary_errors_name_the_file(converted, tmp_path):
    _, _, folders = converted
    folder = copy_folder(folders, tmp_path)
    (folder / "vocabulary.json").write_text(json.dumps(TOKENS[:-1]))
    with pytest.raises(CTranslate2FormatError, match=f"{folder / 'vocabulary.json'}: {len(TOKENS) - 1} tokens"):
        read_ctranslate2_whisper(folder)
    (folder / "vocabulary.json").unlink()
    with pytest.raises(CTranslate2FormatError, match=f"{folder}: no vocabulary"):
        read_ctranslate2_whisper(folder)


def test_truncated_model_bin(converted, tmp_path):
    _, _, folders = converted
    folder = copy_folder(folders, tmp_path)
    data = (folder / "model.bin").read_bytes()
    (folder / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CTranslate2FormatError, match=f"{folder / 'model.bin'}: file is truncated"):
        read_ctranslate2_whisper(folder)
    (folder / "model.bin").write_bytes(data + b"\0\0")
    with pytest.raises(CTranslate2FormatError, match="trailing bytes"):
        read_ctranslate2_whisper(folder)


def test_wrong_binary_version(converted, tmp_path):
    _, _, folders = converted
    folder = copy_folder(folders, tmp_path)
    data = (folder / "model.bin").read_bytes()
    (folder / "model.bin").write_bytes(struct.pack("<I", 7) + data[4:])
    with pytest.raises(CTranslate2FormatError,
                       match=f"{folder / 'model.bin'}: unsupported CTranslate2 binary version 7"):
        read_ctranslate2_whisper(folder)


# -- a model.bin writer of our own, to make the files the converter never writes ---------------------
def _string(text):
    raw = text.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_model_bin(path, spec, revision, variables, dtypes, aliases, binary_version=6, dtype_ids=None):
    out = [struct.pack("<I", binary_version), _string(spec), struct.pack("<I", revision),
           struct.pack("<I", len(variables))]
    for name, value in variables.items():
        dtype_id = (dtype_ids or {}).get(name, DTYPE_NAMES.index(dtypes[name]))
        payload = np.ascontiguousarray(value).tobytes()
        out += [_string(name), struct.pack("<B", value.ndim), struct.pack(f"<{value.ndim}I", *value.shape),
                struct.pack("<B", dtype_id), struct.pack("<I", len(payload)), payload]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    path.write_bytes(b"".join(out))


@pytest.mark.parametrize("quantisation", ["float32", "int8"])
def test_parser_and_writer_round_trip_byte_for_byte(converted, tmp_path, quantisation):
    _, _, folders = converted
    original = folders[quantisation] / "model.bin"
    model = read_model_bin(original)
    copy = tmp_path / "model.bin"
    write_model_bin(copy, model.spec_name, model.spec_revision, model.variables, model.dtypes, model.aliases)
    assert copy.read_bytes() == original.read_bytes()


@pytest.mark.parametrize("change,message", [
    (dict(spec="TransformerSpec"), "'TransformerSpec' model, not a Whisper model"),
    (dict(revision=4), "WhisperSpec revision 4 is not supported"),
    (dict(dtype_ids={"encoder/conv1/weight": 9}), "'encoder/conv1/weight' has unknown dtype id 9"),
    (dict(extra={"encoder/layer_0/extra/weight": np.ones((2, 2), np.float32)}), "1 variable.*extra/weight"),
    (dict(drop="encoder/layer_1/ffn/linear_1/weight"), "'encoder/layer_1/ffn/linear_1/weight' is missing"),
    (dict(untie=True), "projection/weight differs from the token embedding"),
    (dict(scalar={"decoder/pre_norm": np.array(0, np.int8)}), "decoder/pre_norm = 0"),
])
def test_malformed_model_bin_raises_a_clear_error(converted, tmp_path, change, message):
    _, _, folders = converted
    folder = copy_folder(folders, tmp_path)
    model = read_model_bin(folder / "model.bin")
    variables, dtypes, aliases = dict(model.variables), dict(model.dtypes), dict(model.aliases)
    if "extra" in change:
        variables.update(change["extra"])
        dtypes.update({n: "float32" for n in change["extra"]})
    if "drop" in change:
        variables.pop(change["drop"])
    if change.get("untie"):
        aliases.pop("decoder/projection/weight")
        variables["decoder/projection/weight"] = variables["decoder/embeddings/weight"] + 1
        dtypes["decoder/projection/weight"] = "float32"
    for name, value in change.get("scalar", {}).items():
        variables[name] = value
    write_model_bin(folder / "model.bin", change.get("spec", model.spec_name),
                    change.get("revision", model.spec_revision), variables, dtypes, aliases,
                    dtype_ids=change.get("dtype_ids"))
    with pytest.raises(CTranslate2FormatError, match=message) as info:
        read_ctranslate2_whisper(folder)
    assert str(folder / "model.bin") in str(info.value)


def test_missing_folder_and_model_bin(tmp_path):
    with pytest.raises(CTranslate2FormatError, match="not a folder"):
        read_ctranslate2_whisper(tmp_path / "nowhere")
    with pytest.raises(CTranslate2FormatError, match=f"{tmp_path / 'model.bin'}: no such file"):
        read_ctranslate2_whisper(tmp_path)
