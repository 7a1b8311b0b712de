"""Turn a Whisper checkpoint (OpenAI ``.pt``, Hugging Face folder or hub name, CTranslate2 folder)
into a folder fairseq can use: ``checkpoint.pt``, the dictionary, ``alignment_heads.json`` and
``config.yaml`` (what ``xattn whisper-import`` writes; see :func:`import_whisper`).

Output folder::

    checkpoint.pt            fairseq checkpoint (cfg.model: the ``whisper`` arch with every dimension,
                             cfg.task: speech_to_text_ctc on this folder; float32 weights)
    whisper_dictionary.json  the Whisper dictionary (vocabulary.WhisperDictionary.save)
    tokenizer.json | vocab.json + merges.txt   copied from the source when it has them (encoding text)
    alignment_heads.json     {"alignment_heads": [[layer, head], ...] (0-based), "n_text_layer",
                             "n_text_head", "origin": where they came from}
    config.yaml              our task's data config: features whisper, n_mels, the dictionary, and
                             whisper: {language, task} (the decoder prompt)
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional, Tuple

from ...errors import UserError
from ...registry import Registry
from .openai_format import WhisperCheckpoint, WhisperCheckpointError, model_from_checkpoint

CHECKPOINT_FILE = "checkpoint.pt"
ALIGNMENT_HEADS_FILE = "alignment_heads.json"
CONFIG_YAML = "config.yaml"
#: Files of a hub repository the import needs (weights, configs, tokenizer).
HUB_PATTERNS = ["*.json", "*.safetensors", "merges.txt", "vocab.json", "*.txt"]
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class WhisperImportError(UserError, ValueError):
    """A source or output the import cannot use (one line naming it)."""


class CheckpointFormat(NamedTuple):
    """How to recognise and read one source format."""
    detect: Callable[[Path], bool]
    read: Callable[[Path], WhisperCheckpoint]
    description: str


CHECKPOINT_FORMATS: "Registry[CheckpointFormat]" = Registry("Whisper checkpoint format")


def _read_openai(path: Path) -> WhisperCheckpoint:
    from .openai_format import read_openai_checkpoint

    return read_openai_checkpoint(path)


def _read_huggingface(path: Path) -> WhisperCheckpoint:
    from .huggingface_format import read_huggingface_whisper

    return read_huggingface_whisper(path)


def _read_ctranslate2(path: Path) -> WhisperCheckpoint:
    from .ctranslate2_format import read_ctranslate2_whisper

    dims, state, heads, vocabulary, warnings = read_ctranslate2_whisper(path)
    from .openai_format import check_dims

    return WhisperCheckpoint(check_dims(dims, str(path)), state, heads, vocabulary, str(path), list(warnings))


def _is_huggingface(path: Path) -> bool:
    from .huggingface_format import is_huggingface_folder

    return path.is_dir() and is_huggingface_folder(path)


def _is_ctranslate2(path: Path) -> bool:
    from .ctranslate2_format import is_ctranslate2_folder

    return path.is_dir() and is_ctranslate2_folder(path)


# Detection order matters: a CTranslate2 folder also has a config.json.
CHECKPOINT_FORMATS.register("ctranslate2")(CheckpointFormat(
    _is_ctranslate2, _read_ctranslate2, "CTranslate2 folder (model.bin, config.json, vocabulary.json/.txt)"))
CHECKPOINT_FORMATS.register("huggingface")(CheckpointFormat(
    _is_huggingface, _read_huggingface,
    "Hugging Face folder (config.json + model.safetensors or pytorch_model.bin, tokenizer files) or hub name"))
CHECKPOINT_FORMATS.register("openai")(CheckpointFormat(
    lambda p: p.is_file(), _read_openai, "OpenAI .pt file (dims + model_state_dict)"))


def detect_format(path: Path) -> str:
    """The format name of an existing file or folder; a clear error when none fits."""
    for name, fmt in CHECKPOINT_FORMATS.items():
        if fmt.detect(path):
            return name
    expected = "; ".join(f"{name}: {fmt.description}" for name, fmt in CHECKPOINT_FORMATS.items())
    raise WhisperImportError(f"{path}: unknown Whisper checkpoint format (expected {expected})")


def download_from_hub(repo_id: str, cache_dir: Optional[str] = None) -> Path:
    """A local snapshot of a hub repository (``openai/whisper-tiny.en``) with the files the import
    reads; one clear error when huggingface_hub is missing or the hub cannot be reached."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise WhisperImportError(f"{repo_id}: not a local file or folder, and downloading from the Hugging Face hub "
                                 "needs the huggingface_hub package (pip install huggingface_hub); or give a "
                                 "local folder") from None
    try:
        return Path(snapshot_download(repo_id=repo_id, allow_patterns=HUB_PATTERNS, cache_dir=cache_dir,
                                      etag_timeout=10))
    except Exception as e:  # offline: LocalEntryNotFoundError / connection errors; unknown repo: RepositoryNotFoundError
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WhisperImportError(f"{repo_id}: cannot download from the Hugging Face hub (no network, or no such "
                                 f"model: {type(e).__name__}: {reason[:160]}); give a local folder (config.json + "
                                 f"model.safetensors + tokenizer files) or an OpenAI .pt file instead") from None


