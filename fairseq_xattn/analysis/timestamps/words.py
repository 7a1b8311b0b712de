"""Subword tokens -> words (pure Python): which token rows make up each word, and the word's text.

Schemes (registry :data:`WORD_SCHEMES`; a function of the token strings only, so it serves our
SentencePiece models and imported Whisper models alike):

* ``sentencepiece``  a token starting with ``▁`` (U+2581) starts a word; the marker is dropped;
* ``byte_bpe``       GPT-2/Whisper byte-level BPE: a token starting with ``Ġ`` (the byte alphabet's
                     space) or with a plain space starts a word; a word's text is decoded from the
                     byte alphabet when every character belongs to it (so ``Ã©`` becomes ``é``);
* ``tokens``         every token is a word (a word-level vocabulary);
* ``auto``           ``sentencepiece`` when a token holds ``▁``, ``byte_bpe`` when one starts with ``Ġ``
                     or a space, else ``tokens``.

A token without a word-start marker continues the current word (punctuation pieces attach to the word
before them); the first token always starts a word.  Language tags and EOS are not content tokens:
callers pass the content rows only.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Dict, List, Sequence

from ...registry import Registry

SENTENCEPIECE_SPACE = "\u2581"
BYTE_BPE_SPACE = "\u0120"  # 'Ġ': the GPT-2 byte alphabet's character for the byte 0x20


@dataclass(frozen=True)
class WordTokens:
    """One word: its text and the content-token rows ``[first, end)`` it is made of."""

    text: str
    first: int
    end: int

    @property
    def rows(self) -> range:
        return range(self.first, self.end)


Scheme = Callable[[Sequence[str]], List[WordTokens]]
WORD_SCHEMES: "Registry[Scheme]" = Registry("word scheme")


def _group(tokens: Sequence[str], starts_word: Callable[[str], bool], strip: Callable[[str], str],
           decode: Callable[[str], str]) -> List[WordTokens]:
    words: List[WordTokens] = []
    first = 0
    for i in range(1, len(tokens) + 1):
        if i == len(tokens) or starts_word(tokens[i]):
            pieces = [strip(tokens[first])] + list(tokens[first + 1:i])
            words.append(WordTokens(decode("".join(pieces)), first, i))
            first = i
    return words


@WORD_SCHEMES.register("sentencepiece")
def sentencepiece_words(tokens: Sequence[str]) -> List[WordTokens]:
    """``['▁the', '▁c', 'at', '.']`` -> ``the`` (row 0), ``cat.`` (rows 1-2)."""
    return _group(tokens, lambda t: t.startswith(SENTENCEPIECE_SPACE), lambda t: t.lstrip(SENTENCEPIECE_SPACE),
                  lambda text: text)


@lru_cache(maxsize=1)
def _byte_alphabet() -> Dict[str, int]:
    """GPT-2's printable stand-in character -> byte value: printable Latin-1 bytes stand for
    themselves, the 68 others are mapped in order onto U+0100 and up."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


def decode_byte_bpe(text: str) -> str:
    """Text written in the byte alphabet -> UTF-8 text; text with other characters is returned as is
    (token strings that were decoded already)."""
    alphabet = _byte_alphabet()
    if not all(c in alphabet for c in text):
        return text
    return bytes(alphabet[c] for c in text).decode("utf-8", errors="replace")


@WORD_SCHEMES.register("byte_bpe")
def byte_bpe_words(tokens: Sequence[str]) -> List[WordTokens]:
    """``['ĠThe', 'Ġc', 'at']`` or ``[' The', ' c', 'at']`` -> ``The`` (row 0), ``cat`` (rows 1-2)."""
    def starts(t: str) -> bool:
        return t.startswith(BYTE_BPE_SPACE) or t.startswith(" ")

    return _group(tokens, starts, lambda t: t[1:] if starts(t) else t, lambda text: decode_byte_bpe(text).strip())


@WORD_SCHEMES.register("tokens")
def token_words(tokens: Sequence[str]) -> List[WordTokens]:
    """One word per token."""
    return [WordTokens(t, i, i + 1) for i, t in enumerate(tokens)]


@WORD_SCHEMES.register("auto")
def auto_words(tokens: Sequence[str]) -> List[WordTokens]:
    """``sentencepiece`` if a token holds ``▁``, ``byte_bpe`` if one starts with ``Ġ`` or a space, else ``tokens``."""
    if any(SENTENCEPIECE_SPACE in t for t in tokens):
        scheme = "sentencepiece"
    elif any(t.startswith((BYTE_BPE_SPACE, " ")) for t in tokens):
        scheme = "byte_bpe"
    else:
        scheme = "tokens"
    return WORD_SCHEMES[scheme](tokens)


def group_words(tokens: Sequence[str], scheme: str = "auto") -> List[WordTokens]:
    """Words of a content-token sequence under ``scheme`` (see the module docstring)."""
    if not tokens:
        return []
    return WORD_SCHEMES.get(scheme)(list(tokens))
