"""Append-only store of per-utterance arrays, shared by the attention and saliency stores.

Why this format (and not HDF5 or a zip of .npy like fairseq's fbank store):

* **incremental**: records are appended as they are produced, memory does not grow with the test set;
* **crash-safe**: a record's index line is written only after its arrays are flushed, so a killed
  run leaves a readable store of every finished record, and a resumed run truncates the torn tail;
  a zip's central directory, or an HDF5 file's metadata, is lost when the writer is killed;
* **numpy alone reads it**: every array is a standard ``.npy`` blob at a known byte offset;
* **random access** by utterance id through the index, and **cheap merging** of shards.

One writer at a time: a :class:`StoreWriter` holds an exclusive advisory lock (``flock`` on
``.lock``) while it is open, because it appends at offsets it computed from the files; a second
process that opens the same store fails at once instead of interleaving with it.  Parallel runs
(shards) write one folder each and are joined with ``xattn store merge``.  Resuming a store is
allowed only with the same store-level settings (``meta.json``): a difference in any of them is
an error that names it, never a silent mix of records made under different settings.

Layout of a store directory::

    meta.json      {"format": "xattn-store", "version": 1, "kind": ..., ...store-level settings}
    .lock          empty; locked by the open writer (released when it closes or its process dies)
    arrays.bin     concatenated .npy blobs (``numpy.lib.format``), 64-byte aligned
    index.jsonl    one JSON object per record, in write order:
                   {"id": str, "rank": int, "meta": {...},
                    "arrays": {name: {"offset": int, "shape": [...], "dtype": str}}}

Reading a record with numpy only::

    import json, numpy as np
    rows = [json.loads(l) for l in open("index.jsonl")]
    with open("arrays.bin", "rb") as f:
        f.seek(rows[0]["arrays"]["attention"]["offset"])
        attention = np.lib.format.read_array(f)
"""
from __future__ import annotations

import json
import logging
import os
import re
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: stores are not locked
    fcntl = None

logger = logging.getLogger(__name__)

FORMAT_NAME = "xattn-store"
FORMAT_VERSION = 1
META_FILE = "meta.json"
ARRAYS_FILE = "arrays.bin"
INDEX_FILE = "index.jsonl"
LOCK_FILE = ".lock"
_ALIGN = 64
_NOT_RECORDED = "(not recorded)"

# Open writers of this process, by real store path (see StoreWriter._lock).
_OPEN_WRITERS: "weakref.WeakValueDictionary[str, StoreWriter]" = weakref.WeakValueDictionary()


def _forget_writers_in_child() -> None:
    """After fork: the child (e.g. a data-loader worker) shares the parent's lock; flock is released only
    when every copy of the descriptor is closed, so a child that outlives the writer would keep the store
    locked.  The child closes its copies; the parent's lock and files are unaffected."""
    for writer in list(_OPEN_WRITERS.values()):
        writer._close("this process is a fork of the one that opened it", sync=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_writers_in_child)

PathLike = Union[str, "os.PathLike[str]"]


class StoreError(Exception):
    """A store is missing, malformed, or does not match what the caller expects."""


@dataclass
class Record:
    """One stored item: an utterance (``id``) and, for n-best lists, the hypothesis ``rank``."""

    id: str
    rank: int
    meta: Dict[str, Any]
    arrays: Dict[str, np.ndarray] = field(repr=False)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.arrays[name]
        except KeyError:
            raise KeyError(
                f"record {self.id!r} (rank {self.rank}) has no array {name!r}; "
                f"it has {sorted(self.arrays)}"
            ) from None


