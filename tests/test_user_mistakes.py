"""Typical user mistakes, made with the real commands in subprocesses: every ``xattn`` subcommand (the list
comes from the dispatcher, so a new subcommand without a case fails here) and fairseq-generate with our
tasks.  Each mistake must end with exit status 2 and exactly one ``error:`` line on stderr, of the form
``xattn SUB: error: ...`` (``fairseq-generate: error: ...``), that names the culprit the test passed (a
path, a flag, an id), and no traceback.  The cases and their messages: /work/notes/user_mistakes.md.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import pytest

from fairseq_xattn.cli import SUBCOMMANDS
from tests.analysis.builders import write_oracle_stores
from tests.fixtures.tiny_s2t import USER_DIR, fairseq_cli

XATTN = str(Path(sys.executable).parent / "xattn")


@dataclass(frozen=True)
class Mistake:
    """``argv`` after ``xattn``; ``{name}`` fields are paths of the :func:`inputs` fixture.  ``culprit``:
    what the one error line must contain (formatted the same way)."""

    command: str
    argv: Tuple[str, ...]
    culprit: str

    @property
    def id(self) -> str:
        return " ".join(self.argv)


def m(culprit: str, *argv: str) -> Mistake:
    return Mistake(argv[0], tuple(argv), culprit)


CASES = [
    # corpus
    m("{plain}", "corpus", "{plain}", "--size", "10"),
    m("--size", "corpus", "{out}/corpus", "--size", "-5"),
    m("--eval-size", "corpus", "{out}/corpus", "--size", "10", "--eval-size", "0"),
    m("--workers", "corpus", "{out}/corpus", "--size", "10", "--workers", "0"),
    # prep
    m("{missing}", "prep", "{missing}", "{out}/prep"),
    m("{plain}", "prep", "{plain}", "{out}/prep"),
    m("--like", "prep", "{raw}", "{out}/prep"),
    m("{raw}", "prep", "{raw}", "{raw}", "--like", "{data}"),
    m("--like {empty}", "prep", "{raw}", "{out}/prep", "--like", "{empty}"),
    m("--vocab-size", "prep", "{raw}", "{out}/prep", "--like", "{data}", "--vocab-size", "10"),
    m("--vocab-size -3", "prep", "{raw_train}", "{out}/prep", "--vocab-size", "-3"),
    m("{raw}/nope.tsv", "prep", "{raw}", "{out}/prep", "--like", "{data}", "--splits", "nope"),
    m("nope.wav", "prep", "{raw}", "{out}/prep", "--like", "{data}", "--splits", "test"),
    # average
    m("{missing}.pt", "average", "{missing}.pt", "--output", "{out}/avg.pt"),
    m("{not_checkpoint}", "average", "{not_checkpoint}", "--output", "{out}/avg.pt"),
    m("{truncated_checkpoint}", "average", "{truncated_checkpoint}", "--output", "{out}/avg.pt"),
    m("--last", "average", "{checkpoint}", "--last", "0", "--output", "{out}/avg.pt"),
    m("--output {empty}", "average", "{checkpoint}", "--output", "{empty}"),
    # whisper-import
    m("{missing}.pt", "whisper-import", "{missing}.pt", "{out}/whisper"),
    m("{not_checkpoint}", "whisper-import", "{not_checkpoint}", "{out}/whisper"),
    m("{empty}", "whisper-import", "{empty}", "{out}/whisper"),
    m("--format", "whisper-import", "{not_checkpoint}", "{out}/whisper", "--format", "nope"),
    # score
    m("--hyp {missing}.txt", "score", "--hyp", "{missing}.txt", "--ref", "{plain}"),
    m("--generate-output {missing}.txt", "score", "--generate-output", "{missing}.txt"),
    m("{plain}", "score", "--generate-output", "{plain}"),
    m("--store: {sh}", "score", "--store", "{sh}"),
    m("{truncated_store}", "score", "--store", "{truncated_store}"),
    m("--metrics", "score", "--store", "{ca}", "--metrics", "nope"),
    m("--json {empty}", "score", "--store", "{ca}", "--json", "{empty}"),
    # correlate
    m("--attention: store not found: {missing}", "correlate", "--attention", "{missing}", "--saliency", "{sh}"),
    m("--attention: {sh}", "correlate", "--attention", "{sh}", "--saliency", "{sh}"),
    m("--saliency: {ca}", "correlate", "--attention", "{ca}", "--saliency", "{ca}"),
    m("{truncated_store}", "correlate", "--attention", "{truncated_store}", "--saliency", "{sh}"),
    m("{bad_index}", "correlate", "--attention", "{bad_index}", "--saliency", "{sh}"),
    m("--aggregation", "correlate", "--attention", "{ca}", "--saliency", "{sh}", "--aggregation", "nope"),
    m("--subset 'x': pair (9, 9)", "correlate", "--attention", "{ca}", "--saliency", "{sh}", "--subset", "x=9:9"),
    m("--saliency-norm", "correlate", "--attention", "{ca}", "--saliency", "{sh}", "--saliency-norm", "nope"),
    m("--subsampling", "correlate", "--attention", "{ca}", "--saliency", "{sh}", "--subsampling", "-2"),
    m("--json {empty}", "correlate", "--attention", "{ca}", "--saliency", "{sh}", "--json", "{empty}"),
    m("--csv {ca}/r.csv", "correlate", "--attention", "{ca}", "--saliency", "{sh}", "--csv", "{ca}/r.csv"),
    # faithfulness (all but the checkpoint case fail before the model is loaded)
    m("--step 7", "faithfulness", "--checkpoint", "{checkpoint}", "--data", "{data}", "--explanation",
      "CA=attention:{ca}", "--step", "7"),
    m("{missing}", "faithfulness", "--checkpoint", "{checkpoint}", "--data", "{data}", "--explanation",
      "CA=attention:{missing}"),
    m("--explanation '{ca}'", "faithfulness", "--checkpoint", "{checkpoint}", "--data", "{data}", "--explanation",
      "{ca}"),
    m("--attention-pairs 9:9", "faithfulness", "--checkpoint", "{checkpoint}", "--data", "{data}", "--explanation",
      "CA=attention:{ca}", "--attention-pairs", "9:9"),
    m("--beam", "faithfulness", "--checkpoint", "{checkpoint}", "--data", "{data}", "--explanation",
      "CA=attention:{ca}", "--beam", "0"),
    m("--json {empty}", "faithfulness", "--checkpoint", "{checkpoint}", "--data", "{data}", "--explanation",
      "CA=attention:{ca}", "--json", "{empty}"),
    m("--checkpoint {not_checkpoint}", "faithfulness", "--checkpoint", "{not_checkpoint}", "--data", "{data}",
      "--explanation", "CA=attention:{ca}"),
    # plot
    m("--json {missing}.json", "plot", "grid", "--json", "{missing}.json", "--out", "{out}/grid"),
    m("--json {malformed_json}", "plot", "grid", "--json", "{malformed_json}", "--out", "{out}/grid"),
    m("--json {faithfulness_json}", "plot", "grid", "--json", "{faithfulness_json}", "--out", "{out}/grid"),
    m("'nope'", "plot", "utterance", "--id", "nope", "--attention", "{ca}", "--out", "{out}/u"),
    m("--attention: {sh}", "plot", "utterance", "--id", "test_0000", "--attention", "{sh}", "--out", "{out}/u"),
    m("--layer 9", "plot", "utterance", "--id", "test_0000", "--attention", "{ca}", "--layer", "9", "--out", "{out}/u"),
    m("--max-tokens", "plot", "utterance", "--id", "test_0000", "--attention", "{ca}", "--max-tokens", "-1",
      "--out", "{out}/u"),
    # view
    m("'nope'", "view", "--attention", "{ca}", "--ids", "nope", "--out", "{out}/v.html"),
    m("--saliency-input {sh}", "view", "--attention", "{ca}", "--saliency-input", "{sh}", "--out", "{out}/v.html"),
    m("--saliency-encoder: {truncated_store}", "view", "--attention", "{ca}", "--saliency-encoder",
      "{truncated_store}", "--out", "{out}/v.html"),
    m("--timestamps {missing}.jsonl", "view", "--attention", "{ca}", "--timestamps", "{missing}.jsonl",
      "--out", "{out}/v.html"),
    m("--max-utterances", "view", "--attention", "{ca}", "--max-utterances", "-3", "--out", "{out}/v.html"),
    m("--out {ca}/v.html", "view", "--attention", "{ca}", "--out", "{ca}/v.html"),
    m("--out {empty}", "view", "--attention", "{ca}", "--out", "{empty}"),
    # timestamps
    m("--attention: store not found: {missing}", "timestamps", "--attention", "{missing}", "--out-dir", "{out}/t"),
    m("--saliency: {ca}", "timestamps", "--saliency", "{ca}", "--out-dir", "{out}/t"),
    m("--heads 9:9", "timestamps", "--attention", "{ca}", "--heads", "9:9", "--out-dir", "{out}/t"),
    m("--heads {malformed_json}", "timestamps", "--attention", "{ca}", "--heads", "{malformed_json}", "--out-dir",
      "{out}/t"),
    m("--rank 3", "timestamps", "--attention", "{ca}", "--rank", "3", "--out-dir", "{out}/t"),
    m("--rank", "timestamps", "--attention", "{ca}", "--rank", "-1", "--out-dir", "{out}/t"),
    m("--out-dir {ca}", "timestamps", "--attention", "{ca}", "--out-dir", "{ca}"),
    m("--out-dir {plain}", "timestamps", "--attention", "{ca}", "--out-dir", "{plain}"),
    m("--collar", "timestamps", "evaluate", "--reference", "{ctm}", "--attention", "{ca}", "--collar", "-1"),
    m("{malformed_ctm}, line 1", "timestamps", "evaluate", "--reference", "{malformed_ctm}", "--attention", "{ca}"),
    m("--hypotheses {missing}.jsonl", "timestamps", "evaluate", "--reference", "{ctm}", "--hypotheses",
      "{missing}.jsonl"),
    # store
    m("{missing}", "store", "info", "{missing}"),
    m("{plain}", "store", "info", "{plain}"),
    m("{truncated_store}", "store", "verify", "{truncated_store}"),
    m("{bad_index}", "store", "verify", "{bad_index}"),
    m("{sh}", "store", "merge", "{ca}", "{sh}", "--out", "{out}/merged"),
    m("--out {ca}/merged", "store", "merge", "{ca}", "--out", "{ca}/merged"),
    m("--out {ca}", "store", "export", "{ca}", "--out", "{ca}"),
    m("'nope'", "store", "export", "{ca}", "--out", "{out}/exported", "--ids", "nope"),
    # user-dir
    m("--chek", "user-dir", "--chek"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_data, tiny_checkpoint):
    """Paths of every input the mistakes use, built once: tiny stores, damaged copies, wrong files."""
    root = tmp_path_factory.mktemp("mistakes")
    sx, sh, ca = write_oracle_stores(tiny_data, root / "stores")
    shutil.rmtree(sx)  # not needed, and the largest
    truncated = root / "truncated_store"
    shutil.copytree(ca, truncated)
    os.truncate(truncated / "arrays.bin", (truncated / "arrays.bin").stat().st_size // 2)
    bad_index = root / "bad_index"
    shutil.copytree(ca, bad_index)
    with open(bad_index / "index.jsonl", "a") as f:
        f.write('{"id": "half a line\n')
    (root / "empty").mkdir()
    (root / "plain.txt").write_text("not what the command expects\n")
    (root / "malformed.json").write_text('{"grid": [1, 2\n')
    (root / "faithfulness.json").write_text(json.dumps({"rows": [], "percents": [0, 100]}))
    (root / "ref.ctm").write_text("test_0000 1 0.00 0.30 juliet\n")
    (root / "malformed.ctm").write_text("test_0000 juliet\n")
    (root / "not_a_checkpoint.pt").write_text("hello\n")
    data = tiny_checkpoint.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 3])
    raw = root / "raw"  # evaluation audio for --like: an audio file that does not exist
    raw.mkdir()
    (raw / "test.tsv").write_text("id\taudio\tsrc_text\nu1\tnope.wav\thello\n")
    raw_train = root / "raw_train"
    raw_train.mkdir()
    (raw_train / "train.tsv").write_text("id\taudio\tsrc_text\nu1\tnope.wav\thello\n")
    return {
        "out": root / "out", "missing": root / "missing", "empty": root / "empty", "plain": root / "plain.txt",
        "ca": ca, "sh": sh, "truncated_store": truncated, "bad_index": bad_index,
        "malformed_json": root / "malformed.json", "faithfulness_json": root / "faithfulness.json",
        "ctm": root / "ref.ctm", "malformed_ctm": root / "malformed.ctm",
        "not_checkpoint": root / "not_a_checkpoint.pt", "truncated_checkpoint": root / "truncated.pt",
        "checkpoint": tiny_checkpoint, "data": tiny_data, "raw": raw, "raw_train": raw_train,
    }


def run(command) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, timeout=300)


def the_one_error_line(stderr: str, prefix: str) -> str:
    """The single ``error:`` line of ``stderr``; it must start with ``prefix`` (a regex)."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, stderr[-3000:]
    assert re.match(prefix, lines[0]), lines[0]
    return lines[0]


