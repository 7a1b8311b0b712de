"""WhisperDictionary: index == Whisper token id, JSON round trip, byte-level decoding, BPE encoding,
special tokens, and Whisper's word grouping.  Vocabularies are built here (no download): the 256 byte
symbols (in byte order), a few BPE merges, and Whisper's special-token layout."""
import json

import pytest
import torch

from fairseq_xattn.models.whisper.vocabulary import (
    DICTIONARY_FORMAT, PAD_SYMBOL, WhisperDictionary, WhisperTokenizerMissing, WhisperVocabularyError,
    byte_to_char, find_tokenizer_files, read_folder_vocabulary, split_words, symbol_bytes, text_to_symbol,
)

BYTE_SYMBOLS = [byte_to_char(b) for b in range(256)]
# ' hello' as one token; '€' (E2 82 AC) as 'âĤ' (E2 82) + '¬' (AC)
MERGES = [("Ġ", "h"), ("Ġh", "e"), ("Ġhe", "l"), ("Ġhel", "l"), ("Ġhell", "o"), ("â", "Ĥ")]
MERGED = ["".join(m) for m in MERGES]
TIMESTAMPS = ["<|%.2f|>" % (0.02 * k) for k in range(6)]
SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"] + TIMESTAMPS


def make_tokens(n_text_tokens=None):
    """Byte symbols + merges (+ filler text symbols up to ``n_text_tokens``) + specials."""
    text = BYTE_SYMBOLS + MERGED
    if n_text_tokens is not None:
        fillers = (a + b + c for a in BYTE_SYMBOLS for b in BYTE_SYMBOLS for c in "xyz")
        text = text + [f for f, _ in zip(fillers, range(n_text_tokens - len(text)))]
    return text + SPECIALS


TOKENS = make_tokens()
ID = {t: i for i, t in enumerate(TOKENS)}
EOT = ID["<|endoftext|>"]


def write_vocab_merges(folder, tokens=TOKENS):
    text_vocab = {t: i for i, t in enumerate(tokens) if i < tokens.index("<|endoftext|>")}
    (folder / "vocab.json").write_text(json.dumps(text_vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES), encoding="utf-8")


def write_tokenizer_json(folder, tokens=TOKENS):
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    eot = tokens.index("<|endoftext|>")
    tokenizer = Tokenizer(BPE({t: i for i, t in enumerate(tokens[:eot])}, list(MERGES)))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens[eot:]])
    tokenizer.save(str(folder / "tokenizer.json"))


@pytest.fixture
def dictionary(tmp_path):
    write_vocab_merges(tmp_path)
    return WhisperDictionary(TOKENS, tokenizer_dir=tmp_path)


def test_index_is_whisper_token_id_with_pad_appended(dictionary):
    n_vocab = len(TOKENS)
    assert dictionary.n_vocab == n_vocab and len(dictionary) == n_vocab + 1
    assert [dictionary.index(t) for t in TOKENS] == list(range(n_vocab))
    assert dictionary[n_vocab] == PAD_SYMBOL == dictionary[dictionary.pad()]
    assert dictionary.pad() == n_vocab != dictionary.eos()
    assert dictionary.eos() == dictionary.unk() == EOT == dictionary.eot
    assert dictionary.bos() == ID["<|startoftranscript|>"] == dictionary.sot
    assert dictionary.nspecial == 0


def test_special_tokens(dictionary):
    d = dictionary
    assert (d.translate, d.transcribe, d.sot_lm, d.sot_prev, d.no_speech, d.no_timestamps) == tuple(
        ID[t] for t in ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>",
                        "<|notimestamps|>"])
    assert d.language_codes == ["en", "de"]
    assert d.language_token("de") == ID["<|de|>"]
    with pytest.raises(WhisperVocabularyError, match="fr"):
        d.language_token("fr")
    assert d.timestamp_begin == ID["<|0.00|>"]
    assert d.is_timestamp(ID["<|0.06|>"]) and not d.is_timestamp(d.no_timestamps) and not d.is_timestamp(d.pad())
    assert d.timestamp_seconds(ID["<|0.06|>"]) == 0.06
    assert d.is_special(EOT) and d.is_special(d.pad()) and not d.is_special(EOT - 1)


def test_english_only_and_multilingual_prompts(dictionary):
    d = dictionary
    assert d.is_english_only and not d.is_multilingual
    assert d.sot_sequence() == [d.sot, d.no_timestamps]
    assert d.sot_sequence(language="en", timestamps=True) == [d.sot]
    with pytest.raises(WhisperVocabularyError, match="English-only"):
        d.sot_sequence(language="de")
    with pytest.raises(WhisperVocabularyError, match="translate"):
        d.sot_sequence(task="translate")

    # 51864 tokens: English-only (Whisper's .en size); 51865: multilingual (Whisper's rule).
    english = WhisperDictionary(make_tokens(51864 - len(SPECIALS)))
    assert english.n_vocab == 51864 and english.is_english_only
    multi = WhisperDictionary(make_tokens(51865 - len(SPECIALS)))
    assert multi.n_vocab == 51865 and multi.is_multilingual
    assert multi.sot_sequence(language="de", task="translate") == [
        multi.sot, multi.language_token("de"), multi.translate, multi.no_timestamps]
    assert multi.sot_sequence() == [multi.sot, multi.language_token("en"), multi.transcribe, multi.no_timestamps]


