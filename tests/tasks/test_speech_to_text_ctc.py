"""Task speech_to_text_ctc: batches (with/without src_text, language tags, CTC sources), multitask
sampling, inference target choice, validation errors, batching that keeps every utterance,
comma-joined splits, refused config.yaml options, relocated data folders, and real fairseq-train /
fairseq-generate / fairseq-hydra-train runs in subprocesses."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fairseq_xattn.plugin  # noqa: F401  (registers the task)
from fairseq_xattn.data.manifest import ManifestError
from fairseq_xattn.data.s2t_ctc_dataset import TARGET_TRANSCRIPT, TARGET_TRANSLATION
from fairseq_xattn.tasks import BatchingError, CtcSourceDictionary, SpeechToTextCtcTask
from fairseq_xattn.tasks.speech_to_text_ctc import SpeechToTextCtcConfig

REPO = Path(__file__).resolve().parents[2]
USER_DIR = REPO / "fairseq_xattn"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny espeak data: train 10 utterances, dev/test/test_voices 2 each (en audio, it translations)."""
    from tests.fixtures.tiny_dataset import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("s2t_ctc"), size=14, seed=3, eval_size=2, vocab_size=120)


def make_task(data, **overrides):
    from omegaconf import OmegaConf

    values = dict(data=str(data), seed=1, train_subset="train")
    values.update(overrides)
    cfg = OmegaConf.structured(SpeechToTextCtcConfig(**values))
    return SpeechToTextCtcTask.setup_task(cfg)


def _text(task, ids, dictionary):
    return dictionary.string(ids).replace(" ", "").replace("\u2581", " ").strip()


