"""Reading the word timings written beside the manifests (``timings/<split>.jsonl``, format in
docs/corpus.md) and mapping them onto feature frames, for analyses that join them by utterance id."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Tuple

FRAME_SHIFT_S = 0.01  # 10 ms filterbank shift


def load_word_timings(data_dir, split: str) -> Dict[str, Dict]:
    """utterance id -> record (``id, lang, duration, text, words, translation_id, alignment``)
    from ``<data_dir>/timings/<split>.jsonl``; checks that words are ordered and inside the audio."""
    path = Path(data_dir) / "timings" / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no word timings for split {split!r}: {path}")
    out: Dict[str, Dict] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {line_no}: not JSON ({e})") from None
            for key in ("id", "words", "duration"):
                if key not in rec:
                    raise ValueError(f"{path}, line {line_no}: missing key {key!r}")
            prev = 0.0
            for w in rec["words"]:
                if not (prev - 1e-9 <= w["start"] < w["end"] <= rec["duration"] + 1e-9):
                    raise ValueError(f"{path}, line {line_no} (id {rec['id']!r}): word {w} is out of order "
                                     f"or outside 0..{rec['duration']} s")
                prev = w["end"]
            if rec["id"] in out:
                raise ValueError(f"{path}, line {line_no}: duplicate id {rec['id']!r}")
            out[rec["id"]] = rec
    return out


def word_frame_spans(record: Dict, n_frames: int, subsampling: int = 1) -> List[Tuple[int, int]]:
    """Half-open frame spans ``[first, last)`` of each word on the grid of ``n_frames`` frames
    (10 ms frames; with ``subsampling`` s, encoder frames of s * 10 ms, ``n_frames`` being T').

    Every span holds at least one frame and lies inside ``0..n_frames``.
    """
    step = FRAME_SHIFT_S * subsampling
    spans = []
    for w in record["words"]:
        first = min(int(math.floor(w["start"] / step)), n_frames - 1)
        last = min(max(int(math.ceil(w["end"] / step)), first + 1), n_frames)
        spans.append((max(first, 0), last))
    return spans
