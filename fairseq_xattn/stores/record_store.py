"""Append-only store of per-utterance arrays, shared by the attention and saliency stores.

Why this format (and not HDF5 or a zip of .npy like fairseq's fbank store):

* **incremental**: records are appended as they are produced, memory does not grow with the test set;
* **crash-safe**: a record's index line is written only after its arrays are flushed, so a killed
  run leaves a readable store of every finished record, and a resumed run truncates the torn tail;
  a zip's central directory, or an HDF5 file's metadata, is lost when the writer is killed;
* **self-verifying**: the index gives each array's byte range and a CRC-32 of its bytes.  Opening a
  store checks that ``arrays.bin`` is as long as the index says (a truncated store is refused, naming
  the first record whose bytes are missing); every read checks the checksum of what it read;
  :meth:`StoreReader.verify` (``xattn store verify``) checks them all.  A resumed writer *repairs*:
  it drops the first damaged record and everything after it (the files stay append-only) and the
  run redoes them -- it never pads a short file;
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
                    "arrays": {name: {"offset": int, "end": int, "crc32": int, "shape": [...], "dtype": str}}}

``[offset, end)`` is the array's ``.npy`` blob in ``arrays.bin``; ``crc32`` is ``zlib.crc32`` of
those bytes (stores written before checksums lack it: they are checked for length and header only).

Reading a record with numpy only::

    import json, numpy as np
    rows = [json.loads(l) for l in open("index.jsonl")]
    with open("arrays.bin", "rb") as f:
        f.seek(rows[0]["arrays"]["attention"]["offset"])
        attention = np.lib.format.read_array(f)
"""
from __future__ import annotations

import errno
import io
import json
import logging
import math
import os
import re
import shutil
import weakref
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX: stores are not locked
    fcntl = None

logger = logging.getLogger(__name__)

FORMAT_NAME = "xattn-store"
FORMAT_VERSION = 1  # checksums are an optional key of version 1: older readers ignore them
META_FILE = "meta.json"
ARRAYS_FILE = "arrays.bin"
INDEX_FILE = "index.jsonl"
LOCK_FILE = ".lock"
CHECKSUM_KEY = "crc32"
_ALIGN = 64
#: errno of a full disk or an exhausted quota
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_NOT_RECORDED = "(not recorded)"
_REPAIR_HINT = ("rerun the command that wrote it: the resumed run drops the damaged records and redoes them "
                "(or delete the store to start over)")

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


class StoreError(UserError):
    """A store is missing, malformed, damaged, or does not match what the caller expects."""


class _Damaged(Exception):
    """Internal: an array's bytes are missing, corrupt or not the array the index describes."""


@dataclass
class Record:
    """One stored item: an utterance (``id``) and, for n-best lists, the hypothesis ``rank``."""

    id: str
    rank: int
    meta: Dict[str, Any]
    arrays: Dict[str, np.ndarray] = field(repr=False)
    store: Optional[str] = field(default=None, repr=False, compare=False)  # path, for messages

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.arrays[name]
        except KeyError:
            where = f" of store {self.store}" if self.store else ""
            raise KeyError(
                f"record {self.id!r} (rank {self.rank}){where} has no array {name!r}; "
                f"it has {sorted(self.arrays)}"
            ) from None


