"""Stores that verify themselves: byte ranges and CRC-32 in the index, truncated and corrupt stores
refused (naming the store and the first bad record), resumed writers repair by dropping and redoing,
never by padding; shard sets checked on merge; empty stores work."""
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest

from fairseq_xattn.errors import UserError
from fairseq_xattn.stores import StoreError, StoreReader, StoreWriter, merge_stores
from fairseq_xattn.stores.record_store import ARRAYS_FILE, INDEX_FILE

N = 8


def _arrays(i):
    rng = np.random.default_rng(i)
    return {"attention": rng.random((2, 3, 3 + i, 4 + i)).astype(np.float32),
            "extra": np.arange(i + 1, dtype=np.int64)}


def _meta(i):
    return {"tokens": list(range(i + 2)), "text": f"sentence {i}"}


def _write(path, ids=range(N), meta=None):
    with StoreWriter(path, "cross_attention", meta or {"model_sha256": "abc"}) as w:
        for i in ids:
            w.write(f"utt{i}", _arrays(i), _meta(i))
    return path


def _rows(path):
    return [json.loads(line) for line in (path / INDEX_FILE).read_text().splitlines()]


def _files(path):
    return {name: (path / name).read_bytes() for name in (ARRAYS_FILE, INDEX_FILE)}


@pytest.fixture
def finished(tmp_path):
    """A finished store of N records and a pristine copy of its files."""
    store = _write(tmp_path / "finished")
    return store, _files(store)


def test_index_records_each_arrays_byte_range_and_crc32_of_those_bytes(finished):
    store, files = finished
    blob = files[ARRAYS_FILE]
    for row in _rows(store):
        for name, spec in row["arrays"].items():
            piece = blob[spec["offset"]:spec["end"]]
            assert piece[:6] == b"\x93NUMPY"
            assert spec["crc32"] == zlib.crc32(piece)
            i = int(row["id"][3:])
            np.testing.assert_array_equal(np.load(io.BytesIO(piece)), _arrays(i)[name])
    report = StoreReader(store).verify()
    assert (report.records, report.arrays, report.checksummed) == (N, 2 * N, 2 * N)
    assert report.bytes == sum(s["end"] - s["offset"] for r in _rows(store) for s in r["arrays"].values())


def test_truncated_store_is_refused_for_reading_and_repaired_by_a_resumed_writer(finished, tmp_path, caplog):
    # the repro of issue 18, point 1: copy a finished store, truncate arrays.bin to half, reopen
    original, files = finished
    store = tmp_path / "copy"
    shutil.copytree(original, store)
    half = len(files[ARRAYS_FILE]) // 2
    os.truncate(store / ARRAYS_FILE, half)
    rows = _rows(store)
    first_missing = next(k for k, r in enumerate(rows) if max(s["end"] for s in r["arrays"].values()) > half)
    assert 0 < first_missing < N
    bad_id = rows[first_missing]["id"]

    with pytest.raises(StoreError) as e:
        StoreReader(store)
    message = str(e.value)
    assert message.startswith(f"{store}: truncated store: arrays.bin has {half} bytes but record "
                              f"{first_missing + 1} of {N} (utterance {bad_id!r}, rank 0) needs bytes up to ")
    assert f"only the {first_missing} record(s) before it are complete" in message and "\n" not in message
    assert isinstance(e.value, UserError)

    with caplog.at_level(logging.WARNING, logger="fairseq_xattn.stores.record_store"):
        writer = StoreWriter(store, "cross_attention", {"model_sha256": "abc"})
    expected_kept = {f"utt{i}" for i in range(first_missing)}
    assert writer.done_ids() == expected_kept
    assert writer.dropped == [(f"utt{i}", 0) for i in range(first_missing, N)]
    assert f"record {first_missing + 1} of {N} (utterance {bad_id!r}, rank 0) is damaged" in caplog.text
    assert "this run redoes them" in caplog.text
    # no zero padding: the file now ends where the last intact record ends (shorter than before)
    kept_end = max(s["end"] for r in rows[:first_missing] for s in r["arrays"].values())
    assert (store / ARRAYS_FILE).stat().st_size == kept_end < half
    for i in range(N):  # the run redoes the dropped records
        if f"utt{i}" not in writer.done_ids():
            writer.write(f"utt{i}", _arrays(i), _meta(i))
    writer.close()
    # ... and the repaired store is byte-identical to the uninterrupted one
    assert _files(store) == files
    assert StoreReader(store).verify().records == N


