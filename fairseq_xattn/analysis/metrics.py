"""Corpus-level quality metrics for hypotheses (numpy/jiwer/sacrebleu; no fairseq).

Scorers (registry :data:`SCORERS`, corpus level; all on a 0..100 scale except COMET, 0..1 as in the paper):

* ``wer``      jiwer word error rate in percent, after a text normaliser (default: the Whisper
               English normaliser of the ``whisper-normalizer`` package, as in the paper, App. C);
* ``wer_max``  ``min(100, wer)``: the deletion scorer of SPES (docs/method.md section 6);
* ``bleu``     sacrebleu corpus BLEU (its default 13a tokenisation, no normaliser);
* ``chrf``     sacrebleu corpus chrF;
* ``comet``    unbabel-comet with a LOCAL model checkpoint (paper: Unbabel/wmt22-comet-da), the system
               score on COMET's own 0..1 scale (the paper's Table 5 reports 0.854, not 85.4); offline:
               ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` are set to 1 before comet (and through it
               transformers and huggingface_hub, which read them at import) is imported, for the rest
               of the process.

Text normalisers (registry :data:`TEXT_NORMALISERS`): ``whisper_english`` (English: spelling,
numbers, contractions), ``whisper_basic`` (Whisper's language-independent normaliser: lower case,
symbols and punctuation to spaces, diacritics kept), ``basic`` (ours: lower case, Unicode
punctuation removed, whitespace collapsed; for languages other than English when the Whisper
normalisers are not wanted) and ``none``.
"""
from __future__ import annotations

import os
import re
import sys
import unicodedata
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..errors import UserError

Normaliser = Callable[[str], str]


class MetricError(UserError, ValueError):
    """A metric cannot be computed (bad input, missing optional package or model)."""


# --------------------------------------------------------------------------- text normalisers

def _whisper_english() -> Normaliser:
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def _whisper_basic() -> Normaliser:
    from whisper_normalizer.basic import BasicTextNormalizer

    return BasicTextNormalizer()


def basic_normaliser(text: str) -> str:
    """Lower case, drop Unicode punctuation (category P*), collapse whitespace."""
    text = unicodedata.normalize("NFC", text.lower())
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return re.sub(r"\s+", " ", text).strip()


TEXT_NORMALISERS: Dict[str, Callable[[], Normaliser]] = {
    "whisper_english": _whisper_english,
    "whisper_basic": _whisper_basic,
    "basic": lambda: basic_normaliser,
    "none": lambda: (lambda s: s),
}


def text_normaliser(name: str) -> Normaliser:
    try:
        return TEXT_NORMALISERS[name]()
    except KeyError:
        raise MetricError(f"unknown text normaliser {name!r}; choose from {sorted(TEXT_NORMALISERS)}") from None


# --------------------------------------------------------------------------- scorers

def _check(hyps: Sequence[str], refs: Sequence[str], srcs: Optional[Sequence[str]] = None) -> None:
    if len(hyps) != len(refs):
        raise MetricError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if srcs is not None and len(srcs) != len(hyps):
        raise MetricError(f"{len(hyps)} hypotheses but {len(srcs)} sources")
    if not hyps:
        raise MetricError("no hypothesis to score")


def wer(hyps: Sequence[str], refs: Sequence[str], normaliser: str = "whisper_english", **_) -> float:
    """Corpus WER in percent (jiwer), after ``normaliser`` on both sides."""
    import jiwer

    _check(hyps, refs)
    norm = text_normaliser(normaliser)
    h = [norm(x) for x in hyps]
    r = [norm(x) for x in refs]
    if not any(x.split() for x in r):
        raise MetricError("every reference is empty after normalisation: WER is undefined")
    # jiwer counts the words of a hypothesis against an empty reference as insertions.
    return 100.0 * float(jiwer.wer(r, h))


def wer_max(hyps: Sequence[str], refs: Sequence[str], normaliser: str = "whisper_english", **_) -> float:
    """``min(100, WER)``: a fully deleted input cannot score worse than 100."""
    return min(100.0, wer(hyps, refs, normaliser=normaliser))


