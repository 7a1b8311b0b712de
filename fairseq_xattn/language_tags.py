"""Language tags: the target-dictionary symbols ``<lang:xx>`` that open a multilingual target.

fairseq's S2T data config ``prepend_tgt_lang_tag`` writes them; a multitask model is asked for a
transcript or a translation by forcing the tag as a one-token prefix (``--prefix-size 1``).  They are
targets of the cross-entropy but not of CTC, and the analysis drops their rows (``prefix_len``).
"""
from __future__ import annotations

import re
from typing import Iterable, List, Sequence

_TAG = re.compile(r"^<lang:([^<>]+)>$")


def lang_tag(lang: str) -> str:
    """``"en"`` -> ``"<lang:en>"``."""
    if not lang or _TAG.match(f"<lang:{lang}>") is None:
        raise ValueError(f"not a language code: {lang!r}")
    return f"<lang:{lang}>"


def is_lang_tag(symbol: str) -> bool:
    """True for ``<lang:xx>`` symbols."""
    return _TAG.match(str(symbol)) is not None


def tag_language(symbol: str) -> str:
    """``"<lang:en>"`` -> ``"en"``; ValueError for anything else."""
    m = _TAG.match(str(symbol))
    if m is None:
        raise ValueError(f"{symbol!r} is not a language tag <lang:xx>")
    return m.group(1)


def leading_lang_tags(symbols: Sequence[str]) -> int:
    """Number of language tags at the start of a token sequence (its ``prefix_len``)."""
    n = 0
    for s in symbols:
        if not is_lang_tag(s):
            break
        n += 1
    return n


def lang_tag_symbols(symbols: Iterable[str]) -> List[str]:
    """The language tags among ``symbols`` (e.g. a dictionary's), in order."""
    return [s for s in symbols if is_lang_tag(s)]