def test_a_flipped_byte_is_caught_by_verify_by_the_read_and_by_the_resumed_writer(finished, tmp_path):
    original, files = finished
    store = tmp_path / "copy"
    shutil.copytree(original, store)
    rows = _rows(store)
    k = 5
    spec = rows[k]["arrays"]["attention"]
    data = bytearray(files[ARRAYS_FILE])
    where = spec["end"] - 7  # inside the array data, past the npy header
    data[where] ^= 0x01
    (store / ARRAYS_FILE).write_bytes(bytes(data))

    reader = StoreReader(store)  # the length is right: opening succeeds
    for i in range(N):
        if i != k:
            np.testing.assert_array_equal(reader[f"utt{i}"]["attention"], _arrays(i)["attention"])
    with pytest.raises(StoreError) as e:
        reader[f"utt{k}"]
    assert str(e.value) == (
        f"{store}: utterance 'utt{k}' (rank 0): cannot read array 'attention': bytes {spec['offset']}-{spec['end']} "
        f"of arrays.bin do not match their checksum (corrupt); `xattn store verify {store}` checks the whole store")
    with pytest.raises(StoreError, match=rf"^{store}: record {k + 1} of {N} \(utterance 'utt{k}', rank 0\) is damaged: "
                                         rf"array 'attention': bytes {spec['offset']}-{spec['end']} of arrays.bin do "
                                         rf"not match their checksum \(corrupt\); the {k} record\(s\) before it are intact"):
        reader.verify()
    # the memory-mapped read does not checksum (it reads lazily) but sees the flipped value
    mapped = reader.get(f"utt{k}", mmap=True)["attention"]
    assert (np.asarray(mapped) != _arrays(k)["attention"]).sum() == 1

    with StoreWriter(store, "cross_attention", {"model_sha256": "abc"}) as w:
        assert w.done_ids() == {f"utt{i}" for i in range(k)}
        assert w.dropped == [(f"utt{i}", 0) for i in range(k, N)]
        for i in range(k, N):
            w.write(f"utt{i}", _arrays(i), _meta(i))
    assert _files(store) == files


def test_a_damaged_index_line_is_refused_and_repaired(finished, tmp_path):
    original, files = finished
    store = tmp_path / "copy"
    shutil.copytree(original, store)
    lines = (store / INDEX_FILE).read_text().splitlines(keepends=True)
    lines[3] = "{not json\n"
    (store / INDEX_FILE).write_text("".join(lines))
    with pytest.raises(StoreError, match=rf"^{store / INDEX_FILE}: line 4 is not a valid record"):
        StoreReader(store)
    with StoreWriter(store, "cross_attention", {"model_sha256": "abc"}) as w:
        assert w.done_ids() == {"utt0", "utt1", "utt2"}
        for i in range(3, N):
            w.write(f"utt{i}", _arrays(i), _meta(i))
    assert _files(store) == files


def test_a_store_written_before_checksums_still_reads_and_is_length_checked(finished, tmp_path):
    original, files = finished
    store = tmp_path / "old"
    shutil.copytree(original, store)
    rows = _rows(store)
    for row in rows:
        for spec in row["arrays"].values():
            del spec["crc32"]
    (store / INDEX_FILE).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    reader = StoreReader(store)
    np.testing.assert_array_equal(reader["utt3"]["attention"], _arrays(3)["attention"])
    report = reader.verify()
    assert (report.records, report.arrays, report.checksummed) == (N, 2 * N, 0)
    # a damaged header is still caught without a checksum
    data = bytearray(files[ARRAYS_FILE])
    data[rows[2]["arrays"]["extra"]["offset"]] = ord("X")
    (store / ARRAYS_FILE).write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"record 3 of 8 \(utterance 'utt2', rank 0\) is damaged: array 'extra': "
                                         r"not a \.npy blob"):
        StoreReader(store).verify()
    os.truncate(store / ARRAYS_FILE, 100)
    with pytest.raises(StoreError, match=r"truncated store: arrays.bin has 100 bytes but record 1 of 8 "):
        StoreReader(store)


