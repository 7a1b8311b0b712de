"""Words from subwords; alignment methods on hand-made maps; DTW monotonic, covering and optimal."""

import numpy as np
import pytest

from fairseq_xattn.analysis.timestamps.alignment import (
    TIMESTAMP_METHODS, align, dtw_path, median_filter, whisper_prepare,
)
from fairseq_xattn.analysis.timestamps.timing import span_mass, timed_words
from fairseq_xattn.analysis.timestamps.words import group_words


def test_sentencepiece_words_and_rows():
    words = group_words(["▁the", "▁c", "at", ".", "▁", "X"], "sentencepiece")
    assert [(w.text, w.first, w.end) for w in words] == [("the", 0, 1), ("cat.", 1, 4), ("X", 4, 6)]


def test_byte_bpe_words_decode_the_byte_alphabet_and_plain_spaces():
    # 'Ã©' is the byte alphabet's spelling of the UTF-8 bytes of 'é'
    assert [(w.text, w.first, w.end) for w in group_words(["ĠThe", "Ġcaf", "Ã©", "!"], "byte_bpe")] == \
        [("The", 0, 1), ("café!", 1, 4)]
    assert [w.text for w in group_words([" The", " c", "at"], "byte_bpe")] == ["The", "cat"]
    # auto picks the scheme from the markers
    assert [w.text for w in group_words(["Ġa", "b", "Ġc"])] == ["ab", "c"]
    assert [w.text for w in group_words(["▁a", "b", "▁c"])] == ["ab", "c"]
    # no marker at all: a word-level vocabulary
    assert [(w.text, w.first) for w in group_words(["delta", "hotel"])] == [("delta", 0), ("hotel", 1)]


def block_map(blocks, n_frames, peak_second=False):
    """I x T' rows with their mass on [a, b) (values .2 .3 .3 .2 when peak_second), 1e-3 elsewhere."""
    m = np.full((len(blocks), n_frames), 1e-3)
    for i, (a, b) in enumerate(blocks):
        shape = np.array([.2, .3, .3, .2]) if peak_second else np.full(b - a, 1.0 / (b - a))
        m[i, a:b] = shape * (1 - 1e-3 * (n_frames - (b - a)))
    return m


BLOCKS = [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20)]  # 4 content tokens + EOS


@pytest.mark.parametrize("method, first, end", [
    ("dtw", [0, 4, 8, 12, 16], [4, 8, 12, 16, 20]),
    ("argmax", [1, 5, 9, 13, 17], [5, 9, 13, 17, 18]),  # peak to the next row's peak
    ("mass", [0, 4, 8, 12, 16], [4, 8, 12, 16, 20]),  # 80% central mass of .2 .3 .3 .2 spans the block
])
def test_methods_on_blocks(method, first, end):
    spans = align(block_map(BLOCKS, 20, peak_second=True)[None], method)
    assert spans.first.tolist() == first and spans.end.tolist() == end


def test_whisper_preparation_is_binary_on_one_hot_columns():
    # one high value among 5 rows: z = sqrt(4) = 2 whatever its size, the others -0.5; the median
    # filter keeps 4-frame pulses
    prepared = whisper_prepare(block_map(BLOCKS, 20, peak_second=True)[None])[0]
    expected = np.full((5, 20), -0.5)
    for i, (a, b) in enumerate(BLOCKS):
        expected[i, a:b] = 2.0
    np.testing.assert_allclose(prepared, expected, atol=1e-9)


def test_median_filter_reflects_edges_and_skips_short_inputs():
    x = np.array([5.0, 0, 0, 9, 0, 0, 0, 4])
    # width 3, reflect padding: [0, 5, 0, 0, 9, 0, 0, 0, 4, 0]
    assert median_filter(x, 3).tolist() == [0, 0, 0, 0, 0, 0, 0, 0]
    assert median_filter(np.array([[1.0, 7.0]]), 7).tolist() == [[1.0, 7.0]]
    with pytest.raises(ValueError):
        median_filter(x, 4)


def _all_paths(n, m):
    def walk(i, j, path):
        if (i, j) == (n - 1, m - 1):
            yield path
            return
        for di, dj in ((1, 1), (0, 1), (1, 0)):
            if i + di < n and j + dj < m:
                yield from walk(i + di, j + dj, path + [(i + di, j + dj)])
    yield from walk(0, 0, [(0, 0)])


def test_dtw_is_the_cheapest_monotonic_path():
    rng = np.random.default_rng(0)
    for n, m in [(3, 4), (4, 3), (1, 5), (5, 1), (3, 6)]:
        cost = rng.random((n, m))
        rows, cols = dtw_path(cost)
        brute = min(sum(cost[i, j] for i, j in p) for p in _all_paths(n, m))
        assert cost[rows, cols].sum() == pytest.approx(brute)


def test_dtw_is_monotonic_and_covers_every_token_and_frame():
    rng = np.random.default_rng(1)
    for n, m in [(7, 40), (12, 9), (1, 1)]:
        rows, cols = dtw_path(rng.normal(size=(n, m)))
        assert rows[0] == 0 and cols[0] == 0 and rows[-1] == n - 1 and cols[-1] == m - 1
        steps = np.stack([np.diff(rows), np.diff(cols)], axis=1)
        assert all(tuple(s) in {(1, 1), (0, 1), (1, 0)} for s in steps)
        assert set(rows) == set(range(n)) and set(cols) == set(range(m))
        # every word gets a non-empty span, in order
        spans = align(rng.random((2, n, m)), "dtw")
        assert (spans.end > spans.first).all() and (np.diff(spans.first) >= 0).all()


def test_timed_words_seconds_confidence_and_clipping():
    spans = align(block_map(BLOCKS, 20)[None], "dtw")
    mass = span_mass(block_map(BLOCKS, 20), spans)
    np.testing.assert_allclose(mass, 1 - 16e-3)  # the mass outside the block is 16 x 1e-3
    words = timed_words(["▁the", "▁c", "at", "▁sat"], spans, mass, subsampling=4, n_frames=62)
    assert [(w.word, round(w.start, 6), round(w.end, 6)) for w in words] == \
        [("the", 0.0, 0.16), ("cat", 0.16, 0.48), ("sat", 0.48, 0.62)]  # 0.64 clipped to T = 62 frames
    assert words[1].confidence == pytest.approx(1 - 16e-3)


def test_methods_are_registered():
    assert {"dtw", "argmax", "mass"} <= set(TIMESTAMP_METHODS)
    with pytest.raises(ValueError, match="choose from"):
        TIMESTAMP_METHODS.get("nope")


def test_words_are_back_to_back_when_token_spans_share_a_frame():
    """A DTW path can put two tokens on one frame (a vertical step): the word ending there ends where the
    next word starts, as Whisper reports words, instead of overlapping it by a frame."""
    from fairseq_xattn.analysis.timestamps.alignment import TokenSpans

    tokens = ["▁soft", "▁spoon", "▁cup"]
    spans = TokenSpans(np.array([2, 2, 5]), np.array([3, 5, 7]))  # soft and spoon share frame 2
    words = timed_words(tokens, spans, [1.0, 1.0, 1.0], subsampling=4)  # 40 ms per encoder frame
    assert [(w.word, round(w.start, 3), round(w.end, 3)) for w in words] == [
        ("soft", 0.08, 0.08), ("spoon", 0.08, 0.2), ("cup", 0.2, 0.28)]
    assert all(a.end <= b.start for a, b in zip(words, words[1:]))
