"""`xattn store info / merge / export` on small synthetic stores."""
import json
import re

import numpy as np

from fairseq_xattn.cli import main as xattn
from fairseq_xattn.stores import KIND_SALIENCY, StoreReader, StoreWriter


def _store(path, ids, shard=None, n_masks=10):
    meta = {"target": "encoder", "n_masks": n_masks}
    if shard is not None:
        meta.update(shard_id=shard, shard_count=2)
    with StoreWriter(path, KIND_SALIENCY, meta) as w:
        for i in ids:
            w.write(i, {"saliency": np.full((2, 3), float(i[-1]), np.float32)}, {"n_masks": n_masks, "tokens": [5, 2]})


def test_merge_info_export(tmp_path, capsys):
    _store(tmp_path / "s.shard0-of-2", ["u2", "u10"], shard=0)
    _store(tmp_path / "s.shard1-of-2", ["u1"], shard=1)
    assert xattn(["store", "merge", str(tmp_path / "s.shard0-of-2"), str(tmp_path / "s.shard1-of-2"),
                  "--out", str(tmp_path / "s")]) == 0
    merged = StoreReader(tmp_path / "s")
    assert merged.ids() == ["u1", "u2", "u10"] and "shard_id" not in merged.meta
    capsys.readouterr()
    assert xattn(["store", "info", str(tmp_path / "s"), "--records"]) == 0
    out = capsys.readouterr().out
    assert "kind 'saliency', 3 records" in out and "u10\trank 0\tsaliency 2x3 float32 n_masks=10" in out
    assert xattn(["store", "export", str(tmp_path / "s"), "--out", str(tmp_path / "exp"), "--ids", "u2"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "exp" / "u2.saliency.npy"), np.full((2, 3), 2.0))
    rows = [json.loads(line) for line in (tmp_path / "exp" / "meta.jsonl").read_text().splitlines()]
    assert rows == [{"id": "u2", "rank": 0, "files": {"saliency": "u2.saliency.npy"},
                     "meta": {"n_masks": 10, "tokens": [5, 2]}}]


def test_merge_refuses_different_settings_and_existing_output(tmp_path, capsys):
    _store(tmp_path / "a", ["u1"], n_masks=10)
    _store(tmp_path / "b", ["u2"], n_masks=20)
    assert xattn(["store", "merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 2
    assert re.search(r"^xattn store: error: .*settings differ in \['n_masks'\]", capsys.readouterr().err)
    assert xattn(["store", "merge", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 2
    assert "already exists" in capsys.readouterr().err
