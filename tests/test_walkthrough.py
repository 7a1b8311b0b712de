"""docs/walkthrough.md end to end: every command of its ``bash`` blocks, as a user types them, run by
the real ``xattn`` and ``fairseq-generate`` of the venv in subprocesses, on clips this test makes
(44.1 kHz stereo wav, 8 kHz wav, 22.05 kHz flac, different lengths), with a small trained
``xattn_conformer`` (CTC heads included) and the data folder it was trained with.

The commands come from the page itself, so the page and the test cannot drift apart; only the values
of the settings block (MODEL_DATA, CKPT, MASKS) are the test's.  Each step's real output is checked:
the prepared split against the model's dictionaries, one hypothesis and one record per clip with
T and T' = ceil(T / 4) computed here from the audio, saliency maps of exactly the recorded
hypotheses, the correlation table, word times inside each clip, verified stores, the explorer's data.
"""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest

from tests.fixtures.walkthrough import REPO, make_recordings, walkthrough_model

DOC = REPO / "docs" / "walkthrough.md"
BIN = Path(sys.executable).parent
TEST_MASKS = 96  # a multiple of the 3 SLIC levels and even (split-half reliability)
MODEL_LAYERS, MODEL_HEADS = 2, 4  # tests/fixtures/walkthrough.py MODEL_ARGS

# The steps of the page in order; a step dropped from (or added to) the page fails test_page_has_every_step.
STEPS = ["setting", "setting", "setting", "prep", "mkdir", "record", "score", "explain input",
         "explain encoder", "correlate", "correlate", "timestamps", "plot", "verify", "view", "timestamps evaluate"]


# ------------------------------------------------------------------------------------------ the page

def page_commands(text: str) -> List[str]:
    """The commands of the page's ```bash blocks, in order (backslash continuations joined)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        pending = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            line, pending = (pending + line).strip(), ""
            if line and not line.startswith("#"):
                commands.append(line)
        assert not pending, f"a bash block of {DOC} ends in a line continuation"
    return commands


def step_of(command: str) -> str:
    words = shlex.split(command.replace("$(", "").replace(")", ""))
    if re.match(r"^[A-Z_]+=", command):
        return "setting"
    if words[0] == "fairseq-generate":
        task = words[words.index("--task") + 1]
        if task == "speech_explain":
            return "explain " + words[words.index("--explain-target") + 1]
        return "record" if "--record-cross-attn" in words else "generate"
    if words[0] == "xattn":
        sub = {"store": "verify", "plot": "plot"}.get(words[1], words[1])
        return "timestamps evaluate" if words[1:3] == ["timestamps", "evaluate"] else sub
    return words[0]


# ------------------------------------------------------------------------------------------ the run

@dataclass
class Step:
    name: str
    command: str
    proc: subprocess.CompletedProcess


@dataclass
class Run:
    cwd: Path
    clips: list
    model_data: Path
    checkpoint: Path
    steps: List[Step]

    def step(self, name: str, k: int = 0) -> Step:
        return [s for s in self.steps if s.name == name][k]

    def path(self, value: str) -> Path:
        return self.cwd / value

    # T and T' computed here from each clip, the way docs/data.md states them: mixed to mono,
    # resampled to 16 kHz, T = 1 + (N - 400) // 160, T' = ceil(T / 4)
    def n_frames(self, clip) -> int:
        import soundfile as sf
        import soxr

        audio, rate = sf.read(str(clip.path), dtype="float32", always_2d=True)
        n = len(soxr.resample(audio.mean(axis=1), rate, 16000, quality="HQ"))
        return 1 + (n - 400) // 160


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    model_data, checkpoint = walkthrough_model()
    cwd = tmp_path_factory.mktemp("walkthrough")
    clips = make_recordings(cwd / "my_recordings")
    settings = {"MODEL_DATA": str(model_data), "CKPT": str(checkpoint), "MASKS": str(TEST_MASKS)}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    steps = []
    for command in page_commands(DOC.read_text(encoding="utf-8")):
        name = step_of(command)
        if name == "setting":  # the page's example values -> this test's model
            var = command.split("=", 1)[0]
            assert var in settings, f"{DOC}: unknown setting {command!r}"
            env[var] = settings[var]
            steps.append(Step(name, command, None))
            continue
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command], cwd=cwd, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"{command}\nfailed with exit status {proc.returncode}:\n{proc.stderr[-4000:]}"
        assert "Traceback" not in proc.stderr, f"{command}\n{proc.stderr[-4000:]}"
        steps.append(Step(name, command, proc))
    return Run(cwd, clips, model_data, checkpoint, steps)


def flag(run: Run, step: Step, name: str) -> Optional[str]:
    """The value of option ``name`` of the step's command, the page's settings replaced by the run's."""
    words = shlex.split(step.command)
    if name not in words:
        return None
    value = words[words.index(name) + 1]
    return value.replace("$MODEL_DATA", str(run.model_data)).replace("$CKPT", str(run.checkpoint)).replace(
        "$MASKS", str(TEST_MASKS))


