"""Writes the viewer: ONE self-contained HTML file (numpy only).

The page is ``template.html`` with ``viewer.css``, ``viewer.js`` and the data inlined (package files,
read at build time).  Data: one JSON object in ``<script type="application/json" id="xattn-data">``;
each utterance's maps are one deflated, base64 blob (:mod:`.encode`) that the page inflates when the
utterance is first shown, and its audio one base64 string decoded when it is first played.  Nothing is
fetched: the file works from a ``file://`` URL, offline, as a CI artefact.
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np

from .encode import BlobWriter, block_mean, encode_audio
from ..timestamps.words import group_words
from .model import UtteranceView

FORMAT_VERSION = 1
#: Quantisation groups (leading axes with their own lo/hi, see encode.quantise) per map.
GROUP_AXES = {"ca": 3, "sx": 1, "sxp": 1, "sh": 1, "spec": 0}


@dataclass(frozen=True)
class PictureSettings:
    """How the maps the page only pictures (SM^X ``I x T x F``, the spectrogram) are packed; the rows
    it reports (CA, SM^H, pooled SM^X) always keep 8 bits at full resolution.

    ``saliency_block``: frames x bins averaged into one SM^X cell (SM^X is the bulk of the file:
    ``I x T x F`` cells, mostly estimation noise at full resolution; 2 x 4 cells are smaller than SPES's
    superpixels); ``bits``: levels of both pictures (5 bits = 32 colours of the colour map).  Measured
    on 100 synthetic 3 s utterances (15 tokens, 2 x 4 heads, SPES-like SM^X of 20000 masks, Opus audio;
    tests/analysis/viewer/measure_size.py): block 2x2 and 6 bits 7.4 MB, 2x2 and 5 bits 5.8 MB,
    2x4 and 5 bits (the default) 4.55 MB, 2x4 and 4 bits 3.5 MB."""

    saliency_block: Tuple[int, int] = (2, 4)
    bits: int = 5


def _number(x: Optional[float], digits: int = 4) -> Optional[float]:
    """JSON-safe rounded float (None for missing or undefined values)."""
    if x is None:
        return None
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def _numbers(a, digits: int = 4):
    return [_numbers(v, digits) for v in a] if np.ndim(a) else _number(a, digits)


def _words(words: Optional[Sequence]):
    return None if words is None else [[w.word, round(w.start, 3), round(w.end, 3)] for w in words]


def word_of_token(tokens: Sequence[str]) -> list:
    """Index of the word each content token belongs to (words as ``xattn timestamps`` groups them)."""
    return [k for k, word in enumerate(group_words(tokens)) for _ in word.rows]


def utterance_payload(view: UtteranceView, audio_codec: Optional[str] = "opus",
                      pictures: PictureSettings = PictureSettings()) -> Dict:
    """The JSON object of one utterance (maps in ``blob``, described by ``maps``)."""
    view.check()
    L, H, I, Tp = view.attention.shape
    blob = BlobWriter()
    blob.add_map("ca", view.attention, GROUP_AXES["ca"])
    if view.saliency_input is not None:
        block = tuple(int(b) for b in pictures.saliency_block)
        blob.add_map("sx", block_mean(view.saliency_input, block), GROUP_AXES["sx"], pictures.bits, block=block)
        blob.add_map("sxp", view.saliency_input_pooled, GROUP_AXES["sxp"])
    if view.saliency_encoder is not None:
        blob.add_map("sh", view.saliency_encoder, GROUP_AXES["sh"])
    if view.spectrogram is not None:
        blob.add_map("spec", view.spectrogram, GROUP_AXES["spec"], pictures.bits, block=(1, 1))
    audio = None
    if view.audio is not None and audio_codec:
        audio = {**encode_audio(view.audio, view.sample_rate, audio_codec),
                 "seconds": round(len(view.audio) / view.sample_rate, 4)}
    return {
        "id": view.utt_id,
        "text": view.text,
        "reference": view.reference,
        "tokens": list(view.tokens),
        "word_of_token": word_of_token(view.tokens),
        "L": L, "H": H, "I": I, "T": view.n_frames, "Tp": Tp, "s": view.subsampling,
        "frame_shift": view.frame_shift,
        "scores": {k: _number(v, 2) for k, v in view.scores.items()},
        "corr": {symbol: {"full": _number(c.full), "head_avg": _numbers(c.head_avg),
                          "layer_avg": _numbers(c.layer_avg), "grid": _numbers(c.grid)}
                 for symbol, c in view.correlations.items()},
        "hyp_words": _words(view.hypothesis_words),
        "ref_words": _words(view.reference_words),
        "maps": blob.maps,
        "blob": blob.encoded(),
        "audio": audio,
    }


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _script_json(data) -> str:
    """JSON that cannot end its <script> element early (``<`` escaped)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def build_html(utterances: Iterable[UtteranceView], title: str = "xattn view",
               settings: Optional[Mapping] = None, notes: Sequence[str] = (),
               audio_codec: Optional[str] = "opus", pictures: PictureSettings = PictureSettings()) -> str:
    """The whole page as a string (``utterances`` is consumed once: it may read them one at a time)."""
    data = {
        "version": FORMAT_VERSION,
        "title": title,
        "settings": dict(settings or {}),
        "notes": list(notes),
        "utterances": [utterance_payload(v, audio_codec, pictures) for v in utterances],
    }
    page = _asset("template.html")
    # str.replace, not format(): CSS and JS are full of braces
    css, js = _asset("viewer.css"), _asset("viewer.js")
    if "</style" in css.lower() or "</script" in js.lower() or "<script" in js.lower():
        raise AssertionError("viewer.css/viewer.js must not contain tags that would end their element")
    page = page.replace("XATTN_TITLE", html.escape(title))  # <title> and <h1>, before anything is inlined
    for marker, value in (("/*XATTN_CSS*/", css), ("/*XATTN_JS*/", js), ("/*XATTN_DATA*/", _script_json(data))):
        if marker not in page:
            raise AssertionError(f"template.html lacks the marker {marker}")
        page = page.replace(marker, value, 1)
    return page


def write_html(path, utterances: Iterable[UtteranceView], **options) -> Path:
    """Write :func:`build_html` to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_html(utterances, **options), encoding="utf-8")
    return path

