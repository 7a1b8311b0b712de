"""What the viewer reads beside the stores (numpy; soundfile/soxr/kaldi-native-fbank only when asked):

* spectrograms from a fairseq data folder (``--features-from DATA``: the S2T manifest's ``audio`` is
  ``fbank80.zip:<offset>:<length>``, a ``.npy`` file, or an audio file whose filterbank is computed);
* audio from a raw manifest (``--audio-from MANIFEST.tsv``: ``id, audio`` with wav/flac/ogg paths);
* word times: hypothesis words from ``--timestamps`` (what ``xattn timestamps`` writes) and reference
  words (our corpus's ``timings/<split>.jsonl``, CTM, TextGrid), read by :mod:`..timestamps`.

Each source checks at once that every id asked for is there (:class:`ViewerError` naming the file and
the first missing id) and reads the arrays of one utterance when asked, so that a long report never
holds more than one utterance's audio and maps.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...data.feature_zip import parse_zip_reference
from ...data.manifest import AUDIO_EXTENSIONS, ManifestError, read_tsv, resolve_audio
from ...data.word_timings import TimingFileError
from ..timestamps.formats import read_json_lines
from ..timestamps.references import RefWord, read_ctm, read_references, read_timings_jsonl
from ..timestamps.timing import TimedWord
from .model import ViewerError

FEATURE_COLUMNS = ("id", "audio")


def _missing(ids: Sequence[str], found: Dict, what: str) -> None:
    lost = [u for u in ids if u not in found]
    if lost:
        more = f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""
        raise ViewerError(f"utterance {lost[0]!r}{more} is not in {what}")


# ----------------------------------------------------------------------------------- features

def _audio_root(data_dir: Path) -> Optional[Path]:
    """config.yaml's ``audio_root`` (``xattn prep`` writes an absolute one), if any."""
    config = data_dir / "config.yaml"
    if not config.is_file():
        return None
    import yaml

    root = (yaml.safe_load(config.read_text()) or {}).get("audio_root")
    return Path(root) if root else None


def _resolve(ref: str, data_dir: Path, audio_root: Optional[Path]) -> Path:
    """A relative reference lives in the data folder, else under ``audio_root`` (as the task reads it)."""
    p = Path(ref)
    if p.is_absolute():
        return p
    if not (data_dir / p).is_file() and audio_root is not None and (audio_root / p).is_file():
        return audio_root / p
    return data_dir / p


def _read_features(ref: str, data_dir: Path, audio_root: Optional[Path], where: str) -> np.ndarray:
    """``T x F`` float32 features of one manifest ``audio`` field."""
    suffix = Path(ref).suffix.lower()
    if suffix in AUDIO_EXTENSIONS:
        from ...data.features import compute_fbank, load_audio

        return compute_fbank(load_audio(_resolve(ref, data_dir, audio_root)))
    if suffix == ".npy":
        path = _resolve(ref, data_dir, audio_root)
        if not path.is_file():
            raise ViewerError(f"{where}: features file not found: {path}")
        return np.load(path)
    try:
        zip_ref, offset, length = parse_zip_reference(ref)
    except ValueError:
        raise ViewerError(f"{where}: audio {ref!r} is neither '<zip>:<offset>:<length>' nor a .npy or "
                          f"{'/'.join(AUDIO_EXTENSIONS)} file") from None
    path = _resolve(zip_ref, data_dir, audio_root)
    if not path.is_file():
        raise ViewerError(f"{where}: features zip not found: {path}")
    with open(path, "rb") as f:
        f.seek(offset)
        blob = f.read(length)
    try:
        return np.load(io.BytesIO(blob), allow_pickle=False)
    except Exception as e:  # numpy raises ValueError/OSError/... for a range that is not an .npy
        raise ViewerError(f"{where}: no readable .npy features in {path} at byte {offset}: {e}") from None


class SpectrogramSource:
    """``T x F`` filterbanks by utterance id, from the S2T manifests of ``data_dir``: ``<split>.tsv`` when
    ``split`` (the stores' ``gen_subset``) names one that exists, else every ``*.tsv`` with ``id`` and
    ``audio`` columns.  Every id must be listed (checked at once); features are read on :meth:`get`."""

    def __init__(self, data_dir, ids: Sequence[str], split: Optional[str] = None):
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise ViewerError(f"--features-from {self.data_dir}: not a folder")
        manifests = [self.data_dir / f"{split}.tsv"] if split and (self.data_dir / f"{split}.tsv").is_file() \
            else sorted(self.data_dir.glob("*.tsv"))
        self.audio_root = _audio_root(self.data_dir)
        wanted = set(ids)
        self._refs: Dict[str, Tuple[str, str]] = {}  # id -> (audio field, where)
        for manifest_path in manifests:
            try:
                manifest = read_tsv(manifest_path, FEATURE_COLUMNS)
            except ManifestError:
                continue  # not an S2T manifest (e.g. a words table)
            for i, row in enumerate(manifest.rows):
                if row["id"] in wanted and row["id"] not in self._refs:
                    self._refs[row["id"]] = (row["audio"], manifest.where(i))
        names = ", ".join(p.name for p in manifests) or "no *.tsv file"
        _missing(ids, self._refs, f"the manifests of --features-from {self.data_dir} ({names})")

    def get(self, utt_id: str) -> np.ndarray:
        ref, where = self._refs[utt_id]
        return _read_features(ref, self.data_dir, self.audio_root, where)