def generate_lines(text: str, kind: str) -> Dict[int, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith(f"{kind}-"):
            head, _, rest = line.partition("\t")
            i = int(head[2:])
            assert i not in out, f"two {kind}-{i} lines"
            out[i] = rest.split("\t")[-1]
    return out


# ------------------------------------------------------------------------------------------ the tests

def test_page_has_every_step():
    commands = page_commands(DOC.read_text(encoding="utf-8"))
    assert [step_of(c) for c in commands] == STEPS
    # exactly as a user types them: the installed plugin, no repository path
    for c in commands:
        if c.startswith("fairseq-generate"):
            assert "--user-dir $(xattn user-dir)" in c


def test_prepared_split_loads_with_the_model_dictionaries(run):
    prep = run.step("prep")
    words = shlex.split(prep.command)
    raw, data = run.path(words[2]), run.path(words[3])
    assert raw == run.clips[0].path.parent and flag(run, prep, "--like") == str(run.model_data)
    # the model's vocabulary, copied byte for byte
    for name in ("spm_unigram_tgt.txt", "spm_unigram_src.txt", "spm_unigram_tgt.model", "spm_unigram_src.model"):
        assert (data / name).read_bytes() == (run.model_data / name).read_bytes(), name
    import fairseq_xattn.plugin  # noqa: F401  (registers the task and model)
    from fairseq import checkpoint_utils

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(run.checkpoint)], arg_overrides={"data": str(data)})
    task.load_dataset("test")
    dataset = task.datasets["test"]
    assert list(dataset.ids) == [c.id for c in run.clips]
    tgt = task.target_dictionary
    assert len(tgt) == models[0].decoder.embed_tokens.num_embeddings  # the dictionary the model was built with
    for k, clip in enumerate(run.clips):
        item = dataset[k]
        assert tuple(item.source.shape) == (run.n_frames(clip), 80), clip.id
        assert tgt.unk() not in item.target.tolist(), clip.id
        assert tgt.string(item.target, "sentencepiece") == clip.text


def test_generate_decodes_each_clip_once_and_records_its_attention(run):
    from fairseq_xattn.stores import open_store

    record = run.step("record")
    out = run.path(re.search(r">\s*(\S+)", record.command).group(1)).read_text(encoding="utf-8")
    hyps, refs = generate_lines(out, "D"), generate_lines(out, "T")
    n = len(run.clips)
    assert sorted(hyps) == list(range(n)) and [refs[i] for i in range(n)] == [c.text for c in run.clips]
    store = open_store(run.path(flag(run, record, "--record-cross-attn")))
    assert store.kind == "cross_attention" and store.ids() == sorted(c.id for c in run.clips)
    for k, clip in enumerate(run.clips):
        rec = store[clip.id]
        T = run.n_frames(clip)
        assert rec.meta["n_frames"] == T and rec.meta["subsampling"] == 4
        assert rec.meta["n_encoder_frames"] == math.ceil(T / 4)
        assert rec.meta["text"] == hyps[k] and rec.meta["reference"] == clip.text
        attention = rec["attention"]
        assert attention.shape == (MODEL_LAYERS, MODEL_HEADS, len(rec.meta["tokens"]), math.ceil(T / 4))
        assert rec.meta["tokens"][-1] == 2  # EOS
        np.testing.assert_allclose(attention.sum(axis=-1), 1.0, atol=1e-5)  # each head's softmax over T'


