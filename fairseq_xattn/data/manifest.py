"""Reading and validating TSV manifests.

Two formats, both tab-separated with a header line and no quoting (fairseq's csv settings):

* the fairseq S2T manifest the task reads: ``id, audio, n_frames, tgt_text`` required;
  ``speaker, src_text, src_lang, tgt_lang`` optional.  ``audio`` is ``<zip>:<offset>:<length>``
  (npy features in a stored zip), a ``.npy`` file, or a wav/flac/ogg file (features computed on
  the fly), relative to the audio root.
* the raw manifest ``xattn prep`` reads: ``id, audio, src_text`` required (``audio`` a wav/flac
  file relative to the manifest's folder, ``src_text`` the transcript); ``tgt_text`` (translation),
  ``speaker, src_lang, tgt_lang`` optional.  The corpus builder writes this format.

Every error names the file and the line (header = line 1) and, when known, the utterance id.
Files are UTF-8; a byte-order mark (as some editors write) is dropped.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import UserError

S2T_REQUIRED = ("id", "audio", "n_frames", "tgt_text")
S2T_OPTIONAL = ("speaker", "src_text", "src_lang", "tgt_lang")
RAW_REQUIRED = ("id", "audio", "src_text")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


class ManifestError(UserError, ValueError):
    """Bad manifest content; the message names the file, line and utterance id."""


@dataclass
class Manifest:
    path: Path
    columns: List[str]
    rows: List[Dict[str, str]]
    lines: List[int] = field(default_factory=list)  # file line of each row (header is line 1)

    def where(self, i: int) -> str:
        utt = self.rows[i].get("id", "")
        return f"{self.path}, line {self.lines[i]}" + (f" (id {utt!r})" if utt else "")

    def column(self, name: str) -> Optional[List[str]]:
        return [r[name] for r in self.rows] if name in self.columns else None


def read_tsv(path, required: Sequence[str]) -> Manifest:
    """Read a manifest, checking the header and the field count of every row."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    with io.StringIO(_read_text(path), newline="") as f:
        reader = csv.reader(f, delimiter="\t", quotechar=None, doublequote=False,
                            lineterminator="\n", quoting=csv.QUOTE_NONE)
        try:
            header = next(reader)
        except StopIteration:
            raise ManifestError(f"{path}: empty file (no header line)") from None
        header = [h.strip() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {', '.join(missing)} in the header "
                                f"(found: {', '.join(header)})")
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise ManifestError(f"{path}: duplicate column(s) {', '.join(dupes)} in the header")
        rows, lines = [], []
        for fields in reader:
            line = reader.line_num
            if not fields or fields == [""]:
                continue  # blank line
            if len(fields) != len(header):
                raise ManifestError(f"{path}, line {line}: expected {len(header)} tab-separated fields "
                                    f"({', '.join(header)}), found {len(fields)}")
            rows.append({h: v.rstrip("\r") for h, v in zip(header, fields)})
            lines.append(line)
    if not rows:
        raise ManifestError(f"{path}: no rows after the header")
    m = Manifest(path, header, rows, lines)
    _check_ids(m)
    return m


def _read_text(path: Path) -> str:
    """The file's text (UTF-8, a leading byte-order mark dropped); errors name the file and line."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the manifest ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ManifestError(f"{path}, line {line}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); "
                            f"save the manifest as UTF-8") from None


def _check_ids(m: Manifest) -> None:
    seen: Dict[str, int] = {}
    for i, r in enumerate(m.rows):
        utt = r.get("id", "")
        if not utt.strip():
            raise ManifestError(f"{m.where(i)}: empty id")
        if utt in seen:
            raise ManifestError(f"{m.where(i)}: duplicate id (first at line {m.lines[seen[utt]]})")
        seen[utt] = i


def check_texts(m: Manifest, columns: Sequence[str]) -> None:
    """Every present column of ``columns`` must be non-empty in every row."""
    for c in columns:
        if c not in m.columns:
            continue
        for i, r in enumerate(m.rows):
            if not r[c].strip():
                raise ManifestError(f"{m.where(i)}: empty {c}")


def read_s2t_manifest(path) -> Manifest:
    """A fairseq S2T manifest with ids, n_frames and texts checked (audio is checked by
    :func:`fairseq_xattn.data.s2t_ctc_dataset.check_audio`, which knows the audio root)."""
    m = read_tsv(path, S2T_REQUIRED)
    for i, r in enumerate(m.rows):
        try:
            n = int(r["n_frames"])
        except ValueError:
            raise ManifestError(f"{m.where(i)}: n_frames {r['n_frames']!r} is not an integer") from None
        if n <= 0:
            raise ManifestError(f"{m.where(i)}: n_frames must be positive, got {n}")
    check_texts(m, ("tgt_text", "src_text"))
    return m


def read_raw_manifest(path) -> Manifest:
    """A raw manifest for ``xattn prep`` (audio files + transcripts [+ translations])."""
    m = read_tsv(path, RAW_REQUIRED)
    check_texts(m, ("src_text", "tgt_text"))
    return m


def resolve_audio(m: Manifest, i: int, root: Path) -> Path:
    """The audio file of row ``i`` (relative paths are relative to ``root``); must exist."""
    p = Path(m.rows[i]["audio"])
    if not p.is_absolute():
        p = root / p
    if p.suffix.lower() not in AUDIO_EXTENSIONS:
        raise ManifestError(f"{m.where(i)}: audio {m.rows[i]['audio']!r} is not a "
                            f"{'/'.join(AUDIO_EXTENSIONS)} file")
    if not p.is_file():
        raise ManifestError(f"{m.where(i)}: audio file not found: {p}")
    return p


def write_tsv(path, columns: Sequence[str], rows: Sequence[Dict[str, str]]) -> None:
    """Write a manifest with fairseq's conventions; fields may not contain tabs or newlines."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(columns) + "\n")
        for r in rows:
            values = [str(r.get(c, "")) for c in columns]
            for c, v in zip(columns, values):
                if any(ch in v for ch in "\t\n\r"):
                    raise ManifestError(f"{path}: field {c} of id {r.get('id')!r} contains a tab or newline")
            f.write("\t".join(values) + "\n")
