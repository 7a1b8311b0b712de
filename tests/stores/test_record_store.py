"""The append-only store: random access, numpy-only reading, crash safety, resume, merge, locking."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fairseq_xattn.stores import StoreError, StoreReader, StoreWriter, merge_stores, open_store


def _arrays(i):
    rng = np.random.default_rng(i)
    return {"attention": rng.random((2, 3, 4 + i, 5 + i)).astype(np.float32)}


def test_random_access_and_memmap_equal_what_was_written(tmp_path):
    with StoreWriter(tmp_path / "s", "cross_attention", {"model": "m"}) as w:
        for i in range(5):
            w.write(f"utt{i}", _arrays(i), {"tokens": list(range(i + 1))})
    r = open_store(tmp_path / "s", kind="cross_attention")
    assert r.ids() == [f"utt{i}" for i in range(5)] and len(r) == 5
    for i in (3, 0, 4):
        np.testing.assert_array_equal(r[f"utt{i}"]["attention"], _arrays(i)["attention"])
        np.testing.assert_array_equal(r.get(f"utt{i}", mmap=True)["attention"], _arrays(i)["attention"])
        assert r.row_meta(f"utt{i}")["tokens"] == list(range(i + 1))
    with pytest.raises(KeyError, match="utt9"):
        r["utt9"]
    with pytest.raises(StoreError, match="expected a 'saliency' store"):
        open_store(tmp_path / "s", kind="saliency")


def test_numpy_alone_reads_a_record(tmp_path):
    with StoreWriter(tmp_path / "s", "saliency") as w:
        w.write("a", _arrays(1))
    row = json.loads((tmp_path / "s" / "index.jsonl").read_text().splitlines()[0])
    with open(tmp_path / "s" / "arrays.bin", "rb") as f:
        f.seek(row["arrays"]["attention"]["offset"])
        np.testing.assert_array_equal(np.lib.format.read_array(f), _arrays(1)["attention"])


def test_torn_tail_of_a_killed_run_is_dropped_and_resume_continues(tmp_path):
    w = StoreWriter(tmp_path / "s", "saliency")
    for i in range(3):
        w.write(f"u{i}", _arrays(i))
    w.close()
    # a kill in the middle of the next record: half its arrays and half its index line
    with open(tmp_path / "s" / "arrays.bin", "ab") as f:
        f.write(b"\x93NUMPY partial")
    with open(tmp_path / "s" / "index.jsonl", "ab") as f:
        f.write(b'{"id": "u3", "ar')
    assert StoreReader(tmp_path / "s").ids() == ["u0", "u1", "u2"]
    with StoreWriter(tmp_path / "s", "saliency") as w:
        assert w.done_ids() == {"u0", "u1", "u2"}
        w.write("u3", _arrays(3))
        with pytest.raises(StoreError, match="already stored"):
            w.write("u1", _arrays(1))
    r = StoreReader(tmp_path / "s")
    assert r.ids() == ["u0", "u1", "u2", "u3"]
    np.testing.assert_array_equal(r["u3"]["attention"], _arrays(3)["attention"])


def _one_record(path, kind, meta):
    """A store of ``kind`` with ``meta`` holding one record (an empty one may be taken over, see below)."""
    with StoreWriter(path, kind, meta) as w:
        w.write("u0", _arrays(0))


def test_resume_with_other_settings_is_refused(tmp_path):
    _one_record(tmp_path / "s", "saliency", {"masks": 10})
    with pytest.raises(StoreError, match="masks"):
        StoreWriter(tmp_path / "s", "saliency", {"masks": 20})


def test_float16_halves_and_keeps_values(tmp_path):
    with StoreWriter(tmp_path / "s", "cross_attention", float16=True) as w:
        w.write("a", _arrays(2))
    got = StoreReader(tmp_path / "s")["a"]["attention"]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, _arrays(2)["attention"], atol=1e-3)


def test_merge_of_shards_equals_one_store_in_natural_id_order(tmp_path):
    for shard, ids in enumerate([["u10", "u2"], ["u1", "u3"]]):
        with StoreWriter(tmp_path / f"s{shard}", "saliency", {"masks": 5, "shard_id": shard}) as w:
            for u in ids:
                w.write(u, _arrays(int(u[1:])), {"n": u})
    assert merge_stores([tmp_path / "s0", tmp_path / "s1"], tmp_path / "m") == 4
    m = StoreReader(tmp_path / "m")
    assert m.ids() == ["u1", "u2", "u3", "u10"] and "shard_id" not in m.meta and m.meta["masks"] == 5
    np.testing.assert_array_equal(m["u10"]["attention"], _arrays(10)["attention"])
    with pytest.raises(StoreError, match=r"shard id 0 is given twice: .*s0 and .*s0"):
        merge_stores([tmp_path / "s0", tmp_path / "s0"], tmp_path / "m2")
    with StoreWriter(tmp_path / "s2", "saliency", {"masks": 5, "shard_id": 2}) as w:
        w.write("u2", _arrays(2))  # also in shard 0
    with pytest.raises(StoreError, match=r"utterance 'u2' \(rank 0\) is in both .*s0 and .*s2"):
        merge_stores([tmp_path / "s0", tmp_path / "s2"], tmp_path / "m3")


def test_resume_refusal_names_the_store_each_setting_old_and_new_and_what_to_do(tmp_path):
    _one_record(tmp_path / "s", "saliency", {"masks": 10, "p": 0.5, "seed": 1})
    with pytest.raises(StoreError) as e:
        StoreWriter(tmp_path / "s", "saliency", {"masks": 20, "p": 0.5, "seed": 2})
    message = str(e.value)
    assert str(tmp_path / "s") in message
    assert "masks: stored 10, this run 20" in message and "seed: stored 1, this run 2" in message
    assert "p:" not in message  # only what differs
    assert "another folder" in message and "delete" in message


def test_resume_refuses_a_setting_the_store_did_not_record(tmp_path):
    # e.g. a store of an older version that did not record the model: it cannot be shown to match
    _one_record(tmp_path / "s", "cross_attention", {"beam": 5})
    with pytest.raises(StoreError, match=r"model_sha256: stored '\(not recorded\)', this run 'abc'"):
        StoreWriter(tmp_path / "s", "cross_attention", {"beam": 5, "model_sha256": "abc"})
    with StoreWriter(tmp_path / "s", "cross_attention", {"beam": 5}) as w:  # the same settings resume
        w.write("u1", _arrays(1))
    assert StoreReader(tmp_path / "s").ids() == ["u0", "u1"]


# Holds a writer open on argv[1] in another process until its stdin closes (the stores import numpy
# only: the package does not load fairseq unless fairseq is loaded).
HOLDER = textwrap.dedent("""
    import sys
    from fairseq_xattn.stores import record_store
    try:
        writer = record_store.StoreWriter(sys.argv[1], "saliency", {"masks": 10})
    except record_store.StoreError as e:
        print("refused:", e, flush=True)
        sys.exit(2)
    print("open", flush=True)
    sys.stdin.readline()
    writer.close()
