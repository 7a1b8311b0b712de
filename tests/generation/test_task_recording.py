"""RecordingTaskMixin through fairseq's Python API: build_generator + inference_step write a store
with every utterance, its hypotheses and what analysis needs; teacher forcing; alignments."""
from __future__ import annotations

import copy
import csv
import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from fairseq.sequence_generator import SequenceGenerator

from fairseq_xattn.generation import CrossAttentionRecordingGenerator
from fairseq_xattn.stores import KIND_CROSS_ATTENTION, open_store

from .helpers import record_teacher_forced
from fairseq_xattn.data import token_sequences
from fairseq_xattn.generation.run_settings import model_fingerprint
from fairseq_xattn.stores import StoreError, StoreReader

from .helpers import batches, data_copy, generation_args, make_task, subsampled


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
    with open_store(tmp_path / "store", KIND_CROSS_ATTENTION) as store:
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
    with open_store(tmp_path / "store", KIND_CROSS_ATTENTION) as store:
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
    with open_store(tmp_path / "store", KIND_CROSS_ATTENTION) as store:
        for k, utt_id in enumerate(ids):
            meta = store.row_meta(utt_id)
            assert meta["token_strings"] == ["alpha", "bravo"] + ["charlie"] * (k % 3) + ["</s>"]


ALL_IDS = [f"test_{i:04d}" for i in range(10)]


@pytest.mark.parametrize("content,error,message", [
    ("id\ttokens\ntest_0000\talpha\n", KeyError, "forced.tsv: no token sequence for utterance 'test_000[1-9]'"),
    ("id\ttokens\n" + "".join(f"{u}\talpha zulu\n" for u in ALL_IDS), ValueError, "line 2.*zulu"),
    ("utt\ttext\n", ValueError, "needs columns"),
    # a duplicate id is an error (it used to keep the last row silently)
    ("id\ttokens\n" + "".join(f"{u}\talpha\n" for u in ALL_IDS) + "test_0003\tbravo\n", ValueError,
     r"forced.tsv line 12 \(id 'test_0003'\): duplicate id, already given on line 5"),
    # an empty tokens field with no tgt_text column to fall back to (it used to be a bare KeyError)
    ("id\ttokens\n" + "".join(f"{u}\t{'' if u == 'test_0002' else 'alpha'}\n" for u in ALL_IDS), ValueError,
     r"forced.tsv line 4 \(id 'test_0002'\): the 'tokens' field is empty"),
    # line numbers are the file's own, blank lines included
    ("id\ttokens\n\n" + "".join(f"{u}\talpha zulu\n" for u in ALL_IDS), ValueError,
     r"forced.tsv line 3 \(id 'test_0000'\).*zulu"),
], ids=["missing-id", "unknown-symbol", "no-columns", "duplicate-id", "empty-tokens", "blank-line"])
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
    with open_store(store, KIND_CROSS_ATTENTION) as reader:
        assert sorted(reader.ids()) == sorted(written) and len(written) == 4
        assert all(reader.get(u)["attention"].ndim == 4 for u in written)
    # a second run into the same store keeps those records and adds the rest, each once
    model, base = loaded
    task = make_task(base.args, base.tgt_dict, record_cross_attn=str(store))
    task.load_dataset("test")
    _record(model, task, generation_args(beam=2))
    with open_store(store, KIND_CROSS_ATTENTION) as reader:
        assert len(reader) == 10 and len(set(reader.ids())) == 10


def test_teacher_forced_tsv_is_read_as_utf8_whatever_the_locale(loaded, tmp_path, monkeypatch):
    model, base = loaded
    tsv = tmp_path / "forced.tsv"
    tsv.write_text("id\ttokens\n" + "".join(f"{u}\talpha z\u00fclu\n" for u in ALL_IDS), encoding="utf-8")
    real_open = open

    def latin1_locale_open(file, mode="r", *args, **kwargs):  # open() under a non-UTF-8 locale
        if "b" not in mode:
            kwargs.setdefault("encoding", "latin-1")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(token_sequences, "open", latin1_locale_open, raising=False)
    task = make_task(base.args, base.tgt_dict, record_cross_attn=str(tmp_path / "store"), teacher_forced=str(tsv))
    task.load_dataset("test")
    # the symbol is named as written (decoded as latin-1 it would read 'zÃ¼lu')
    with pytest.raises(ValueError, match="line 2 .*'z\u00fclu'"):
        _record(model, task, generation_args())


