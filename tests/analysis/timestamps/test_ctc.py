"""CTC Viterbi forced alignment: a known path, optimality against brute force, too few frames; the
model's CTC log-probs from a small xattn_conformer."""
import itertools

import numpy as np
import pytest

from fairseq_xattn.analysis.timestamps.ctc import CtcAlignmentError, ctc_timestamps, ctc_viterbi

BLANK = 0


def _log_probs(frames, V=3, hi=0.8):
    """One frame per symbol of ``frames``: that symbol gets ``hi``, the others share the rest."""
    p = np.full((len(frames), V), (1 - hi) / (V - 1))
    p[np.arange(len(frames)), frames] = hi
    return np.log(p)


def test_known_path_with_a_repeated_label():
    # labels a a b need a blank between the two a's; frames favour: a, blank, a, a, b, blank
    lp = _log_probs([1, 0, 1, 1, 2, 0])
    al = ctc_viterbi(lp, [1, 1, 2], BLANK)
    assert al.states.tolist() == [1, 2, 3, 3, 5, 6]
    assert al.spans.first.tolist() == [0, 2, 4] and al.spans.end.tolist() == [1, 4, 5]
    assert al.log_prob == pytest.approx(6 * np.log(0.8))


def _valid(states, n_states, ext):
    if states[0] not in (0, 1) or states[-1] not in (n_states - 1, n_states - 2):
        return False
    for a, b in zip(states, states[1:]):
        if b - a == 2 and not (b % 2 == 1 and ext[b] != ext[a + 0] and ext[b] != ext[b - 2]):
            return False
        if b - a not in (0, 1, 2):
            return False
    return True


def test_viterbi_matches_brute_force():
    rng = np.random.default_rng(0)
    for labels in ([1, 2], [1, 1], [2]):
        ext = [BLANK]
        for x in labels:
            ext += [x, BLANK]
        lp = np.log(rng.dirichlet(np.ones(3), size=5))
        best = max(sum(lp[t, ext[s]] for t, s in enumerate(states))
                   for states in itertools.product(range(len(ext)), repeat=5) if _valid(states, len(ext), ext))
        assert ctc_viterbi(lp, labels, BLANK).log_prob == pytest.approx(best)


def test_too_few_frames_is_an_error_naming_the_utterance():
    with pytest.raises(ValueError, match="need at least 3 frames"):
        ctc_viterbi(_log_probs([1, 1]), [1, 1], BLANK)
    with pytest.raises(CtcAlignmentError, match="utt7"):
        ctc_timestamps("utt7", _log_probs([1, 1]), [1, 1], ["▁a", "▁a"], BLANK, subsampling=4)


def test_ctc_timestamps_words_and_confidence():
    # tokens ▁a b ▁a: word "ab" = frames 0..1, a pause (blank) at 2..3, word "a" at 4
    lp = _log_probs([1, 2, 0, 0, 1, 0])
    ts = ctc_timestamps("u", lp, [1, 2, 1], ["▁a", "b", "▁a"], BLANK, subsampling=4)
    assert [(w.word, round(w.start, 6), round(w.end, 6)) for w in ts.words] == [("ab", 0.0, 0.08), ("a", 0.16, 0.2)]
    assert ts.words[0].confidence == pytest.approx(0.8)


def test_model_ctc_log_probs_of_a_small_conformer():
    torch = pytest.importorskip("torch")
    from fairseq_xattn.analysis.timestamps.ctc import model_ctc_log_probs
    from tests.models.tiny_model import FakeTask, build_small_model, make_dictionary

    model = build_small_model(FakeTask(make_dictionary(12), make_dictionary(10))).eval()
    log_probs, blank = model_ctc_log_probs(model, torch.randn(37, 20))
    assert log_probs.shape == (10, 12)  # T' = ceil(37 / 4), V = 12
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0, rtol=1e-5)
    assert blank == model.ctc_tgt_head.blank_index == 0
    al = ctc_viterbi(log_probs, [5, 6, 6], blank)
    assert (np.diff(al.states) >= 0).all()


def test_checkpoint_without_ctc_head_is_a_user_error(tiny_checkpoint, tiny_data):
    # the shared tiny checkpoint is a stock s2t_transformer: loaded like the faithfulness analysis
    # loads models, then refused because it has no CTC head
    from fairseq_xattn.analysis.timestamps.ctc import checkpoint_ctc_log_probs

    with pytest.raises(CtcAlignmentError, match=r"has no tgt CTC head; CTC timestamps need an xattn_conformer"):
        list(checkpoint_ctc_log_probs(str(tiny_checkpoint), str(tiny_data), "test", ["test_0000"]))
