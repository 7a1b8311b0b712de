"""End to end: the real fairseq-generate with --user-dir fairseq_xattn --task speech_to_text_ctc."""
from __future__ import annotations

import csv
import math
import os
import re
import subprocess

import pytest

from fairseq_xattn.stores import KIND_CROSS_ATTENTION, open_store
from tests.fixtures.tiny_s2t import USER_DIR, fairseq_cli

from .helpers import data_copy, subsampled

SEARCH = ["--beam", "5", "--nbest", "2", "--no-repeat-ngram-size", "2"]


def generate(data, checkpoint, *extra) -> str:
    cmd = fairseq_cli("generate") + [
        str(data), "--user-dir", str(USER_DIR), "--task", "speech_to_text_ctc", "--gen-subset", "test",
        "--path", str(checkpoint), "--max-tokens", "4000", "--required-batch-size-multiple", "8",
        "--scoring", "wer", "--cpu", "--num-workers", "0", *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def lines(output: str, *prefixes: str):
    return [line for line in output.splitlines() if line.startswith(prefixes)]


@pytest.fixture(scope="module")
def runs(tiny_data, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    return {
        "plain": generate(tiny_data, tiny_checkpoint, *SEARCH),
        "recorded": generate(tiny_data, tiny_checkpoint, *SEARCH, "--record-cross-attn", str(out / "store"),
                             "--print-alignment", "hard"),
        "forced": generate(tiny_data, tiny_checkpoint, "--record-cross-attn", str(out / "forced"),
                           "--teacher-forced", "reference"),
        "out": out,
    }


@pytest.fixture(scope="module")
def manifest(tiny_data):
    with open(tiny_data / "test.tsv") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_recording_leaves_generate_output_unchanged(runs):
    plain, recorded = runs["plain"], runs["recorded"]
    for prefix in ("T-", "H-", "D-", "P-", "Generate test"):
        assert lines(plain, prefix) == lines(recorded, prefix), prefix
    assert lines(plain, "H-") and lines(plain, "Generate test with beam=5: WER")


def test_every_utterance_is_generated_and_recorded(runs, manifest):
    # 10 utterances with --required-batch-size-multiple 8: fairseq-fixed alone would drop 2
    sample_ids = {int(line.split("\t")[0][2:]) for line in lines(runs["recorded"], "H-")}
    assert sample_ids == set(range(len(manifest)))
    assert len(lines(runs["recorded"], "H-")) == 2 * len(manifest)
    with open_store(runs["out"] / "store", KIND_CROSS_ATTENTION) as store:
        assert sorted(store.keys()) == sorted((row["id"], r) for row in manifest for r in (0, 1))


def test_store_matches_printed_hypotheses(runs, manifest):
    hypotheses = {}
    for line in lines(runs["recorded"], "D-"):
        key, score, text = line.split("\t")
        hypotheses.setdefault(int(key[2:]), []).append((float(score), text))
    with open_store(runs["out"] / "store", KIND_CROSS_ATTENTION) as store:
        for index, row in enumerate(manifest):
            for rank, (score, text) in enumerate(hypotheses[index]):
                meta = store.row_meta(row["id"], rank)
                assert meta["text"] == text and meta["reference"] == row["tgt_text"]
                assert meta["score"] / math.log(2) == pytest.approx(score, abs=1e-3)
                assert meta["n_frames"] == int(row["n_frames"])
                assert meta["n_encoder_frames"] == subsampled(int(row["n_frames"]))


def test_print_alignment_on_speech(runs, manifest):
    alignments = lines(runs["recorded"], "A-")
    assert len(alignments) == 2 * len(manifest)
    hypotheses = lines(runs["recorded"], "H-")
    for a_line, h_line in zip(alignments, hypotheses):
        key, pairs = a_line.split("\t")
        index = int(key[2:])
        n_words = len(h_line.split("\t")[2].split())
        pairs = [tuple(map(int, p.split("-"))) for p in pairs.split()]
        assert [t for _, t in pairs] == list(range(n_words))
        assert all(0 <= f < subsampled(int(manifest[index]["n_frames"])) for f, _ in pairs)


def test_teacher_forced_reference_from_the_command_line(runs, manifest):
    # the printed hypotheses are the references, scored by the model: WER 0
    assert re.search(r"WER: 0\.00", runs["forced"])
    with open_store(runs["out"] / "forced", KIND_CROSS_ATTENTION) as store:
        assert store.meta["mode"] == "teacher_forced"
        assert sorted(store.ids()) == sorted(row["id"] for row in manifest)
        for row in manifest:
            record = store.get(row["id"])
            assert record.meta["text"] == row["tgt_text"]
            assert record["attention"].shape[2] == len(row["tgt_text"].split()) + 1


def test_stored_text_and_reference_equal_the_printed_lines_with_unk(tiny_data, tiny_checkpoint, tmp_path):
    # references with a word not in the dictionary; teacher forcing them gives hypotheses with <unk>:
    # fairseq prints T- lines with '<<unk>>' and D- lines with '<unk>'; the store must say the same
    data = data_copy(tiny_data, tmp_path / "data", {"delta": "zulu"})
    out = generate(data, tiny_checkpoint, "--record-cross-attn", str(tmp_path / "store"), "--teacher-forced", "reference")
    with open(data / "test.tsv") as f:
        ids = [row["id"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    printed = {}
    for line in lines(out, "T-", "D-"):
        key, *_, text = line.split("\t")
        printed[key[0], ids[int(key[2:])]] = text
    assert sum("<unk>" in text for (kind, _), text in printed.items() if kind == "D") == 6
    with open_store(tmp_path / "store", KIND_CROSS_ATTENTION) as store:
        for utt_id in ids:
            meta = store.row_meta(utt_id)
            assert meta["text"] == printed["D", utt_id]
            assert meta["reference"] == printed["T", utt_id]