def test_reader_errors_name_the_store_and_the_utterance(finished):
    store, _ = finished
    reader = StoreReader(store)
    with pytest.raises(KeyError, match=rf"utterance 'nope' \(rank 0\) is not in store {store}"):
        reader.get("nope")
    with pytest.raises(KeyError, match=rf"record 'utt1' \(rank 0\) of store {store} has no array\(s\) \['saliency'\]"):
        reader.get("utt1", names=["saliency"])
    with pytest.raises(KeyError, match=rf"record 'utt1' \(rank 0\) of store {store} has no array 'saliency'"):
        reader["utt1"]["saliency"]
    (store / "meta.json").write_text("{broken")
    with pytest.raises(StoreError, match=rf"^{store / 'meta.json'}: not valid JSON"):
        StoreReader(store)
    with pytest.raises(StoreError, match=rf"^store not found: {store}-missing$"):
        StoreReader(f"{store}-missing")


def _shards(tmp_path, count, present):
    paths = []
    for shard in present:
        path = tmp_path / f"sal.shard{shard}-of-{count}"
        with StoreWriter(path, "saliency", {"masks": 5, "shard_id": shard, "shard_count": count}) as w:
            for i in range(shard, 9, count):  # utterances are dealt round-robin
                w.write(f"u{i}", _arrays(i))
        paths.append(path)
    return paths


def test_merging_an_incomplete_set_of_shards_names_the_missing_ones(tmp_path):
    paths = _shards(tmp_path, 3, [0, 2])
    with pytest.raises(StoreError) as e:
        merge_stores(paths, tmp_path / "merged")
    assert str(e.value) == (
        f"incomplete set of shards: the run had 3 shards (meta shard_count), given shard id(s) [0, 2], missing "
        f"shard id(s) [1] (expected e.g. {tmp_path / 'sal.shard1-of-3'}); pass every shard, or "
        f"--allow-missing-shards to merge only these")
    assert not (tmp_path / "merged").exists()
    assert merge_stores(paths, tmp_path / "partial", allow_missing_shards=True) == 6
    partial = StoreReader(tmp_path / "partial")
    assert partial.meta["missing_shards"] == [1] and partial.ids() == ["u0", "u2", "u3", "u5", "u6", "u8"]
    paths += _shards(tmp_path, 3, [1])
    assert merge_stores(paths, tmp_path / "full") == 9
    assert "missing_shards" not in StoreReader(tmp_path / "full").meta
    other = tmp_path / "other.shard1-of-4"
    StoreWriter(other, "saliency", {"masks": 5, "shard_id": 1, "shard_count": 4}).close()
    with pytest.raises(StoreError, match=r"different shard counts .*shard 0 of 3.*shard 1 of 4"):
        merge_stores([paths[0], other], tmp_path / "mixed")


def test_empty_stores_read_verify_and_merge(tmp_path):
    StoreWriter(tmp_path / "empty", "saliency", {"masks": 5}).close()
    reader = StoreReader(tmp_path / "empty")
    assert len(reader) == 0 and reader.ids() == [] and list(reader) == []
    assert reader.verify().records == 0
    with StoreWriter(tmp_path / "full", "saliency", {"masks": 5}) as w:
        w.write("u1", _arrays(1))
    assert merge_stores([tmp_path / "empty"], tmp_path / "m0") == 0
    assert len(StoreReader(tmp_path / "m0")) == 0
    assert merge_stores([tmp_path / "empty", tmp_path / "full"], tmp_path / "m1") == 1
    np.testing.assert_array_equal(StoreReader(tmp_path / "m1")["u1"]["attention"], _arrays(1)["attention"])


