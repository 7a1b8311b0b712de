"""The append-only store: random access, numpy-only reading, crash safety, resume, merge."""
import json

import numpy as np
import pytest

from fairseq_xattn.stores import StoreError, StoreWriter, merge_stores, open_store


def _arrays(i):
    rng = np.random.default_rng(i)
    return {"attention": rng.random((2, 3, 4 + i, 5 + i)).astype(np.float32)}


def test_random_access_and_memmap_equal_what_was_written(tmp_path):
    with StoreWriter(tmp_path / "s", "cross_attention", {"model": "m"}) as w:
        for i in range(5):
            w.write(f"utt{i}", _arrays(i), {"tokens": list(range(i + 1))})
    r = open_store(tmp_path / "s", expect_kind="cross_attention")
    assert r.ids() == [f"utt{i}" for i in range(5)] and len(r) == 5
    for i in (3, 0, 4):
        np.testing.assert_array_equal(r[f"utt{i}"]["attention"], _arrays(i)["attention"])
        np.testing.assert_array_equal(r.get(f"utt{i}", mmap=True)["attention"], _arrays(i)["attention"])
        assert r.row_meta(f"utt{i}")["tokens"] == list(range(i + 1))
    with pytest.raises(KeyError, match="utt9"):
        r["utt9"]
    with pytest.raises(StoreError, match="expected a 'saliency' store"):
        open_store(tmp_path / "s", expect_kind="saliency")


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
    assert open_store(tmp_path / "s").ids() == ["u0", "u1", "u2"]
    with StoreWriter(tmp_path / "s", "saliency") as w:
        assert w.done_ids() == {"u0", "u1", "u2"}
        w.write("u3", _arrays(3))
        with pytest.raises(StoreError, match="already stored"):
            w.write("u1", _arrays(1))
    r = open_store(tmp_path / "s")
    assert r.ids() == ["u0", "u1", "u2", "u3"]
    np.testing.assert_array_equal(r["u3"]["attention"], _arrays(3)["attention"])


def test_resume_with_other_settings_is_refused(tmp_path):
    StoreWriter(tmp_path / "s", "saliency", {"masks": 10}).close()
    with pytest.raises(StoreError, match="masks"):
        StoreWriter(tmp_path / "s", "saliency", {"masks": 20})


def test_float16_halves_and_keeps_values(tmp_path):
    with StoreWriter(tmp_path / "s", "cross_attention", float16=True) as w:
        w.write("a", _arrays(2))
    got = open_store(tmp_path / "s")["a"]["attention"]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, _arrays(2)["attention"], atol=1e-3)


def test_merge_of_shards_equals_one_store_in_natural_id_order(tmp_path):
    for shard, ids in enumerate([["u10", "u2"], ["u1", "u3"]]):
        with StoreWriter(tmp_path / f"s{shard}", "saliency", {"masks": 5, "shard_id": shard}) as w:
            for u in ids:
                w.write(u, _arrays(int(u[1:])), {"n": u})
    assert merge_stores([tmp_path / "s0", tmp_path / "s1"], tmp_path / "m") == 4
    m = open_store(tmp_path / "m")
    assert m.ids() == ["u1", "u2", "u3", "u10"] and "shard_id" not in m.meta and m.meta["masks"] == 5
    np.testing.assert_array_equal(m["u10"]["attention"], _arrays(10)["attention"])
    with pytest.raises(StoreError, match="in both"):
        merge_stores([tmp_path / "s0", tmp_path / "s0"], tmp_path / "m2")