# ----------------------------------------------------------------------------------- audio

class AudioSource:
    """Mono 16 kHz audio by utterance id, from a raw manifest (``id, audio``; paths relative to its
    folder).  Every id must be listed and its file exist (checked at once); audio is read on :meth:`get`."""

    def __init__(self, manifest_path, ids: Sequence[str]):
        self.manifest_path = Path(manifest_path)
        try:
            self.manifest = read_tsv(self.manifest_path, FEATURE_COLUMNS)
        except ManifestError as e:
            raise ViewerError(f"--audio-from: {e}") from None
        index = {row["id"]: i for i, row in enumerate(self.manifest.rows)}
        _missing(ids, index, f"--audio-from {self.manifest_path}")
        try:
            self._paths = {u: resolve_audio(self.manifest, index[u], self.manifest_path.parent) for u in ids}
        except ManifestError as e:
            raise ViewerError(f"--audio-from: {e}") from None

    def get(self, utt_id: str) -> Tuple[np.ndarray, int]:
        """``(N float32 samples, 16000)``."""
        from ...data.features import SAMPLE_RATE, AudioError, load_audio

        try:
            return load_audio(self._paths[utt_id], SAMPLE_RATE), SAMPLE_RATE
        except AudioError as e:
            raise ViewerError(f"--audio-from {self.manifest_path}: {e}") from None


# ----------------------------------------------------------------------------------- word times

def read_hypothesis_times(path, ids: Sequence[str]) -> Dict[str, List[TimedWord]]:
    """Hypothesis word times of ``ids``: the ``words.jsonl`` of ``xattn timestamps`` (Whisper-style JSON
    lines) or a CTM file (``.ctm``), read by :mod:`fairseq_xattn.analysis.timestamps`."""
    path = Path(path)
    if not path.is_file():
        raise ViewerError(f"--timestamps {path}: no such file")
    if path.suffix.lower() == ".ctm":
        words = {u: [TimedWord(w.word, w.start, w.end, 1.0) for w in ws] for u, ws in read_ctm(path).items()}
    else:
        words = {u: t.words for u, t in read_json_lines(path).items()}
    _missing(ids, words, f"--timestamps {path}")
    return words


def read_reference_times(path, ids: Sequence[str]) -> Dict[str, List[RefWord]]:
    """Reference word times of ``ids`` from our timings JSON lines, CTM or TextGrid(s)
    (:func:`fairseq_xattn.analysis.timestamps.references.read_references`)."""
    words = read_references(path)
    _missing(ids, words, f"--reference-timings {path}")
    return words


def reference_timings_beside(ids: Sequence[str], data_dir=None, manifest=None,
                             split: Optional[str] = None) -> Tuple[Optional[Path], Dict[str, List[RefWord]]]:
    """Our corpus's word timings of ``ids``, found beside the data or audio given: ``DATA/timings/<split>.jsonl``
    (``xattn prep`` copies them), ``<manifest dir>/timings/<manifest stem>.jsonl``, else any other
    ``timings/*.jsonl`` there that lists every id (an explained subset of a split has no file of its own).
    Returns ``(path, words by id)`` or ``(None, {})``."""
    folders = [Path(d) / "timings" for d in (data_dir, manifest and Path(manifest).parent) if d is not None]
    first = []
    if data_dir is not None and split:
        first.append(Path(data_dir) / "timings" / f"{split}.jsonl")
    if manifest is not None:
        first.append(Path(manifest).parent / "timings" / f"{Path(manifest).stem}.jsonl")
    candidates = first + [p for folder in folders if folder.is_dir() for p in sorted(folder.glob("*.jsonl"))]
    for path in dict.fromkeys(c for c in candidates if c.is_file()):
        try:
            words = read_timings_jsonl(path)
        except TimingFileError:
            continue  # not a timing file after all: found by its name only, so not the user's mistake
        if all(u in words for u in ids):
            return path, words
    return None, {}
