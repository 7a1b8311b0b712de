"""A hand-built attention store (and saliency stores) whose token-frame mass sits on known frames:
known word times for every method, head selection and output format; the CLI in-process."""
import json
import math

import numpy as np
import pytest

from fairseq_xattn.analysis.timestamps.formats import ctm_lines, json_lines, srt_text, vtt_text
from fairseq_xattn.analysis.timestamps.systems import TimestampRequest, compute_systems
from fairseq_xattn.stores import KIND_CROSS_ATTENTION, KIND_SALIENCY, StoreWriter, attention_record_meta

EPS = 1e-3
PEAKED = np.array([.2, .3, .3, .2])
# utterance -> (token strings incl. language tag and EOS, T, T', rows: token -> {frame: weight})
UTTS = {
    "utt1": (["<lang:en>", "▁the", "▁c", "at", "▁sat", "</s>"], 78, 20,
             [(0, 4, PEAKED), (4, 8, PEAKED), (8, 12, PEAKED), (12, 16, PEAKED), (16, 20, PEAKED)]),
    "utt2": (["<lang:en>", "▁go", "</s>"], 30, 8, [(2, 6, PEAKED), (6, 8, np.array([.5, .5]))]),
}
TEXT = {"utt1": "the cat sat", "utt2": "go"}


def content_map(utt):
    """Rows (language tag, content tokens, EOS) x T': each row's block shape scaled so the row sums to 1."""
    strings, _, tp, blocks = UTTS[utt]
    m = np.full((len(strings), tp), EPS)
    m[0] = 1.0 / tp  # the language-tag row (dropped by the analysis)
    for i, (a, b, shape) in enumerate(blocks, start=1):
        m[i, a:b] = shape * (1 - EPS * (tp - (b - a)))
    return m


def attention(utt):
    """2 layers x 2 heads: every head sharp but (2, 2), which is uniform."""
    m = content_map(utt)
    att = np.stack([np.stack([m, m]), np.stack([m, np.full_like(m, 1.0 / m.shape[1])])])
    return att.astype(np.float32)


@pytest.fixture
def stores(tmp_path):
    with StoreWriter(tmp_path / "ca", KIND_CROSS_ATTENTION, {"alignment_heads": [[0, 0], [1, 0]]}) as w:
        for utt, (strings, t, tp, _) in UTTS.items():
            ids = list(range(10, 10 + len(strings)))
            w.write(utt, {"attention": attention(utt)},
                    attention_record_meta(ids, strings, TEXT[utt], TEXT[utt], t, tp, 2, 2, 1, -0.1, "beam_search", 4))
    for target in ("encoder", "input"):
        with StoreWriter(tmp_path / f"sal_{target}", KIND_SALIENCY, {"target": target}) as w:
            for utt, (strings, t, tp, _) in UTTS.items():
                m = content_map(utt)
                sal = m if target == "encoder" else np.repeat(np.repeat(m, 4, axis=1)[:, :t, None], 2, axis=2)
                meta = {"tokens": list(range(10, 10 + len(strings))), "token_strings": strings, "n_frames": t,
                        "n_encoder_frames": tp, "subsampling": 4, "prefix_len": 1, "n_masks": 8,
                        "positional_scores": [math.log(0.5)] * len(strings)}
                w.write(utt, {"saliency": sal}, meta)
    reference = tmp_path / "timings" / "test.jsonl"
    reference.parent.mkdir()
    truth = {"utt1": [("the", 0.0, 0.16), ("cat", 0.16, 0.48), ("sat", 0.48, 0.64)], "utt2": [("go", 0.08, 0.24)]}
    reference.write_text("".join(json.dumps({"id": u, "duration": UTTS[u][1] / 100, "words": [
        {"word": w, "start": s, "end": e} for w, s, e in words]}) + "\n" for u, words in truth.items()))
    return tmp_path


def times(systems, name):
    return {u: [(w.word, round(w.start, 6), round(w.end, 6)) for w in ts.words] for u, ts in systems[name].items()}


