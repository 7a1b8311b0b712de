"""Whisper's vocabulary as a fairseq :class:`~fairseq.data.Dictionary` whose index is the Whisper token id.

Layout of Whisper's ``n_vocab`` tokens (English-only ``.en`` models: 51864; multilingual: 51865;
large-v3: 51866, one more language)::

    text tokens (byte-level BPE) | <|endoftext|> | <|startoftranscript|> | <|en|> <|zh|> ... (languages)
    | <|translate|> <|transcribe|> <|startoflm|> <|startofprev|> <|nocaptions|> (or <|nospeech|>)
    | <|notimestamps|> | <|0.00|> <|0.02|> ... <|30.00|> (timestamps)

:class:`WhisperDictionary` keeps exactly that order (no fairseq specials in front), with
``eos = unk = <|endoftext|>`` (Whisper has no unknown token), ``bos = <|startoftranscript|>`` and
one extra symbol ``<pad>`` at index ``n_vocab`` because fairseq needs ``pad != eos``; so
``len(d) == n_vocab + 1``.  It saves as JSON (:meth:`WhisperDictionary.save`,
:meth:`WhisperDictionary.load`): fairseq's ``dict.txt`` would put its own specials first.

Symbols are byte-level BPE strings: each UTF-8 byte is one printable character (GPT-2's
byte -> character table, :func:`byte_to_char`), so ``'Ġhello'`` is the bytes of ``' hello'``.
Decoding (:meth:`WhisperDictionary.decode`, and :meth:`~WhisperDictionary.string` for
fairseq-generate) joins the bytes of the text tokens and reads them as UTF-8 (invalid bytes become
U+FFFD, as in Whisper), dropping every token from ``<|endoftext|>`` on.  Encoding text needs the
BPE merges: ``tokenizer.json``, or ``vocab.json`` + ``merges.txt``, in the dictionary's tokenizer
folder (:func:`load_bpe_tokenizer`, the ``tokenizers`` package).

:func:`split_words` groups token ids into words as Whisper does for languages written with spaces
(used for word timestamps from cross-attention).
"""
from __future__ import annotations

import json
import re
import string as _string
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

from fairseq.data import Dictionary

from ...errors import UserError

ENDOFTEXT = "<|endoftext|>"
STARTOFTRANSCRIPT = "<|startoftranscript|>"
TRANSLATE = "<|translate|>"
TRANSCRIBE = "<|transcribe|>"
STARTOFLM = "<|startoflm|>"
STARTOFPREV = "<|startofprev|>"
NOCAPTIONS = "<|nocaptions|>"
NOSPEECH = "<|nospeech|>"  # the name of <|nocaptions|> in later tokenizers
NOTIMESTAMPS = "<|notimestamps|>"
PAD_SYMBOL = "<pad>"
#: Whisper's own rule (``Whisper.is_multilingual``): multilingual from 51865 tokens on.
MULTILINGUAL_MIN_VOCAB = 51865
TIMESTAMP_SECONDS = 0.02
#: File name the importer writes the dictionary to (any name works for :meth:`WhisperDictionary.load`).
DICTIONARY_FILE = "whisper_dictionary.json"
DICTIONARY_FORMAT = "fairseq_xattn.whisper_dictionary"
DICTIONARY_FORMAT_VERSION = 1
#: Tokenizer files that allow encoding text, in order of preference.
TOKENIZER_FILE_SETS: Tuple[Tuple[str, ...], ...] = (("tokenizer.json",), ("vocab.json", "merges.txt"))
_SPECIAL_PATTERN = re.compile(r"<\|[^<>|]*\|>")
#: Punctuation merged into the next / previous word (openai/whisper ``transcribe`` defaults).
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


class WhisperVocabularyError(UserError, ValueError):
    """A vocabulary or dictionary file that is not a Whisper vocabulary."""


class WhisperTokenizerMissing(WhisperVocabularyError):
    """Encoding text was asked for, but no tokenizer files are there."""


def _byte_table() -> Dict[int, str]:
    """GPT-2's byte -> character table: printable Latin-1 bytes stand for themselves, the other 68
    bytes (controls, space, ...) take the characters from U+0100 on, in byte order."""
    printable = (set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1))
                 | set(range(ord("®"), ord("ÿ") + 1)))
    table, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + shifted)
            shifted += 1
    return table