def test_byte_level_table():
    assert byte_to_char(ord(" ")) == "Ġ" and byte_to_char(ord("\n")) == "Ċ" and byte_to_char(ord("a")) == "a"
    assert len(set(BYTE_SYMBOLS)) == 256
    assert text_to_symbol(" hello") == "Ġhello" and symbol_bytes("Ġhello") == b" hello"
    assert text_to_symbol("é") == "Ã©"  # C3 A9
    assert symbol_bytes(text_to_symbol("naïve €")) == "naïve €".encode("utf-8")
    with pytest.raises(WhisperVocabularyError, match="byte-level"):
        symbol_bytes("Ā\u4e00")


def test_decoding_known_tokens(dictionary):
    d = dictionary
    assert d.decode([ID["Ġhello"]]) == " hello"
    assert d.decode([ID["Ã"], ID["©"]]) == "é"                        # one character over two tokens
    assert d.decode([ID["Ġhello"], ID["Ġ"], ID["âĤ"], ID["¬"]]) == " hello €"
    assert d.decode([ID["âĤ"]]) == "\ufffd"                            # half a character: replaced
    prompt = d.sot_sequence()
    assert d.decode(prompt + [ID["h"], ID["i"], ID["<|0.04|>"], EOT, d.pad()]) == "hi"  # specials dropped
    assert d.symbol_text(ID["Ġhello"]) == " hello" and d.symbol_text(EOT) == "<|endoftext|>"


def test_string_is_the_decoded_text_for_fairseq(dictionary):
    d = dictionary
    row = [d.sot, d.no_timestamps, ID["Ġhello"], ID["Ġ"], ID["Ã"], ID["©"], EOT]
    assert d.string(torch.tensor(row)) == " hello é"
    assert d.string(row) == " hello é"
    assert d.string(torch.tensor([row, row[:3] + [EOT] * 4])) == " hello é\n hello"
    assert d.string(row, extra_symbols_to_ignore={ID["Ã"], ID["©"]}) == " hello "


def test_save_load_round_trip(dictionary, tmp_path):
    path = tmp_path / "whisper_dictionary.json"
    dictionary.save(path)
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert payload["format"] == DICTIONARY_FORMAT and payload["tokens"] == TOKENS
    loaded = WhisperDictionary.load(path)
    assert loaded.symbols == dictionary.symbols and loaded.indices == dictionary.indices
    assert (loaded.bos(), loaded.pad(), loaded.eos(), loaded.unk()) == \
        (dictionary.bos(), dictionary.pad(), dictionary.eos(), dictionary.unk())
    assert loaded.tokenizer_dir == tmp_path  # the tokenizer files beside the dictionary
    assert loaded.encode(" hello") == [ID["Ġhello"]]
    with open(path, encoding="utf-8") as f:  # a file object works too
        assert WhisperDictionary.load(f).symbols == dictionary.symbols


def test_load_refuses_other_files(tmp_path):
    dict_txt = tmp_path / "dict.txt"
    dict_txt.write_text("hello 5\nworld 3\n")
    with pytest.raises(WhisperVocabularyError, match="dict.txt.*not a Whisper dictionary"):
        WhisperDictionary.load(dict_txt)
    wrong_version = tmp_path / "v2.json"
    wrong_version.write_text(json.dumps({"format": DICTIONARY_FORMAT, "version": 2, "n_vocab": 1, "tokens": ["a"]}))
    with pytest.raises(WhisperVocabularyError, match="v2.json.*version 2"):
        WhisperDictionary.load(wrong_version)
    with pytest.raises(WhisperVocabularyError, match="missing.json"):
        WhisperDictionary.load(tmp_path / "missing.json")


def test_vocabulary_layout_errors():
    with pytest.raises(WhisperVocabularyError, match="<\\|notimestamps\\|>"):
        WhisperDictionary([t for t in TOKENS if t != "<|notimestamps|>"])
    with pytest.raises(WhisperVocabularyError, match="twice"):
        WhisperDictionary(TOKENS[:5] + [TOKENS[3]] + TOKENS[5:])
    with pytest.raises(WhisperVocabularyError, match="timestamp"):
        WhisperDictionary(TOKENS[:-2] + ["<|0.50|>", TOKENS[-1]])


