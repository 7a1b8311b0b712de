"""Writing timed words: Whisper-style JSON, CTM, SRT and WebVTT (pure Python).

* JSON (registry name ``json``): one file ``words.jsonl``, one object per utterance (one line), shaped
  like a Whisper transcription with ``word_timestamps=True``: ``{"id", "text", "system", "segments":
  [{"id": 0, "start", "end", "text", "words": [{"word", "start", "end", "probability"}]}]}``; times
  in seconds rounded to milliseconds; ``probability`` is the confidence of :mod:`.timing`.
* CTM (``ctm``): one file ``words.ctm``, ``utterance 1 start duration word confidence`` per word.
* SRT and WebVTT (``srt``, ``vtt``): one subtitle file per utterance (``srt/<id>.srt``,
  ``vtt/<id>.vtt``), one cue per word.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Sequence

from ...registry import Registry
from .timing import TimedWord, UtteranceTimestamps


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def _clock(seconds: float, decimal: str) -> str:
    ms = _ms(seconds)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def utterance_json(utt: UtteranceTimestamps) -> Dict:
    """The Whisper-style object of one utterance."""
    words = [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3),
              "probability": round(w.confidence, 4)} for w in utt.words]
    text = utt.text or " ".join(w.word for w in utt.words)
    segments = [] if not words else [{"id": 0, "start": words[0]["start"], "end": words[-1]["end"],
                                      "text": text, "words": words}]
    return {"id": utt.utt_id, "text": text, "system": utt.system, "segments": segments}


def json_lines(utts: Iterable[UtteranceTimestamps]) -> str:
    return "".join(json.dumps(utterance_json(u), ensure_ascii=False) + "\n" for u in utts)


def ctm_lines(utts: Iterable[UtteranceTimestamps], channel: str = "1") -> str:
    return "".join(f"{u.utt_id} {channel} {w.start:.3f} {max(w.end - w.start, 0.0):.3f} {w.word} {w.confidence:.4f}\n"
                   for u in utts for w in u.words)


def srt_text(words: Sequence[TimedWord]) -> str:
    return "".join(f"{i}\n{_clock(w.start, ',')} --> {_clock(w.end, ',')}\n{w.word}\n\n"
                   for i, w in enumerate(words, start=1))


def vtt_text(words: Sequence[TimedWord]) -> str:
    return "WEBVTT\n\n" + "".join(f"{_clock(w.start, '.')} --> {_clock(w.end, '.')}\n{w.word}\n\n" for w in words)


def read_json_lines(path) -> Dict[str, UtteranceTimestamps]:
    """Read back ``words.jsonl`` (for ``xattn timestamps evaluate --hypotheses``)."""
    from .references import TimingFileError

    out: Dict[str, UtteranceTimestamps] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                words = [TimedWord(str(w["word"]), float(w["start"]), float(w["end"]), float(w.get("probability", 1.0)))
                         for seg in obj["segments"] for w in seg["words"]]
                out[str(obj["id"])] = UtteranceTimestamps(str(obj["id"]), words, obj.get("system", ""),
                                                          obj.get("text", ""))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise TimingFileError(f"{path}, line {line_no}: not a timestamps JSON line ({type(e).__name__}: {e})") \
                    from None
    return out


Writer = Callable[[List[UtteranceTimestamps], Path], List[Path]]
OUTPUT_FORMATS: "Registry[Writer]" = Registry("output format")


@OUTPUT_FORMATS.register("json")
def write_json(utts: List[UtteranceTimestamps], out_dir: Path) -> List[Path]:
    path = out_dir / "words.jsonl"
    path.write_text(json_lines(utts), encoding="utf-8")
    return [path]


@OUTPUT_FORMATS.register("ctm")
def write_ctm(utts: List[UtteranceTimestamps], out_dir: Path) -> List[Path]:
    path = out_dir / "words.ctm"
    path.write_text(ctm_lines(utts), encoding="utf-8")
    return [path]


def _per_utterance(utts: List[UtteranceTimestamps], out_dir: Path, ext: str, render) -> List[Path]:
    folder = out_dir / ext
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for u in utts:
        path = folder / f"{u.utt_id}.{ext}"
        path.write_text(render(u.words), encoding="utf-8")
        paths.append(path)
    return paths


@OUTPUT_FORMATS.register("srt")
def write_srt(utts: List[UtteranceTimestamps], out_dir: Path) -> List[Path]:
    return _per_utterance(utts, out_dir, "srt", srt_text)


@OUTPUT_FORMATS.register("vtt")
def write_vtt(utts: List[UtteranceTimestamps], out_dir: Path) -> List[Path]:
    return _per_utterance(utts, out_dir, "vtt", vtt_text)


def write_outputs(utts: List[UtteranceTimestamps], out_dir, formats: Sequence[str]) -> List[Path]:
    """Write ``utts`` in each of ``formats`` into ``out_dir`` (created); returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: List[Path] = []
    for fmt in formats:
        paths += OUTPUT_FORMATS.get(fmt)(utts, out_dir)
    return paths
