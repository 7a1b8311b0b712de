"""The speech_explain task through the real fairseq-generate: store contents, hypotheses from a
recording store or a TSV, invariance to batching and sharding, resume, and bad input."""
import signal
import time

import numpy as np
import pytest

from fairseq_xattn.stores import KIND_CROSS_ATTENTION, StoreError, StoreReader, StoreWriter

from .generate_runner import (assert_same_store, explain_argv, generate_in_process, generate_subprocess,
                              store_contents)

ENCODER = ["--explain-target", "encoder", "--explain-masks", "96"]
# Few masks and two coarse SLIC levels: full passes are the slow part of the input target.
INPUT = ["--explain-target", "input", "--explain-masks", "6", "--explain-patches-per-second", "100,200"]


@pytest.fixture(scope="module")
def hyp_tsv(tiny_data, tmp_path_factory):
    """The references as hypotheses (TSV: id, tokens)."""
    rows = [line.split("\t") for line in (tiny_data / "test.tsv").read_text().splitlines()[1:]]
    path = tmp_path_factory.mktemp("hyp") / "hyp.tsv"
    path.write_text("id\ttokens\n" + "".join(f"{r[0]}\t{r[3]}\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def single_run(tiny_data, tiny_checkpoint, hyp_tsv, tmp_path_factory):
    """One uninterrupted, unsharded run (encoder target, 96 masks, default batching)."""
    store = tmp_path_factory.mktemp("single") / "sal"
    printed = generate_in_process(explain_argv(tiny_data, tiny_checkpoint, hyp_tsv, store, *ENCODER,
                                               "--max-tokens", "4000"))
    return store, printed


def test_store_holds_every_utterance_with_its_settings(single_run, tiny_data):
    store, printed = single_run
    with StoreReader(store, expect_kind="saliency") as reader:
        assert len(reader) == 10
        assert reader.meta["target"] == "encoder" and reader.meta["n_masks"] == 96 and reader.meta["p"] == 0.7
        rec = reader["test_0000"]
    n_frames = int((tiny_data / "test.tsv").read_text().splitlines()[1].split("\t")[2])
    assert rec.meta["n_frames"] == n_frames and rec.meta["n_encoder_frames"] == -(-n_frames // 4)
    assert rec.meta["subsampling"] == 4 and rec.meta["n_masks"] == 96
    assert rec["saliency"].shape == (len(rec.meta["tokens"]), rec.meta["n_encoder_frames"])
    assert rec.meta["tokens"][-1] == 2 and len(rec.meta["positional_scores"]) == len(rec.meta["tokens"])
    # fairseq-generate printed the forced hypotheses
    assert sum(line.startswith("H-") for line in printed.splitlines()) == 10


def test_maps_do_not_depend_on_batching_or_order(single_run, tiny_data, tiny_checkpoint, hyp_tsv, tmp_path):
    store = tmp_path / "bs1"
    generate_in_process(explain_argv(tiny_data, tiny_checkpoint, hyp_tsv, store, *ENCODER, "--batch-size", "1",
                                     "--explain-mask-batch-size", "64"))
    assert_same_store(single_run[0], store)


@pytest.fixture(scope="module")
def single_input_run(tiny_data, tiny_checkpoint, hyp_tsv, tmp_path_factory):
    """One uninterrupted, unsharded run of the input target (6 masks, default batching)."""
    store = tmp_path_factory.mktemp("single_input") / "sal"
    generate_in_process(explain_argv(tiny_data, tiny_checkpoint, hyp_tsv, store, *INPUT, "--max-tokens", "4000"))
    return store


def _write_order(store):
    return [rec.id for rec in StoreReader(store)]


def test_input_maps_do_not_depend_on_batching_order_or_sharding(single_input_run, tiny_data, tiny_checkpoint,
                                                                hyp_tsv, tmp_path):
    bs1 = tmp_path / "bs1"
    generate_in_process(explain_argv(tiny_data, tiny_checkpoint, hyp_tsv, bs1, *INPUT, "--batch-size", "1"))
    assert len(StoreReader(bs1)) == 10
    assert_same_store(single_input_run, bs1)
    sharded = tmp_path / "sal"
    for k in (1, 0):  # the second shard first: another write order again
        generate_in_process(explain_argv(tiny_data, tiny_checkpoint, hyp_tsv, sharded, *INPUT, "--max-tokens", "500",
                                         "--num-shards", "2", "--shard-id", str(k)))
    shards = sorted(tmp_path.glob("sal.shard*-of-2"))
    from fairseq_xattn.cli import main as xattn

    assert xattn(["store", "merge", *map(str, shards), "--out", str(tmp_path / "merged")]) == 0
    assert _write_order(tmp_path / "merged") != _write_order(single_input_run)  # the order did change
    assert_same_store(single_input_run, tmp_path / "merged")


def test_input_map_with_small_automatic_mask_batches(single_input_run, tiny_data, tiny_checkpoint, hyp_tsv,
                                                     tmp_path, monkeypatch):
    """--explain-budget-logits shrinks the automatic mask batch (here to 1 mask per forward: the budget is
    below one mask's I x V); only float rounding may change."""
    from fairseq_xattn.explain import explainer as explainer_module

    sizes = []
    real = explainer_module.Explainer.mask_batch_size
    monkeypatch.setattr(explainer_module.Explainer, "mask_batch_size",
                        lambda self, *a: sizes.append(real(self, *a)) or sizes[-1])
    store = tmp_path / "sal"
    generate_in_process(explain_argv(tiny_data, tiny_checkpoint, hyp_tsv, store, *INPUT, "--max-tokens", "4000",
                                     "--explain-budget-logits", "1"))
    assert sizes == [1] * 10
    small, auto = store_contents(store), store_contents(single_input_run)
    assert sorted(small) == sorted(auto)
    for utt_id, (meta, saliency) in small.items():
        assert meta == auto[utt_id][0]
        np.testing.assert_allclose(saliency, auto[utt_id][1], rtol=1e-5, atol=1e-6, err_msg=utt_id)


def test_shards_merge_into_the_single_run(single_run, tiny_data, tiny_checkpoint, hyp_tsv, tmp_path):
    store = tmp_path / "sal"
    for k in range(2):
        generate_in_process(explain_argv(tiny_data, tiny_checkpoint, hyp_tsv, store, *ENCODER, "--max-tokens", "500",
                                         "--num-shards", "2", "--shard-id", str(k)))
    shards = sorted(tmp_path.glob("sal.shard*-of-2"))
    assert [p.name for p in shards] == ["sal.shard0-of-2", "sal.shard1-of-2"]
    assert all(0 < len(StoreReader(p)) < 10 for p in shards)
    from fairseq_xattn.cli import main as xattn

    assert xattn(["store", "merge", *map(str, shards), "--out", str(tmp_path / "merged")]) == 0
    assert_same_store(single_run[0], tmp_path / "merged")
    assert "shard_id" not in StoreReader(tmp_path / "merged").meta


def test_interrupted_run_resumes_to_the_same_store(single_run, tiny_data, tiny_checkpoint, hyp_tsv, tmp_path,
                                                   monkeypatch):
    from fairseq_xattn.explain import explainer as explainer_module

    store = tmp_path / "sal"
    argv = explain_argv(tiny_data, tiny_checkpoint, hyp_tsv, store, *ENCODER, "--max-tokens", "4000")
    real = explainer_module.Explainer.explain
    calls = []

    def flaky(self, utt_id, *args, **kwargs):
        calls.append(utt_id)
        if len(calls) == 4:
            raise KeyboardInterrupt  # the run is stopped while explaining its 4th utterance
        return real(self, utt_id, *args, **kwargs)

    monkeypatch.setattr(explainer_module.Explainer, "explain", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_in_process(argv)
    assert len(StoreReader(store)) == 3
    calls.clear()
    monkeypatch.setattr(explainer_module.Explainer, "explain", lambda self, u, *a, **k: calls.append(u) or real(self, u, *a, **k))
    generate_in_process(argv)
    assert len(calls) == 7  # finished utterances are not explained again
    assert_same_store(single_run[0], store)


def test_killed_process_resumes_to_the_same_store(tiny_data, tiny_checkpoint, hyp_tsv, tmp_path):
    """A real fairseq-generate killed with SIGKILL mid-way, then run again with the same command."""
    many = ["--explain-target", "encoder", "--explain-masks", "3000", "--max-tokens", "4000"]
    store = tmp_path / "sal"
    argv = explain_argv(tiny_data, tiny_checkpoint, hyp_tsv, store, *many)
    proc = generate_subprocess(argv)
    index = store / "index.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if index.exists() and index.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(StoreReader(store))
    assert 2 <= n_before < 10
    proc = generate_subprocess(argv)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert f"{n_before} utterances already explained" in err
    reference = tmp_path / "uninterrupted"
    generate_in_process(explain_argv(tiny_data, tiny_checkpoint, hyp_tsv, reference, *many))
    assert_same_store(reference, store)


def test_hypotheses_from_a_recording_store_and_input_target(tiny_data, tiny_checkpoint, hyp_tsv, tmp_path):
    from fairseq.data import Dictionary

    d = Dictionary.load(str(tiny_data / "dict.txt"))
    record = tmp_path / "record"
    with StoreWriter(record, KIND_CROSS_ATTENTION, {"layers": 2, "heads": 4}) as w:
        for line in hyp_tsv.read_text().splitlines()[1:3]:
            utt_id, text = line.split("\t")
            tokens = [d.index(s) for s in text.split()] + [d.eos()]
            w.write(utt_id, {"attention": np.zeros((2, 4, len(tokens), 3), np.float32)},
                    {"tokens": tokens, "token_strings": [d[t] for t in tokens], "prefix_len": 0})
    # Only the 2 recorded utterances are in the subset: use a 2-utterance split.
    rows = (tiny_data / "test.tsv").read_text().splitlines()
    (tmp_path / "data").mkdir()
    for name in ("dict.txt", "config.yaml"):
        (tmp_path / "data" / name).write_text((tiny_data / name).read_text())
    (tmp_path / "data" / "test.tsv").write_text("\n".join(rows[:3]) + "\n")
    store = tmp_path / "sal"
    generate_in_process(explain_argv(tmp_path / "data", tiny_checkpoint, record, store, "--explain-target", "input",
                                     "--explain-masks", "12", "--explain-patches-per-second", "100,200"))
    contents = store_contents(store)
    assert len(contents) == 2
    for meta, saliency in contents.values():
        assert saliency.shape == (len(meta["tokens"]), meta["n_frames"], 80)
        assert meta["n_masks"] == 12 and len(meta["units_per_level"]) == 2
        assert np.isfinite(saliency).all()
    assert StoreReader(store).meta["patches_per_second"] == [100.0, 200.0]


def test_resuming_with_other_settings_is_refused(single_run, tiny_data, tiny_checkpoint, hyp_tsv, tmp_path):
    import shutil

    store = tmp_path / "sal"
    shutil.copytree(single_run[0], store)
    with pytest.raises(StoreError, match="n_masks"):
        generate_in_process(explain_argv(tiny_data, tiny_checkpoint, hyp_tsv, store, "--explain-target", "encoder",
                                         "--explain-masks", "50"))


def test_resuming_with_another_checkpoint_is_refused(single_run, tiny_data, tiny_checkpoint, hyp_tsv, tmp_path):
    # same hypotheses and explain options, other weights: the stored maps belong to the old model
    import shutil

    import torch

    state = torch.load(tiny_checkpoint, weights_only=False)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = state["model"][name] + 0.01
    retrained = tmp_path / "retrained.pt"
    torch.save(state, retrained)
    store = tmp_path / "sal"
    shutil.copytree(single_run[0], store)
    with pytest.raises(StoreError, match="model_sha256"):
        generate_in_process(explain_argv(tiny_data, retrained, hyp_tsv, store, *ENCODER))


def test_missing_hypothesis_names_the_utterance(tiny_data, tiny_checkpoint, hyp_tsv, tmp_path):
    partial = tmp_path / "partial.tsv"
    partial.write_text("\n".join(hyp_tsv.read_text().splitlines()[:4]) + "\n")
    with pytest.raises(ValueError, match=r"partial.tsv: no row for utterance 'test_"):
        generate_in_process(explain_argv(tiny_data, tiny_checkpoint, partial, tmp_path / "sal", *ENCODER))