def natural_key(utt_id: str) -> Tuple:
    """Sort key that orders 'utt2' before 'utt10'."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(utt_id)))


def _read_index(path: Path) -> Tuple[List[dict], int]:
    """Parse index.jsonl; return the complete rows and the byte length they occupy.

    A torn last line (a run killed while writing it) is not a record.
    """
    rows: List[dict] = []
    good_bytes = 0
    if not path.exists():
        return rows, 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise StoreError(f"{path}: line {len(rows) + 1} is not valid JSON ({e})") from None
            good_bytes += len(line)
    return rows, good_bytes


class StoreReader:
    """Random access to the records of a store, by utterance id (and rank)."""

    def __init__(self, path: PathLike, expect_kind: Optional[str] = None):
        self.path = Path(path)
        meta_path = self.path / META_FILE
        if not meta_path.exists():
            raise StoreError(f"{self.path} is not a fairseq-xattn store (no {META_FILE})")
        with open(meta_path) as f:
            self.meta: Dict[str, Any] = json.load(f)
        if self.meta.get("format") != FORMAT_NAME:
            raise StoreError(f"{meta_path}: not a {FORMAT_NAME} (format={self.meta.get('format')!r})")
        if self.meta.get("version", 0) > FORMAT_VERSION:
            raise StoreError(
                f"{meta_path}: store version {self.meta['version']} is newer than this "
                f"fairseq-xattn reads ({FORMAT_VERSION}); upgrade fairseq-xattn"
            )
        if expect_kind is not None and self.kind != expect_kind:
            raise StoreError(f"{self.path}: expected a {expect_kind!r} store, found {self.kind!r}")
        self._rows, _ = _read_index(self.path / INDEX_FILE)
        self._by_key: Dict[Tuple[str, int], int] = {}
        for i, row in enumerate(self._rows):
            self._by_key[(str(row["id"]), int(row.get("rank", 0)))] = i
        self._file = None

    # -- store level ---------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.meta.get("kind", "")

    def __len__(self) -> int:
        return len(self._rows)

    def ids(self) -> List[str]:
        """Utterance ids, each once, in write order."""
        seen: Dict[str, None] = {}
        for row in self._rows:
            seen.setdefault(str(row["id"]), None)
        return list(seen)

    def keys(self) -> List[Tuple[str, int]]:
        return [(str(r["id"]), int(r.get("rank", 0))) for r in self._rows]

    def __contains__(self, utt_id: object) -> bool:
        return (str(utt_id), 0) in self._by_key

    # -- records -------------------------------------------------------------------------------
    def row_meta(self, utt_id: str, rank: int = 0) -> Dict[str, Any]:
        """Per-record metadata without reading any array."""
        return dict(self._rows[self._index_of(utt_id, rank)]["meta"])

    def get(self, utt_id: str, rank: int = 0, names: Optional[Sequence[str]] = None,
            mmap: bool = False) -> Record:
        row = self._rows[self._index_of(utt_id, rank)]
        return self._load(row, names, mmap)

    def __getitem__(self, utt_id: str) -> Record:
        return self.get(utt_id)

    def __iter__(self) -> Iterator[Record]:
        for row in self._rows:
            yield self._load(row, None, False)

    def _index_of(self, utt_id: str, rank: int) -> int:
        try:
            return self._by_key[(str(utt_id), int(rank))]
        except KeyError:
            raise KeyError(f"utterance {utt_id!r} (rank {rank}) is not in store {self.path}") from None

    def _load(self, row: dict, names: Optional[Sequence[str]], mmap: bool) -> Record:
        arrays = {}
        wanted = row["arrays"] if names is None else {n: row["arrays"][n] for n in names}
        for name, spec in wanted.items():
            if mmap:
                arrays[name] = self._memmap(spec)
            else:
                f = self._handle()
                f.seek(spec["offset"])
                arrays[name] = np.lib.format.read_array(f)
        return Record(str(row["id"]), int(row.get("rank", 0)), dict(row["meta"]), arrays)

    def _memmap(self, spec: dict) -> np.ndarray:
        f = self._handle()
        f.seek(spec["offset"])
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        return np.memmap(self.path / ARRAYS_FILE, dtype=dtype, mode="r", offset=f.tell(),
                         shape=shape, order="F" if fortran else "C")

    def _handle(self):
        if self._file is None:
            self._file = open(self.path / ARRAYS_FILE, "rb")
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "StoreReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def settings_differences(stored: Mapping[str, Any], new: Mapping[str, Any]) -> List[Tuple[str, Any, Any]]:
    """``(key, stored value, new value)`` for each store-level setting that differs, sorted by key.

    A key that only one side has differs too (its value there is ``"(not recorded)"``): a store
    that did not record a setting cannot be shown to match it.
    """
    stored, new = _jsonable(dict(stored)), _jsonable(dict(new))
    return [(k, stored.get(k, _NOT_RECORDED), new.get(k, _NOT_RECORDED))
            for k in sorted(set(stored) | set(new)) if stored.get(k, _NOT_RECORDED) != new.get(k, _NOT_RECORDED)]


def settings_mismatch_message(path: PathLike, differences: Sequence[Tuple[str, Any, Any]]) -> str:
    """The error for resuming the store at ``path`` with other settings: what differs, what to do."""
    lines = "".join(f"\n  {k}: stored {old!r}, this run {new!r}" for k, old, new in differences)
    return (f"{path}: cannot resume this store, it was written with other settings than this run's, so its "
            f"records would not match this run's output:{lines}\n"
            f"Write to another folder, or delete {path} to start over.")


class StoreWriter:
    """Appends records; reopening an existing store resumes it (``done()`` tells what is there).

    ``meta`` are the store-level settings (what determines the records); resuming a store whose
    settings differ in any key raises :class:`StoreError` naming the keys.  ``float16=True`` stores
    floating arrays in half precision (halves the size; attention rows then sum to 1 within ~1e-3).

    The writer locks the store until :meth:`close` (see the module docstring): another process
    opening it gets a :class:`StoreError`.  Within one process a new writer takes over from an
    earlier one that was not closed (a run interrupted by an exception, then rerun in the same
    interpreter); the earlier writer is closed and its later writes raise.  A process forked while the
    writer is open (a data-loader worker) closes its copy at once and never holds the lock.
    """

    def __init__(self, path: PathLike, kind: str, meta: Optional[Mapping[str, Any]] = None,
                 float16: bool = False, resume: bool = True):
        self.path = Path(path)
        self.kind = kind
        self.float16 = float16
        self._closed_because: Optional[str] = None
        self._arrays = self._index = self._lock_file = None
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()  # before reading anything: another writer may be appending or truncating
        try:
            self._open(meta, resume)
        except BaseException:
            self._closed_because = "it failed to open"
            self._release()
            raise

    def _lock(self) -> None:
        key = os.path.realpath(self.path)
        previous = _OPEN_WRITERS.get(key)
        if previous is not None and not previous.closed:
            logger.warning(f"{self.path}: an earlier writer of this process was not closed; taking over "
                           f"(it flushes what it wrote and cannot write any more)")
            previous._close(f"another StoreWriter of this process opened {self.path}")
        self._lock_file = open(self.path / LOCK_FILE, "a")
        if fcntl is not None:
            try:
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # held by another process
                self._lock_file.close()
                self._lock_file = None
                raise StoreError(
                    f"{self.path} is being written by another process (it holds the lock on "
                    f"{self.path / LOCK_FILE}); two writers would corrupt the store. Give each parallel run "
                    f"(e.g. each fairseq-generate shard) its own folder and join them afterwards with "
                    f"`xattn store merge SHARD_DIR [SHARD_DIR ...] --out MERGED_DIR`."
                ) from None
            except OSError as e:  # a file system without flock (ENOLCK on some NFS mounts): write unlocked
                logger.warning(f"{self.path}: cannot lock the store ({e}); nothing keeps a second writer out")
        _OPEN_WRITERS[key] = self

    def _open(self, meta: Optional[Mapping[str, Any]], resume: bool) -> None:
        meta_path = self.path / META_FILE
        store_meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": self.kind,
                      "float16": self.float16, **dict(meta or {})}
        if meta_path.exists():
            with open(meta_path) as f:
                old = json.load(f)
            if not resume:
                raise StoreError(f"{self.path} already holds a store; remove it or resume it")
            if old.get("kind") != self.kind:
                raise StoreError(f"{self.path} holds a {old.get('kind')!r} store, not {self.kind!r}")
            differences = settings_differences(old, store_meta)
            if differences:
                raise StoreError(settings_mismatch_message(self.path, differences))
        else:
            with open(meta_path, "w") as f:
                json.dump(_jsonable(store_meta), f, indent=1, sort_keys=True)
        self.meta = store_meta
        rows, good_bytes = _read_index(self.path / INDEX_FILE)
        self._done = {(str(r["id"]), int(r.get("rank", 0))) for r in rows}
        end = 0
        for r in rows:
            for spec in r["arrays"].values():
                end = max(end, spec["end"])
        # Drop what a killed run wrote after its last complete record.
        with open(self.path / INDEX_FILE, "ab") as f:
            f.truncate(good_bytes)
        self._arrays = open(self.path / ARRAYS_FILE, "ab")
        self._arrays.truncate(end)
        self._arrays.seek(end)
        self._index = open(self.path / INDEX_FILE, "ab")

    @property
    def closed(self) -> bool:
        return self._closed_because is not None

    def done(self) -> set:
        """Keys ``(id, rank)`` already in the store."""
        return set(self._done)

    def done_ids(self) -> set:
        return {k[0] for k in self._done}

    def write(self, utt_id: str, arrays: Mapping[str, np.ndarray], meta: Optional[Mapping] = None,
              rank: int = 0) -> None:
        if self.closed:
            raise StoreError(f"{self.path}: this writer is closed ({self._closed_because}); "
                             f"utterance {utt_id!r} (rank {rank}) was not written")
        key = (str(utt_id), int(rank))
        if key in self._done:
            raise StoreError(f"{self.path}: utterance {utt_id!r} (rank {rank}) is already stored")
        specs = {}
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            if self.float16 and arr.dtype.kind == "f":
                arr = arr.astype(np.float16)
            pad = (-self._arrays.tell()) % _ALIGN
            if pad:
                self._arrays.write(b"\0" * pad)
            offset = self._arrays.tell()
            np.lib.format.write_array(self._arrays, np.ascontiguousarray(arr), allow_pickle=False)
            specs[name] = {"offset": offset, "end": self._arrays.tell(),
                           "shape": list(arr.shape), "dtype": arr.dtype.str}
        self._arrays.flush()
        row = {"id": str(utt_id), "rank": int(rank), "meta": dict(meta or {}), "arrays": specs}
        try:
            line = json.dumps(row, sort_keys=True)
        except TypeError:  # numpy scalars/arrays in meta: convert (slower, so only when needed)
            row["meta"] = _jsonable(row["meta"])
            line = json.dumps(row, sort_keys=True)
        self._index.write((line + "\n").encode())
        self._index.flush()
        self._done.add(key)

    def close(self) -> None:
        """Flush, sync and unlock (idempotent)."""
        self._close("closed")

    def _close(self, reason: str, sync: bool = True) -> None:
        if self.closed:
            return
        self._closed_because = reason
        try:
            for f in (self._arrays, self._index):
                if f is not None and not f.closed:
                    if sync:  # (a forked copy only drops its descriptors: write() flushed every record)
                        f.flush()
                        os.fsync(f.fileno())
                    f.close()
        finally:
            self._release()

    def _release(self) -> None:
        """Drop the lock (closing the file releases the flock) and the registration."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        key = os.path.realpath(self.path)
        if _OPEN_WRITERS.get(key) is self:
            del _OPEN_WRITERS[key]

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and tuples so that json.dump accepts them, recursively."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def merge_stores(sources: Sequence[PathLike], out: PathLike, order: Optional[Iterable[str]] = None) -> int:
    """Merge shard stores into one, records sorted by ``order`` (ids) or naturally by id.

    All shards must be of the same kind with the same store-level settings (``shard`` keys aside)
    and must not share a key.  Returns the number of records written.
    """
    readers = [StoreReader(p) for p in sources]
    if not readers:
        raise StoreError("merge_stores: no source store given")
    base = {k: v for k, v in readers[0].meta.items() if not k.startswith("shard")}
    for r in readers[1:]:
        other = {k: v for k, v in r.meta.items() if not k.startswith("shard")}
        if other != base:
            diff = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))
            raise StoreError(f"cannot merge {r.path} with {readers[0].path}: settings differ in {diff}")
    where: Dict[Tuple[str, int], StoreReader] = {}
    for r in readers:
        for key in r.keys():
            if key in where:
                raise StoreError(f"utterance {key[0]!r} (rank {key[1]}) is in both {where[key].path} and {r.path}")
            where[key] = r
    if order is not None:
        pos = {str(u): i for i, u in enumerate(order)}
        missing = sorted({k[0] for k in where if k[0] not in pos}, key=natural_key)
        if missing:
            raise StoreError(f"merge order does not list {len(missing)} stored ids, e.g. {missing[:3]}")
        keys = sorted(where, key=lambda k: (pos[k[0]], k[1]))
    else:
        keys = sorted(where, key=lambda k: (natural_key(k[0]), k[1]))
    meta = {k: v for k, v in base.items() if k not in ("format", "version", "kind", "float16")}
    with StoreWriter(out, base["kind"], meta, float16=False, resume=False) as w:
        for key in keys:
            rec = where[key].get(*key)
            w.write(rec.id, rec.arrays, rec.meta, rank=rec.rank)
    w.meta["float16"] = base.get("float16", False)
    with open(Path(out) / META_FILE, "w") as f:
        json.dump(_jsonable({**w.meta}), f, indent=1, sort_keys=True)
    for r in readers:
        r.close()
    return len(keys)
