"""Word start/end times from espeak-ng events.

espeak reports a WORD event (character span, start sample) for most words.  Two traps:

* it sometimes folds an unstressed word into the previous one: "from the" gets one event.  The
  folded words share the unit's time span, which is split in proportion to their character
  lengths, each boundary snapped to the nearest phoneme event inside the unit; they are marked
  ``"merged": true``.
* some voices emit an empty WORD event (length 0 / text position 0); it is ignored.

A word (or merged unit) ends at its first pause phoneme (``_``, ``_:``, ``_!``, ...) or at the next
word's start, whichever comes first, and never after the end of the audio.
"""
from __future__ import annotations

import bisect
from typing import Dict, List

from .espeak import Synthesis


def word_spans(text: str) -> List[tuple]:
    """(start, end) character offsets of the space-separated words of ``text``."""
    spans, pos = [], 0
    for w in text.split(" "):
        if not w:
            raise ValueError(f"text must have single spaces between words and none at the ends: {text!r}")
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    return spans


def word_timings(text: str, synthesis: Synthesis, sample_rate: int) -> List[Dict]:
    """Timings of every word of ``text`` (seconds) from ``synthesis`` at ``sample_rate`` Hz.

    Returns ``[{"word", "start", "end", "merged"}]``, one entry per word, in order, with
    0 <= start < end <= duration and start(i+1) >= end(i).
    """
    words = text.split(" ")
    spans = word_spans(text)
    span_starts = [s for s, _ in spans]
    n_audio = len(synthesis.audio)
    starts: List = [None] * len(words)
    for ev in synthesis.words:
        if ev.length <= 0 or ev.text_position < 0:  # espeak's empty word events
            continue
        k = bisect.bisect_right(span_starts, ev.text_position) - 1
        if k < 0 or ev.text_position >= spans[k][1] or starts[k] is not None:
            continue
        starts[k] = min(max(ev.sample, 0), n_audio)
    if all(s is None for s in starts):
        raise RuntimeError(f"espeak produced no word events for {text!r}")
    phoneme_samples = sorted(p.sample for p in synthesis.phonemes)
    pauses = sorted(p.sample for p in synthesis.phonemes if p.phoneme.startswith("_"))

    # Units: a word with its own event plus the event-less words folded into it.
    units: List[List[int]] = []
    for k, s in enumerate(starts):
        if s is not None or not units:
            units.append([k])
        else:
            units[-1].append(k)
    if starts[0] is None:  # leading words without an event belong to the first unit with one
        first = next(k for k, s in enumerate(starts) if s is not None)
        starts[0] = phoneme_samples[0] if phoneme_samples and phoneme_samples[0] < starts[first] else 0
        if len(units) > 1 and units[0][-1] < first:
            units[0] = units[0] + units.pop(1)

    out: List[Dict] = []
    for u, unit in enumerate(units):
        begin = starts[unit[0]]
        nxt = starts[units[u + 1][0]] if u + 1 < len(units) else n_audio
        j = bisect.bisect_right(pauses, begin)
        end = min(nxt, pauses[j]) if j < len(pauses) else nxt
        end = min(max(end, begin + 1), n_audio) if begin < n_audio else n_audio
        # split the unit among its words by character share, snapped to phoneme onsets
        lengths = [len(words[k]) for k in unit]
        total = float(sum(lengths))
        inside = [p for p in phoneme_samples if begin < p < end]
        bounds = [begin]
        acc = 0
        for length in lengths[:-1]:
            acc += length
            target = begin + (end - begin) * acc / total
            cand = [p for p in inside if p > bounds[-1]]
            b = min(cand, key=lambda p: abs(p - target)) if cand else int(round(target))
            bounds.append(min(max(b, bounds[-1] + 1), end - 1) if end - bounds[-1] > 1 else bounds[-1])
        bounds.append(end)
        for i, k in enumerate(unit):
            out.append({
                "word": words[k],
                "start": round(bounds[i] / sample_rate, 5),
                "end": round(bounds[i + 1] / sample_rate, 5),
                "merged": len(unit) > 1,
            })
    return out