_BYTE_TO_CHAR = _byte_table()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}


def byte_to_char(byte: int) -> str:
    """The character that stands for ``byte`` in a byte-level BPE symbol (32 -> 'Ġ')."""
    return _BYTE_TO_CHAR[byte]


def symbol_bytes(symbol: str) -> bytes:
    """A byte-level BPE symbol -> its bytes (``'Ġhello'`` -> ``b' hello'``); raises for a non-byte-level symbol."""
    try:
        return bytes(_CHAR_TO_BYTE[c] for c in symbol)
    except KeyError as err:
        raise WhisperVocabularyError(f"symbol {symbol!r} is not a byte-level BPE string "
                                     f"(character {err.args[0]!r})") from None


def text_to_symbol(text: str) -> str:
    """UTF-8 text -> its byte-level BPE spelling (``' hello'`` -> ``'Ġhello'``)."""
    return "".join(_BYTE_TO_CHAR[b] for b in text.encode("utf-8"))


def timestamp_symbol(index: int) -> str:
    """``<|0.00|>``, ``<|0.02|>``, ...: the name of timestamp token number ``index``."""
    return "<|%.2f|>" % (index * TIMESTAMP_SECONDS)


class Word(NamedTuple):
    """One word of :func:`split_words`: its decoded text (with its leading space), token ids, and
    their positions in the sequence given."""
    text: str
    tokens: List[int]
    positions: List[int]


