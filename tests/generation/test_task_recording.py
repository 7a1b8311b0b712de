"""RecordingTaskMixin through fairseq's Python API: build_generator + inference_step write a store
with every utterance, its hypotheses and what analysis needs; teacher forcing; alignments."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from fairseq.sequence_generator import SequenceGenerator

from fairseq_xattn.generation import CrossAttentionRecordingGenerator, open_attention_store, record_teacher_forced
from fairseq_xattn.stores import StoreReader

from .helpers import batches, generation_args, make_task, subsampled


def _manifest(data):
    with open(data / "test.tsv") as f:
        return {row["id"]: row for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}


def _record(model, task, gen_args, required_batch_size_multiple=1):
    generator = task.build_generator([model], gen_args)
    samples = batches(task, required_batch_size_multiple=required_batch_size_multiple)
    outputs = [(s, task.inference_step(generator, [model], s)) for s in samples]
    task.close_recording()
    return samples, outputs


def test_store_holds_every_utterance_and_its_hypotheses(loaded, tiny_data, tmp_path):
    model, base = loaded
    task = make_task(base.args, base.tgt_dict, record_cross_attn=str(tmp_path / "store"))
    task.load_dataset("test")
    samples, outputs = _record(model, task, generation_args(beam=5, nbest=2), required_batch_size_multiple=8)
    # the remainder batch that fairseq-fixed's batch_by_size drops is there, and recorded
    assert sorted(len(s["id"]) for s in samples) == [2, 8]
    assert "utt_id" not in samples[0]  # stock dataset: ids come from dataset.ids
    manifest = _manifest(tiny_data)
    tgt_dict = task.target_dictionary
    with open_attention_store(tmp_path / "store") as store:
        assert sorted(store.keys()) == sorted((u, r) for u in manifest for r in (0, 1))
        assert store.meta["layers"] == 2 and store.meta["heads"] == 4 and store.meta["beam"] == 5
        for sample, hypos in outputs:
            for i, index in enumerate(sample["id"].tolist()):
                utt_id = task.dataset("test").ids[index]
                for rank in (0, 1):
                    hypo, record = hypos[i][rank], store.get(utt_id, rank)
                    meta = record.meta
                    np.testing.assert_array_equal(record["attention"], hypo["cross_attention"].numpy())
                    assert meta["tokens"] == hypo["tokens"].tolist() and meta["tokens"][-1] == tgt_dict.eos()
                    assert meta["token_strings"][:-1] == tgt_dict.string(hypo["tokens"]).split()
                    assert meta["text"] == tgt_dict.string(hypo["tokens"])
                    assert meta["reference"] == manifest[utt_id]["tgt_text"]
                    assert meta["n_frames"] == int(manifest[utt_id]["n_frames"])
                    assert meta["n_encoder_frames"] == subsampled(meta["n_frames"])
                    assert meta["subsampling"] == 4 and meta["layers"] == 2 and meta["heads"] == 4
                    assert meta["prefix_len"] == 0 and meta["score"] == pytest.approx(float(hypo["score"]))
                    assert record["attention"].shape == (2, 4, len(meta["tokens"]), meta["n_encoder_frames"])


def test_store_is_readable_with_numpy_alone(loaded, tmp_path):
    model, base = loaded
    task = make_task(base.args, base.tgt_dict, record_cross_attn=str(tmp_path / "store"))
    task.load_dataset("test")
    _record(model, task, generation_args(beam=2))
    rows = [json.loads(line) for line in open(tmp_path / "store" / "index.jsonl")]
    assert len(rows) == 10
    with open(tmp_path / "store" / "arrays.bin", "rb") as f:
        for row in rows:
            f.seek(row["arrays"]["attention"]["offset"])
            attention = np.lib.format.read_array(f)
            assert attention.shape == tuple(row["arrays"]["attention"]["shape"])
            np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)


def test_float16_store(loaded, tmp_path):
    model, base = loaded
    full = make_task(base.args, base.tgt_dict, record_cross_attn=str(tmp_path / "f32"))
    half = make_task(base.args, base.tgt_dict, record_cross_attn=str(tmp_path / "f16"), record_float16=True)
    for task in (full, half):
        task.load_dataset("test")
        _record(model, task, generation_args(beam=2))
    with StoreReader(tmp_path / "f32") as a, StoreReader(tmp_path / "f16") as b:
        assert b.meta["float16"] is True
        for utt_id in a.ids():
            x, y = a.get(utt_id)["attention"], b.get(utt_id)["attention"]
            assert x.dtype == np.float32 and y.dtype == np.float16
            np.testing.assert_allclose(y.astype(np.float32), x, atol=1e-3)


def test_teacher_forced_reference(loaded, tiny_data, tmp_path):
    model, base = loaded
    task = make_task(base.args, base.tgt_dict, record_cross_attn=str(tmp_path / "store"), teacher_forced="reference")
    task.load_dataset("test")
    samples, outputs = _record(model, task, generation_args(beam=5))
    manifest = _manifest(tiny_data)
    tgt_dict = task.target_dictionary
    with open_attention_store(tmp_path / "store") as store:
        assert store.meta["mode"] == "teacher_forced" and len(store) == 10
        for sample, hypos in outputs:
            targets = [t[t.ne(tgt_dict.pad())] for t in sample["target"]]
            forced = record_teacher_forced(model, sample["net_input"], targets, tgt_dict.pad(), tgt_dict.eos())
            for i, index in enumerate(sample["id"].tolist()):
                utt_id = task.dataset("test").ids[index]
                record = store.get(utt_id)
                assert record.meta["tokens"] == targets[i].tolist()
                assert record.meta["text"] == manifest[utt_id]["tgt_text"] == record.meta["reference"]
                np.testing.assert_allclose(record["attention"], forced[i].numpy(), atol=1e-6)
                # the returned "hypothesis" is the reference, scored by the model
                assert torch.equal(hypos[i][0]["tokens"], targets[i])
                assert hypos[i][0]["positional_scores"].shape == targets[i].shape
                assert (hypos[i][0]["positional_scores"] <= 0).all()


def test_teacher_forced_tsv(loaded, tiny_data, tmp_path):
    model, base = loaded
    ids = list(_manifest(tiny_data))
    tsv = tmp_path / "forced.tsv"
    tsv.write_text("id\ttokens\n" + "".join(f"{u}\talpha bravo {'charlie ' * (k % 3)}\n" for k, u in enumerate(ids)))
    task = make_task(base.args, base.tgt_dict, record_cross_attn=str(tmp_path / "store"), teacher_forced=str(tsv))
    task.load_dataset("test")
    _record(model, task, generation_args())
    with open_attention_store(tmp_path / "store") as store:
        for k, utt_id in enumerate(ids):
            meta = store.row_meta(utt_id)
            assert meta["token_strings"] == ["alpha", "bravo"] + ["charlie"] * (k % 3) + ["</s>"]


@pytest.mark.parametrize("content,error,message", [
    ("id\ttokens\ntest_0000\talpha\n", KeyError, "forced.tsv: no token sequence for utterance 'test_000[1-9]'"),
    ("id\ttokens\n" + "".join(f"test_{i:04d}\talpha zulu\n" for i in range(10)), ValueError, "line 2.*zulu"),
    ("utt\ttext\n", ValueError, "needs columns"),
])
def test_teacher_forced_tsv_errors_name_the_fault(loaded, tmp_path, content, error, message):
    model, base = loaded
    tsv = tmp_path / "forced.tsv"
    tsv.write_text(content)
    task = make_task(base.args, base.tgt_dict, record_cross_attn=str(tmp_path / "store"), teacher_forced=str(tsv))
    task.load_dataset("test")
    with pytest.raises(error, match=message):
        _record(model, task, generation_args())


def test_teacher_forced_needs_a_store(loaded):
    model, base = loaded
    task = make_task(base.args, base.tgt_dict, teacher_forced="reference")
    with pytest.raises(ValueError, match="--record-cross-attn"):
        task.build_generator([model], generation_args())


def test_without_recording_the_stock_generator_is_used(loaded):
    model, task = loaded
    generator = task.build_generator([model], generation_args())
    assert type(generator) is SequenceGenerator


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_print_alignment_works_on_speech(loaded, mixed_batch, mode):
    model, task = loaded
    generator = task.build_generator([model], generation_args(print_alignment=mode))
    assert isinstance(generator, CrossAttentionRecordingGenerator)
    hypos = task.inference_step(generator, [model], mixed_batch)
    for n_frames, per_utt in zip(mixed_batch["net_input"]["src_lengths"].tolist(), hypos):
        hypo = per_utt[0]
        n_tokens, n_enc = len(hypo["tokens"]), subsampled(n_frames)
        last_layer = hypo["cross_attention"][-1].mean(0)  # I x T'
        if mode == "hard":  # (frame, token) for every token but EOS, at the most attended frame
            assert [t for _, t in hypo["alignment"]] == list(range(n_tokens - 1))
            assert [f for f, _ in hypo["alignment"]] == last_layer.argmax(-1)[:-1].tolist()
        else:
            assert len(hypo["alignment"]) == n_tokens and all(len(row) == n_enc for row in hypo["alignment"])
            assert float(hypo["alignment"][0][0]) == pytest.approx(last_layer[0, 0].item(), abs=1e-6)


INTERRUPTED = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {repo!r})
    from tests.generation.helpers import load_recording_task, batches, generation_args, make_task
    model, base = load_recording_task({checkpoint!r}, {data!r})
    task = make_task(base.args, base.tgt_dict, record_cross_attn={store!r})
    task.load_dataset("test")
    generator = task.build_generator([model], generation_args(beam=2))
    first = batches(task, max_sentences=4)[0]
    task.inference_step(generator, [model], first)
    sys.stdout.write(",".join(task.dataset("test").ids[i] for i in first["id"].tolist()))
    sys.stdout.flush()
    os._exit(3)  # killed: no close, no atexit
""")


def test_interrupted_run_leaves_a_readable_store_and_resumes(loaded, tiny_checkpoint, tiny_data, tmp_path):
    from tests.fixtures.tiny_s2t import REPO

    store = tmp_path / "store"
    script = INTERRUPTED.format(repo=str(REPO), checkpoint=str(tiny_checkpoint), data=str(tiny_data), store=str(store))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr[-2000:]
    written = proc.stdout.split(",")
    with open_attention_store(store) as reader:
        assert sorted(reader.ids()) == sorted(written) and len(written) == 4
        assert all(reader.get(u)["attention"].ndim == 4 for u in written)
    # a second run into the same store keeps those records and adds the rest, each once
    model, base = loaded
    task = make_task(base.args, base.tgt_dict, record_cross_attn=str(store))
    task.load_dataset("test")
    _record(model, task, generation_args(beam=2))
    with open_attention_store(store) as reader:
        assert len(reader) == 10 and len(set(reader.ids())) == 10