def test_stored_text_escapes_unk_in_the_reference_only_as_fairseq_prints_them(loaded, tiny_data, tmp_path):
    # 'delta' -> 'zulu' (not in the dictionary) in the references: their targets hold <unk>; teacher
    # forcing them makes hypotheses with <unk>.  fairseq prints the reference (T-) with escape_unk,
    # '<<unk>>', and the hypothesis (D-) without, '<unk>' (fairseq_cli/generate.py).
    model, base = loaded
    data = data_copy(tiny_data, tmp_path / "data", {"delta": "zulu"})
    args = copy.copy(base.args)
    args.data = str(data)
    task = make_task(args, base.tgt_dict, record_cross_attn=str(tmp_path / "store"), teacher_forced="reference")
    task.load_dataset("test")
    _record(model, task, generation_args())
    manifest = _manifest(data)
    with open_store(tmp_path / "store", KIND_CROSS_ATTENTION) as store:
        with_unk = [u for u in manifest if "zulu" in manifest[u]["tgt_text"]]
        assert len(with_unk) == 6
        for utt_id in manifest:
            meta = store.row_meta(utt_id)
            assert meta["text"] == manifest[utt_id]["tgt_text"].replace("zulu", "<unk>")
            assert meta["reference"] == manifest[utt_id]["tgt_text"].replace("zulu", "<<unk>>")


# -- resuming: only the same run ------------------------------------------------------------------

def _second_run_changes(name, model, base, tiny_data, tmp_path):
    """(model, task, generation args, setting named in the error) of a run that differs from
    _first_run in one respect."""
    args, gen, split = copy.copy(base.args), dict(beam=2), "test"
    if name == "retrained-checkpoint":
        model = copy.deepcopy(model)
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] += 1e-3  # one weight is enough
        setting = r"model_sha256: stored '[0-9a-f]{20}', this run '[0-9a-f]{20}'"
    elif name == "data-folder":
        args.data = str(data_copy(tiny_data, tmp_path / "data2"))
        setting = re.escape(f"data: stored '{tiny_data.resolve()}', this run '{tmp_path / 'data2'}'")
    elif name == "gen-subset":
        split, setting = "train", "gen_subset: stored 'test', this run 'train'"
    elif name == "infer-tgt-lang":
        args.infer_tgt_lang, setting = "de", "infer_tgt_lang: stored None, this run 'de'"
    elif name == "teacher-forced":
        setting = "mode: stored 'beam_search', this run 'teacher_forced'"
    else:  # a generation option
        option, value = {"prefix-size": ("prefix_size", 1), "beam": ("beam", 3), "lenpen": ("lenpen", 1.5),
                         "nbest": ("nbest", 2), "no-repeat-ngram-size": ("no_repeat_ngram_size", 2),
                         "sampling": ("sampling", True)}[name]
        gen[option] = value
        setting = f"{option}: stored {generation_args(beam=2).__dict__[option]!r}, this run {value!r}"
    task = make_task(args, base.tgt_dict, record_cross_attn=str(tmp_path / "store"),
                     teacher_forced="reference" if name == "teacher-forced" else None)
    task.load_dataset(split)
    return model, task, generation_args(**gen), setting


@pytest.mark.parametrize("change", [
    "retrained-checkpoint", "data-folder", "gen-subset", "infer-tgt-lang", "teacher-forced",
    "prefix-size", "beam", "lenpen", "nbest", "no-repeat-ngram-size", "sampling"])
def test_resuming_with_other_settings_is_refused_and_names_them(loaded, tiny_data, tmp_path, change):
    model, base = loaded
    store = tmp_path / "store"
    first = make_task(base.args, base.tgt_dict, record_cross_attn=str(store))
    first.load_dataset("test")
    _record(model, first, generation_args(beam=2))
    before = (store / "index.jsonl").read_bytes()

    model2, task, gen_args, setting = _second_run_changes(change, model, base, tiny_data, tmp_path)
    generator = task.build_generator([model2], gen_args)
    sample = batches(task, task.generated_split, max_sentences=2)[0]
    with pytest.raises(StoreError) as e:
        task.inference_step(generator, [model2], sample, prefix_tokens=sample["target"][:, :1])
    message = str(e.value)
    assert message.startswith(f"{store}: cannot resume this store"), message
    assert re.search(setting, message), message
    assert f"Write to another folder, or delete {store}" in message
    task.close_recording()
    assert (store / "index.jsonl").read_bytes() == before  # the store is untouched