class WhisperDictionary(Dictionary):
    """fairseq Dictionary with index == Whisper token id, plus ``<pad>`` at ``n_vocab``.

    ``tokens``: the ``n_vocab`` Whisper token strings in id order.  ``tokenizer_dir``: the folder
    with ``tokenizer.json`` or ``vocab.json`` + ``merges.txt`` for :meth:`encode` (decoding needs none).
    """

    def __init__(self, tokens: Sequence[str], tokenizer_dir: Optional[Union[str, Path]] = None,
                 source: str = "vocabulary"):
        super().__init__(bos=STARTOFTRANSCRIPT, pad=PAD_SYMBOL, eos=ENDOFTEXT, unk=ENDOFTEXT,
                         add_special_symbols=False)
        for token_id, token in enumerate(tokens):
            if not isinstance(token, str) or not token:
                raise WhisperVocabularyError(f"{source}: token {token_id} is {token!r}, not a non-empty string")
            if token in self.indices:
                raise WhisperVocabularyError(f"{source}: token {token!r} appears twice (ids {self.indices[token]} "
                                             f"and {token_id})")
            self.add_symbol(token)
        for required in (ENDOFTEXT, STARTOFTRANSCRIPT, TRANSLATE, TRANSCRIBE, NOTIMESTAMPS):
            if required not in self.indices:
                raise WhisperVocabularyError(f"{source}: no {required} token: not a Whisper vocabulary")
        if PAD_SYMBOL in self.indices:
            raise WhisperVocabularyError(f"{source}: already has a {PAD_SYMBOL!r} token")
        self.n_vocab = len(self.symbols)
        self.pad_index = self.add_symbol(PAD_SYMBOL)
        self.eos_index = self.unk_index = self.indices[ENDOFTEXT]
        self.bos_index = self.indices[STARTOFTRANSCRIPT]
        self.nspecial = 0  # no fairseq specials in front: index == Whisper token id
        self.tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir is not None else None
        self._tokenizer = None
        self._check_layout(source)

    def _check_layout(self, source: str) -> None:
        eot = self.eot
        expected_after_sot = [TRANSLATE, TRANSCRIBE, STARTOFLM, STARTOFPREV]
        translate = self.indices[TRANSLATE]
        languages = self.symbols[eot + 2:translate]
        if self.sot != eot + 1 or not all(s.startswith("<|") and s.endswith("|>") for s in languages):
            raise WhisperVocabularyError(f"{source}: the tokens after {ENDOFTEXT} are not <|startoftranscript|> and "
                                         f"the language tokens: not a Whisper vocabulary")
        got = self.symbols[translate:translate + 4]
        if got != expected_after_sot or self.symbols[translate + 4] not in (NOCAPTIONS, NOSPEECH) \
                or self.no_timestamps != translate + 5:
            raise WhisperVocabularyError(f"{source}: unexpected task tokens after the languages: "
                                         f"{self.symbols[translate:translate + 6]}")
        for k, token_id in enumerate(range(self.timestamp_begin, self.n_vocab)):
            if self.symbols[token_id] != timestamp_symbol(k):
                raise WhisperVocabularyError(f"{source}: token {token_id} is {self.symbols[token_id]!r}, expected "
                                             f"timestamp {timestamp_symbol(k)}")

    # -- special tokens -------------------------------------------------------------------------
    @property
    def eot(self) -> int:
        """``<|endoftext|>``; every id from here on is a special token."""
        return self.eos_index

    @property
    def sot(self) -> int:
        return self.bos_index

    @property
    def decoder_start(self) -> int:
        """The decoder's first input, ``<|startoftranscript|>`` (fairseq dictionaries start with EOS);
        read through :func:`fairseq_xattn.generation.teacher_forced.decoder_first_input`."""
        return self.sot

    @property
    def translate(self) -> int:
        return self.indices[TRANSLATE]

    @property
    def transcribe(self) -> int:
        return self.indices[TRANSCRIBE]

    @property
    def sot_lm(self) -> int:
        return self.indices[STARTOFLM]

    @property
    def sot_prev(self) -> int:
        return self.indices[STARTOFPREV]

    @property
    def no_speech(self) -> int:
        """``<|nocaptions|>`` (``<|nospeech|>`` in later tokenizers)."""
        return self.translate + 4

    @property
    def no_timestamps(self) -> int:
        return self.indices[NOTIMESTAMPS]

    @property
    def timestamp_begin(self) -> int:
        """Id of ``<|0.00|>``; timestamp ``k`` is ``timestamp_begin + k`` (``k * 0.02`` s)."""
        return self.no_timestamps + 1

    @property
    def language_codes(self) -> List[str]:
        """``['en', 'zh', ...]`` in token order (the languages of the vocabulary, also in ``.en`` models)."""
        return [s[2:-2] for s in self.symbols[self.sot + 1:self.translate]]

    def language_token(self, code: str) -> int:
        """``'en'`` -> id of ``<|en|>``."""
        token = f"<|{code}|>"
        if token not in self.indices or not self.sot < self.indices[token] < self.translate:
            raise WhisperVocabularyError(f"no Whisper language token {token} (languages: "
                                         f"{', '.join(self.language_codes)})")
        return self.indices[token]

    def is_special(self, token_id: int) -> bool:
        """True from ``<|endoftext|>`` on: task tokens, languages, timestamps, and ``<pad>``."""
        return int(token_id) >= self.eot

    def is_timestamp(self, token_id: int) -> bool:
        return self.timestamp_begin <= int(token_id) < self.n_vocab

    def timestamp_seconds(self, token_id: int) -> float:
        if not self.is_timestamp(token_id):
            raise WhisperVocabularyError(f"token {token_id} ({self[int(token_id)]}) is not a timestamp token")
        return round((int(token_id) - self.timestamp_begin) * TIMESTAMP_SECONDS, 2)

    @property
    def is_multilingual(self) -> bool:
        return self.n_vocab >= MULTILINGUAL_MIN_VOCAB

    @property
    def is_english_only(self) -> bool:
        """Whisper's rule: fewer than 51865 tokens (51864 for the ``.en`` models)."""
        return not self.is_multilingual

    def sot_sequence(self, language: Optional[str] = None, task: str = "transcribe",
                     timestamps: bool = False) -> List[int]:
        """The decoder prompt Whisper forces: ``<|startoftranscript|>``, then for a multilingual
        model the language (default ``en``) and the task, then ``<|notimestamps|>`` unless
        ``timestamps``.  English-only models take no language or task token (as in Whisper)."""
        if task not in ("transcribe", "translate"):
            raise WhisperVocabularyError(f"unknown Whisper task {task!r} (transcribe or translate)")
        prompt = [self.sot]
        if self.is_multilingual:
            task_token = self.transcribe if task == "transcribe" else self.translate
            prompt += [self.language_token(language or "en"), task_token]
        else:
            if language not in (None, "en"):
                raise WhisperVocabularyError(f"an English-only Whisper model has no language {language!r}")
            if task != "transcribe":
                raise WhisperVocabularyError("an English-only Whisper model cannot translate")
        if not timestamps:
            prompt.append(self.no_timestamps)
        return prompt

    # -- decoding -------------------------------------------------------------------------------
    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of a text token (``token_id < eot``)."""
        return symbol_bytes(self.symbols[int(token_id)])

    def decode(self, token_ids: Iterable[int]) -> str:
        """Text as Whisper decodes it: the bytes of the text tokens joined and read as UTF-8
        (invalid sequences -> U+FFFD); every id from ``<|endoftext|>`` on is dropped."""
        eot = self.eot
        data = b"".join(self.token_bytes(i) for i in (int(t) for t in token_ids) if i < eot)
        return data.decode("utf-8", errors="replace")

    def string(self, tensor, bpe_symbol=None, escape_unk=False, extra_symbols_to_ignore=None, unk_string=None,
               include_eos=False, separator=" "):
        """fairseq's ``Dictionary.string`` for Whisper: the decoded text (:meth:`decode`), one line per
        row of a 2-D tensor.  Special tokens are always dropped, and so are ``extra_symbols_to_ignore``;
        the other arguments are accepted for fairseq's signature and have nothing to act on (the text
        is final: no BPE post-processing, no unknown token).  A floating-point tensor (fairseq-generate
        prints ``source_dictionary.string(src_tokens)``, our source being log-mel frames) gives ``""``."""
        if hasattr(tensor, "is_floating_point") and tensor.is_floating_point():
            return ""
        if hasattr(tensor, "dim") and tensor.dim() == 2:
            return "\n".join(self.string(row, extra_symbols_to_ignore=extra_symbols_to_ignore) for row in tensor)
        ignore = {int(i) for i in (extra_symbols_to_ignore or ())}
        ids = tensor.tolist() if hasattr(tensor, "tolist") else list(tensor)
        return self.decode(i for i in ids if int(i) not in ignore)

    def symbol_text(self, token_id: int) -> str:
        """What one token reads as (special tokens by name; a partial UTF-8 character as U+FFFD)."""
        token_id = int(token_id)
        if self.is_special(token_id):
            return self[token_id]
        return self.token_bytes(token_id).decode("utf-8", errors="replace")

    # -- encoding -------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        """The ``tokenizers.Tokenizer`` from :attr:`tokenizer_dir` (loaded on first use)."""
        if self._tokenizer is None:
            if self.tokenizer_dir is None:
                raise WhisperTokenizerMissing(
                    "this Whisper dictionary has no tokenizer folder: encoding text needs "
                    f"{' or '.join(' + '.join(s) for s in TOKENIZER_FILE_SETS)} (decoding works without)")
            self._tokenizer = load_bpe_tokenizer(self.tokenizer_dir, self)
        return self._tokenizer

    def encode(self, text: str) -> List[int]:
        """Text -> Whisper token ids with Whisper's GPT-2 byte-level BPE (no prompt, no EOS).  Text that
        spells a special token (``<|en|>``) is refused, as Whisper's tokenizer refuses it."""
        specials = sorted({m for m in _SPECIAL_PATTERN.findall(text) if self.indices.get(m, -1) >= self.eot})
        if specials:
            raise WhisperVocabularyError(f"text {text[:60]!r} contains Whisper special token(s) {', '.join(specials)}")
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if any(i >= self.eot for i in ids):  # a tokenizer that adds specials of its own
            raise WhisperVocabularyError(f"the tokenizer of {self.tokenizer_dir} put special tokens into {text[:60]!r}")
        return list(ids)

    def text_to_symbols(self, text: str) -> str:
        """Text -> the space-separated byte-level symbols fairseq's ``encode_line`` maps to the same ids
        as :meth:`encode` (no symbol contains a space: a space is 'Ġ')."""
        return " ".join(self.symbols[i] for i in self.encode(text))

    # -- files ----------------------------------------------------------------------------------
    def save(self, f) -> None:
        """Write the dictionary as JSON (format tag, version, the ``n_vocab`` Whisper tokens; ``<pad>`` is
        implied).  ``f``: a path or a text file object."""
        payload = {"format": DICTIONARY_FORMAT, "version": DICTIONARY_FORMAT_VERSION, "n_vocab": self.n_vocab,
                   "tokens": self.symbols[:self.n_vocab]}
        text = json.dumps(payload, ensure_ascii=False)
        if isinstance(f, (str, Path)):
            Path(f).write_text(text + "\n", encoding="utf-8")
        else:
            f.write(text + "\n")

    @classmethod
    def load(cls, f, tokenizer_dir: Optional[Union[str, Path]] = None) -> "WhisperDictionary":
        """Read a dictionary written by :meth:`save`.  The tokenizer folder defaults to the file's
        folder (the importer copies the tokenizer files beside the dictionary)."""
        if isinstance(f, (str, Path)):
            path = Path(f)
            if not path.is_file():
                raise WhisperVocabularyError(f"{path}: no such Whisper dictionary file")
            text, source = path.read_text(encoding="utf-8"), str(path)
            if tokenizer_dir is None:
                tokenizer_dir = path.parent
        else:
            text, source = f.read(), getattr(f, "name", "dictionary")
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as err:
            raise WhisperVocabularyError(f"{source}: not a Whisper dictionary (JSON expected: {err})") from None
        if not isinstance(payload, dict) or payload.get("format") != DICTIONARY_FORMAT:
            raise WhisperVocabularyError(f"{source}: not a Whisper dictionary (no \"format\": "
                                         f"\"{DICTIONARY_FORMAT}\")")
        if payload.get("version") != DICTIONARY_FORMAT_VERSION:
            raise WhisperVocabularyError(f"{source}: Whisper dictionary version {payload.get('version')!r} is not "
                                         f"supported (this code reads version {DICTIONARY_FORMAT_VERSION})")
        tokens = payload.get("tokens")
        if not isinstance(tokens, list) or len(tokens) != payload.get("n_vocab"):
            raise WhisperVocabularyError(f"{source}: \"tokens\" is not a list of n_vocab={payload.get('n_vocab')} "
                                         f"strings")
        return cls(tokens, tokenizer_dir=tokenizer_dir, source=source)

    @classmethod
    def from_folder(cls, folder, n_vocab: Optional[int] = None) -> "WhisperDictionary":
        """The dictionary of a model folder: a CTranslate2 vocabulary (``vocabulary.json`` /
        ``vocabulary.txt``) or a Hugging Face tokenizer (``tokenizer.json``, or ``vocab.json`` +
        ``added_tokens.json``); the folder is also the tokenizer folder."""
        folder = Path(folder)
        return cls(read_folder_vocabulary(folder, n_vocab), tokenizer_dir=folder, source=str(folder))


