"""Word timings beside the prepared manifests: loading by id, frame spans on the feature and
encoder grids."""
import json

import pytest

from fairseq_xattn.data.manifest import read_s2t_manifest
from fairseq_xattn.data.word_timings import load_word_timings, word_frame_spans


def test_prepared_timings_join_the_manifest_by_id(tiny_corpus_and_data):
    _, data = tiny_corpus_and_data
    m = read_s2t_manifest(data / "test.tsv")
    timings = load_word_timings(data, "test")
    assert set(timings) == set(m.column("id"))
    for row in m.rows:
        rec = timings[row["id"]]
        assert rec["text"] == row["src_text"]
        n = int(row["n_frames"])
        spans = word_frame_spans(rec, n)
        assert len(spans) == len(row["src_text"].split())
        assert all(0 <= a < b <= n for a, b in spans)
        assert all(s1[0] <= s2[0] for s1, s2 in zip(spans, spans[1:]))
        enc = word_frame_spans(rec, -(-n // 4), subsampling=4)
        assert all(0 <= a < b <= -(-n // 4) for a, b in enc)


def test_frame_spans_known_answer():
    rec = {"words": [{"word": "a", "start": 0.0, "end": 0.034}, {"word": "b", "start": 0.034, "end": 0.1},
                     {"word": "c", "start": 0.1, "end": 0.1001}]}
    assert word_frame_spans(rec, n_frames=10) == [(0, 4), (3, 10), (9, 10)]
    assert word_frame_spans(rec, n_frames=3, subsampling=4) == [(0, 1), (0, 3), (2, 3)]


def test_bad_timings_are_named(tmp_path):
    (tmp_path / "timings").mkdir()
    bad = {"id": "u1", "duration": 1.0, "words": [{"word": "a", "start": 0.5, "end": 0.4}]}
    (tmp_path / "timings" / "x.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"x.jsonl, line 1 \(id 'u1'\), word 0: .* out of order"):
        load_word_timings(tmp_path, "x")
    with pytest.raises(FileNotFoundError, match="no word timings for split 'y'"):
        load_word_timings(tmp_path, "y")
