"""Scoring hypothesis word times against reference word times (numpy only).

Per utterance, both word sequences are normalised (lower case, punctuation removed; a word that
becomes empty is dropped) and aligned by edit distance (unit costs; ties prefer a match or
substitution, then a deletion).  Only **matched** words -- aligned pairs with the same normalised
word -- are timed; substitutions, insertions and deletions are not.  With ``exclude_merged`` the
reference words whose boundaries are approximate (``merged``) take part in the matching but not in
any timing figure or count of the F1.

Figures of one system (:func:`score_system`, one row):

* ``matched``: matched words / reference words (%);
* ``start_mean_ms``, ``start_median_ms``, ``end_mean_ms``, ``end_median_ms``: absolute errors of the
  timed words; ``mean_ms``: the mean over every boundary (starts and ends), the sort key;
* ``within_20ms`` ... ``within_200ms``: share of the timed boundaries within that many ms (%);
* ``f1``: boundary F1 at ``collar`` seconds (%): a boundary of a timed pair within the collar is a hit;
  precision = hits / (2 x hypothesis words), recall = hits / (2 x reference words), so unmatched
  words on either side count as misses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ...errors import UserError
from ..metrics import basic_normaliser
from .references import RefWord
from .timing import UtteranceTimestamps

THRESHOLDS_MS = (20, 50, 100, 200)
DEFAULT_COLLAR = 0.05
_TOL = 1e-9  # boundaries exactly on a threshold count as within it


class EvaluationError(UserError, ValueError):
    """Hypotheses and references that cannot be scored together."""


def normalise_word(word: str) -> str:
    """Lower case, punctuation removed (``"Sheep's,"`` -> ``"sheeps"``)."""
    return basic_normaliser(word).replace(" ", "")


def edit_alignment(hyp: Sequence[str], ref: Sequence[str]) -> List[Tuple[Optional[int], Optional[int]]]:
    """Minimum edit-distance alignment: ``(h, r)`` pairs in order; ``(h, None)`` an insertion,
    ``(None, r)`` a deletion, both set a match or a substitution."""
    n, m = len(hyp), len(ref)
    d = np.zeros((n + 1, m + 1), dtype=np.int64)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j - 1] + (hyp[i - 1] != ref[j - 1]), d[i, j - 1] + 1, d[i - 1, j] + 1)
    pairs: List[Tuple[Optional[int], Optional[int]]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i, j] == d[i - 1, j - 1] + (hyp[i - 1] != ref[j - 1]):
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif j > 0 and d[i, j] == d[i, j - 1] + 1:
            pairs.append((None, j - 1))
            j -= 1
        else:
            pairs.append((i - 1, None))
            i -= 1
    return pairs[::-1]


@dataclass
class UtteranceErrors:
    """Counts and signed boundary errors (seconds, hypothesis - reference) of one utterance."""

    n_ref: int = 0
    n_hyp: int = 0
    n_matched: int = 0
    n_ref_timed: int = 0
    n_hyp_timed: int = 0
    start_errors: List[float] = field(default_factory=list)
    end_errors: List[float] = field(default_factory=list)


def utterance_errors(hyp: Sequence, ref: Sequence[RefWord], exclude_merged: bool = False) -> UtteranceErrors:
    """Errors of the timed words (``hyp``: objects with ``word``, ``start``, ``end``)."""
    hyp = [w for w in hyp if normalise_word(w.word)]
    ref = [w for w in ref if normalise_word(w.word)]
    out = UtteranceErrors(n_ref=len(ref), n_hyp=len(hyp))
    out.n_ref_timed = sum(1 for w in ref if not (exclude_merged and w.merged))
    out.n_hyp_timed = len(hyp)
    pairs = edit_alignment([normalise_word(w.word) for w in hyp], [normalise_word(w.word) for w in ref])
    for h, r in pairs:
        if h is None or r is None or normalise_word(hyp[h].word) != normalise_word(ref[r].word):
            continue
        out.n_matched += 1
        if exclude_merged and ref[r].merged:
            out.n_hyp_timed -= 1
            continue
        out.start_errors.append(float(hyp[h].start) - ref[r].start)
        out.end_errors.append(float(hyp[h].end) - ref[r].end)
    return out


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else float("nan")


def score_system(name: str, hypotheses: Mapping[str, UtteranceTimestamps], references: Mapping[str, Sequence[RefWord]],
                 collar: float = DEFAULT_COLLAR, exclude_merged: bool = False, intersect: bool = False,
                 extra: Optional[Mapping] = None) -> Dict:
    """One table row (a dict) for the system ``name`` (see the module docstring for the figures).

    A hypothesis utterance without a reference is an error (``intersect``: it is skipped).
    """
    missing = [u for u in hypotheses if u not in references]
    if missing and not intersect:
        raise EvaluationError(f"{len(missing)} hypothesis utterance(s) have no reference word times, e.g. "
                              f"{missing[:3]}; check the reference file (or score the common ones only)")
    total = UtteranceErrors()
    n_utts = 0
    for utt, hyp in hypotheses.items():
        if utt not in references:
            continue
        e = utterance_errors(hyp.words, references[utt], exclude_merged)
        n_utts += 1
        for key in ("n_ref", "n_hyp", "n_matched", "n_ref_timed", "n_hyp_timed"):
            setattr(total, key, getattr(total, key) + getattr(e, key))
        total.start_errors += e.start_errors
        total.end_errors += e.end_errors
    start = np.abs(np.asarray(total.start_errors))
    end = np.abs(np.asarray(total.end_errors))
    boundaries = np.concatenate([start, end])
    hits = int(np.sum(boundaries <= collar + _TOL))
    precision = hits / (2 * total.n_hyp_timed) if total.n_hyp_timed else 0.0
    recall = hits / (2 * total.n_ref_timed) if total.n_ref_timed else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    row = {"system": name, **dict(extra or {}), "utterances": n_utts, "ref_words": total.n_ref,
           "hyp_words": total.n_hyp,
           "matched": 100.0 * total.n_matched / total.n_ref if total.n_ref else float("nan"),
           "timed_words": len(start),
           "mean_ms": 1000 * _mean(boundaries),
           "start_mean_ms": 1000 * _mean(start), "start_median_ms": 1000 * _median(start),
           "end_mean_ms": 1000 * _mean(end), "end_median_ms": 1000 * _median(end)}
    for t in THRESHOLDS_MS:
        row[f"within_{t}ms"] = 100.0 * float(np.mean(boundaries <= t / 1000 + _TOL)) if len(boundaries) else float("nan")
    starts = np.asarray(start, dtype=np.float64)
    row["start_within_100ms"] = 100.0 * float(np.mean(starts <= 0.1 + _TOL)) if len(starts) else float("nan")
    row["collar_ms"] = 1000 * collar
    row["f1"] = 100.0 * f1
    return row


def sort_rows(rows: Sequence[Dict]) -> List[Dict]:
    """By mean boundary error, then name (a system with no timed word last)."""
    return sorted(rows, key=lambda r: (np.isnan(r["mean_ms"]), r["mean_ms"] if not np.isnan(r["mean_ms"]) else 0,
                                       r["system"]))


def score_systems(systems: Mapping[str, Mapping[str, UtteranceTimestamps]], references: Mapping[str, Sequence[RefWord]],
                  **options) -> List[Dict]:
    """:func:`score_system` for each named system, sorted by mean error."""
    return sort_rows([score_system(name, hyps, references, **options) for name, hyps in systems.items()])


#: Markdown columns: (row key, header, format).
MARKDOWN_COLUMNS = (
    ("system", "system", "{}"),
    ("matched", "matched %", "{:.1f}"),
    ("mean_ms", "mean ms", "{:.1f}"),
    ("start_mean_ms", "start mean ms", "{:.1f}"),
    ("start_median_ms", "start median ms", "{:.1f}"),
    ("end_mean_ms", "end mean ms", "{:.1f}"),
    ("end_median_ms", "end median ms", "{:.1f}"),
    *((f"within_{t}ms", f"<= {t} ms %", "{:.1f}") for t in THRESHOLDS_MS),
    ("f1", "F1 %", "{:.1f}"),
)


def markdown_table(rows: Sequence[Dict]) -> str:
    """The rows as a Markdown table (F1 header names its collar); NaN prints as ``-``."""
    if not rows:
        return ""
    collar = rows[0].get("collar_ms")
    headers = [h if key != "f1" or collar is None else f"F1@{collar:g}ms %" for key, h, _ in MARKDOWN_COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i == 0 else "---:"
                                                                for i in range(len(headers))) + "|"]
    for r in rows:
        cells = []
        for key, _, fmt in MARKDOWN_COLUMNS:
            value = r.get(key)
            cells.append("-" if value is None or (isinstance(value, float) and np.isnan(value)) else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