@pytest.mark.parametrize("files", ["vocab_merges", "tokenizer_json"])
def test_encoding_with_whisper_bpe(tmp_path, files):
    (write_vocab_merges if files == "vocab_merges" else write_tokenizer_json)(tmp_path)
    d = WhisperDictionary(TOKENS, tokenizer_dir=tmp_path)
    # GPT-2 pre-tokenisation keeps the space with the word; merges make 'Ġhello' and 'âĤ'.
    assert d.encode(" hello €") == [ID["Ġhello"], ID["Ġ"], ID["âĤ"], ID["¬"]]
    assert d.encode("hello") == [ID["h"], ID["e"], ID["l"], ID["l"], ID["o"]]
    for text in ["Hello, world!", " naïve café — 5€", "line\nbreak", ""]:
        assert d.decode(d.encode(text)) == text
    symbols = d.text_to_symbols(" hello €")
    assert symbols == "Ġhello Ġ âĤ ¬"
    assert d.encode_line(symbols, add_if_not_exist=False, append_eos=True).tolist() == d.encode(" hello €") + [EOT]
    with pytest.raises(WhisperVocabularyError, match="special"):
        d.encode("say <|en|> now")


def test_encoding_without_tokenizer_names_the_folder(tmp_path):
    d = WhisperDictionary(TOKENS, tokenizer_dir=tmp_path)
    assert find_tokenizer_files(tmp_path) is None
    with pytest.raises(WhisperTokenizerMissing, match=f"{tmp_path}.*tokenizer.json or vocab.json \\+ merges.txt"):
        d.encode("hello")
    assert d.decode([ID["Ġhello"]]) == " hello"  # decoding needs no tokenizer
    with pytest.raises(WhisperTokenizerMissing, match="no tokenizer folder"):
        WhisperDictionary(TOKENS).encode("hello")


def test_tokenizer_disagreeing_with_the_vocabulary_is_refused(tmp_path):
    swapped = list(TOKENS)
    swapped[ID["a"]], swapped[ID["b"]] = "b", "a"
    write_vocab_merges(tmp_path, swapped)
    with pytest.raises(WhisperVocabularyError, match="vocab.json.*id"):
        WhisperDictionary(TOKENS, tokenizer_dir=tmp_path).encode("a")


def test_folder_vocabularies(tmp_path):
    n_vocab = len(TOKENS)
    eot = TOKENS.index("<|endoftext|>")
    # CTranslate2: vocabulary.txt, one token a line
    ct2 = tmp_path / "ct2"
    ct2.mkdir()
    (ct2 / "vocabulary.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    assert read_folder_vocabulary(ct2, n_vocab) == TOKENS
    # Hugging Face tokenizer.json without the timestamp tokens: filled up to n_vocab
    hf = tmp_path / "hf"
    hf.mkdir()
    write_tokenizer_json(hf, TOKENS[:-len(TIMESTAMPS)])
    assert read_folder_vocabulary(hf, n_vocab) == TOKENS
    # vocab.json + added_tokens.json
    old = tmp_path / "old"
    old.mkdir()
    write_vocab_merges(old)
    (old / "added_tokens.json").write_text(json.dumps({t: eot + i for i, t in enumerate(TOKENS[eot:])}))
    dictionary = WhisperDictionary.from_folder(old, n_vocab)
    assert dictionary.symbols[:n_vocab] == TOKENS and dictionary.encode(" hello") == [ID["Ġhello"]]
    with pytest.raises(WhisperVocabularyError, match="ct2.*n_vocab=999"):
        read_folder_vocabulary(ct2, 999)
    with pytest.raises(WhisperVocabularyError, match="no Whisper vocabulary"):
        read_folder_vocabulary(tmp_path)


def _ids(*symbols):
    return [ID[s] for s in symbols]


def test_split_words_like_whisper(dictionary):
    d = dictionary
    # ' hello world, (the) end.' -- ' (' is two tokens: ' ' is a word of its own (whitespace counts as
    # punctuation in Whisper's test), '(' too; ' ' is then prepended to '(the', ')' and '.' appended.
    ids = _ids("Ġhello", "Ġ", "w", "o", "r", "l", "d", ",", "Ġ", "(", "t", "h", "e", ")", "Ġ", "e", "n", "d", ".")
    words = split_words(d, ids)
    assert [w.text for w in words] == [" hello", " world,", " (the)", " end."]
    assert [w.positions for w in words] == [[0], [1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13], [14, 15, 16, 17, 18]]
    assert all([ids[p] for p in w.positions] == w.tokens for w in words)


def test_split_words_quotes_multibyte_and_specials(dictionary):
    d = dictionary
    prompt = d.sot_sequence()
    # ' "hi" café' + EOT after the prompt: quotes join the word, 'é' (two tokens) stays whole
    ids = prompt + _ids("Ġ", '"', "h", "i", '"', "Ġ", "c", "a", "f", "Ã", "©") + [EOT]
    words = split_words(d, ids)
    assert [w.text for w in words] == [' "hi"', " café"]
    assert words[1].tokens == _ids("Ġ", "c", "a", "f", "Ã", "©")
    assert words[0].positions[0] == len(prompt)  # positions index the sequence given, prompt included
    # a word that does not start with a space continues the previous one; a special token ends it
    words = split_words(d, _ids("Ġhello", "x") + [ID["<|0.02|>"]] + _ids("y", "Ġhello"))
    assert [w.text for w in words] == [" hellox", "y", " hello"]
    assert words[1].positions == [3]
