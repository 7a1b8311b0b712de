"""Reference word times: our corpus's timing files, CTM, and Praat TextGrids (pure Python).

Every reader returns ``{utterance id: [RefWord, ...]}`` with words in time order; a malformed line
raises :class:`TimingFileError` naming the file and the line.

* timings JSON lines (``timings/<split>.jsonl``, docs/corpus.md): one utterance per line with ``id``,
  ``duration`` and ``words`` (``word``, ``start``, ``end``, optional ``merged``); words must be in
  order and inside ``0..duration``;
* CTM (NIST): ``utterance channel start duration word [confidence]`` per line, ``;;`` comments;
* TextGrid (Praat, the long and the short text format, UTF-8 or UTF-16): the utterance id is the
  file's stem; the words are the non-empty intervals of the tier named by ``tier``, else of the tier
  called ``words`` (Montreal Forced Aligner), else of the first interval tier; silence labels
  (:data:`SILENCE_LABELS`) are skipped.  A folder of TextGrids reads every ``*.TextGrid`` in it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

from ...data.word_timings import TimingFileError, read_timings_file

#: Interval labels that mark silence, not a word.
SILENCE_LABELS = frozenset({"", "sil", "sp", "<eps>", "<sil>"})
#: Tolerance of the order checks (times written with 5 decimals).
_EPS = 1e-6




@dataclass(frozen=True)
class RefWord:
    """A reference word; ``merged``: its boundaries are approximate (espeak spoke it inside another
    word's event, docs/corpus.md)."""

    word: str
    start: float
    end: float
    merged: bool = False


References = Dict[str, List[RefWord]]


def _number(value, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TimingFileError(f"{where}: {name} must be a finite number, found {value!r}")
    return float(value)


# ----------------------------------------------------------------------------------- timings JSONL

def read_timings_jsonl(path: Union[str, Path]) -> References:
    """Our corpus's word timings (``timings/<split>.jsonl``, read and checked by
    :func:`fairseq_xattn.data.word_timings.read_timings_file`)."""
    return {str(utt): [RefWord(str(w["word"]), float(w["start"]), float(w["end"]), bool(w.get("merged", False)))
                       for w in rec["words"]]
            for utt, rec in read_timings_file(path).items()}


# ----------------------------------------------------------------------------------- CTM

def read_ctm(path: Union[str, Path]) -> References:
    """A CTM file; words of each utterance sorted by start time."""
    path = Path(path)
    out: References = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith(";;") or text.startswith("#"):
                continue
            fields = text.split()
            where = f"{path}, line {line_no}"
            if len(fields) not in (5, 6):
                raise TimingFileError(f"{where}: expected 'utterance channel start duration word [confidence]', "
                                      f"found {len(fields)} fields: {text!r}")
            try:
                start, duration = float(fields[2]), float(fields[3])
            except ValueError:
                raise TimingFileError(f"{where}: start and duration must be numbers, found "
                                      f"{fields[2]!r} and {fields[3]!r}") from None
            if not (math.isfinite(start) and math.isfinite(duration)) or start < 0 or duration < 0:
                raise TimingFileError(f"{where}: start {fields[2]} and duration {fields[3]} must be >= 0")
            out.setdefault(fields[0], []).append(RefWord(fields[4], start, start + duration))
    for words in out.values():
        words.sort(key=lambda w: w.start)
    return out


# ----------------------------------------------------------------------------------- TextGrid

_HEADER = re.compile(r"^(item|intervals|points)\s*\[\s*\d*\s*\]\s*:\s*$")


def _textgrid_values(path: Path) -> Iterator[Tuple[object, int]]:
    """The values of a text TextGrid in file order with their line numbers: floats, strings and the
    flags ``<exists>``/``<absent>``; keys (``xmin =``) and headers (``item [1]:``) are skipped, so the
    long and the short format give the same sequence."""
    raw = path.read_bytes()
    if raw.startswith(b"\xff\xfe") or raw.startswith(b"\xfe\xff"):
        text = raw.decode("utf-16")
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise TimingFileError(f"{path}: not a text TextGrid (neither UTF-8 nor UTF-16; a binary TextGrid? "
                                  "save it as a text file in Praat)") from None
    for line_no, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or _HEADER.match(s):
            continue
        if s.startswith("tiers?"):
            s = s[len("tiers?"):].strip()
        elif not s.startswith('"') and "=" in s:
            s = s.split("=", 1)[1].strip()
        if s.startswith('"'):
            if len(s) < 2 or not s.endswith('"') or re.search(r'(?<!")"(?!")', s[1:-1]):
                raise TimingFileError(f"{path}, line {line_no}: unterminated or malformed string {s!r}")
            yield s[1:-1].replace('""', '"'), line_no
        elif s in ("<exists>", "<absent>"):
            yield s, line_no
        else:
            try:
                yield float(s), line_no
            except ValueError:
                raise TimingFileError(f"{path}, line {line_no}: expected a number, a string or <exists>, "
                                      f"found {s!r}") from None


class _Values:
    def __init__(self, path: Path):
        self.path = path
        self.items = _textgrid_values(path)
        self.line = 0

    def next(self, kind: type, what: str):
        try:
            value, self.line = next(self.items)
        except StopIteration:
            raise TimingFileError(f"{self.path}, line {self.line}: the file ends where {what} was expected") from None
        if kind is float and isinstance(value, float):
            return value
        if kind is str and isinstance(value, str):
            return value
        raise TimingFileError(f"{self.path}, line {self.line}: expected {what}, found {value!r}")

    def count(self, what: str) -> int:
        n = self.next(float, what)
        if n < 0 or n != int(n):
            raise TimingFileError(f"{self.path}, line {self.line}: {what} must be a whole number, found {n}")
        return int(n)


def read_textgrid(path: Union[str, Path], tier: Optional[str] = None) -> List[RefWord]:
    """Words of one TextGrid (see the module docstring for the tier and the labels)."""
    path = Path(path)
    v = _Values(path)
    if v.next(str, "'ooTextFile'") != "ooTextFile" or v.next(str, "'TextGrid'") != "TextGrid":
        raise TimingFileError(f"{path}, line {v.line}: not a TextGrid (expected File type \"ooTextFile\", "
                              "Object class \"TextGrid\")")
    v.next(float, "xmin")
    v.next(float, "xmax")
    if v.next(str, "<exists>") != "<exists>":
        return []
    tiers: List[Tuple[str, str, List[RefWord]]] = []
    for _ in range(v.count("the number of tiers")):
        cls = v.next(str, "a tier class")
        name = v.next(str, "a tier name")
        v.next(float, "tier xmin")
        v.next(float, "tier xmax")
        n = v.count("the number of intervals")
        words: List[RefWord] = []
        if cls == "IntervalTier":
            for _ in range(n):
                start, end = v.next(float, "interval xmin"), v.next(float, "interval xmax")
                label = v.next(str, "an interval text")
                if end < start - _EPS:
                    raise TimingFileError(f"{path}, line {v.line}: interval ends ({end}) before it starts ({start})")
                if label.strip().lower() not in SILENCE_LABELS:
                    words.append(RefWord(label.strip(), start, end))
        elif cls == "TextTier":
            for _ in range(n):
                v.next(float, "point time")
                v.next(str, "point mark")
        else:
            raise TimingFileError(f"{path}, line {v.line}: unknown tier class {cls!r}")
        tiers.append((cls, name, words))
    intervals = [t for t in tiers if t[0] == "IntervalTier"]
    if tier is not None:
        chosen = [t for t in intervals if t[1] == tier]
        if not chosen:
            raise TimingFileError(f"{path}: no interval tier named {tier!r}; it has {[t[1] for t in intervals]}")
    else:
        chosen = [t for t in intervals if t[1].lower() == "words"] or intervals
        if not chosen:
            raise TimingFileError(f"{path}: no interval tier")
    return sorted(chosen[0][2], key=lambda w: w.start)


# ----------------------------------------------------------------------------------- dispatch

REFERENCE_FORMATS = ("timings", "ctm", "textgrid")


def reference_format(path: Path) -> str:
    if path.is_dir():
        return "textgrid"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "timings"
    if suffix == ".ctm":
        return "ctm"
    if suffix == ".textgrid":
        return "textgrid"
    raise TimingFileError(f"{path}: cannot tell the reference format from the name; give --reference-format "
                          f"from {list(REFERENCE_FORMATS)}")


def read_references(path: Union[str, Path], fmt: str = "auto", tier: Optional[str] = None) -> References:
    """Reference word times from a timings JSONL file, a CTM file, a TextGrid or a folder of TextGrids."""
    path = Path(path)
    if not path.exists():
        raise TimingFileError(f"reference timings {path} do not exist")
    fmt = reference_format(path) if fmt == "auto" else fmt
    if fmt == "timings":
        return read_timings_jsonl(path)
    if fmt == "ctm":
        return read_ctm(path)
    if fmt == "textgrid":
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".textgrid") if path.is_dir() else [path]
        if not files:
            raise TimingFileError(f"{path}: no *.TextGrid file in this folder")
        return {p.stem: read_textgrid(p, tier) for p in files}
    raise TimingFileError(f"unknown reference format {fmt!r}; choose from {list(REFERENCE_FORMATS)}")
