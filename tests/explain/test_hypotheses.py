"""Reading the hypotheses to explain: TSV and recording store, and their errors."""
import numpy as np
import pytest
from fairseq.data import Dictionary

from fairseq_xattn.explain.hypotheses import HypothesisError, HypothesisSource
from fairseq_xattn.stores import KIND_CROSS_ATTENTION, KIND_SALIENCY, StoreWriter


@pytest.fixture
def dictionary():
    d = Dictionary()
    for w in ["alpha", "bravo", "<lang:en>"]:
        d.add_symbol(w)
    return d


def test_tsv_hypotheses_get_eos_and_lang_prefix(dictionary, tmp_path):
    path = tmp_path / "h.tsv"
    path.write_text("id\ttokens\nu1\t<lang:en> alpha bravo\nu2\t\n")
    src = HypothesisSource(str(path), dictionary)
    h = src.get("u1")
    assert h.tokens == [dictionary.index("<lang:en>"), dictionary.index("alpha"), dictionary.index("bravo"), dictionary.eos()]
    assert h.prefix_len == 1 and h.token_strings[-1] == "</s>"
    assert src.get("u2").tokens == [dictionary.eos()]
    with pytest.raises(HypothesisError, match="no row for utterance 'u3'"):
        src.get("u3")


def test_tsv_errors(dictionary, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\ttokens\nu1\talpha zulu\n")
    with pytest.raises(HypothesisError, match=r"bad.tsv line 2 \(id 'u1'\).*zulu"):
        HypothesisSource(str(bad), dictionary)
    (tmp_path / "cols.tsv").write_text("id\ttext\nu1\talpha\n")
    with pytest.raises(HypothesisError, match="columns 'id' and 'tokens'"):
        HypothesisSource(str(tmp_path / "cols.tsv"), dictionary)
    with pytest.raises(HypothesisError, match="no such store directory or TSV"):
        HypothesisSource(str(tmp_path / "nope"), dictionary)


def _record_store(path, tokens, strings, kind=KIND_CROSS_ATTENTION):
    with StoreWriter(path, kind) as w:
        w.write("u1", {"attention": np.zeros((1, 1, len(tokens), 2), np.float32)},
                {"tokens": tokens, "token_strings": strings, "prefix_len": 0})


def test_store_hypotheses_and_vocabulary_mismatch(dictionary, tmp_path):
    a, b, eos = dictionary.index("alpha"), dictionary.index("bravo"), dictionary.eos()
    _record_store(tmp_path / "ok", [a, b, eos], ["alpha", "bravo", "</s>"])
    src = HypothesisSource(str(tmp_path / "ok"), dictionary)
    assert src.get("u1").tokens == [a, b, eos]
    with pytest.raises(HypothesisError, match="no hypothesis for utterance 'u9'"):
        src.get("u9")
    _record_store(tmp_path / "other_vocab", [a, b, eos], ["alpha", "charlie", "</s>"])
    with pytest.raises(HypothesisError, match="utterance 'u1'.*another vocabulary"):
        HypothesisSource(str(tmp_path / "other_vocab"), dictionary).get("u1")
    _record_store(tmp_path / "too_big", [a, 999, eos], None)
    with pytest.raises(HypothesisError, match=r"token ids \[999\] are outside"):
        HypothesisSource(str(tmp_path / "too_big"), dictionary).get("u1")
    _record_store(tmp_path / "wrong_kind", [a, eos], None, kind=KIND_SALIENCY)
    with pytest.raises(HypothesisError, match="expected a 'cross_attention' store"):
        HypothesisSource(str(tmp_path / "wrong_kind"), dictionary)