def natural_key(utt_id: str) -> Tuple:
    """Sort key that orders 'utt2' before 'utt10'."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(utt_id)))


def _record_name(row: dict, k: int, n: int) -> str:
    return f"record {k + 1} of {n} (utterance {str(row.get('id'))!r}, rank {int(row.get('rank', 0))})"


def _read_index(path: Path, repair: bool = False) -> Tuple[List[dict], List[int], Optional[str]]:
    """Parse index.jsonl: the complete rows, the byte offset where each row's line ends, and (with
    ``repair``) why parsing stopped early (a damaged line; None when it did not).

    A torn last line (a run killed while writing it) is not a record.  A complete line that is not a
    record is damage: an error, or with ``repair`` the end of what is kept.
    """
    rows: List[dict] = []
    ends: List[int] = []
    if not path.exists():
        return rows, ends, None
    position = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("arrays"), dict):
                    raise ValueError("not a record (needs 'id' and 'arrays')")
            except ValueError as e:  # (json.JSONDecodeError is a ValueError)
                problem = f"{path}: line {len(rows) + 1} is not a valid record ({e})"
                if repair:
                    return rows, ends, problem
                raise StoreError(f"{problem}; {_REPAIR_HINT}") from None
            position += len(line)
            rows.append(row)
            ends.append(position)
    return rows, ends, None


def _row_end(row: dict) -> int:
    """Where the row's last array ends in arrays.bin (stores of every version record ``end``)."""
    return max((int(spec["end"]) for spec in row["arrays"].values()), default=0)


