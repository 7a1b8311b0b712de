"""What determines a cross-attention store's records, as store-level settings (``meta.json``).

A resumed ``fairseq-generate --record-cross-attn`` run keeps the records already in the store, so
it must be the same run: the store writer refuses to resume when any of these settings differ
(:func:`fairseq_xattn.stores.settings_differences`).  They are

* the model: a hash of the loaded weights (another checkpoint, a retrained one, ``--fp16``, an
  ensemble in another order all differ; the checkpoint's path and mtime do not matter);
* the data: the data folder, ``--config-yaml``, ``--gen-subset``, a hash of the split's
  manifest(s) and config file, ``--infer-tgt-lang``;
* the generation options that change hypotheses, scores or attention (``--beam``, ``--nbest``,
  ``--prefix-size``, ``--lenpen``, sampling, ...; teacher-forced runs only the score options);
* the teacher-forced source and a hash of its TSV.

Not checked: ``--seed`` with ``--sampling`` (fairseq-generate does not give it to the task), and
files the data config points to outside the split manifests (dictionary, SentencePiece model).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence

import torch

#: fairseq ``GenerationConfig`` options that change beam-search hypotheses, scores or attention,
#: with fairseq's defaults (used when ``args`` lacks one, as a Namespace built by hand may).
SEARCH_OPTIONS: Dict[str, Any] = {
    "max_len_a": 0, "max_len_b": 200, "min_len": 1, "match_source_len": False, "unnormalized": False,
    "lenpen": 1, "unkpen": 0, "prefix_size": 0, "no_repeat_ngram_size": 0, "sampling": False,
    "sampling_topk": -1, "sampling_topp": -1.0, "constraints": None, "temperature": 1.0,
    "diverse_beam_groups": -1, "diverse_beam_strength": 0.5, "diversity_rate": -1.0, "lm_path": None,
    "lm_weight": 0.0, "retain_dropout": False, "retain_dropout_modules": None, "eos_token": None,
}
#: The subset that matters without a search (teacher forcing): score normalisation and dropout.
TEACHER_FORCED_OPTIONS = ("unnormalized", "lenpen", "retain_dropout", "retain_dropout_modules")


def _plain(value: Any) -> Any:
    """omegaconf ListConfig / tuples -> lists, so that the value is JSON and compares as stored."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        return [_plain(v) for v in value]
    except TypeError:
        return str(value)


def search_settings(args, teacher_forced: bool) -> Dict[str, Any]:
    """The generation options of ``args`` (fairseq-generate's ``cfg.generation``) that a store records."""
    names = TEACHER_FORCED_OPTIONS if teacher_forced else SEARCH_OPTIONS
    settings = {name: _plain(getattr(args, name, SEARCH_OPTIONS[name])) for name in names}
    if settings.get("lm_path"):
        settings["lm_path"] = str(Path(settings["lm_path"]).resolve())
    return settings


def model_fingerprint(models: Sequence[torch.nn.Module]) -> str:
    """SHA-256 (first 20 hex digits) of the models' parameter and buffer names, dtypes, shapes and bytes.

    Hashing the loaded weights, not the checkpoint file, identifies what actually decodes: the same
    checkpoint moved or copied matches, a retrained or averaged one, or the same one under ``--fp16``,
    does not.  About 0.5 s per GB of weights.
    """
    h = hashlib.sha256()
    for model in models:
        h.update(b"model\0")
        for name, tensor in model.state_dict().items():
            tensor = tensor.detach()
            h.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
            # bytes of any dtype (bfloat16 has no numpy equivalent): reinterpret as uint8
            h.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:20]


def files_fingerprint(paths: Iterable[Path]) -> Optional[str]:
    """SHA-256 (first 20 hex digits) of the files' names and contents; None when none exists."""
    h = hashlib.sha256()
    found = False
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        found = True
        h.update(f"{path.name}\0".encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:20] if found else None
