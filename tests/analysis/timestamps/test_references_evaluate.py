"""Reference readers (timings JSONL, CTM, TextGrid long/short) with line-naming errors; the evaluator's
figures on a hand-made pair with a substitution, an insertion and a deletion, computed by hand."""
import json

import pytest

from fairseq_xattn.analysis.timestamps.evaluate import (
    edit_alignment, markdown_table, normalise_word, score_system, score_systems,
)
from fairseq_xattn.analysis.timestamps.references import (
    RefWord, TimingFileError, read_ctm, read_references, read_textgrid, read_timings_jsonl,
)
from fairseq_xattn.analysis.timestamps.timing import TimedWord, UtteranceTimestamps

TIMINGS_LINE = {"id": "u1", "lang": "en", "duration": 1.0, "text": "the cat",
                "words": [{"word": "the", "start": 0.0, "end": 0.3, "merged": False},
                          {"word": "cat", "start": 0.35, "end": 0.9, "merged": True}]}


def test_timings_jsonl(tmp_path):
    path = tmp_path / "timings" / "test.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(TIMINGS_LINE) + "\n\n" + json.dumps({**TIMINGS_LINE, "id": "u2"}) + "\n")
    refs = read_references(path)
    assert refs["u1"] == [RefWord("the", 0.0, 0.3, False), RefWord("cat", 0.35, 0.9, True)]
    assert list(refs) == ["u1", "u2"]


@pytest.mark.parametrize("line, message", [
    ("{not json", "line 2: not JSON"),
    (json.dumps({"id": "x", "words": []}), "line 2: missing key 'duration'"),
    (json.dumps({**TIMINGS_LINE, "words": [{"word": "a", "start": 0.5, "end": 0.2}]}), "line 2 .*out of order"),
    (json.dumps({**TIMINGS_LINE, "words": [{"word": "a", "start": "0"}]}), "line 2 .*'word', 'start' and 'end'"),
    (json.dumps(TIMINGS_LINE), "line 2: duplicate id 'u1'"),
])
def test_timings_jsonl_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(TIMINGS_LINE) + "\n" + line + "\n")
    with pytest.raises(TimingFileError, match=message) as e:
        read_timings_jsonl(path)
    assert str(path) in str(e.value)


def test_ctm_and_its_errors(tmp_path):
    path = tmp_path / "a.ctm"
    path.write_text(";; comment\nu1 1 0.50 0.20 cat 0.9\nu1 1 0.10 0.30 the\nu2 A 0 1 x\n")
    refs = read_ctm(path)
    assert refs["u1"] == [RefWord("the", 0.1, 0.4), RefWord("cat", 0.5, 0.7)]  # sorted by start
    assert refs["u2"] == [RefWord("x", 0.0, 1.0)]
    path.write_text("u1 1 0.50 0.20 cat\nu1 1 zero 0.30 the\n")
    with pytest.raises(TimingFileError, match=r"a\.ctm, line 2: start and duration must be numbers"):
        read_ctm(path)
    path.write_text("u1 1 0.50\n")
    with pytest.raises(TimingFileError, match="line 1: expected 'utterance channel start"):
        read_ctm(path)


LONG = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 1.5
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 1.5
        intervals: size = 4
        intervals [1]:
            xmin = 0
            xmax = 0.2
            text = ""
        intervals [2]:
            xmin = 0.2
            xmax = 0.6
            text = "say ""hi"""
        intervals [3]:
            xmin = 0.6
            xmax = 1.1
            text = "there"
        intervals [4]:
            xmin = 1.1
            xmax = 1.5
            text = "sil"
    item [2]:
        class = "TextTier"
        name = "marks"
        xmin = 0
        xmax = 1.5
        points: size = 1
        points [1]:
            number = 0.4
            mark = "m"
'''

SHORT = '''File type = "ooTextFile"
Object class = "TextGrid"