def _xattn(*args):
    return subprocess.run([sys.executable, "-m", "fairseq_xattn.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_store_cli_user_errors_are_one_line_with_exit_status_2(finished, tmp_path):
    original, files = finished
    ok = _xattn("store", "verify", original)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == (f"{original}: OK, {N} records, {2 * N} arrays, "
                                 f"{sum(s['end'] - s['offset'] for r in _rows(original) for s in r['arrays'].values())} "
                                 f"bytes, {2 * N} checksums match")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(original, corrupt)
    data = bytearray(files[ARRAYS_FILE])
    data[-3] ^= 0xFF  # in the last record's last array
    (corrupt / ARRAYS_FILE).write_bytes(bytes(data))
    truncated = tmp_path / "truncated"
    shutil.copytree(original, truncated)
    os.truncate(truncated / ARRAYS_FILE, 10)
    shards = _shards(tmp_path, 2, [1])
    cases = [
        (("store", "verify", corrupt), rf"xattn store: error: {corrupt}: record {N} of {N} \(utterance 'utt{N - 1}', "
                                       r"rank 0\) is damaged: array 'extra': .* do not match their checksum"),
        (("store", "info", truncated), rf"xattn store: error: {truncated}: truncated store: arrays.bin has 10 bytes "
                                       r"but record 1 of 8 \(utterance 'utt0', rank 0\)"),
        (("store", "verify", tmp_path / "nothing"), rf"xattn store: error: store not found: {tmp_path / 'nothing'}$"),
        (("store", "merge", *shards, "--out", tmp_path / "m"),
         r"xattn store: error: incomplete set of shards: .* missing shard id\(s\) \[0\]"),
        (("store", "merge", original, "--out", original), rf"xattn store: error: --out {original} already exists"),
        (("store", "export", original, "--out", tmp_path / "x", "--ids", "utt1", "zzz"),
         rf"xattn store: error: --ids: 1 of the requested ids are not in {original}: \['zzz'\]$"),
    ]
    for args, pattern in cases:
        result = _xattn(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert re.match(pattern, result.stderr.strip()), (pattern, result.stderr)
    assert not (tmp_path / "x").exists()
    assert _files(original) == files  # nothing above touched the good store


class _DiskFillingFile:
    """A store file on a disk with ``room`` bytes left: writes beyond it store what fits, then fail as
    a full disk does (ENOSPC)."""

    def __init__(self, f, room: int):
        self._f, self.room = f, room

    def write(self, data):
        data = bytes(data)
        if len(data) > self.room:
            self._f.write(data[: self.room])
            self._f.flush()
            self.room = 0
            raise OSError(28, "No space left on device")
        self.room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)


@pytest.mark.parametrize("full_while_writing", ["arrays", "index line"])
def test_a_full_disk_is_named_and_leaves_a_consistent_store_that_resumes(finished, tmp_path, full_while_writing):
    store = tmp_path / "store"
    w = StoreWriter(store, "cross_attention", {"model_sha256": "abc"})
    for i in range(3):
        w.write(f"utt{i}", _arrays(i), _meta(i))
    if full_while_writing == "arrays":
        w._arrays = _DiskFillingFile(w._arrays, room=100)  # part of utt3's first array fits
    else:
        w._index = _DiskFillingFile(w._index, room=20)  # the arrays fit, half an index line does not
    with pytest.raises(StoreError) as e:
        w.write("utt3", _arrays(3), _meta(3))
    assert str(e.value) == (
        f"{store}: no space left on the device while writing utterance 'utt3' (rank 0): the store is consistent, "
        "with the 3 records written before it; free some space and run the same command again to resume (the "
        "partly written record is redone)")
    assert isinstance(e.value, UserError)  # one line, exit status 2 from the commands
    with pytest.raises(StoreError, match="closed"):
        w.write("utt4", _arrays(4), _meta(4))
    with StoreReader(store) as reader:  # consistent: the records before it read and verify
        assert reader.ids() == ["utt0", "utt1", "utt2"] and reader.verify().records == 3
    with StoreWriter(store, "cross_attention", {"model_sha256": "abc"}) as resumed:  # space freed: resume
        assert resumed.done_ids() == {"utt0", "utt1", "utt2"}
        for i in range(3, N):
            resumed.write(f"utt{i}", _arrays(i), _meta(i))
    assert _files(store) == finished[1]  # as if the disk had never been full