EXPECTED = {
    # DTW: the blocks; "go" keeps the two EOS frames (the width-7 median filter erases a 2-frame pulse)
    # and its end (8 frames = 0.32 s) is clipped to the audio, 30 input frames = 0.30 s
    "dtw": {"utt1": [("the", 0.0, 0.16), ("cat", 0.16, 0.48), ("sat", 0.48, 0.64)], "utt2": [("go", 0.0, 0.3)]},
    # argmax: the first .3 of each block, a token lasting until the next row's peak
    "argmax": {"utt1": [("the", 0.04, 0.2), ("cat", 0.2, 0.52), ("sat", 0.52, 0.68)], "utt2": [("go", 0.12, 0.24)]},
    # mass: 80% central mass of .2 .3 .3 .2 is the whole block
    "mass": {"utt1": [("the", 0.0, 0.16), ("cat", 0.16, 0.48), ("sat", 0.48, 0.64)], "utt2": [("go", 0.08, 0.24)]},
}


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_every_method_and_source_gives_the_known_times(stores, method):
    req = TimestampRequest(attention=str(stores / "ca"), saliency=[str(stores / "sal_encoder"), str(stores / "sal_input")],
                           methods=[method], heads=["layer:1", "whisper", "1:2"])
    systems = compute_systems(req)
    assert sorted(systems) == sorted([f"CA {method} layer 1, head average", f"CA {method} whisper alignment heads",
                                      f"CA {method} layer 1, head 2", f"SM^H {method}", f"SM^X {method}"])
    for name in systems:
        assert times(systems, name) == EXPECTED[method], name
    # saliency records carry positional_scores: the confidence is the tokens' probability
    assert [w.confidence for w in systems[f"SM^H {method}"]["utt1"].words] == pytest.approx([0.5] * 3)


def test_all_heads_with_a_uniform_head_and_confidence_from_mass(stores):
    systems = compute_systems(TimestampRequest(attention=str(stores / "ca"), methods=["dtw", "argmax"], heads=["all"]))
    assert times(systems, "CA dtw average of all layers and heads") == EXPECTED["dtw"]
    assert times(systems, "CA argmax average of all layers and heads") == EXPECTED["argmax"]
    # dtw spans = the blocks: mass inside = 1 - 16 x 1e-3 for the sharp heads; the uniform head's row
    # holds 4/20 of its mass there: mean row (3 x .984 + .2) / 4
    assert systems["CA dtw average of all layers and heads"]["utt1"].words[0].confidence == pytest.approx((3 * (1 - 16 * EPS) + 0.2) / 4)


def test_no_eos_row_gives_the_trailing_frames_to_the_last_word(stores):
    systems = compute_systems(TimestampRequest(attention=str(stores / "ca"), heads=["layer:1"], eos_row=False))
    assert times(systems, "CA dtw layer 1, head average")["utt1"][-1] == ("sat", 0.48, 0.78)  # 20 frames (0.80 s) clipped to 0.78


def test_auto_heads_leave_out_the_uniform_head(stores):
    from fairseq_xattn.analysis.timestamps.references import read_references

    req = TimestampRequest(attention=str(stores / "ca"), heads=["auto"], dev_attention=str(stores / "ca"),
                           dev_references=read_references(stores / "timings" / "test.jsonl"))
    systems = compute_systems(req)
    # the three sharp heads tie; the first is kept and the others do not lower the error
    assert list(systems) == ["CA dtw auto (1:1)"]