0
1.5
<exists>
2
"IntervalTier"
"phones"
0
1.5
1
0
1.5
"a"
"IntervalTier"
"words"
0
1.5
3
0
0.2
""
0.2
0.6
"say ""hi"""
0.6
1.5
"there"
'''


def test_textgrid_long_and_short_formats(tmp_path):
    expected = [RefWord('say "hi"', 0.2, 0.6), RefWord("there", 0.6, 1.1)]
    (tmp_path / "utt_a.TextGrid").write_text(LONG)
    assert read_textgrid(tmp_path / "utt_a.TextGrid") == expected
    # UTF-16 (what Praat writes for non-ASCII text), short format, the 'words' tier is not the first
    (tmp_path / "utt_b.TextGrid").write_bytes(SHORT.encode("utf-16"))
    assert read_textgrid(tmp_path / "utt_b.TextGrid") == [RefWord('say "hi"', 0.2, 0.6), RefWord("there", 0.6, 1.5)]
    assert read_textgrid(tmp_path / "utt_b.TextGrid", tier="phones") == [RefWord("a", 0.0, 1.5)]
    refs = read_references(tmp_path)  # a folder: every TextGrid, keyed by stem
    assert sorted(refs) == ["utt_a", "utt_b"] and refs["utt_a"] == expected


def test_textgrid_malformed_line_is_named(tmp_path):
    path = tmp_path / "bad.TextGrid"
    path.write_text(LONG.replace("xmax = 0.6", "xmax = zero point six"))
    with pytest.raises(TimingFileError, match=r"bad\.TextGrid, line 21: expected a number"):
        read_textgrid(path)
    path.write_text(LONG.replace('text = "there"', "text = 7"))
    with pytest.raises(TimingFileError, match=r"line 26: expected an interval text, found 7\.0"):
        read_textgrid(path)
    path.write_text(LONG[:LONG.index("    item [2]")])
    with pytest.raises(TimingFileError, match="the file ends where a tier class was expected"):
        read_textgrid(path)


# ------------------------------------------------------------------------------------ evaluation

REF = [("the", 0.00, 0.20), ("cat", 0.20, 0.50), ("sat", 0.50, 0.80), ("on", 0.80, 0.90), ("the", 0.90, 1.00),
       ("big", 1.00, 1.30), ("mat", 1.30, 1.70)]
# bat: substitution of cat; very: insertion; big: deletion
HYP = [("The", 0.01, 0.24), ("bat", 0.24, 0.50), ("sat,", 0.52, 0.75), ("very", 0.75, 0.80), ("on", 0.80, 0.98),
       ("the", 0.98, 1.10), ("mat", 1.45, 1.70)]


def _hyp(words=HYP):
    return {"u": UtteranceTimestamps("u", [TimedWord(w, s, e, 1.0) for w, s, e in words], "sys")}


def test_edit_alignment_has_the_substitution_insertion_and_deletion():
    pairs = edit_alignment([normalise_word(w) for w, _, _ in HYP], [w for w, _, _ in REF])
    assert pairs == [(0, 0), (1, 1), (2, 2), (3, None), (4, 3), (5, 4), (None, 5), (6, 6)]


def test_evaluator_figures_by_hand():
    refs = {"u": [RefWord(w, s, e) for w, s, e in REF]}
    row = score_system("sys", _hyp(), refs, collar=0.05)
    # matched: the sat on the mat (5 of 7 reference words); errors in ms:
    #   starts 10 20 0 80 150 (mean 52, median 20); ends 40 50 0 100 0 -> |end errors| 40 50 80 100 0
    assert row["matched"] == pytest.approx(100 * 5 / 7)
    assert row["timed_words"] == 5
    assert row["start_mean_ms"] == pytest.approx(52.0) and row["start_median_ms"] == pytest.approx(20.0)
    assert row["end_mean_ms"] == pytest.approx(54.0) and row["end_median_ms"] == pytest.approx(50.0)
    assert row["mean_ms"] == pytest.approx(53.0)
    # 10 boundaries: <=20: 10 20 0 0; <=50: + 40 50; <=100: + 80 80 100; <=200: all
    assert [row[f"within_{t}ms"] for t in (20, 50, 100, 200)] == pytest.approx([40, 60, 90, 100])
    # F1 at 50 ms: 6 hits; precision 6 / (2 x 7 hyp words), recall 6 / (2 x 7 ref words)
    assert row["f1"] == pytest.approx(100 * 6 / 14)


def test_evaluator_excludes_merged_words_from_timing_only():
    refs = {"u": [RefWord(w, s, e, merged=(w == "sat")) for w, s, e in REF]}
    row = score_system("sys", _hyp(), refs, collar=0.05, exclude_merged=True)
    assert row["matched"] == pytest.approx(100 * 5 / 7)  # still matched
    assert row["timed_words"] == 4
    assert row["mean_ms"] == pytest.approx((10 + 0 + 80 + 150 + 40 + 80 + 100 + 0) / 8)
    # hits at 50 ms: 10 0 40 0; 6 hyp and 6 ref words remain
    assert row["f1"] == pytest.approx(100 * 4 / 12)


def test_rows_sorted_by_mean_error_and_markdown():
    refs = {"u": [RefWord(w, s, e) for w, s, e in REF]}
    perfect = [(w, s, e) for w, s, e in REF]
    rows = score_systems({"worse": _hyp(), "exact": _hyp(perfect)}, refs)
    assert [r["system"] for r in rows] == ["exact", "worse"] and rows[0]["mean_ms"] == 0.0
    table = markdown_table(rows).splitlines()
    assert table[0].startswith("| system | matched % | mean ms |") and "F1@50ms %" in table[0]
    assert table[2] == "| exact | 100.0 | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 |"
    with pytest.raises(ValueError, match="no reference word times"):
        score_system("s", {"other": _hyp()["u"]}, refs)
