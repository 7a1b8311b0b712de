"""Whisper through the whole pipeline with the stock fairseq commands: a folder of ``xattn
whisper-import`` (the random small Whisper of conftest.py, 1-second window) + a manifest of wav files
-> fairseq-generate (decode, record, teacher forcing) -> fairseq-generate --task speech_explain (both
targets) -> xattn correlate / timestamps; and the errors a user meets on the way."""
import json
import math
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from fairseq_xattn.data.whisper_features import num_frames, silence_value
from fairseq_xattn.errors import UserError
from fairseq_xattn.stores import StoreReader
from tests.explain.generate_runner import assert_same_store, explain_argv, generate_in_process
from tests.fixtures.tiny_s2t import USER_DIR, fairseq_cli

from .conftest import ALIGNMENT_HEADS, EOT, NO_TIMESTAMPS, speech_like

#: (id, samples at 16 kHz, transcript): all within the test model's 1-second window
UTTERANCES = [("utt_a", 12000, "hi there"), ("utt_b", 9000, "a cat"), ("utt_c", 6000, "ok")]
MAX_LEN = ["--max-len-b", "6"]
ENCODER = ["--explain-target", "encoder", "--explain-masks", "64"]
INPUT = ["--explain-target", "input", "--explain-masks", "6", "--explain-patches-per-second", "100,200"]