class WhisperTextCodec:
    """What fairseq's ``bpe`` object is for a Whisper data folder (the ``speech_to_text_ctc`` task
    returns it from ``build_bpe``): ``encode`` turns a reference transcript into the space-separated
    byte-level symbols the dictionary reads (:meth:`WhisperDictionary.text_to_symbols`), with one
    leading space as Whisper's own transcripts start (``" A horse."``), so a forced reference is
    tokenised as the model would produce it; ``decode`` only strips the text, which
    :meth:`WhisperDictionary.string` has already decoded (fairseq-generate's T-/D- lines)."""

    def __init__(self, dictionary: WhisperDictionary):
        self.dictionary = dictionary

    def encode(self, text: str) -> str:
        return self.dictionary.text_to_symbols(" " + text.strip())

    def decode(self, text: str) -> str:
        return text.strip()


# -- vocabulary and tokenizer files ---------------------------------------------------------------
def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise WhisperVocabularyError(f"{path}: not valid JSON ({err})") from None


def read_folder_vocabulary(folder, n_vocab: Optional[int] = None) -> List[str]:
    """The Whisper token strings of a model folder, index = id.

    CTranslate2: ``vocabulary.json`` (JSON list) or ``vocabulary.txt`` (one token a line).
    Hugging Face: ``tokenizer.json`` (``model.vocab`` + ``added_tokens``) or ``vocab.json`` +
    ``added_tokens.json``; tokenizers saved before the timestamp tokens were added stop at
    ``<|notimestamps|>``: the timestamps are filled in up to ``n_vocab`` (the embedding rows).
    """
    folder = Path(folder)
    for name in ("vocabulary.json", "vocabulary.txt"):
        if (folder / name).is_file():
            from .ctranslate2_format import read_ctranslate2_vocabulary  # numpy-only module
            tokens = read_ctranslate2_vocabulary(folder)
            source = folder / name
            break
    else:
        if (folder / "tokenizer.json").is_file():
            source = folder / "tokenizer.json"
            config = _read_json(source)
            try:
                by_id = {int(i): t for t, i in config["model"]["vocab"].items()}
                by_id.update({int(a["id"]): a["content"] for a in config.get("added_tokens", [])})
            except (KeyError, TypeError, AttributeError):
                raise WhisperVocabularyError(f"{source}: no BPE model.vocab / added_tokens") from None
        elif (folder / "vocab.json").is_file():
            source = folder / "vocab.json"
            by_id = {int(i): t for t, i in _read_json(source).items()}
            added = folder / "added_tokens.json"
            if added.is_file():
                by_id.update({int(i): t for t, i in _read_json(added).items()})
        else:
            raise WhisperVocabularyError(
                f"{folder}: no Whisper vocabulary (vocabulary.json or vocabulary.txt from CTranslate2, "
                f"tokenizer.json or vocab.json from Hugging Face)")
        tokens = _tokens_from_ids(by_id, n_vocab, source)
    if n_vocab is not None and len(tokens) != n_vocab:
        raise WhisperVocabularyError(f"{source}: {len(tokens)} tokens, but the model has n_vocab={n_vocab}")
    return tokens