def resolve_source(src: str, fmt: str = "auto") -> Tuple[Path, str]:
    """``(local path, format name)`` of ``src``: a file, a folder, or a hub name (downloaded)."""
    if fmt != "auto":
        CHECKPOINT_FORMATS.get(fmt)  # unknown names: the registry's error lists the choices
    path = Path(src).expanduser()
    if not path.exists():
        if _HUB_NAME.match(src) and fmt in ("auto", "huggingface"):
            return download_from_hub(src), "huggingface"
        raise WhisperImportError(f"{src}: no such file or folder (and not a hub name like openai/whisper-tiny.en)")
    name = detect_format(path) if fmt == "auto" else fmt
    return path, name


def _reader_errors() -> tuple:
    """The error types of the readers and of the model build: user errors (a bad source), each
    turned into one :class:`WhisperImportError` with the same message."""
    from .ctranslate2_format import CTranslate2FormatError
    from .model import WhisperModelError
    from .vocabulary import WhisperVocabularyError

    return (WhisperCheckpointError, CTranslate2FormatError, WhisperVocabularyError, WhisperModelError)


def read_checkpoint(path: Path, fmt: str) -> WhisperCheckpoint:
    """Read ``path`` as format ``fmt`` into the canonical checkpoint."""
    try:
        return CHECKPOINT_FORMATS.get(fmt).read(path)
    except _reader_errors() as e:
        raise WhisperImportError(str(e)) from None


def attach_vocabulary(checkpoint: WhisperCheckpoint, tokenizer: Optional[Path]) -> Optional[Path]:
    """Give ``checkpoint`` a vocabulary: from ``tokenizer`` (a folder with Whisper tokenizer files)
    when given, else its own.  Returns the folder whose tokenizer files go beside the dictionary."""
    from .vocabulary import WhisperVocabularyError, read_folder_vocabulary

    if tokenizer is not None:
        if not Path(tokenizer).is_dir():
            raise WhisperImportError(f"--tokenizer {tokenizer}: not a folder (give the folder with tokenizer.json, "
                                     "or vocab.json + added_tokens.json, of the same Whisper model)")
        try:
            checkpoint.vocabulary = read_folder_vocabulary(tokenizer, checkpoint.dims["n_vocab"])
        except WhisperVocabularyError as e:
            raise WhisperImportError(str(e)) from None
        return Path(tokenizer)
    if checkpoint.vocabulary is None:
        raise WhisperImportError(f"{checkpoint.source}: has no tokenizer (OpenAI checkpoints keep it in the whisper "
                                 "package): give --tokenizer FOLDER with tokenizer.json, or vocab.json + "
                                 "added_tokens.json, of the same model (e.g. from openai/whisper-tiny.en)")
    source = Path(checkpoint.source)
    return source if source.is_dir() else None


def resolve_alignment_heads(checkpoint: WhisperCheckpoint, override: Optional[str]) -> str:
    """Fill ``checkpoint.alignment_heads`` (``--alignment-heads`` > source > Whisper's default, all
    heads of the last half of the decoder layers, with a warning); returns where they came from."""
    from .model import parse_alignment_heads

    layers, heads = checkpoint.dims["n_text_layer"], checkpoint.dims["n_text_head"]
    if override:
        try:
            checkpoint.alignment_heads = parse_alignment_heads(override, layers, heads)
        except ValueError as e:
            raise WhisperImportError(f"--alignment-heads: {e}") from None
        return "--alignment-heads"
    if checkpoint.alignment_heads:
        parse_alignment_heads(",".join(f"{l}:{h}" for l, h in checkpoint.alignment_heads), layers, heads)
        return checkpoint.source
    from .ctranslate2_format import default_alignment_heads

    checkpoint.alignment_heads = default_alignment_heads(layers, heads)
    checkpoint.warnings.append(f"{checkpoint.source}: no alignment heads; using Whisper's default (every head of "
                               f"decoder layers {layers // 2}..{layers - 1}); give --alignment-heads for the model's own")
    return "default"


