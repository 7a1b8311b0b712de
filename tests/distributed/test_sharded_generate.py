"""Recording and explaining split over processes: torchrun (2 CPU processes, gloo) leaves one merged store
equal to a single-process run; --num-shards jobs (a SLURM array) with an empty shard; the shard arithmetic."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fairseq_xattn.errors import OptionError
from fairseq_xattn.generation.sharding import EndOfDataIterator, RunShard
from fairseq_xattn.stores import StoreReader, is_partition_key, merge_stores
from tests.explain.generate_runner import explain_argv
from tests.fixtures.tiny_s2t import USER_DIR, fairseq_cli

ENCODER = ["--explain-target", "encoder", "--explain-masks", "64"]
_PORTS = iter(range(29541, 29600))


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _run(cmd, cwd) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=cwd, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _torchrun(argv, cwd) -> subprocess.CompletedProcess:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    return _run([torchrun, "--nproc_per_node", "2", "--master_port", str(next(_PORTS)), *fairseq_cli("generate"),
                 *argv], cwd)


def _record_argv(data, checkpoint, store, *extra):
    """Two batches of 5 utterances (beam search, unlike the maps, depends on the batching of this barely
    trained model in the last float bits: every run batches alike; sharding deals whole batches)."""
    return [str(data), "--user-dir", str(USER_DIR), "--task", "speech_to_text_ctc", "--gen-subset", "test",
            "--path", str(checkpoint), "--cpu", "--beam", "3", "--batch-size", "5",
            "--record-cross-attn", str(store), *extra]


def _contents(path, array: str) -> dict:
    with StoreReader(path) as reader:
        return {(rec.id, rec.rank): (rec.meta, rec[array]) for rec in reader}


def _settings(path) -> dict:
    with StoreReader(path) as reader:
        return {k: v for k, v in reader.meta.items() if not is_partition_key(k)}


def assert_same_records(a, b, array: str) -> None:
    ca, cb = _contents(a, array), _contents(b, array)
    assert sorted(ca) == sorted(cb)
    for key in ca:
        assert ca[key][0] == cb[key][0], key
        np.testing.assert_array_equal(ca[key][1], cb[key][1], err_msg=str(key))
    assert _settings(a) == _settings(b)


@pytest.fixture(scope="module")
def single_recording(tiny_data, tiny_checkpoint, tmp_path_factory):
    store = tmp_path_factory.mktemp("single_rec") / "att"
    _run(fairseq_cli("generate") + _record_argv(tiny_data, tiny_checkpoint, store), cwd=store.parent)
    return store


def test_torchrun_recording_leaves_one_store_equal_to_a_single_process_run(single_recording, tiny_data,
                                                                         tiny_checkpoint, tmp_path):
    store = tmp_path / "att"
    proc = _torchrun(_record_argv(tiny_data, tiny_checkpoint, store), cwd=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["att"]  # the process stores were merged and removed
    assert "process 1 of 2" in proc.stderr
    assert_same_records(single_recording, store, "attention")
    with StoreReader(store) as reader:
        assert len(reader) == 10 and not any(is_partition_key(k) for k in reader.meta)


def test_torchrun_explain_equals_a_single_process_run_and_a_rerun_redoes_nothing(tiny_data, tiny_checkpoint,
                                                                                 single_recording, tmp_path):
    single = tmp_path / "single"
    _run(fairseq_cli("generate") + explain_argv(tiny_data, tiny_checkpoint, single_recording, single, *ENCODER),
         cwd=tmp_path)
    store = tmp_path / "sal"
    argv = explain_argv(tiny_data, tiny_checkpoint, single_recording, store, *ENCODER, "--max-tokens", "1500")
    _torchrun(argv, cwd=tmp_path)
    assert not list(tmp_path.glob("sal.part*"))
    assert_same_records(single, store, "saliency")
    before = (store / "arrays.bin").read_bytes()
    rerun = _torchrun(argv, cwd=tmp_path)
    assert "explained by an earlier run of this job" in rerun.stderr
    assert "explained test_" not in rerun.stderr  # no utterance explained again
    assert (store / "arrays.bin").read_bytes() == before
    assert_same_records(single, store, "saliency")


def test_num_shards_jobs_with_an_empty_shard_merge_into_the_single_run(single_recording, tiny_data,
                                                                     tiny_checkpoint, tmp_path):
    """Three jobs over two batches: the third gets no batch and still leaves an empty store of its run, so
    the merge of the complete set works (and a missing shard is named)."""
    store = tmp_path / "att"
    for k in range(3):
        _run(fairseq_cli("generate") + _record_argv(tiny_data, tiny_checkpoint, store, "--num-shards", "3", "--shard-id", str(k)), cwd=tmp_path)
    shards = [tmp_path / f"att.shard{k}-of-3" for k in range(3)]
    sizes = [len(StoreReader(p)) for p in shards]
    assert sizes == [5, 5, 0]
    with StoreReader(shards[2]) as empty:
        assert empty.meta["shard_id"] == 2 and empty.meta["shard_count"] == 3
        assert empty.meta["model_sha256"] == _settings(single_recording)["model_sha256"]
    with pytest.raises(Exception, match=r"missing shard id\(s\) \[2\]"):
        merge_stores(shards[:2], tmp_path / "partial")
    assert merge_stores(shards, tmp_path / "merged") == 10
    assert_same_records(single_recording, tmp_path / "merged", "attention")


def test_run_shard_partitions_the_data_and_names_the_stores():
    env = {"WORLD_SIZE": "2", "RANK": "1"}
    shard = RunShard.from_options(3, 2, env)
    assert (shard.index, shard.count) == (5, 6)
    assert shard.part_store("/x/sal") == Path("/x/sal.shard2-of-3.part1-of-2")
    assert shard.job_store("/x/sal") == Path("/x/sal.shard2-of-3")
    assert shard.part_meta() == {"shard_id": 2, "shard_count": 3, "part_id": 1, "part_count": 2}
    # every (job, process) pair takes a different data shard, and together all of them
    indices = sorted(RunShard.from_options(3, k, {"WORLD_SIZE": "2", "RANK": str(r)}).index
                     for k in range(3) for r in range(2))
    assert indices == list(range(6))
    single = RunShard.from_options(1, 0, {})
    assert single.part_store("sal") == Path("sal") and single.part_meta() == {} and not single.distributed
    with pytest.raises(OptionError, match="--shard-id 3"):
        RunShard.from_options(3, 3, {})
    with pytest.raises(OptionError, match="RANK=2"):
        RunShard.from_options(1, 0, {"WORLD_SIZE": "2", "RANK": "2"})


def test_end_of_data_is_signalled_once_and_only_after_the_last_batch():
    from fairseq.data.iterators import CountingIterator

    ended = []
    batches = [{"net_input": 1}, {}, {"net_input": 3}]  # {}: fairseq's placeholder of a shard without data
    it = EndOfDataIterator(CountingIterator(batches), ended.append)
    assert len(it) == 3
    assert next(it) == batches[0] and next(it) == {} and not ended  # an interrupted loop never ends the run
    assert list(it) == [batches[2]] and ended == [2]
    assert list(it) == [] and ended == [2]