def _tokens_from_ids(by_id: Dict[int, str], n_vocab: Optional[int], source: Path) -> List[str]:
    size = max(by_id) + 1
    missing = [i for i in range(size) if i not in by_id]
    if missing:
        raise WhisperVocabularyError(f"{source}: token ids {missing[:5]} are missing")
    tokens = [by_id[i] for i in range(size)]
    if n_vocab is not None and size < n_vocab:
        if tokens[-1] != NOTIMESTAMPS:
            raise WhisperVocabularyError(f"{source}: {size} tokens, fewer than the model's {n_vocab}, and the last "
                                         f"is {tokens[-1]!r}, not {NOTIMESTAMPS}")
        tokens += [timestamp_symbol(k) for k in range(n_vocab - size)]
    return tokens


def find_tokenizer_files(folder) -> Optional[List[Path]]:
    """The tokenizer files in ``folder`` that allow encoding text (``tokenizer.json``, else
    ``vocab.json`` + ``merges.txt``), or None.  The importer copies these beside the dictionary."""
    folder = Path(folder)
    for names in TOKENIZER_FILE_SETS:
        paths = [folder / n for n in names]
        if all(p.is_file() for p in paths):
            return paths
    return None


def load_bpe_tokenizer(folder, dictionary: Optional[WhisperDictionary] = None):
    """A ``tokenizers.Tokenizer`` doing Whisper's GPT-2 byte-level BPE, from ``folder``.

    ``tokenizer.json`` is used as it is; ``vocab.json`` + ``merges.txt`` get GPT-2's byte-level
    pre-tokenizer (no prefix space) and decoder.  With ``dictionary``, every BPE token must have the
    dictionary's id.  Raises :class:`WhisperTokenizerMissing` naming the folder and the files.
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    folder = Path(folder)
    files = find_tokenizer_files(folder)
    if files is None:
        wanted = " or ".join(" + ".join(names) for names in TOKENIZER_FILE_SETS)
        raise WhisperTokenizerMissing(f"{folder}: no Whisper tokenizer: encoding text needs {wanted} in this folder "
                                      f"(decoding works from the vocabulary alone)")
    try:
        if files[0].name == "tokenizer.json":
            tokenizer = Tokenizer.from_file(str(files[0]))
        else:
            tokenizer = Tokenizer(BPE.from_file(str(files[0]), str(files[1])))
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tokenizer.decoder = decoders.ByteLevel()
    except Exception as err:  # the tokenizers package raises plain Exceptions for unreadable files
        raise WhisperVocabularyError(f"{files[0]}: cannot read the tokenizer ({err})") from None
    if dictionary is not None:
        for token, token_id in tokenizer.get_vocab().items():
            if token_id < dictionary.n_vocab and dictionary.symbols[token_id] != token:
                raise WhisperVocabularyError(f"{files[0]}: token {token!r} has id {token_id} there, but the "
                                             f"dictionary's token {token_id} is {dictionary.symbols[token_id]!r}")
    return tokenizer


# -- words ----------------------------------------------------------------------------------------
def _unicode_groups(dictionary: WhisperDictionary, ids: Sequence[int]) -> List[Tuple[List[int], List[int]]]:
    """Consecutive text tokens grouped so that each group decodes to whole UTF-8 characters: a group
    grows while its bytes end inside a character (a character split over tokens); a group with
    invalid bytes ends at once.  Returns ``[(token ids, positions)]``; special tokens are skipped and
    end the group before them."""
    groups, current, positions, pending = [], [], [], b""

    def flush():
        nonlocal current, positions, pending
        if current:
            groups.append((current, positions))
        current, positions, pending = [], [], b""

    for position, token_id in enumerate(int(t) for t in ids):
        if dictionary.is_special(token_id):
            flush()
            continue
        current.append(token_id)
        positions.append(position)
        pending += dictionary.token_bytes(token_id)
        try:
            pending.decode("utf-8")
        except UnicodeDecodeError as err:
            if err.end == len(pending) and err.reason == "unexpected end of data":
                continue  # the character goes on in the next token
        flush()
    flush()
    return groups


def split_words(dictionary: WhisperDictionary, token_ids: Sequence[int],
                prepend_punctuations: str = PREPEND_PUNCTUATIONS,
                append_punctuations: str = APPEND_PUNCTUATIONS) -> List[Word]:
    """Group token ids into words as Whisper does for languages written with spaces (its word
    timestamps): text tokens are first grouped into whole UTF-8 characters; a group starts a new
    word if it starts with a space, or if its stripped text is punctuation (Python's substring test
    against ``string.punctuation``, as Whisper does, so an all-whitespace group counts too), or if it
    is the first; otherwise it extends the previous word.  Then, as Whisper's ``merge_punctuations``:
    from the end backwards, a word that starts with a space and whose stripped text is in
    ``prepend_punctuations`` is merged into the word after it; from the start forwards, a word in
    ``append_punctuations`` is merged into the word before it unless that one ends with a space.
    Words left empty are dropped.  Special tokens (ids from ``<|endoftext|>`` on: the prompt,
    timestamps, EOS) belong to no word and separate words.
    """
    words: List[List] = []  # [text, tokens, positions]
    last_position = -1
    for tokens, positions in _unicode_groups(dictionary, token_ids):
        text = dictionary.decode(tokens)
        after_special = positions[0] > last_position + 1  # only special tokens are skipped between groups
        last_position = positions[-1]
        starts_word = text.startswith(" ") or text.strip() in _string.punctuation
        if starts_word or not words or after_special:
            words.append([text, list(tokens), list(positions)])
        else:
            words[-1][0] += text
            words[-1][1].extend(tokens)
            words[-1][2].extend(positions)

    # Prepended punctuation joins the word after it (scanning backwards, so runs of it collect).
    following = len(words) - 1
    for i in range(len(words) - 2, -1, -1):
        text = words[i][0]
        if text.startswith(" ") and text.strip() in prepend_punctuations:
            words[following] = [text + words[following][0], words[i][1] + words[following][1],
                                words[i][2] + words[following][2]]
            words[i] = ["", [], []]
        else:
            following = i
    # Appended punctuation joins the word before it.
    previous = 0
    for j in range(1, len(words)):
        if not words[previous][0].endswith(" ") and words[j][0] in append_punctuations:
            words[previous] = [words[previous][0] + words[j][0], words[previous][1] + words[j][1],
                               words[previous][2] + words[j][2]]
            words[j] = ["", [], []]
        else:
            previous = j
    return [Word(text, tokens, positions) for text, tokens, positions in words if text]