def _edit_distance(a: List[str], b: List[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def test_score_is_the_wer_of_the_generate_output(run):
    from whisper_normalizer.english import EnglishTextNormalizer

    out = run.path(re.search(r">\s*(\S+)", run.step("record").command).group(1)).read_text(encoding="utf-8")
    hyps, refs = generate_lines(out, "D"), generate_lines(out, "T")
    norm = EnglishTextNormalizer()
    errors = sum(_edit_distance(norm(refs[i]).split(), norm(hyps[i]).split()) for i in refs)
    words = sum(len(norm(r).split()) for r in refs.values())
    reported = float(re.search(r"^\| wer \| ([0-9.]+) \|", run.step("score").proc.stdout, flags=re.M).group(1))
    assert reported == pytest.approx(100.0 * errors / words, abs=0.006)
    assert f"{len(run.clips)} sentences" in run.step("score").proc.stdout


@pytest.mark.parametrize("target", ["input", "encoder"])
def test_saliency_maps_explain_the_recorded_hypotheses(run, target):
    from fairseq_xattn.stores import open_store

    step = run.step(f"explain {target}")
    attention = open_store(run.path(flag(run, step, "--explain-hypotheses")))
    saliency = open_store(run.path(flag(run, step, "--explain-store")))
    assert saliency.kind == "saliency" and saliency.meta["target"] == target
    assert saliency.meta["model_sha256"] == attention.meta["model_sha256"]
    assert saliency.ids() == attention.ids()
    # the forced hypotheses printed by fairseq-generate are the recorded ones
    record_out = run.path(re.search(r">\s*(\S+)", run.step("record").command).group(1)).read_text(encoding="utf-8")
    explain_out = run.path(re.search(r">\s*(\S+)", step.command).group(1)).read_text(encoding="utf-8")
    assert generate_lines(explain_out, "D") == generate_lines(record_out, "D")
    for clip in run.clips:
        a, s = attention[clip.id], saliency[clip.id]
        assert s.meta["tokens"] == a.meta["tokens"] and s.meta["token_strings"] == a.meta["token_strings"]
        assert s.meta["n_masks"] == TEST_MASKS
        T = run.n_frames(clip)
        grid = (T, 80) if target == "input" else (math.ceil(T / 4),)
        maps = s["saliency"]
        assert maps.shape == (len(a.meta["tokens"]),) + grid and np.isfinite(maps).all()
        assert np.ptp(maps) > 0  # the masks changed the model's output


def test_correlate_prints_a_table_per_saliency_target(run):
    for k, target, symbol in ((0, "input", "SM^X"), (1, "encoder", "SM^H")):
        stdout = run.step("correlate", k).proc.stdout
        assert f"CA vs {symbol}" in stdout and f"mean over {len(run.clips)} utterances" in stdout
        header = "| head | " + " | ".join(f"l={layer}" for layer in range(1, MODEL_LAYERS + 1)) + " | l-AVG |"
        assert header in stdout
        for head in range(1, MODEL_HEADS + 1):
            row = re.search(rf"^\| h={head} \|(.*)\|$", stdout, flags=re.M).group(1)
            values = [float(v) for v in row.split("|")]
            assert len(values) == MODEL_LAYERS + 1 and all(-1 <= v <= 1 for v in values), row


def test_timestamps_give_each_clip_its_words_inside_the_audio(run):
    step = run.step("timestamps")
    out_dir = run.path(flag(run, step, "--out-dir"))
    record = run.step("record")
    hyps = generate_lines(run.path(re.search(r">\s*(\S+)", record.command).group(1)).read_text(encoding="utf-8"), "D")
    lines = [json.loads(line) for line in (out_dir / "words.jsonl").read_text(encoding="utf-8").splitlines()]
    by_id = {line["id"]: line for line in lines}
    assert len(lines) == len(run.clips) and set(by_id) == {c.id for c in run.clips}
    for k, clip in enumerate(run.clips):
        words = [w for seg in by_id[clip.id]["segments"] for w in seg["words"]]
        assert [w["word"] for w in words] == hyps[k].split()
        for w in words:
            assert 0.0 <= w["start"] <= w["end"] <= clip.duration, (clip.id, w, clip.duration)
        starts = [w["start"] for w in words]
        assert starts == sorted(starts)
        srt = (out_dir / "srt" / f"{clip.id}.srt").read_text(encoding="utf-8")
        assert len(re.findall(r"^\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d$", srt, flags=re.M)) == len(words)


def test_plot_writes_the_figures_of_the_clip(run):
    step = run.step("plot")
    base = run.path(flag(run, step, "--out"))
    assert flag(run, step, "--id") in {c.id for c in run.clips}
    for suffix in ("", "_tokens"):
        assert base.with_name(base.name + suffix + ".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert base.with_name(base.name + suffix + ".pdf").read_bytes()[:5] == b"%PDF-"


def test_store_verify_passes_every_store(run):
    step = run.step("verify")
    stores = shlex.split(step.command)[3:]
    assert len(stores) == 3
    for store in stores:
        assert re.search(rf"^{re.escape(store)}: OK, {len(run.clips)} records, ", step.proc.stdout, flags=re.M), \
            step.proc.stdout


def test_view_holds_every_clip(run):
    step = run.step("view")
    html = run.path(flag(run, step, "--out")).read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script type="application/json" id="xattn-data">(.*?)</script>', html, re.S).group(1))
    utterances = {u["id"]: u for u in data["utterances"]}
    assert set(utterances) == {c.id for c in run.clips}
    for clip in run.clips:
        u = utterances[clip.id]
        T = run.n_frames(clip)
        assert (u["T"], u["Tp"], u["s"], u["L"], u["H"]) == (T, math.ceil(T / 4), 4, MODEL_LAYERS, MODEL_HEADS)
        assert u["audio"]["seconds"] == pytest.approx(clip.duration, abs=0.01)  # playback of the user's file
        assert len(u["hyp_words"]) == len(u["text"].split())
        assert set(u["maps"]) >= {"ca", "sx", "sxp", "sh", "spec"}


def test_timestamps_evaluate_scores_every_source_against_the_reference_times(run):
    step = run.step("timestamps evaluate")
    reference = run.path(flag(run, step, "--reference")).read_text(encoding="utf-8").splitlines()
    assert len(reference) == sum(len(c.words) for c in run.clips)
    rows = [line for line in step.proc.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    header, systems = rows[0], rows[1:]
    assert header.startswith("| system | matched % |")
    names = sorted(r.split("|")[1].strip() for r in systems)
    assert names == sorted(["CA dtw average of all layers and heads", "SM^X dtw", "SM^H dtw", "CTC"])
    for r in systems:
        cells = [c.strip() for c in r.strip("|").split("|")]
        matched = float(cells[1])
        assert 0.0 <= matched <= 100.0


def test_stores_record_the_split_they_were_made_from(run):
    from fairseq_xattn.stores import open_store

    for name, store_flag in (("record", "--record-cross-attn"), ("explain input", "--explain-store"),
                             ("explain encoder", "--explain-store")):
        step = run.step(name)
        assert open_store(run.path(flag(run, step, store_flag))).meta["gen_subset"] == flag(run, step, "--gen-subset")