def bleu(hyps: Sequence[str], refs: Sequence[str], **_) -> float:
    import sacrebleu

    _check(hyps, refs)
    return float(sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score)


def chrf(hyps: Sequence[str], refs: Sequence[str], **_) -> float:
    import sacrebleu

    _check(hyps, refs)
    return float(sacrebleu.corpus_chrf(list(hyps), [list(refs)]).score)


def comet_checkpoint(model: str) -> Path:
    """A local COMET model: a ``.ckpt`` file or a downloaded model directory (``checkpoints/model.ckpt``)."""
    if not model:
        raise MetricError("COMET needs a local model: pass --comet-model PATH (a .ckpt file or the model "
                          "directory holding checkpoints/model.ckpt, e.g. a download of Unbabel/wmt22-comet-da)")
    path = Path(model)
    ckpt = path / "checkpoints" / "model.ckpt" if path.is_dir() else path
    if not ckpt.is_file():
        raise MetricError(f"COMET model {model!r} is not available offline: {ckpt} does not exist")
    return ckpt


#: set before comet is imported: transformers and huggingface_hub read them once, at import time
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def hf_offline() -> None:
    """Make the Hugging Face libraries offline for the rest of the process (process-wide on purpose:
    they cache the setting when first imported, so it cannot be undone for one call).  If
    huggingface_hub was already imported, its cached constant is switched too."""
    os.environ.update(OFFLINE_ENV)
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if hub_constants is not None and hasattr(hub_constants, "HF_HUB_OFFLINE"):
        hub_constants.HF_HUB_OFFLINE = True


def comet_gpus(cpu: bool = False) -> int:
    """GPUs for COMET's ``predict``: one when CUDA is available, unless ``cpu``."""
    if cpu:
        return 0
    import torch

    return 1 if torch.cuda.is_available() else 0


def comet(hyps: Sequence[str], refs: Sequence[str], srcs: Optional[Sequence[str]] = None,
          comet_model: Optional[str] = None, batch_size: int = 8, cpu: bool = False, **_) -> float:
    """System-level COMET (0..1) with a local checkpoint, offline (no download is attempted).

    ``srcs[k]`` must be the source of ``hyps[k]``: the caller joins them (``score_cli.join_sources``).
    """
    _check(hyps, refs, srcs)
    if srcs is None:
        raise MetricError("COMET needs the source sentences (--src-manifest or --src)")
    ckpt = comet_checkpoint(comet_model)
    hf_offline()  # before the import: the encoder must already be in the local HF cache
    try:
        from comet import load_from_checkpoint
    except ImportError as e:
        raise MetricError(
            "COMET needs the unbabel-comet package, which is not installed: pip install 'unbabel-comet>=2.2' "
            f"(or the fairseq-xattn[comet] extra) ({e})"
        ) from None
    try:
        model = load_from_checkpoint(str(ckpt))
    except Exception as e:  # missing pretrained encoder in the offline cache, corrupt checkpoint
        raise MetricError(f"COMET model {ckpt} could not be loaded offline: {e}") from e
    data = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(srcs, hyps, refs)]
    out = model.predict(data, batch_size=batch_size, gpus=comet_gpus(cpu), progress_bar=False)
    return float(out.system_score)


SCORERS: Dict[str, Callable[..., float]] = {
    "wer": wer,
    "wer_max": wer_max,
    "bleu": bleu,
    "chrf": chrf,
    "comet": comet,
}

#: True when a higher score means better output.
HIGHER_IS_BETTER = {"wer": False, "wer_max": False, "bleu": True, "chrf": True, "comet": True}


def score(name: str, hyps: Sequence[str], refs: Sequence[str], **opts) -> float:
    try:
        fn = SCORERS[name]
    except KeyError:
        raise MetricError(f"unknown metric {name!r}; choose from {sorted(SCORERS)}") from None
    return fn(list(hyps), list(refs), **opts)


def scorer_names() -> List[str]:
    return sorted(SCORERS)