def write_manifest(folder, split, rows):
    """``rows``: (id, wav path, transcript); n_frames is Whisper's frame count of the file."""
    lines = ["id\taudio\tn_frames\ttgt_text"]
    for utt_id, wav, text in rows:
        lines.append(f"{utt_id}\t{wav}\t{num_frames(sf.info(str(wav)).frames)}\t{text}")
    (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def whisper_data(hf_whisper_folder, tmp_path_factory):
    """The imported model's folder, used as fairseq-generate's DATA, with test.tsv of three wav files."""
    from fairseq_xattn.models.whisper.importer import import_whisper

    folder = tmp_path_factory.mktemp("whisper_data")
    import_whisper(str(hf_whisper_folder), folder / "model")
    data = folder / "model"
    rows = []
    for k, (utt_id, n, text) in enumerate(UTTERANCES):
        wav = folder / f"{utt_id}.wav"
        sf.write(str(wav), speech_like(n, seed=10 + k), 16000)
        rows.append((utt_id, wav, text))
    write_manifest(data, "test", rows)
    return data


def generate_argv(data, *extra):
    return [str(data), "--user-dir", str(USER_DIR), "--task", "speech_to_text_ctc", "--path",
            str(data / "checkpoint.pt"), "--gen-subset", "test", "--cpu", "--max-tokens", "100000", *MAX_LEN, *extra]


@pytest.fixture(scope="module")
def recorded(whisper_data, tmp_path_factory):
    """Beam search (beam 2) recorded by the real fairseq-generate command, in a subprocess."""
    store = tmp_path_factory.mktemp("rec") / "attention"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([str(c) for c in fairseq_cli("generate") + generate_argv(
        whisper_data, "--beam", "2", "--record-cross-attn", store)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return store, proc.stdout


def _dictionary(data):
    from fairseq_xattn.models.whisper.vocabulary import WhisperDictionary

    return WhisperDictionary.load(data / "whisper_dictionary.json")


def test_generate_prints_whisper_text_and_records_the_real_audio_frames(recorded, whisper_data):
    store, printed = recorded
    d = _dictionary(whisper_data)
    lines = printed.split("\n")  # not splitlines(): random tokens decode to \x1e and other line breaks
    refs = {line.split("\t")[1] for line in lines if line.startswith("T-")}
    assert refs == {text for _, _, text in UTTERANCES}  # references tokenised by Whisper's BPE and decoded back
    with StoreReader(store, expect_kind="cross_attention") as reader:
        assert reader.meta["alignment_heads"] == ALIGNMENT_HEADS  # 0-based, for --heads whisper
        assert reader.meta["decoder_prompt"] == [NO_TIMESTAMPS]
        records = {rec.id: rec for rec in reader}
        assert sorted(records) == sorted(u for u, _, _ in UTTERANCES)
        for utt_id, n, text in UTTERANCES:
            rec = records[utt_id]
            meta, attention = rec.meta, rec["attention"]
            t = num_frames(n)
            assert meta["n_frames"] == t and meta["n_encoder_frames"] == math.ceil(t / 2)
            assert meta["subsampling"] == 2 and meta["prefix_len"] == 1
            assert meta["tokens"][0] == NO_TIMESTAMPS and meta["tokens"][-1] == EOT
            assert meta["reference"] == text
            assert meta["text"] == d.decode(meta["tokens"]).strip()
            assert attention.shape == (2, 4, len(meta["tokens"]), math.ceil(t / 2))
            # cropped to the audio: the rest of each row's mass is on the window's padding states
            sums = attention.sum(-1)
            assert (sums > 0).all() and (sums < 1 - 1e-4).all()
            d_lines = [line for line in lines if line.startswith("D-")]
            assert meta["text"] in {line.split("\t")[2] for line in d_lines}


def test_recorded_attention_equals_teacher_forced_recomputation(recorded, whisper_data, tmp_path):
    store, _ = recorded
    tsv = tmp_path / "hyp.tsv"
    with StoreReader(store) as reader:
        beam = {rec.id: (rec.meta, rec["attention"]) for rec in reader}
    # the recorded tokens without EOS (the TSV reader appends it); they start with the prompt, not doubled
    tsv.write_text("id\ttokens\n" + "".join(f"{u}\t{' '.join(m['token_strings'][:-1])}\n" for u, (m, _) in beam.items()))
    forced = tmp_path / "forced"
    generate_in_process(generate_argv(whisper_data, "--beam", "2", "--teacher-forced", str(tsv),
                                      "--record-cross-attn", str(forced)))
    with StoreReader(forced) as reader:
        for rec in reader:
            meta, attention = beam[rec.id]
            assert rec.meta["tokens"] == meta["tokens"] and rec.meta["prefix_len"] == 1
            np.testing.assert_allclose(rec["attention"], attention, atol=1e-5, rtol=0, err_msg=rec.id)


def test_teacher_forced_reference_starts_with_the_prompt(whisper_data, tmp_path):
    forced = tmp_path / "ref"
    generate_in_process(generate_argv(whisper_data, "--teacher-forced", "reference", "--record-cross-attn",
                                      str(forced)))
    d = _dictionary(whisper_data)
    with StoreReader(forced) as reader:
        for utt_id, _, text in UTTERANCES:
            meta = reader.row_meta(utt_id, 0)
            # Whisper's transcripts start with a space; the reference is tokenised the same way
            assert meta["tokens"] == [NO_TIMESTAMPS] + d.encode(" " + text) + [EOT]
            assert meta["prefix_len"] == 1 and meta["text"] == text


@pytest.fixture(scope="module")
def explained(recorded, whisper_data, tmp_path_factory):
    """Both targets explained (default batching) on the recorded hypotheses."""
    store, _ = recorded
    out = tmp_path_factory.mktemp("explained")
    for name, options in (("encoder", ENCODER), ("input", INPUT)):
        generate_in_process(explain_argv(whisper_data, whisper_data / "checkpoint.pt", store, out / name, *options,
                                         "--max-tokens", "100000"))
    return out


def test_explained_maps_cover_the_real_frames(explained, recorded):
    with StoreReader(recorded[0]) as reader:
        attention_meta = {rec.id: rec.meta for rec in reader}
    for target in ("encoder", "input"):
        with StoreReader(explained / target, expect_kind="saliency") as reader:
            assert reader.meta["target"] == target
            for rec in reader:
                meta, saliency = rec.meta, rec["saliency"]
                expected = attention_meta[rec.id]
                assert meta["tokens"] == expected["tokens"] and meta["prefix_len"] == 1 and meta["subsampling"] == 2
                assert meta["n_encoder_frames"] == expected["n_encoder_frames"]
                shape = (len(meta["tokens"]), meta["n_frames"], 80) if target == "input" else \
                    (len(meta["tokens"]), meta["n_encoder_frames"])
                assert saliency.shape == shape and np.isfinite(saliency).all() and saliency.max() > 0


def test_positional_scores_of_the_explainer_are_the_recorded_hypothesis_scores(explained, recorded):
    """The explainer's forced decoding ([<|startoftranscript|>] + tokens[:-1]) gives the log-probabilities
    whose length-normalised sum is the beam's score: a wrong first input would not."""
    with StoreReader(recorded[0]) as reader:
        scores = {rec.id: rec.meta["score"] for rec in reader}
    with StoreReader(explained / "encoder") as reader:
        for rec in reader:
            positional = rec.meta["positional_scores"]
            assert sum(positional) / len(positional) == pytest.approx(scores[rec.id], abs=1e-4), rec.id


def test_encoder_maps_do_not_depend_on_batching(explained, recorded, whisper_data, tmp_path):
    generate_in_process(explain_argv(whisper_data, whisper_data / "checkpoint.pt", recorded[0], tmp_path / "bs1",
                                     *ENCODER, "--batch-size", "1", "--explain-mask-batch-size", "7"))
    assert_same_store(explained / "encoder", tmp_path / "bs1")


def test_input_maps_do_not_depend_on_batching_or_sharding(explained, recorded, whisper_data, tmp_path):
    generate_in_process(explain_argv(whisper_data, whisper_data / "checkpoint.pt", recorded[0], tmp_path / "bs1",
                                     *INPUT, "--batch-size", "1"))
    assert_same_store(explained / "input", tmp_path / "bs1")
    for k in (1, 0):
        generate_in_process(explain_argv(whisper_data, whisper_data / "checkpoint.pt", recorded[0], tmp_path / "sal",
                                         *INPUT, "--batch-size", "1", "--num-shards", "2", "--shard-id", str(k)))
    from fairseq_xattn.cli import main as xattn

    shards = sorted(str(p) for p in tmp_path.glob("sal.shard*-of-2"))
    assert len(shards) == 2
    assert xattn(["store", "merge", *shards, "--out", str(tmp_path / "merged")]) == 0
    assert_same_store(explained / "input", tmp_path / "merged")


def test_correlate_and_whisper_timestamps_on_the_stores(explained, recorded, tmp_path):
    from fairseq_xattn.cli import main as xattn

    pairs = ",".join(f"{layer + 1}:{head + 1}" for layer, head in ALIGNMENT_HEADS)  # correlate's are 1-based
    for target in ("encoder", "input"):
        out = tmp_path / f"{target}.json"
        assert xattn(["correlate", "--attention", str(recorded[0]), "--saliency", str(explained / target),
                      "--subset", f"alignment={pairs}", "--json", str(out)]) == 0
        assert out.stat().st_size > 0 and "alignment" in out.read_text()
    assert xattn(["timestamps", "--attention", str(recorded[0]), "--heads", "whisper", "--method", "dtw",
                  "--out-dir", str(tmp_path / "times"), "--format", "json"]) == 0
    assert any((tmp_path / "times").iterdir())


# -- the explainer's input perturbation on Whisper ---------------------------------------------------

def test_occlusion_fills_with_the_utterances_silence_and_keeps_its_padding(hf_whisper_folder, whisper_dictionary):
    from fairseq_xattn.explain.forced_decoder import FairseqForcedDecoder

    from .helpers import fairseq_whisper, utterance_features

    model = fairseq_whisper(hf_whisper_folder, whisper_dictionary).eval()
    adapter = FairseqForcedDecoder(model)
    features = torch.from_numpy(utterance_features()[0])
    silence = silence_value(features.numpy())
    assert adapter.input_fill_value(features) == pytest.approx(silence, abs=1e-6)
    assert adapter.input_frames_per_pass(features.shape[0]) == 100  # the test model's whole window
    # Occluding the loudest cells lowers the copy's own silence value; the pinned padding keeps the original.
    perturbed = features.masked_fill(features > features.max() - 0.3, silence).unsqueeze(0)
    lengths = torch.tensor([features.shape[0]])
    assert silence_value(perturbed[0].numpy()) < silence - 0.1
    with torch.no_grad():
        pinned = adapter.encode(perturbed, lengths, fill_value=silence)["encoder_out"][0]
        explicit = model.encoder(perturbed, lengths, padding_value=torch.tensor([silence]))["encoder_out"][0]
        own = model.encoder(perturbed, lengths)["encoder_out"][0]
    torch.testing.assert_close(pinned, explicit)
    assert (pinned - own).abs().max() > 1e-3


# -- errors -------------------------------------------------------------------------------------------

def _fails(data, split):
    with pytest.raises(UserError) as err:
        generate_in_process([str(data), "--user-dir", str(USER_DIR), "--task", "speech_to_text_ctc", "--path",
                             str(data / "checkpoint.pt"), "--gen-subset", split, "--cpu", *MAX_LEN])
    return str(err.value)


def test_audio_over_30_seconds_is_refused_naming_the_row(whisper_data, tmp_path):
    wav = tmp_path / "long.wav"
    sf.write(str(wav), np.zeros(16000 * 31, dtype=np.float32), 16000)
    (whisper_data / "long.tsv").write_text(f"id\taudio\tn_frames\ttgt_text\nlong_one\t{wav}\t3000\tx\n")
    message = _fails(whisper_data, "long")
    assert "long.tsv, line 2 (id 'long_one')" in message and "31.00 s" in message and "30 s" in message
    assert "\n" not in message


def test_wrong_sample_rate_is_refused_naming_the_row(whisper_data, tmp_path):
    wav = tmp_path / "eight_khz.wav"
    sf.write(str(wav), speech_like(4000, seed=3), 8000)
    (whisper_data / "rate.tsv").write_text(f"id\taudio\tn_frames\ttgt_text\nslow\t{wav}\t51\tx\n")
    message = _fails(whisper_data, "rate")
    assert "rate.tsv, line 2 (id 'slow')" in message and "8000 Hz" in message and "16000 Hz" in message


def test_missing_tokenizer_is_one_line_naming_the_folder(whisper_data, tmp_path):
    """fairseq-generate (subprocess): exit status 2 and one line naming the folder, no traceback."""
    data = tmp_path / "no_tokenizer"
    shutil.copytree(whisper_data, data, ignore=shutil.ignore_patterns("vocab.json", "merges.txt", "*.pt"))
    (data / "checkpoint.pt").symlink_to(whisper_data / "checkpoint.pt")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([str(c) for c in fairseq_cli("generate") + generate_argv(data, "--beam", "1")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith("fairseq-generate: error:") and str(data) in errors[0]
    assert "tokenizer.json" in errors[0] and "merges.txt" in errors[0]


def test_prefix_size_conflicts_with_the_whisper_prompt(whisper_data):
    with pytest.raises(UserError, match="--prefix-size 1: a Whisper model's prompt"):
        generate_in_process(generate_argv(whisper_data, "--prefix-size", "1"))


def test_prepared_whisper_features_equal_those_computed_from_the_wavs(whisper_data, recorded, tmp_path):
    """xattn prep --like the imported folder: Whisper log-mel in whisper80_<split>.zip, Whisper's frame
    counts; fairseq-generate on it gives the same hypotheses as on the wav manifest."""
    from fairseq_xattn.data.prep import prepare

    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [line.split("\t") for line in (whisper_data / "test.tsv").read_text().splitlines()[1:]]
    (raw / "test.tsv").write_text("id\taudio\tsrc_text\n" + "".join(f"{r[0]}\t{r[1]}\t{r[3]}\n" for r in rows))
    out = tmp_path / "prepared"
    summary = prepare(raw, out, like=whisper_data)
    assert summary["features"] == "whisper" and (out / "whisper80_test.zip").is_file()
    prepared = [line.split("\t") for line in (out / "test.tsv").read_text().splitlines()[1:]]
    assert [r[2] for r in prepared] == [r[2] for r in rows]  # n_frames: Whisper's count
    printed = generate_in_process([str(out), "--user-dir", str(USER_DIR), "--task", "speech_to_text_ctc", "--path",
                                   str(whisper_data / "checkpoint.pt"), "--gen-subset", "test", "--cpu", "--beam", "2",
                                   *MAX_LEN])
    ours = sorted(line for line in printed.split("\n") if line.startswith("D-"))
    theirs = sorted(line for line in recorded[1].split("\n") if line.startswith("D-"))
    assert [line.split("\t")[2] for line in ours] == [line.split("\t")[2] for line in theirs]
