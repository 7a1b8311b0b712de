"""Reading the word timings written beside the manifests (``timings/<split>.jsonl``, format in
docs/corpus.md) and mapping them onto feature frames, for analyses that join them by utterance id."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Tuple

from ..errors import MissingFileError, UserError
from ..geometry import encoder_frame_seconds


class TimingFileError(UserError, ValueError):
    """A word-timing file that cannot be read; the message names the file and the line."""


#: Tolerance of the order checks (times are written with 5 decimals).
_EPS = 1e-6


def _number(value, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TimingFileError(f"{where}: {name} must be a finite number, found {value!r}")
    return float(value)


def read_timings_file(path) -> Dict[str, Dict]:
    """utterance id -> record (``id, lang, duration, text, words, ...``) of a timings JSON-lines file;
    checks that every word has ``word``, ``start`` and ``end``, in order and inside the audio."""
    path = Path(path)
    out: Dict[str, Dict] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {line_no}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise TimingFileError(f"{where}: not JSON ({e})") from None
            if not isinstance(rec, dict):
                raise TimingFileError(f"{where}: expected a JSON object, found {type(rec).__name__}")
            for key in ("id", "words", "duration"):
                if key not in rec:
                    raise TimingFileError(f"{where}: missing key {key!r}")
            duration = _number(rec["duration"], where, "duration")
            if not isinstance(rec["words"], list):
                raise TimingFileError(f"{where}: 'words' must be a list")
            prev = 0.0
            for k, w in enumerate(rec["words"]):
                at = f"{where} (id {rec['id']!r}), word {k}"
                if not isinstance(w, dict) or not all(key in w for key in ("word", "start", "end")):
                    raise TimingFileError(f"{at}: expected an object with 'word', 'start' and 'end', found {w!r}")
                start, end = _number(w["start"], at, "start"), _number(w["end"], at, "end")
                if not (prev - _EPS <= start < end <= duration + _EPS):
                    raise TimingFileError(f"{at}: {w['word']!r} at {start}..{end} s is out of order or outside "
                                          f"0..{duration} s (the previous word ends at {prev} s)")
                prev = end
            if rec["id"] in out:
                raise TimingFileError(f"{where}: duplicate id {rec['id']!r}")
            out[rec["id"]] = rec
    return out


def load_word_timings(data_dir, split: str) -> Dict[str, Dict]:
    """:func:`read_timings_file` of ``<data_dir>/timings/<split>.jsonl``."""
    path = Path(data_dir) / "timings" / f"{split}.jsonl"
    if not path.is_file():
        raise MissingFileError(f"no word timings for split {split!r}: {path}")
    return read_timings_file(path)


def word_frame_spans(record: Dict, n_frames: int, subsampling: int = 1) -> List[Tuple[int, int]]:
    """Half-open frame spans ``[first, last)`` of each word on the grid of ``n_frames`` frames
    (10 ms frames; with ``subsampling`` s, encoder frames of s * 10 ms, ``n_frames`` being T').

    Every span holds at least one frame and lies inside ``0..n_frames``.
    """
    step = encoder_frame_seconds(subsampling)
    spans = []
    for w in record["words"]:
        first = min(int(math.floor(w["start"] / step)), n_frames - 1)
        last = min(max(int(math.ceil(w["end"] / step)), first + 1), n_frames)
        spans.append((max(first, 0), last))
    return spans