def _rows(path):
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return header, [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def _copy_data(data, dst, transform):
    """A copy of the data folder whose train.tsv rows pass through ``transform(header, rows)``."""
    dst.mkdir()
    for p in data.iterdir():
        if p.is_file() and p.suffix != ".tsv":
            os.symlink(p, dst / p.name)
    header, rows = _rows(data / "train.tsv")
    header, rows = transform(header, rows)
    with open(dst / "train.tsv", "w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        for r in rows:
            f.write("\t".join(r[c] for c in header) + "\n")
    return dst


def test_batch_with_src_text_and_language_tags(data):
    task = make_task(data)
    task.load_dataset("train")
    ds = task.datasets["train"]
    tgt, src = task.target_dictionary, task.source_dictionary
    assert isinstance(src, CtcSourceDictionary) and len(src) != len(tgt)
    tags = task.lang_tag_indices()
    assert {tgt[i] for i in tags} == {"<lang:en>", "<lang:it>"}
    _, rows = _rows(data / "train.tsv")
    by_id = {r["id"]: r for r in rows}
    batch = ds.collater([ds[i] for i in range(len(ds))])
    B = len(ds)
    assert batch["net_input"]["src_tokens"].shape[0] == B and batch["net_input"]["src_tokens"].shape[2] == 80
    assert batch["net_input"]["src_lengths"].tolist() == sorted(batch["net_input"]["src_lengths"].tolist(), reverse=True)
    assert batch["utt_id"] == [ds.ids[i] for i in batch["id"].tolist()]
    assert batch["nsentences"] == B and batch["ntokens"] == int(batch["target_lengths"].sum())
    prev, target = batch["net_input"]["prev_output_tokens"], batch["target"]
    assert (prev[:, 0] == tgt.eos()).all() and (prev[:, 1] == target[:, 0]).all()
    for b, utt in enumerate(batch["utt_id"]):
        row, kind = by_id[utt], batch["target_kind"][b]
        n = int(batch["target_lengths"][b])
        assert target[b, n - 1] == tgt.eos() and (target[b, n:] == tgt.pad()).all()
        lang, text = ("en", row["src_text"]) if kind == TARGET_TRANSCRIPT else ("it", row["tgt_text"])
        assert tgt[target[b, 0]] == f"<lang:{lang}>"
        assert _text(task, target[b, 1:n], tgt) == text
        m = int(batch["ctc_src_lengths"][b])
        ctc = batch["ctc_src"][b, :m]
        assert not set(ctc.tolist()) & {src.bos(), src.eos(), src.pad()}
        assert _text(task, ctc, src) == row["src_text"]  # CTC targets come from the English transcript
        assert (batch["ctc_src"][b, m:] == src.pad()).all()
    # features: utterance CMVN (no SpecAugment in the tiny data) -> zero mean per bin
    lens = batch["net_input"]["src_lengths"]
    x = batch["net_input"]["src_tokens"][0, : lens[0]]
    assert torch.allclose(x.mean(0), torch.zeros(80), atol=1e-4)


def test_batch_without_src_text(data, tmp_path):
    def drop_src(header, rows):
        return [c for c in header if c != "src_text"], rows

    task = make_task(_copy_data(data, tmp_path / "nosrc", drop_src), multitask_asr_prob=0.5)
    task.load_dataset("train")
    ds = task.datasets["train"]
    batch = ds.collater([ds[i] for i in range(len(ds))])
    assert "ctc_src" not in batch and "ctc_src_lengths" not in batch
    assert set(batch["target_kind"]) == {TARGET_TRANSLATION}
    assert {task.target_dictionary[t] for t in batch["target"][:, 0].tolist()} == {"<lang:it>"}


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_multitask_asr_share_is_close_to_p(data, p):
    task = make_task(data, multitask_asr_prob=p)
    task.load_dataset("train")
    ds = task.datasets["train"]
    kinds = []
    for epoch in range(1, 301):
        ds.set_epoch(epoch)
        kinds += [ds.target_kind(i) for i in range(len(ds))]
    share = np.mean([k == TARGET_TRANSCRIPT for k in kinds])
    assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / len(kinds)), share
    # reproducible for a (seed, epoch), different across epochs
    ds.set_epoch(7)
    first = [ds.target_kind(i) for i in range(len(ds))]
    assert first == [ds.target_kind(i) for i in range(len(ds))]
    assert any([ds.target_kind(i) for i in range(len(ds))] != kinds[(e - 1) * len(ds): e * len(ds)] for e in range(1, 5))


def test_multitask_draws_of_two_training_splits_are_independent(data, tmp_path):
    # train_en / train_it hold the same sentence pairs row by row: the split is part of the seed
    copy = _copy_data(data, tmp_path / "twosplits", lambda h, r: (h, r))
    shutil.copy(copy / "train.tsv", copy / "train_copy.tsv")
    task = make_task(copy, multitask_asr_prob=0.5)
    task.load_dataset("train")
    task.load_dataset("train_copy")
    a, b = task.datasets["train"], task.datasets["train_copy"]
    same = []
    for epoch in range(1, 41):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        same += [a.target_kind(i) == b.target_kind(i) for i in range(len(a))]
    assert 0.3 < np.mean(same) < 0.7  # independent draws agree half of the time, identical ones always


def test_multitask_extremes_and_inference_choice(data):
    for p, expected in ((0.0, TARGET_TRANSLATION), (1.0, TARGET_TRANSCRIPT)):
        task = make_task(data, multitask_asr_prob=p)
        task.load_dataset("train")
        assert {task.datasets["train"].target_kind(i) for i in range(10)} == {expected}
    task = make_task(data)  # non-training split: the translation by default
    task.load_dataset("test")
    t = task.datasets["test"][0].target
    assert task.target_dictionary[t[0]] == "<lang:it>"
    task = make_task(data, infer_tgt_lang="en")  # ... the transcript when asked for English
    task.load_dataset("test")
    item = task.datasets["test"][0]
    assert task.target_dictionary[item.target[0]] == "<lang:en>"
    _, rows = _rows(data / "test.tsv")
    assert _text(task, item.target[1:-1], task.target_dictionary) == rows[0]["src_text"]
    task = make_task(data, infer_tgt_lang="fr")
    with pytest.raises(ManifestError, match=r"test.tsv, line 2 .*--infer-tgt-lang 'fr' is neither"):
        task.load_dataset("test")


def test_bad_manifests_are_named(data, tmp_path):
    def set_field(column, value, row=1):
        def transform(header, rows):
            rows[row] = dict(rows[row], **{column: value})
            return header, rows
        return transform

    cases = [
        (set_field("tgt_lang", "fr"), r"train.tsv, line 3 \(id '.*'\): unknown language tag <lang:fr> \(tgt_lang 'fr'\)"),
        (set_field("n_frames", "7"), r"train.tsv, line 3 \(id '.*'\): n_frames is 7 but the features in .*fbank80.zip at byte \d+ have \d+ frames"),
        (set_field("audio", "missing.zip:10:20"), r"train.tsv, line 3 .*features zip not found: .*missing.zip"),
        (set_field("audio", "fbank80.zip:10:999999999"), r"line 3 .*byte range 10\+999999999 lies beyond the end"),
        (set_field("audio", "fbank80.zip:10:200"), r"line 3 .*no readable .npy features in .*fbank80.zip at byte 10"),
        (set_field("tgt_text", ""), r"train.tsv, line 3 \(id '.*'\): empty tgt_text"),
        (lambda h, r: ([c for c in h if c != "n_frames"], r), r"train.tsv: missing column\(s\) n_frames"),
    ]
    for k, (transform, pattern) in enumerate(cases):
        task = make_task(_copy_data(data, tmp_path / f"bad{k}", transform))
        with pytest.raises(ManifestError, match=pattern):
            task.load_dataset("train")


def test_multitask_without_language_tags_is_refused(data, tmp_path):
    copy = _copy_data(data, tmp_path / "notags", lambda h, r: (h, r))
    (copy / "config.yaml").unlink()
    text = (data / "config.yaml").read_text().replace("prepend_tgt_lang_tag: true", "prepend_tgt_lang_tag: false")
    (copy / "config.yaml").write_text(text)
    task = make_task(copy, multitask_asr_prob=0.5)
    with pytest.raises(ValueError, match=r"train.tsv: multitask ASR\+ST training .* needs language tags"):
        task.load_dataset("train")
    make_task(copy, multitask_asr_prob=0.0).load_dataset("train")  # single-task ST is fine


def test_batch_iterator_keeps_every_utterance_and_detects_drops(data, monkeypatch):
    task = make_task(data)
    task.load_dataset("train")
    ds = task.datasets["train"]
    assert len(ds) == 10
    itr = task.get_batch_iterator(ds, max_tokens=100000, required_batch_size_multiple=8,
                                  max_positions=task.max_positions(), disable_iterator_cache=True)
    seen = sorted(i for batch in itr.next_epoch_itr(shuffle=False) for i in batch["id"].tolist())
    assert seen == list(range(10))

    from fairseq.data import data_utils

    def dropping_batch_by_size(indices, *args, **kwargs):  # what fairseq-fixed does without our shim
        return [np.asarray(indices[:8])]

    monkeypatch.setattr(data_utils, "batch_by_size", dropping_batch_by_size)
    with pytest.raises(BatchingError, match=r"2 of 10 utterances are in no batch"):
        task.get_batch_iterator(ds, max_tokens=100000, required_batch_size_multiple=8,
                                max_positions=task.max_positions(), disable_iterator_cache=True)


def test_source_dictionary_prints_nothing_for_features(data):
    task = make_task(data)
    assert task.source_dictionary.string(torch.randn(5, 80)) == ""
    assert task.source_dictionary.string(torch.tensor([5, 6])) != ""


# --- real fairseq commands ---------------------------------------------------------------------
TINY_MODEL = ["--arch", "s2t_transformer_s", "--encoder-layers", "1", "--decoder-layers", "1",
              "--encoder-embed-dim", "32", "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
              "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
              "--conv-channels", "32"]


def _run(cmd, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, **kw)
    assert proc.returncode == 0, f"{cmd[0]} failed:\n{proc.stderr[-3000:]}"
    return proc


def test_fairseq_train_then_generate_every_utterance(data, tmp_path):
    save = tmp_path / "ckpt"
    _run([BIN / "fairseq-train", data, "--user-dir", USER_DIR, "--task", "speech_to_text_ctc",
          "--train-subset", "train", "--valid-subset", "dev", "--save-dir", save, "--cpu", "--num-workers", "1",
          "--criterion", "label_smoothed_cross_entropy", "--ignore-prefix-size", "1", "--optimizer", "adam",
          "--lr", "1e-3", "--max-tokens", "20000", "--max-update", "2", "--seed", "1", "--no-epoch-checkpoints",
          "--multitask-asr-prob", "0.5", *TINY_MODEL])
    ckpt = save / "checkpoint_last.pt"
    assert ckpt.is_file()
    for lang, column in (("it", "tgt_text"), ("en", "src_text")):
        proc = _run([BIN / "fairseq-generate", data, "--user-dir", USER_DIR, "--task", "speech_to_text_ctc",
                     "--gen-subset", "train", "--path", ckpt, "--cpu", "--beam", "2", "--max-len-b", "5",
                     "--required-batch-size-multiple", "8", "--max-tokens", "20000", "--prefix-size", "1",
                     "--infer-tgt-lang", lang, "--num-workers", "0"])
        hyps = re.findall(r"^H-(\d+)\t", proc.stdout, flags=re.M)
        assert sorted(int(h) for h in hyps) == list(range(10))  # none of the 10 utterances dropped
        refs = dict(re.findall(r"^T-(\d+)\t(.*)$", proc.stdout, flags=re.M))
        _, rows = _rows(data / "train.tsv")
        assert [refs[str(i)] for i in range(10)] == [r[column] for r in rows]
    # comma-joined --gen-subset: ids number the concatenation (2 test + 10 train rows), none repeats
    proc = _run([BIN / "fairseq-generate", data, "--user-dir", USER_DIR, "--task", "speech_to_text_ctc",
                 "--gen-subset", "test,train", "--path", ckpt, "--cpu", "--beam", "1", "--max-len-b", "3",
                 "--max-tokens", "20000", "--prefix-size", "1", "--infer-tgt-lang", "it", "--num-workers", "0"])
    hyps = re.findall(r"^H-(\d+)\t", proc.stdout, flags=re.M)
    assert sorted(int(h) for h in hyps) == list(range(12))
    refs = dict(re.findall(r"^T-(\d+)\t(.*)$", proc.stdout, flags=re.M))
    rows = _rows(data / "test.tsv")[1] + _rows(data / "train.tsv")[1]
    assert [refs[str(i)] for i in range(12)] == [r["tgt_text"] for r in rows]


def test_fairseq_hydra_train_builds_the_task(data, tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "tiny.yaml").write_text(f"""
common: {{cpu: true, seed: 1, log_format: simple, user_dir: {USER_DIR}}}
task: {{_name: speech_to_text_ctc, data: {data}, multitask_asr_prob: 0.5}}
model: {{_name: xattn_conformer, encoder_layers: 1, decoder_layers: 1, ctc_src_layer: 1, conv_channels: 32,
        encoder_embed_dim: 32, encoder_ffn_embed_dim: 64, encoder_attention_heads: 2, decoder_embed_dim: 32,
        decoder_ffn_embed_dim: 64, decoder_attention_heads: 2}}
criterion: {{_name: ctc_multi_loss, ignore_prefix_size: 1}}
optimizer: {{_name: adam}}
lr_scheduler: {{_name: fixed}}
optimization: {{max_update: 1, lr: [0.001]}}
dataset: {{max_tokens: 20000, train_subset: train, valid_subset: dev, num_workers: 0}}
checkpoint: {{save_dir: {tmp_path / 'ckpt'}, no_epoch_checkpoints: true}}
""")
    proc = _run([BIN / "fairseq-hydra-train", "--config-dir", config, "--config-name", "tiny",
                 f"hydra.run.dir={tmp_path / 'hydra'}"], cwd=tmp_path)
    assert (tmp_path / "ckpt" / "checkpoint_last.pt").is_file(), proc.stdout[-2000:]


# --- comma-joined splits, per-split options, config.yaml and audio_root ---------------------------
def _with_splits(data, dst, **splits):
    """A copy of the data folder (files symlinked) with extra manifests: ``name=(source split,
    transform(header, rows))`` writes ``name.tsv`` from ``source``'s rows."""
    dst.mkdir()
    for p in data.iterdir():
        if p.is_file():
            os.symlink(p, dst / p.name)
    for name, (source, transform) in splits.items():
        header, rows = transform(*_rows(data / f"{source}.tsv"))
        with open(dst / f"{name}.tsv", "w", encoding="utf-8") as f:
            f.write("\t".join(header) + "\n")
            for r in rows:
                f.write("\t".join(r[c] for c in header) + "\n")
    return dst


@pytest.mark.parametrize("subset", ["test,train", "train,test"])
def test_comma_joined_splits_batch_every_utterance_under_its_own_id(data, subset):
    # fairseq batches comma-joined splits with the FIRST split's collater: a 2-row split first used to
    # index its ids with the other split's rows (IndexError), the 10-row split first gave wrong ids
    task = make_task(data, multitask_asr_prob=0.5)
    task.load_dataset(subset)
    ds = task.datasets[subset]
    names = subset.split(",")
    rows = {name: _rows(data / f"{name}.tsv")[1] for name in names}
    assert [len(rows[n]) for n in names] in ([2, 10], [10, 2])
    by_id = {r["id"]: r for n in names for r in rows[n]}
    all_ids = [r["id"] for n in names for r in rows[n]]  # sample["id"] numbers the concatenation
    itr = task.get_batch_iterator(ds, max_tokens=1500, required_batch_size_multiple=1,
                                  max_positions=task.max_positions(), disable_iterator_cache=True)
    tgt, src = task.target_dictionary, task.source_dictionary
    seen, n_batches = [], 0
    for batch in itr.next_epoch_itr(shuffle=False):
        n_batches += 1
        assert batch["utt_id"] == [all_ids[i] for i in batch["id"].tolist()]
        for b, utt in enumerate(batch["utt_id"]):
            row = by_id[utt]
            # features, target and CTC source all belong to the utterance named
            assert int(batch["net_input"]["src_lengths"][b]) == int(row["n_frames"])
            n = int(batch["target_lengths"][b])
            training = utt.startswith("train")
            kind = batch["target_kind"][b]
            assert training or kind == TARGET_TRANSLATION  # non-training split: the translation
            text = row["src_text"] if kind == TARGET_TRANSCRIPT else row["tgt_text"]
            assert _text(task, batch["target"][b, 1:n - 1], tgt) == text
            m = int(batch["ctc_src_lengths"][b])
            assert _text(task, batch["ctc_src"][b, :m], src) == row["src_text"]
        seen += batch["utt_id"]
    assert n_batches > 1
    assert sorted(seen) == sorted(by_id)  # every utterance of both splits, once
    assert ds.ids == all_ids  # as for one split: ids[sample["id"]] is the utterance id
    # the multitask draw applies to the training split only
    ds.set_epoch(3)
    kinds = {ds[i].utt_id: ds[i].task for i in range(len(ds))}
    assert {k for u, k in kinds.items() if not u.startswith("train")} == {TARGET_TRANSLATION}
    assert {k for u, k in kinds.items() if u.startswith("train")} == {TARGET_TRANSCRIPT, TARGET_TRANSLATION}


def test_splits_with_and_without_src_text_are_not_mixed(data, tmp_path):
    def drop_src(header, rows):
        return [c for c in header if c != "src_text"], rows

    copy = _with_splits(data, tmp_path / "mixed", nosrc=("dev", drop_src))
    task = make_task(copy)
    with pytest.raises(ManifestError, match=r"nosrc.tsv: no src_text column, but .*train.tsv has one"):
        task.load_dataset("train,nosrc")
    # the collater itself refuses a batch where only some rows have a CTC source (named by utterance)
    task.load_dataset("train")
    task.load_dataset("nosrc")
    with_src, without = task.datasets["train"][0], task.datasets["nosrc"][1]
    _, nosrc_rows = _rows(copy / "nosrc.tsv")
    for items in ([with_src, without], [without, with_src]):
        with pytest.raises(ManifestError, match=rf"nosrc.tsv, line 3 \(id '{nosrc_rows[1]['id']}'\): no src_text"):
            task.datasets["train"].collater(items)


def test_infer_tgt_lang_without_tgt_lang_column_is_refused(data, tmp_path):
    copy = _copy_data(data, tmp_path / "nolang", lambda h, r: ([c for c in h if c not in ("src_lang", "tgt_lang")], r))
    (copy / "config.yaml").unlink()
    (copy / "config.yaml").write_text(
        (data / "config.yaml").read_text().replace("prepend_tgt_lang_tag: true", "prepend_tgt_lang_tag: false"))
    make_task(copy, multitask_asr_prob=0.0).load_dataset("train")  # fine without the flag
    task = make_task(copy, multitask_asr_prob=0.0, infer_tgt_lang="en")
    with pytest.raises(ManifestError, match=r"train.tsv: --infer-tgt-lang 'en' needs .* no tgt_lang column"):
        task.load_dataset("train")


@pytest.mark.parametrize("extra, key", [
    ("dataset_transforms: {_train: [concataugment]}\nconcataugment: {rate: 0.5, max_tokens: 3000}", "dataset_transforms"),
    ("prepend_bos_and_append_tgt_lang_tag: true", "prepend_bos_and_append_tgt_lang_tag"),
    ("waveform_transforms: {'*': [musicaugment]}", "waveform_transforms"),
    ("use_sample_rate: 8000", "use_sample_rate"),
])
def test_config_yaml_options_the_dataset_would_ignore_are_refused(data, tmp_path, extra, key):
    copy = _copy_data(data, tmp_path / "cfg", lambda h, r: (h, r))
    (copy / "config.yaml").unlink()
    text = (data / "config.yaml").read_text()
    if key == "prepend_bos_and_append_tgt_lang_tag":  # fairseq's task refuses it together with prepend_tgt_lang_tag
        text = text.replace("prepend_tgt_lang_tag: true", "prepend_tgt_lang_tag: false")
    (copy / "config.yaml").write_text(text + extra + "\n")
    task = make_task(copy, multitask_asr_prob=0.0)
    with pytest.raises(ValueError, match=rf"{re.escape(str(copy / 'config.yaml'))}: {key}"):
        task.load_dataset("train")


def _overwrite_features(zip_path, ref):
    """Replace the float data of the npy at ``ref`` (``zip:offset:length``) in ``zip_path`` by a ramp."""
    import io

    _, off, length = ref.rsplit(":", 2)
    off, length = int(off), int(length)
    raw = bytearray(Path(zip_path).read_bytes())
    f = io.BytesIO(bytes(raw[off: off + length]))
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(f)
    header = f.tell()
    ramp = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape) % 7
    raw[off + header: off + length] = ramp.tobytes()
    Path(zip_path).write_bytes(bytes(raw))


