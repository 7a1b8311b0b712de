"""The synthetic espeak-ng corpus: determinism, word timings, splits, and the reordering grammar."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fairseq_xattn.data.corpus import build
from fairseq_xattn.data.corpus.espeak import PhonemeEvent, Synthesis, WordEvent, synthesize_in_fresh_process
from fairseq_xattn.data.corpus.grammar import NOUNS, Adjective, SentenceGrammar, articulated, definite_article
from fairseq_xattn.data.corpus.timings import check_word_timings, word_timings


def _digest(root: Path):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_different_seed_different_audio(tmp_path):
    a = _digest(Path(build.build_corpus(tmp_path / "a", size=6, seed=11, workers=2, eval_size=1) and tmp_path / "a"))
    b = _digest(Path(build.build_corpus(tmp_path / "b", size=6, seed=11, workers=1, eval_size=1) and tmp_path / "b"))
    assert a == b
    assert len([k for k in a if k.endswith(".wav")]) == 2 * (6 + 1)
    c = _digest(Path(build.build_corpus(tmp_path / "c", size=6, seed=12, workers=2, eval_size=1) and tmp_path / "c"))
    assert c["train.tsv"] != a["train.tsv"]


def test_fresh_process_synthesis_is_reproducible_even_for_breathy_voices():
    text = "the old teacher sees it from the big table"
    runs = [synthesize_in_fresh_process(text, "en-us+f3", 170, 50, seed=7) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].audio, runs[1].audio)
    assert [w.sample for w in runs[0].words] == [w.sample for w in runs[1].words]


def _timings(corpus: Path, split: str):
    with open(corpus / "timings" / f"{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_every_word_has_an_ordered_timing_inside_its_audio(tiny_corpus_and_data):
    corpus, _ = tiny_corpus_and_data
    n_words = 0
    for split in build.SPLITS:
        for suffix in ("", "_it"):
            for rec in _timings(corpus, split + suffix):
                audio, sr = sf.read(corpus / "audio" / rec["lang"] / f"{rec['id']}.wav")
                assert sr == 16000
                duration = len(audio) / sr
                assert abs(rec["duration"] - duration) < 1e-4
                assert [w["word"] for w in rec["words"]] == rec["text"].split(" ")
                prev_end = 0.0
                for w in rec["words"]:
                    assert 0.0 <= w["start"] < w["end"] <= duration + 1e-9, (rec["id"], w)
                    assert w["start"] >= prev_end - 1e-9, (rec["id"], w)
                    prev_end = w["end"]
                n_words += len(rec["words"])
    assert n_words > 100


def test_splits_unseen_sentences_and_held_out_voices(tiny_corpus_and_data):
    corpus, _ = tiny_corpus_and_data
    rows = {}
    for split in build.SPLITS:
        lines = (corpus / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        header = lines[0].split("\t")
        rows[split] = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    train_sentences = {r["src_text"] for r in rows["train"]}
    for split in ("dev", "test", "test_voices"):
        assert not train_sentences & {r["src_text"] for r in rows[split]}
    assert [r["src_text"] for r in rows["test"]] == [r["src_text"] for r in rows["test_voices"]]
    assert {r["speaker"] for r in rows["test_voices"]} <= set(build.EN_HELDOUT_VOICES)
    assert not set(build.EN_HELDOUT_VOICES) & set(build.EN_TRAIN_VOICES)
    assert not set(build.IT_HELDOUT_VOICES) & set(build.IT_TRAIN_VOICES)
    assert all(r["src_lang"] == "en" and r["tgt_lang"] == "it" for r in rows["train"])
    # the Italian audio of each pair is the translation of the English one
    it_rows = (corpus / "train_it.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert [line.split("\t")[4] for line in it_rows] == [r["src_text"] for r in rows["train"]]
    rec = _timings(corpus, "train")[0]
    assert rec["translation_id"] == rows["train"][0]["id"].replace("_en", "_it")
    n_it = len(rows["train"][0]["tgt_text"].split())
    assert all(0 <= a < len(rec["words"]) and 0 <= b < n_it for a, b in rec["alignment"])


def test_word_timings_merged_and_empty_events_known_answer():
    # "from the big table": espeak folds "the" into "from" and emits an empty event first
    syn = Synthesis(
        audio=np.zeros(1000, np.int16),
        words=[WordEvent(-1, 0, 0), WordEvent(0, 4, 100), WordEvent(9, 3, 500), WordEvent(13, 5, 700)],
        phonemes=[PhonemeEvent("f", 100), PhonemeEvent("r", 150), PhonemeEvent("D", 330), PhonemeEvent("@", 400),
                  PhonemeEvent("b", 500), PhonemeEvent("t", 700), PhonemeEvent("_:", 900), PhonemeEvent("_", 1000)],
    )
    t = word_timings("from the big table", syn, sample_rate=1000)
    assert [(w["word"], w["start"], w["end"], w["merged"]) for w in t] == [
        # unit "from the" spans 100..500, split by characters (4:3 -> 328.6) snapped to phoneme 330
        ("from", 0.1, 0.33, True), ("the", 0.33, 0.5, True),
        ("big", 0.5, 0.7, False),
        ("table", 0.7, 0.9, False),  # ends at the first pause phoneme
    ]


def test_italian_agreement_articles_and_reordering():
    assert Adjective("black", "nero").agree(feminine=True, plural=True) == "nere"
    assert Adjective("white", "bianco").agree(feminine=False, plural=True) == "bianchi"
    assert Adjective("old", "vecchio").agree(feminine=False, plural=True) == "vecchi"
    assert Adjective("green", "verde").agree(feminine=True, plural=True) == "verdi"
    assert Adjective("blue", "blu").agree(feminine=True, plural=True) == "blu"
    student = next(n for n in NOUNS if n.en == "student")
    assert definite_article(student, False) == "lo" and definite_article(student, True) == "gli"
    assert [articulated("in", a) for a in ("il", "lo", "la", "i", "gli", "le")] == \
        ["nel", "nello", "nella", "nei", "negli", "nelle"]
    g = SentenceGrammar(np.random.default_rng(0))
    crossing = 0
    for _ in range(200):
        p = g.sentence()
        assert all(0 <= a < len(p.en) and 0 <= b < len(p.it) for a, b in p.links)
        assert {a for a, _ in p.links} == set(range(len(p.en)))  # every English word is aligned
        crossing += any(a1 < a2 and b1 > b2 for a1, b1 in p.links for a2, b2 in p.links)
    assert crossing > 50  # adjectives, pronouns and possessives really reorder


def test_too_small_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--size 4 is too small"):
        build.build_corpus(tmp_path, size=4, eval_size=2)


def test_worker_errors_reach_the_caller_with_the_voice_named(tmp_path):
    from fairseq_xattn.data.corpus.worker_pool import LeanWorkerPool

    job = build.UtteranceJob(utt_id="x_en", text="the cat", lang="en", voice="en+no-such-voice", rate=175,
                             pitch=50, snr_db=40.0, noise_seed=[1], espeak_seed=1, wav_path=str(tmp_path / "x.wav"))
    with LeanWorkerPool(1) as pool:
        with pytest.raises(RuntimeError, match="does not know the voice .en\\+no-such-voice."):
            list(pool.map("synthesize_utterance", [job]))
        ok = build.UtteranceJob(**{**job.__dict__, "voice": "en-us"})
        (res,) = list(pool.map("synthesize_utterance", [ok]))  # the worker survives the error
    assert [w["word"] for w in res["words"]] == ["the", "cat"] and (tmp_path / "x.wav").is_file()


def test_every_configured_voice_exists():
    from fairseq_xattn.data.corpus.espeak import Espeak

    espeak = Espeak.get()  # initialising only: this test process never synthesises
    for voice in build.EN_TRAIN_VOICES + build.EN_HELDOUT_VOICES + build.IT_TRAIN_VOICES + build.IT_HELDOUT_VOICES:
        espeak.check_voice(voice)
    with pytest.raises(ValueError, match="no variant 'm99'"):
        espeak.check_voice("en+m99")


def test_word_timings_give_every_word_a_sample_in_degenerate_units():
    # "a b" is one unit of a single sample (500..501, "c" starts at 501), "d e" one unit on the last
    # sample of the audio: splitting either among its two words used to give a zero-length word
    syn = Synthesis(audio=np.zeros(1000, np.int16),
                    words=[WordEvent(0, 1, 500), WordEvent(4, 1, 501), WordEvent(6, 1, 999)],
                    phonemes=[PhonemeEvent("a", 500), PhonemeEvent("c", 501), PhonemeEvent("_", 502)])
    t = word_timings("a b c d e", syn, sample_rate=1000)
    assert [(w["word"], w["start"], w["end"], w["merged"]) for w in t] == [
        ("a", 0.5, 0.501, True), ("b", 0.501, 0.502, True),  # "b" takes a sample of the next word ...
        ("c", 0.502, 0.503, False),  # ... which moves into the pause after it
        ("d", 0.998, 0.999, True), ("e", 0.999, 1.0, True),  # the last unit widens backwards
    ]
    check_word_timings(t, 1.0, "x")
    # timings of audio shortened (e.g. by resampling) end inside it
    short = word_timings("a b c d e", syn, sample_rate=1000, n_samples=990)
    check_word_timings(short, 0.99, "x")
    assert [(w["start"], w["end"]) for w in short[-2:]] == [(0.988, 0.989), (0.989, 0.99)]
    with pytest.raises(ValueError, match=r"5 words cannot have distinct timings in 3 samples"):
        word_timings("a b c d e", syn, sample_rate=1000, n_samples=3)


def test_word_timing_check_names_the_utterance_and_the_word():
    the = {"word": "the", "start": 0.0, "end": 0.2}
    with pytest.raises(ValueError, match=r"train_00001_en \('the cat'\): word 1 'cat' has timing 0.2..0.2 s"):
        check_word_timings([the, {"word": "cat", "start": 0.2, "end": 0.2}], 1.0, "train_00001_en ('the cat')")
    for start, end in ((0.1, 0.5), (0.5, 1.5), (0.5, 0.4), (-0.1, 0.0)):  # overlap, past the end, reversed
        words = [dict(the, start=min(0.0, start)), {"word": "cat", "start": start, "end": end}]
        with pytest.raises(ValueError, match=r"u: word [01] '(the|cat)'"):
            check_word_timings(words, 1.0, "u")
    check_word_timings([the, {"word": "cat", "start": 0.2, "end": 0.5}], 1.0, "u")