def fairseq_checkpoint_state(model, arch: str, out: Path) -> dict:
    """A fairseq checkpoint dict (plain containers only) that ``load_model_ensemble_and_task`` reads."""
    from dataclasses import asdict

    from fairseq.dataclass.configs import FairseqConfig
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.structured(FairseqConfig()), resolve=False, enum_to_str=True)
    cfg["model"] = {"_name": arch, **{k: v for k, v in asdict(model.cfg).items() if not k.startswith("_")}}
    cfg["task"] = {"_name": "speech_to_text_ctc", "data": str(out.resolve()), "config_yaml": CONFIG_YAML}
    return {
        "cfg": cfg,
        "model": model.state_dict(),
        "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "none",
                               "lr_scheduler_state": {}, "num_updates": 0}],
        "extra_state": {"train_iterator": {"epoch": 1}, "whisper_import": True},
        "last_optimizer_state": None,
    }


def write_config_yaml(out: Path, n_mels: int, dictionary_file: str, language: Optional[str], task: str) -> Path:
    import yaml

    cfg = {
        "input_channels": 1,
        "input_feat_per_channel": int(n_mels),
        "sample_rate": 16000,
        "features": "whisper",  # Whisper's log-mel (data/whisper_features.py), no CMVN
        "vocab_filename": dictionary_file,
        "whisper": {"language": language, "task": task, "n_mels": int(n_mels)},
    }
    path = out / CONFIG_YAML
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, sort_keys=False, allow_unicode=True)
    return path


class ImportResult(NamedTuple):
    out: Path
    format: str
    arch: str
    dims: dict
    alignment_heads: List[Tuple[int, int]]
    warnings: List[str]


def import_whisper(src: str, out, fmt: str = "auto", tokenizer: Optional[str] = None,
                   alignment_heads: Optional[str] = None, language: Optional[str] = None,
                   task: str = "transcribe", overwrite: bool = False) -> ImportResult:
    """Read ``src`` (file, folder or hub name) and write the fairseq folder ``out`` (see the module doc)."""
    import torch

    from .model import arch_for_dims
    from .vocabulary import DICTIONARY_FILE, WhisperDictionary, find_tokenizer_files

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise WhisperImportError(f"{out}: exists and is not empty (give --overwrite, or another folder)")
    path, fmt = resolve_source(src, fmt)
    checkpoint = read_checkpoint(path, fmt)
    tokenizer_folder = attach_vocabulary(checkpoint, Path(tokenizer) if tokenizer else None)
    origin = resolve_alignment_heads(checkpoint, alignment_heads)
    try:
        dictionary = WhisperDictionary(checkpoint.vocabulary, source=checkpoint.source)
        dictionary.sot_sequence(language=language, task=task)  # a language/task this vocabulary has
        model = model_from_checkpoint(checkpoint, dictionary)
    except _reader_errors() as e:
        raise WhisperImportError(str(e)) from None
    arch = arch_for_dims(checkpoint.dims)

    out.mkdir(parents=True, exist_ok=True)
    torch.save(fairseq_checkpoint_state(model, arch, out), str(out / CHECKPOINT_FILE))
    dictionary.save(out / DICTIONARY_FILE)
    if tokenizer_folder is not None:
        for file in find_tokenizer_files(tokenizer_folder) or []:
            shutil.copyfile(file, out / file.name)
    (out / ALIGNMENT_HEADS_FILE).write_text(json.dumps({
        "alignment_heads": [list(h) for h in checkpoint.alignment_heads],
        "n_text_layer": checkpoint.dims["n_text_layer"], "n_text_head": checkpoint.dims["n_text_head"],
        "origin": origin}) + "\n")
    write_config_yaml(out, checkpoint.dims["n_mels"], DICTIONARY_FILE, language, task)
    return ImportResult(out, fmt, arch, checkpoint.dims, list(checkpoint.alignment_heads), checkpoint.warnings)


__all__ = ["CHECKPOINT_FORMATS", "WhisperImportError", "WhisperCheckpointError", "import_whisper", "detect_format"]