def test_resuming_with_another_teacher_forced_tsv_content_is_refused(loaded, tmp_path):
    model, base = loaded
    tsv = tmp_path / "forced.tsv"
    tsv.write_text("id\ttokens\n" + "".join(f"{u}\talpha bravo\n" for u in ALL_IDS))
    make = lambda: make_task(base.args, base.tgt_dict, record_cross_attn=str(tmp_path / "store"), teacher_forced=str(tsv))
    task = make()
    task.load_dataset("test")
    _record(model, task, generation_args())
    tsv.write_text("id\ttokens\n" + "".join(f"{u}\tcharlie\n" for u in ALL_IDS))  # same path, new sequences
    task = make()
    task.load_dataset("test")
    with pytest.raises(StoreError, match=r"teacher_forced_sha256: stored '[0-9a-f]+', this run '[0-9a-f]+'"):
        _record(model, task, generation_args())


def test_store_settings_identify_the_run_and_an_identical_rerun_resumes(loaded, tiny_data, tmp_path):
    model, base = loaded
    store = tmp_path / "store"
    for run in range(2):
        task = make_task(base.args, base.tgt_dict, record_cross_attn=str(store))
        task.load_dataset("test")
        _, outputs = _record(model, task, generation_args(beam=2, lenpen=1.2))
        if run == 0:
            before = (store / "index.jsonl").read_bytes()
    assert (store / "index.jsonl").read_bytes() == before  # kept, each record once
    # the rerun still decodes and returns every hypothesis (fairseq-generate prints them)
    assert sum(len(hypos) for _, hypos in outputs) == 10
    assert all("cross_attention" in h[0] for _, hypos in outputs for h in hypos)
    meta = StoreReader(store).meta
    assert meta["model_sha256"] == model_fingerprint([model])
    assert meta["data"] == str(tiny_data.resolve()) and meta["gen_subset"] == "test"
    assert meta["config_yaml"] == "config.yaml" and re.fullmatch("[0-9a-f]{20}", meta["data_sha256"])
    assert (meta["beam"], meta["nbest"], meta["lenpen"], meta["prefix_size"]) == (2, 1, 1.2, 0)


def test_an_open_store_refuses_a_generator_or_model_with_other_settings(loaded, tmp_path):
    model, base = loaded
    task = make_task(base.args, base.tgt_dict, record_cross_attn=str(tmp_path / "store"))
    task.load_dataset("test")
    first, second = batches(task, max_sentences=5)
    task.inference_step(task.build_generator([model], generation_args(beam=2)), [model], first)
    same = task.build_generator([model], generation_args(beam=2))  # a new generator, the same run: fine
    task.inference_step(same, [model], second)
    with pytest.raises(StoreError, match="beam: stored 2, this run 3"):
        task.inference_step(task.build_generator([model], generation_args(beam=3)), [model], second)
    other_model = copy.deepcopy(model)
    with torch.no_grad():
        next(other_model.parameters()).view(-1)[0] += 1e-3
    with pytest.raises(StoreError, match="model_sha256"):
        task.inference_step(same, [other_model], second)
    task.close_recording()
    assert len(StoreReader(tmp_path / "store")) == 10


def test_an_interrupted_run_releases_the_store_at_once(loaded, tmp_path, monkeypatch):
    # Ctrl-C in a notebook: the interpreter lives on, and the rerun may be another process
    import fcntl

    model, base = loaded
    store = tmp_path / "store"
    task = make_task(base.args, base.tgt_dict, record_cross_attn=str(store))
    task.load_dataset("test")
    generator = task.build_generator([model], generation_args(beam=2))
    first, second = batches(task, max_sentences=5)
    task.inference_step(generator, [model], first)

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(CrossAttentionRecordingGenerator, "generate", interrupted)
        with pytest.raises(KeyboardInterrupt):
            task.inference_step(generator, [model], second)
    with open(store / ".lock") as f:  # raises BlockingIOError while a writer holds the store
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert len(StoreReader(store)) == 5
    task.inference_step(generator, [model], second)  # the same task goes on: the store reopens
    task.close_recording()
    assert len(StoreReader(store)) == 10