""")


def _holder(path):
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_store_open_in_another_process_cannot_be_opened(tmp_path):
    holder = _holder(tmp_path / "s")
    try:
        assert holder.stdout.readline().strip() == "open", holder.stderr.read()
        with pytest.raises(StoreError) as e:
            StoreWriter(tmp_path / "s", "saliency", {"masks": 10})
        message = str(e.value)
        assert f"{tmp_path / 's'} is being written by another process" in message
        assert "its own folder" in message and "xattn store merge" in message
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0
    # the holder closed: the store opens again and has what it had (nothing was truncated)
    with StoreWriter(tmp_path / "s", "saliency", {"masks": 10}) as w:
        w.write("u0", _arrays(0))
        # ... and now it is this process that keeps the other one out
        other = _holder(tmp_path / "s")
        out, _ = other.communicate(timeout=60)
        assert other.returncode == 2 and "refused:" in out and "another process" in out
    # a closed writer, and one refused for its settings, leave the store unlocked
    with pytest.raises(StoreError, match="masks"):
        StoreWriter(tmp_path / "s", "saliency", {"masks": 99})
    last = _holder(tmp_path / "s")
    assert last.stdout.readline().strip() == "open"
    last.stdin.close()
    last.wait(timeout=60)
    assert StoreReader(tmp_path / "s").ids() == ["u0"]


def test_a_second_writer_of_the_same_process_takes_over_and_the_first_cannot_write(tmp_path):
    # An in-process rerun after an exception (the first writer never closed) must work; the two
    # writers must still never interleave.
    first = StoreWriter(tmp_path / "s", "saliency")
    first.write("u0", _arrays(0))
    second = StoreWriter(tmp_path / "s", "saliency")
    assert second.done_ids() == {"u0"}
    with pytest.raises(StoreError, match="this writer is closed.*another StoreWriter of this process"):
        first.write("u1", _arrays(1))
    second.write("u2", _arrays(2))
    first.close()  # no effect on the store or on the second writer's lock
    second.write("u3", _arrays(3))
    second.close()
    r = StoreReader(tmp_path / "s")
    assert r.ids() == ["u0", "u2", "u3"]
    for u in r.ids():
        np.testing.assert_array_equal(r[u]["attention"], _arrays(int(u[1:]))["attention"])


def test_a_forked_child_does_not_keep_the_store_locked(tmp_path):
    # A child forked while the writer is open (a data-loader worker) shares its lock; were it not to
    # drop it, the store would stay locked after the writer closed, for as long as the child lives.
    writer = StoreWriter(tmp_path / "s", "saliency", {"masks": 10})
    writer.write("u0", _arrays(0))
    release_child, child_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: outlives the writer
        os.close(child_end)
        os.read(release_child, 1)
        os._exit(0)
    os.close(release_child)
    try:
        writer.close()
        holder = _holder(tmp_path / "s")
        out = holder.stdout.readline().strip()
        holder.stdin.close()
        holder.wait(timeout=60)
        assert out == "open", holder.stderr.read()
    finally:
        os.write(child_end, b"x")
        os.close(child_end)
        os.waitpid(pid, 0)
    assert StoreReader(tmp_path / "s").ids() == ["u0"]


def test_an_empty_store_of_other_settings_does_not_block_the_corrected_rerun(tmp_path):
    """A run refused after opening its store (a wrong flag found on the first utterance) leaves an empty
    store; the corrected rerun takes it over instead of refusing to resume it.  A store with records is
    still protected."""
    StoreWriter(tmp_path / "s", "saliency", {"n_masks": 10}).close()
    with StoreWriter(tmp_path / "s", "saliency", {"n_masks": 20}) as w:
        w.write("u1", {"saliency": np.ones((2, 3), dtype=np.float32)}, {"tokens": [5, 2]})
    assert StoreReader(tmp_path / "s").meta["n_masks"] == 20
    with pytest.raises(StoreError, match="n_masks: stored 20, this run 30"):
        StoreWriter(tmp_path / "s", "saliency", {"n_masks": 30})
