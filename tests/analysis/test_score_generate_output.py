"""``xattn score --generate-output``: a log holding several runs is refused (naming file, line and
sample id) instead of pairing one run's hypotheses with another's references; --nbest blocks are fine."""
import subprocess
import sys

import pytest

from fairseq_xattn.analysis.metrics import MetricError, score
from fairseq_xattn.analysis.score_cli import read_generate_output
from fairseq_xattn.errors import UserError

REFS = ["the cat sat on the mat", "a dog barked twice", "birds sing at dawn", "rain falls on the roof"]
# run A is nearly perfect; run B decodes another model (or another data order): different hypotheses
HYPS_A = ["the cat sat on the mat", "a dog barked twice", "birds sing at dawn", "rain falls on a roof"]
HYPS_B = ["the cat sat on mat", "the dog barked", "birds sang at dawn", "rain fell on the roof"]


def _block(i, ref, hyps):
    lines = [f"S-{i}\tutt{i}", f"T-{i}\t{ref}"]
    for k, h in enumerate(hyps):  # --nbest: one H/D/P triple per hypothesis, best first
        lines += [f"H-{i}\t{-0.1 * (k + 1)}\t{h}", f"D-{i}\t{-0.1 * (k + 1)}\t{h}", f"P-{i}\t-0.1 -0.2"]
    return lines


def _run(hyps, order, refs=REFS):
    """A fairseq-generate log: samples in batch order ``order``, then the summary line."""
    lines = []
    for i in order:
        lines += _block(i, refs[i], [hyps[i]])
    return lines + ["Generate test with beam=5: WER: 1.0"]


def test_one_run_is_read_in_sample_index_order(tmp_path):
    log = tmp_path / "generate-test.txt"
    log.write_text("\n".join(_run(HYPS_A, [2, 0, 3, 1])) + "\n")
    scored = read_generate_output(str(log))
    assert scored.hyps == HYPS_A and scored.refs == REFS and scored.keys == [0, 1, 2, 3]


def test_nbest_blocks_keep_the_best_hypothesis(tmp_path):
    log = tmp_path / "nbest.txt"
    lines = []
    for i in (1, 0, 3, 2):
        lines += _block(i, REFS[i], [HYPS_A[i], HYPS_B[i]])  # two D-i lines in one block
    log.write_text("\n".join(lines) + "\n")
    scored = read_generate_output(str(log))
    assert scored.hyps == HYPS_A
    # one substitution ("the" -> "a") in 19 reference words
    assert score("wer", scored.hyps, scored.refs) == pytest.approx(100 / 19)


def test_two_concatenated_runs_are_refused_naming_file_line_and_id(tmp_path):
    # the repro of issue 18, point 2: two runs' outputs in one file; the old reader kept run A's
    # hypotheses (first D-i) with run B's references (last T-i) and printed a score
    run_a = _run(HYPS_A, [2, 0, 3, 1])
    run_b = _run(HYPS_B, [3, 1, 0, 2])
    log = tmp_path / "both.txt"
    log.write_text("\n".join(run_a + run_b) + "\n")
    line = len(run_a) + 1  # run B's first line: S-3
    with pytest.raises(MetricError) as e:
        read_generate_output(str(log))
    first_of_3 = 2 * 5 + 1  # sample 3 is run A's 3rd block of 5 lines
    assert str(e.value) == (
        f"{log}, line {line}: sample id 3 appears again (its lines began at line {first_of_3}, then other samples "
        f"followed): several fairseq-generate outputs concatenated? Score each run's output on its own")
    assert isinstance(e.value, UserError)


def test_a_second_reference_line_for_one_sample_is_refused(tmp_path):
    # no other sample in between (the last block of run A meets the first of run B with the same id)
    run_a = _run(HYPS_A, [0, 1, 2, 3])[:-1]
    run_b_first = _block(3, "another reference", [HYPS_B[3]])
    log = tmp_path / "conflict.txt"
    log.write_text("\n".join(run_a + run_b_first[1:]) + "\n")  # T-3 directly after run A's block of 3
    with pytest.raises(MetricError, match=rf"^{log}, line {len(run_a) + 1}: a second T-3 line for sample id 3 "
                                          rf"\(the first is at line {3 * 5 + 2} and says otherwise\): several"):
        read_generate_output(str(log))
    same = tmp_path / "same.txt"
    same.write_text("\n".join(run_a + [f"T-3\t{REFS[3]}"]) + "\n")
    with pytest.raises(MetricError, match=rf"^{same}, line {len(run_a) + 1}: a second T-3 line for sample id 3 "
                                          rf"\(the first is at line {3 * 5 + 2}\): several"):
        read_generate_output(str(same))


def _xattn(*args):
    return subprocess.run([sys.executable, "-m", "fairseq_xattn.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_score_user_errors_are_one_line_with_exit_status_2(tmp_path):
    log = tmp_path / "both.txt"
    log.write_text("\n".join(_run(HYPS_A, [0, 1, 2, 3]) + _run(HYPS_B, [0, 1, 2, 3])) + "\n")
    cases = [
        (("--generate-output", log), f"xattn score: error: {log}, line 22: sample id 0 appears again"),
        (("--generate-output", tmp_path / "none.txt"),
         f"xattn score: error: --generate-output {tmp_path / 'none.txt'}: no such file"),
        (("--store", tmp_path / "no_store"), f"xattn score: error: --store: store not found: {tmp_path / 'no_store'}"),
    ]
    for args, start in cases:
        result = _xattn("score", *args)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith(start), result.stderr