def test_every_subcommand_has_a_mistake():
    """A subcommand added to the dispatcher needs its typical mistakes here."""
    assert {case.command for case in CASES} == set(SUBCOMMANDS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_mistake_is_one_line_naming_the_culprit(case, inputs):
    argv = [a.format(**inputs) for a in case.argv]
    proc = run([XATTN, *argv])
    assert proc.returncode == 2, proc.stderr[-3000:]
    # argparse's own errors come from the sub-parser: "xattn plot utterance: error: ..."
    line = the_one_error_line(proc.stderr, rf"xattn {re.escape(case.command)}( [\w-]+)?: error: ")
    assert case.culprit.format(**inputs) in line


def _explain(inputs, *extra):
    return [*fairseq_cli("generate"), inputs["data"], "--user-dir", USER_DIR, "--task", "speech_explain",
            "--path", inputs["checkpoint"], "--gen-subset", "test", "--cpu", *extra]


def _decode(inputs, path):
    return [*fairseq_cli("generate"), inputs["data"], "--user-dir", USER_DIR, "--task", "speech_to_text_ctc",
            "--path", path, "--gen-subset", "test", "--cpu"]


GENERATE_CASES = [
    pytest.param(lambda i: _explain(i), "--explain-hypotheses", id="speech_explain without --explain-hypotheses"),
    pytest.param(lambda i: _explain(i, "--explain-hypotheses", i["ca"], "--explain-store", i["out"] / "sal",
                                    "--explain-masks", "0"), "--explain-masks", id="speech_explain --explain-masks 0"),
    pytest.param(lambda i: _decode(i, i["not_checkpoint"]), "{not_checkpoint}", id="--path not a checkpoint"),
    pytest.param(lambda i: _decode(i, i["truncated_checkpoint"]), "{truncated_checkpoint}",
                 id="--path truncated checkpoint"),
    pytest.param(lambda i: _decode(i, i["out"] / "no_such.pt"), "no_such.pt", id="--path missing checkpoint"),
]


@pytest.mark.parametrize("command, culprit", GENERATE_CASES)
def test_a_fairseq_generate_mistake_is_one_line(command, culprit, inputs):
    proc = run(command(inputs))
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = the_one_error_line(proc.stderr, r"fairseq-generate: error: ")
    assert culprit.format(**inputs) in line


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux), a device that is always full")
def test_a_full_disk_is_one_line_saying_no_space_left(inputs):
    """Any output on a full disk: /dev/full fails every write with ENOSPC."""
    proc = run([XATTN, "correlate", "--attention", inputs["ca"], "--saliency", inputs["sh"], "--json", "/dev/full"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = the_one_error_line(proc.stderr, r"xattn correlate: error: no space left on the device")
    assert "run the same command again" in line


def test_the_fairseq_commands_report_a_full_disk_in_one_line():
    """The excepthook of fairseq-generate/-train turns ENOSPC from anywhere into the same one line."""
    script = ("import errno, sys; from fairseq_xattn.errors import report_user_errors_in_one_line as r; "
              "r('fairseq-generate'); raise OSError(errno.ENOSPC, 'No space left on device', '/data/out/arrays.bin')")
    proc = run([sys.executable, "-c", script])
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = the_one_error_line(proc.stderr, r"fairseq-generate: error: no space left on the device while writing "
                                           r"/data/out/arrays.bin: free some space")
    assert line.endswith("(finished work is kept: stores resume, outputs are written anew)")
