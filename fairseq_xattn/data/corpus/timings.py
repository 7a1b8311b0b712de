"""Word start/end times from espeak-ng events.

espeak reports a WORD event (character span, start sample) for most words.  Two traps:

* it sometimes folds an unstressed word into the previous one: "from the" gets one event.  The
  folded words share the unit's time span, which is split in proportion to their character
  lengths, each boundary snapped to the nearest phoneme event inside the unit; they are marked
  ``"merged": true``.
* some voices emit an empty WORD event (length 0 / text position 0); it is ignored.

A word (or merged unit) ends at its first pause phoneme (``_``, ``_:``, ``_!``, ...) or at the next
word's start, whichever comes first, and never after the end of the audio.

Every word gets at least one sample: a unit shorter than its words (an event on the last sample,
a merged unit of one sample) is widened into the following silence, or, at the end of the audio,
into the preceding words (:func:`_ordered_spans`).  :func:`check_word_timings` asserts the result.
"""
from __future__ import annotations

import bisect
from typing import Dict, List, Optional, Sequence, Tuple

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


def word_timings(text: str, synthesis: Synthesis, sample_rate: int, n_samples: Optional[int] = None) -> List[Dict]:
    """Timings of every word of ``text`` (seconds) from ``synthesis`` at ``sample_rate`` Hz.

    ``n_samples``: the length of the audio the timings describe, in samples at ``sample_rate``
    (default the synthesis' length; less when the audio is shortened, e.g. by resampling).
    Returns ``[{"word", "start", "end", "merged"}]``, one entry per word, in order, with
    0 <= start < end <= n_samples / sample_rate and start(i+1) >= end(i).
    """
    words = text.split(" ")
    spans = word_spans(text)
    span_starts = [s for s, _ in spans]
    n_audio = len(synthesis.audio) if n_samples is None else min(int(n_samples), len(synthesis.audio))
    if n_audio < len(words):
        raise ValueError(f"{len(words)} words cannot have distinct timings in {n_audio} samples: {text!r}")
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

    bounds_of_words: List[Tuple[int, int]] = []
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
        for i, length in enumerate(lengths[:-1]):
            acc += length
            target = begin + (end - begin) * acc / total
            cand = [p for p in inside if p > bounds[-1]]
            b = min(cand, key=lambda p: abs(p - target)) if cand else int(round(target))
            # at least one sample for this word and for each word after it in the unit
            bounds.append(max(bounds[-1] + 1, min(b, end - (len(lengths) - 1 - i))))
        bounds.append(max(end, bounds[-1] + 1))
        bounds_of_words += list(zip(bounds[:-1], bounds[1:]))
    merged = {k for unit in units if len(unit) > 1 for k in unit}
    out = []
    for k, (a, b) in enumerate(_ordered_spans(bounds_of_words, n_audio)):
        out.append({
            "word": words[k],
            # distinct samples stay distinct: 1/sample_rate > 1e-5 s for any rate below 100 kHz
            "start": round(a / sample_rate, 5),
            "end": round(b / sample_rate, 5),
            "merged": k in merged,
        })
    return out


def _ordered_spans(spans: Sequence[Tuple[int, int]], n_audio: int) -> List[Tuple[int, int]]:
    """Integer sample spans with 0 <= start < end <= start(next) and end(last) <= ``n_audio``
    (needs ``n_audio >= len(spans)``): a forward pass pushes each span past the previous one and
    gives it a sample; a backward pass pulls overflowing spans back inside the audio."""
    out = []
    prev_end = 0
    for a, b in spans:
        a = max(a, prev_end)
        b = max(b, a + 1)
        out.append([a, b])
        prev_end = b
    limit = n_audio
    for span in reversed(out):
        span[1] = min(span[1], limit)
        span[0] = min(span[0], span[1] - 1)
        limit = span[0]
    return [(a, b) for a, b in out]


def check_word_timings(words: Sequence[Dict], duration: float, where: str) -> None:
    """Assert 0 <= start < end <= ``duration`` and end(i) <= start(i+1); errors name ``where``
    (the utterance) and the word."""
    prev_end = 0.0
    for i, w in enumerate(words):
        start, end = w["start"], w["end"]
        if not (0.0 <= start < end <= duration and start >= prev_end):
            raise ValueError(f"{where}: word {i} {w['word']!r} has timing {start}..{end} s, which breaks "
                             f"0 <= start < end <= duration ({duration} s) and start >= the previous word's "
                             f"end ({prev_end} s)")
        prev_end = end