def test_output_formats_known_text(stores):
    systems = compute_systems(TimestampRequest(attention=str(stores / "ca"), heads=["layer:1"]))
    utts = list(systems["CA dtw layer 1, head average"].values())
    c = 1 - 16 * EPS  # mass of a block row inside its block
    assert json_lines(utts) == (
        '{"id": "utt1", "text": "the cat sat", "system": "CA dtw layer 1, head average", "segments": [{"id": 0, "start": 0.0, '
        '"end": 0.64, "text": "the cat sat", "words": ['
        f'{{"word": "the", "start": 0.0, "end": 0.16, "probability": {c}}}, '
        f'{{"word": "cat", "start": 0.16, "end": 0.48, "probability": {c}}}, '
        f'{{"word": "sat", "start": 0.48, "end": 0.64, "probability": {c}}}]}}]}}\n'
        '{"id": "utt2", "text": "go", "system": "CA dtw layer 1, head average", "segments": [{"id": 0, "start": 0.0, "end": 0.3, '
        '"text": "go", "words": [{"word": "go", "start": 0.0, "end": 0.3, "probability": 1.0}]}]}\n')
    assert ctm_lines(utts) == ("utt1 1 0.000 0.160 the 0.9840\nutt1 1 0.160 0.320 cat 0.9840\n"
                               "utt1 1 0.480 0.160 sat 0.9840\nutt2 1 0.000 0.300 go 1.0000\n")
    assert srt_text(utts[0].words) == ("1\n00:00:00,000 --> 00:00:00,160\nthe\n\n"
                                       "2\n00:00:00,160 --> 00:00:00,480\ncat\n\n"
                                       "3\n00:00:00,480 --> 00:00:00,640\nsat\n\n")
    assert vtt_text(utts[1].words) == "WEBVTT\n\n00:00:00.000 --> 00:00:00.300\ngo\n\n"


def run_cli(*argv):
    """``xattn timestamps ARGV`` in-process, through the dispatcher (which turns user errors into one line)."""
    from tests.analysis.cli_runner import run_xattn

    result = run_xattn("timestamps", *argv)
    return result.returncode, result.stdout, result.stderr


def test_cli_writes_every_format_and_evaluates(stores):
    out = stores / "ts"
    code, stdout, err = run_cli("--attention", stores / "ca", "--heads", "layer:1", "--out-dir", out,
                                "--format", "json", "ctm", "srt", "vtt")
    assert code == 0, err
    assert (out / "words.ctm").read_text().splitlines()[0] == "utt1 1 0.000 0.160 the 0.9840"
    assert (out / "srt" / "utt2.srt").read_text() == "1\n00:00:00,000 --> 00:00:00,300\ngo\n\n"
    assert (out / "vtt" / "utt1.vtt").read_text().startswith("WEBVTT\n\n00:00:00.000 --> 00:00:00.160\nthe\n")
    assert json.loads((out / "words.jsonl").read_text().splitlines()[1])["segments"][0]["words"][0]["end"] == 0.3

    code, stdout, err = run_cli("evaluate", "--reference", stores / "timings" / "test.jsonl",
                                "--hypotheses", out / "words.jsonl", "--attention", stores / "ca",
                                "--method", "mass", "argmax", "--heads", "layer:1", "--json", stores / "rows.json")
    assert code == 0, err
    rows = json.loads((stores / "rows.json").read_text())
    # mass is exact; the written dtw file errs only on "go" (0.00-0.30 vs 0.08-0.24: 80 and 60 ms)
    assert [r["system"] for r in rows] == [f"CA {m} layer 1, head average" for m in ("mass", "dtw", "argmax")]
    assert rows[0]["mean_ms"] == pytest.approx(0.0)
    assert rows[1]["mean_ms"] == pytest.approx((80 + 60) / 8)
    assert rows[1]["matched"] == 100.0
    assert stdout.splitlines()[0].startswith("| system |")


def test_cli_errors_are_one_line(stores):
    code, _, err = run_cli("--attention", stores / "ca", "--heads", "whisper", "7:1", "--out-dir", stores / "x")
    assert code == 2 and err.startswith("xattn timestamps: error: --heads 7:1") and err.count("\n") == 1
    code, _, err = run_cli("evaluate", "--reference", stores / "nowhere.jsonl", "--attention", stores / "ca")
    assert code == 2 and "nowhere.jsonl do not exist" in err


def test_xattn_dispatcher_runs_the_subcommand(stores):
    from fairseq_xattn.cli import SUBCOMMANDS
    from tests.analysis.cli_runner import run_xattn

    assert "timestamps" in SUBCOMMANDS
    result = run_xattn("timestamps", "evaluate", "--reference", stores / "timings" / "test.jsonl",
                       "--attention", stores / "ca", "--method", "mass", "--heads", "layer:1")
    assert result.returncode == 0, result.stderr
    assert "| CA mass layer 1, head average | 100.0 | 0.0 |" in result.stdout