def _npy_header(fp) -> Tuple[Tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of the ``.npy`` blob at the position of ``fp``."""
    version = np.lib.format.read_magic(fp)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    return read_header(fp)


def _npy_data_start(blob) -> int:
    """Length of the magic + header of the ``.npy`` bytes ``blob`` (where the data begins)."""
    if bytes(blob[:6]) != b"\x93NUMPY" or len(blob) < 12:
        raise _Damaged("not a .npy blob (bad magic bytes)")
    if blob[6] == 1:
        return 10 + int.from_bytes(bytes(blob[8:10]), "little")
    return 12 + int.from_bytes(bytes(blob[8:12]), "little")


def _array_from_blob(blob: bytearray, spec: dict) -> np.ndarray:
    """The array of the ``.npy`` bytes ``blob`` (no copy: the array is a view of ``blob``), checked
    against the index's shape and dtype."""
    start = _npy_data_start(blob)
    try:
        shape, fortran, dtype = _npy_header(io.BytesIO(bytes(blob[:start])))
    except ValueError as e:
        raise _Damaged(f"unreadable .npy header ({e})") from None
    if dtype.hasobject:
        raise _Damaged("holds Python objects (stores hold plain numbers only)")
    count = math.prod(shape)
    if start + count * dtype.itemsize != len(blob):
        raise _Damaged(f"{len(blob)} bytes do not hold a {'x'.join(map(str, shape))} {dtype} array")
    if list(shape) != list(spec.get("shape", shape)) or dtype.str != spec.get("dtype", dtype.str):
        raise _Damaged(f"holds a {list(shape)} {dtype.str} array, the index says {spec.get('shape')} "
                       f"{spec.get('dtype')}")
    array = np.frombuffer(blob, dtype=dtype, count=count, offset=start)
    return array.reshape(shape, order="F" if fortran else "C")


def _read_blob(f, spec: dict) -> bytearray:
    """The bytes ``[offset, end)`` of the open arrays file ``f``, checked against the checksum."""
    offset, end = int(spec["offset"]), int(spec["end"])
    blob = bytearray(end - offset)
    f.seek(offset)
    got = f.readinto(blob)
    if got < len(blob):
        raise _Damaged(f"bytes {offset}-{end} of {ARRAYS_FILE} are missing (the file ends at byte {offset + got})")
    expected = spec.get(CHECKSUM_KEY)
    if expected is not None and zlib.crc32(blob) != int(expected):
        raise _Damaged(f"bytes {offset}-{end} of {ARRAYS_FILE} do not match their checksum (corrupt)")
    return blob


def _check_row(f, row: dict) -> None:
    """Raise :class:`_Damaged` (naming the array) unless every array of ``row`` reads back intact."""
    for name, spec in row["arrays"].items():
        try:
            _array_from_blob(_read_blob(f, spec), spec)
        except _Damaged as e:
            raise _Damaged(f"array {name!r}: {e}") from None


@dataclass
class VerifyReport:
    """What :meth:`StoreReader.verify` checked."""

    records: int
    arrays: int
    checksummed: int  # arrays checked against their CRC-32; the others (older stores) for length and header
    bytes: int


class StoreReader:
    """Random access to the records of a store, by utterance id (and rank).

    Opening checks that ``arrays.bin`` holds every byte the index points to (a length check, no
    reading); each read checks the checksum of the bytes it read.  Errors name the store and the
    utterance.
    """

    def __init__(self, path: PathLike, expect_kind: Optional[str] = None):
        self.path = Path(path)
        meta_path = self.path / META_FILE
        if not self.path.exists():
            raise StoreError(f"store not found: {self.path}")
        if not meta_path.exists():
            raise StoreError(f"{self.path} is not a fairseq-xattn store (no {META_FILE})")
        try:
            with open(meta_path) as f:
                self.meta: Dict[str, Any] = json.load(f)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise StoreError(f"{meta_path}: not valid JSON ({e})") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT_NAME:
            found = self.meta.get("format") if isinstance(self.meta, dict) else type(self.meta).__name__
            raise StoreError(f"{meta_path}: not a {FORMAT_NAME} (format={found!r})")
        if self.meta.get("version", 0) > FORMAT_VERSION:
            raise StoreError(
                f"{meta_path}: store version {self.meta['version']} is newer than this "
                f"fairseq-xattn reads ({FORMAT_VERSION}); upgrade fairseq-xattn"
            )
        if expect_kind is not None and self.kind != expect_kind:
            raise StoreError(f"{self.path}: expected a {expect_kind!r} store, found {self.kind!r}")
        self._rows, _, _ = _read_index(self.path / INDEX_FILE)
        self._check_length()
        self._by_key: Dict[Tuple[str, int], int] = {}
        for i, row in enumerate(self._rows):
            self._by_key[(str(row["id"]), int(row.get("rank", 0)))] = i
        self._file = None

    def _check_length(self) -> None:
        """Refuse a store whose arrays.bin is shorter than the index says (O(1) in the file size)."""
        arrays_path = self.path / ARRAYS_FILE
        size = arrays_path.stat().st_size if arrays_path.exists() else 0
        for k, row in enumerate(self._rows):
            end = _row_end(row)
            if end > size:
                raise StoreError(
                    f"{self.path}: truncated store: {ARRAYS_FILE} has {size} bytes but "
                    f"{_record_name(row, k, len(self._rows))} needs bytes up to {end}; only the {k} record(s) "
                    f"before it are complete; {_REPAIR_HINT}")

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

    def verify(self) -> VerifyReport:
        """Read every array and check its checksum, header and size; :class:`StoreError` names the first
        damaged record."""
        arrays = checksummed = n_bytes = 0
        f = self._handle()
        for k, row in enumerate(self._rows):
            try:
                _check_row(f, row)
            except _Damaged as e:
                raise StoreError(f"{self.path}: {_record_name(row, k, len(self._rows))} is damaged: {e}; "
                                 f"the {k} record(s) before it are intact; {_REPAIR_HINT}") from None
            for spec in row["arrays"].values():
                arrays += 1
                checksummed += CHECKSUM_KEY in spec
                n_bytes += int(spec["end"]) - int(spec["offset"])
        return VerifyReport(len(self._rows), arrays, checksummed, n_bytes)

    # -- records -------------------------------------------------------------------------------
    def row_meta(self, utt_id: str, rank: int = 0) -> Dict[str, Any]:
        """Per-record metadata without reading any array."""
        return dict(self._rows[self._index_of(utt_id, rank)]["meta"])

    def get(self, utt_id: str, rank: int = 0, names: Optional[Sequence[str]] = None,
            mmap: bool = False) -> Record:
        """The record; ``names``: only these arrays; ``mmap``: memory-mapped arrays (read lazily, so
        their checksums are not checked -- :meth:`verify` does)."""
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
        utt_id, rank = str(row["id"]), int(row.get("rank", 0))
        if names is None:
            wanted = row["arrays"]
        else:
            unknown = [n for n in names if n not in row["arrays"]]
            if unknown:
                raise KeyError(f"record {utt_id!r} (rank {rank}) of store {self.path} has no array(s) {unknown}; "
                               f"it has {sorted(row['arrays'])}")
            wanted = {n: row["arrays"][n] for n in names}
        arrays = {}
        for name, spec in wanted.items():
            try:
                if mmap:
                    arrays[name] = self._memmap(spec)
                else:
                    arrays[name] = _array_from_blob(_read_blob(self._handle(), spec), spec)
            except (_Damaged, ValueError, OSError) as e:  # (numpy raises ValueError on a bad header)
                raise StoreError(f"{self.path}: utterance {utt_id!r} (rank {rank}): cannot read array {name!r}: "
                                 f"{e}; `xattn store verify {self.path}` checks the whole store") from None
        return Record(utt_id, rank, dict(row["meta"]), arrays, store=str(self.path))

    def _memmap(self, spec: dict) -> np.ndarray:
        f = self._handle()
        f.seek(spec["offset"])
        shape, fortran, dtype = _npy_header(f)
        return np.memmap(self.path / ARRAYS_FILE, dtype=dtype, mode="r", offset=f.tell(),
                         shape=tuple(shape), order="F" if fortran else "C")

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

    Resuming checks every stored record (length, checksum, header): the first damaged one and all
    after it are dropped (logged, and listed in :attr:`dropped`), so the run redoes them.  This reads
    the whole store once (CRC-32 runs at about 2 GB/s).

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
        self.dropped: List[Tuple[str, int]] = []  # keys a resume dropped as damaged (to be redone)
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
            try:
                with open(meta_path) as f:
                    old = json.load(f)
            except ValueError as e:
                raise StoreError(f"{meta_path}: not valid JSON ({e}); delete {self.path} to start over") from None
            if not resume:
                raise StoreError(f"{self.path} already holds a store; remove it or resume it")
            if old.get("kind") != self.kind:
                raise StoreError(f"{self.path} holds a {old.get('kind')!r} store, not {self.kind!r}")
            differences = settings_differences(old, store_meta)
            if differences and _read_index(self.path / INDEX_FILE)[0]:
                raise StoreError(settings_mismatch_message(self.path, differences))
            if differences:  # a refused or failed run left no record: nothing to keep, the new run owns it
                logger.info(f"{self.path}: empty store of another run's settings ({[d[0] for d in differences]}); "
                            "starting it anew")
                with open(meta_path, "w") as f:
                    json.dump(_jsonable(store_meta), f, indent=1, sort_keys=True)
        else:
            with open(meta_path, "w") as f:
                json.dump(_jsonable(store_meta), f, indent=1, sort_keys=True)
        self.meta = store_meta
        rows, keep_bytes = self._repair()
        self._done = {(str(r["id"]), int(r.get("rank", 0))) for r in rows}
        end = max((_row_end(r) for r in rows), default=0)
        # Drop what a killed run wrote after its last complete record, and the damaged records.
        with open(self.path / INDEX_FILE, "ab") as f:
            f.truncate(keep_bytes)
        self._arrays = open(self.path / ARRAYS_FILE, "ab")
        size = self._arrays.seek(0, os.SEEK_END)
        assert size >= end, "the repair kept a record whose bytes are missing"  # truncate() would pad with zeros
        self._arrays.truncate(end)
        self._arrays.seek(end)
        self._index = open(self.path / INDEX_FILE, "ab")

    def _repair(self) -> Tuple[List[dict], int]:
        """The intact records (up to the first damaged one) and the index bytes they occupy."""
        rows, ends, problem = _read_index(self.path / INDEX_FILE, repair=True)
        n_lines = len(rows) + (problem is not None)
        kept = len(rows)
        arrays_path = self.path / ARRAYS_FILE
        with (open(arrays_path, "rb") if arrays_path.exists() else io.BytesIO()) as f:
            for k, row in enumerate(rows):
                try:
                    _check_row(f, row)
                except _Damaged as e:
                    problem, kept = f"{_record_name(row, k, n_lines)} is damaged: {e}", k
                    break
        if problem is not None:
            self.dropped = [(str(r["id"]), int(r.get("rank", 0))) for r in rows[kept:]]
            logger.warning(f"{self.path}: repairing the store: {problem}; dropping it and everything after it "
                           f"({len(self.dropped)} record(s); the first {kept} are kept); this run redoes them")
        return rows[:kept], (ends[kept - 1] if kept else 0)

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
        try:
            self._append(key, arrays, meta)
        except OSError as e:
            if e.errno not in _DISK_FULL:
                raise
            # The record's index line is written last, so the store ends with its last complete record;
            # a resumed writer drops the bytes written after it.  Close without a sync (it needs space).
            for f in (self._arrays, self._index):
                try:
                    f.close()
                except OSError:
                    pass
            self._close(f"no space left while writing utterance {utt_id!r}", sync=False)
            raise StoreError(
                f"{self.path}: no space left on the device while writing utterance {utt_id!r} (rank {rank}): "
                f"the store is consistent, with the {len(self._done)} records written before it; free some space "
                f"and run the same command again to resume (the partly written record is redone)") from None

    def _append(self, key: Tuple[str, int], arrays: Mapping[str, np.ndarray], meta: Optional[Mapping]) -> None:
        utt_id, rank = key
        specs = {}
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            if self.float16 and arr.dtype.kind == "f":
                arr = arr.astype(np.float16)
            buffer = io.BytesIO()  # the same bytes write_array would write to the file, checksummed on the way
            np.lib.format.write_array(buffer, np.ascontiguousarray(arr), allow_pickle=False)
            blob = buffer.getbuffer()
            pad = (-self._arrays.tell()) % _ALIGN
            if pad:
                self._arrays.write(b"\0" * pad)
            offset = self._arrays.tell()
            self._arrays.write(blob)
            specs[name] = {"offset": offset, "end": offset + len(blob), CHECKSUM_KEY: zlib.crc32(blob),
                           "shape": list(arr.shape), "dtype": arr.dtype.str}
            del blob
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


_SHARD_NAME = re.compile(r"^(?P<stem>.*)\.shard(?P<id>\d+)-of-(?P<count>\d+)$")


def check_shards(readers: Sequence[StoreReader], allow_missing: bool = False) -> List[int]:
    """Check that the shard stores among ``readers`` (meta ``shard_id``, ``shard_count``) form a complete
    set, each shard once; returns the missing shard ids (only possible with ``allow_missing``).  Stores
    without shard meta are not checked; without ``shard_count`` completeness cannot be checked."""
    shards = [r for r in readers if "shard_id" in r.meta]
    owner: Dict[int, StoreReader] = {}
    for r in shards:
        shard_id = int(r.meta["shard_id"])
        if shard_id in owner:
            raise StoreError(f"shard id {shard_id} is given twice: {owner[shard_id].path} and {r.path}")
        owner[shard_id] = r
    counted = [r for r in shards if "shard_count" in r.meta]
    if not counted:
        return []
    counts = {int(r.meta["shard_count"]) for r in counted}
    if len(counts) != 1 or len(counted) != len(readers):
        listed = ", ".join(f"{r.path}: shard {r.meta.get('shard_id', '-')} of {r.meta.get('shard_count', '-')}"
                           for r in readers)
        raise StoreError(f"cannot merge shards of runs with different shard counts ({listed})")
    count = counts.pop()
    missing = sorted(set(range(count)) - set(owner))
    if missing and not allow_missing:
        match = _SHARD_NAME.match(counted[0].path.name)
        hint = ""
        if match:
            expected = [str(counted[0].path.with_name(f"{match['stem']}.shard{i}-of-{count}")) for i in missing]
            hint = f" (expected e.g. {', '.join(expected[:3])})"
        raise StoreError(f"incomplete set of shards: the run had {count} shards (meta shard_count), given shard "
                         f"id(s) {sorted(owner)}, missing shard id(s) {missing}{hint}; pass every shard, or "
                         f"--allow-missing-shards to merge only these")
    return missing


#: Store-level meta keys that say which part of a run a store holds, not how its records were made:
#: ``shard_*`` (``--num-shards/--shard-id`` jobs) and ``part_*`` (the processes of one torchrun job).
_PARTITION_PREFIXES = ("shard", "part_")


def is_partition_key(key: str) -> bool:
    """Whether a store-level meta key names the part of the data a store holds (ignored when stores of
    one run are compared or merged)."""
    return key.startswith(_PARTITION_PREFIXES)


#: Store-level meta keys that describe the store file, not the run that wrote it.
FILE_KEYS = ("format", "version", "kind", "float16", "missing_shards")


def run_settings(meta: Mapping[str, Any]) -> Dict[str, Any]:
    """A store's settings without its file and partition keys: equal for every part of one run."""
    return {k: v for k, v in meta.items() if k not in FILE_KEYS and not is_partition_key(k)}


def merge_stores(sources: Sequence[PathLike], out: PathLike, order: Optional[Iterable[str]] = None,
                 allow_missing_shards: bool = False, meta_update: Optional[Mapping[str, Any]] = None,
                 replace: bool = False) -> int:
    """Merge shard stores into one, records sorted by ``order`` (ids) or naturally by id.

    All shards must be of the same kind with the same store-level settings (partition keys
    ``shard_*``/``part_*`` aside), must not share a key, and (when their meta records
    ``shard_id``/``shard_count``) must be the complete set unless ``allow_missing_shards`` (the merged
    meta then lists ``missing_shards``).  Every record is checked (checksum) while it is copied.
    ``meta_update`` adds store-level keys to the merged meta (e.g. the partition it holds).

    The merged store is written beside ``out`` and moved in place when complete, so a failed merge
    leaves ``out`` as it was; an existing ``out`` is replaced only with ``replace`` (it may then be one
    of the sources).  Returns the number of records written.
    """
    if not sources:
        raise StoreError("merge_stores: no source store given")
    out = Path(out)
    if (out / META_FILE).exists() and not replace:
        raise StoreError(f"{out} already holds a store; remove it or choose another output directory")
    staging = out.with_name(f".{out.name}.merging")
    if staging.exists():  # left by a merge that was killed
        shutil.rmtree(staging)
    readers = [StoreReader(p) for p in sources]
    try:
        base = {k: v for k, v in readers[0].meta.items() if not is_partition_key(k)}
        for r in readers[1:]:
            other = {k: v for k, v in r.meta.items() if not is_partition_key(k)}
            if other != base:
                diff = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))
                raise StoreError(f"cannot merge {r.path} with {readers[0].path}: settings differ in {diff}")
        missing_shards = check_shards(readers, allow_missing_shards)
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
        meta = run_settings(base)
        if missing_shards:
            meta["missing_shards"] = missing_shards
        meta.update(meta_update or {})
        with StoreWriter(staging, base["kind"], meta, float16=False, resume=False) as w:
            for key in keys:
                rec = where[key].get(*key)
                w.write(rec.id, rec.arrays, rec.meta, rank=rec.rank)
        w.meta["float16"] = base.get("float16", False)
        with open(staging / META_FILE, "w") as f:
            json.dump(_jsonable({**w.meta}), f, indent=1, sort_keys=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        for r in readers:
            r.close()
    _move_into_place(staging, out)
    return len(keys)


def _move_into_place(staging: Path, out: Path) -> None:
    """Replace ``out`` (if any) by the finished store in ``staging``: two renames, so ``out`` is at every
    moment either the old store or the new one (or, between them, absent with the old one beside it)."""
    old = out.with_name(f".{out.name}.replaced")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