def test_a_copied_data_folder_reads_its_own_features(data, tmp_path):
    # config.yaml's audio_root is the absolute path of the original folder (xattn prep writes it)
    assert f"audio_root: {data.resolve()}" in (data / "config.yaml").read_text()
    copy = _copy_data(data, tmp_path / "copy", lambda h, r: (h, r))
    (copy / "fbank80.zip").unlink()
    shutil.copyfile(data / "fbank80.zip", copy / "fbank80.zip")
    _, rows = _rows(copy / "train.tsv")
    _overwrite_features(copy / "fbank80.zip", rows[0]["audio"])
    original, copied = make_task(data), make_task(copy)
    original.load_dataset("train")
    copied.load_dataset("train")
    assert all(p.startswith(f"{copy / 'fbank80.zip'}:") for p in copied.datasets["train"].audio_paths)
    a, b = original.datasets["train"][0].source, copied.datasets["train"][0].source
    assert a.shape == b.shape and not torch.allclose(a, b)
    assert torch.allclose(original.datasets["train"][1].source, copied.datasets["train"][1].source)
    # without the features, the copy falls back to audio_root (the original's)
    bare = tmp_path / "bare"
    bare.mkdir()
    for p in copy.iterdir():
        if p.name != "fbank80.zip":
            shutil.copyfile(p, bare / p.name)
    task = make_task(bare)
    task.load_dataset("train")
    assert all(p.startswith(f"{data.resolve() / 'fbank80.zip'}:") for p in task.datasets["train"].audio_paths)
