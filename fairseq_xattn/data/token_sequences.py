"""Token-sequence TSVs: given hypotheses or forced targets, one row per utterance (pure Python).

Header row, then columns ``id`` and ``tokens`` (space-separated target-dictionary symbols), or
``tgt_text`` (raw text the dataset's tokenizer turns into symbols) where the caller allows it.  Used by
``--teacher-forced FILE.tsv`` (recording) and ``--explain-hypotheses FILE.tsv`` (explaining).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Type

from ..errors import UserError


class TokenSequenceError(UserError, ValueError):
    """A token-sequence TSV (or one of its rows) is malformed or does not fit the dictionary."""


@dataclass
class TokenSequenceRow:
    """One utterance's row: ``symbols`` (from ``tokens``) or, when empty, ``text`` (from ``tgt_text``)."""

    utt_id: str
    line: int
    symbols: Optional[List[str]]
    text: Optional[str]

    def where(self, flag: str, path: Path) -> str:
        return f"{flag} {path} line {self.line} (id {self.utt_id!r})"


def read_token_sequences(path, flag: str, allow_text: bool = False,
                         error: Optional[Type[Exception]] = None) -> Dict[str, TokenSequenceRow]:
    """``{utterance id: row}`` of the TSV at ``path``; errors (of class ``error``, default
    :class:`TokenSequenceError`) name ``flag``, the file and the line."""
    error = error or TokenSequenceError
    path = Path(path)
    if not path.is_file():
        raise error(f"{flag} {path}: no such file")
    wanted = "'id' and 'tokens'" + (" or 'tgt_text'" if allow_text else "")
    rows: Dict[str, TokenSequenceRow] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a BOM before the header is not a column
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = reader.fieldnames or []
        text_columns = {"tokens", "tgt_text"} if allow_text else {"tokens"}
        if "id" not in columns or not (text_columns & set(columns)):
            raise error(f"{flag} {path}: needs columns {wanted}, has {columns}")
        for row in reader:
            line = reader.line_num  # physical line (DictReader skips blank lines)
            utt_id = row.get("id") or ""
            if not utt_id:
                raise error(f"{flag} {path} line {line}: empty id")
            if utt_id in rows:
                raise error(f"{flag} {path} line {line} (id {utt_id!r}): duplicate id, already given "
                                         f"on line {rows[utt_id].line} (one sequence per utterance)")
            tokens = row.get("tokens")
            text = row.get("tgt_text") if allow_text else None
            if tokens is not None and tokens.strip():
                symbols: Optional[List[str]] = tokens.split()
            elif allow_text:  # no tokens: the raw text, tokenized by the caller
                symbols = None
                if text is None:
                    raise error(f"{flag} {path} line {line} (id {utt_id!r}): the 'tokens' field is empty or missing "
                                f"and the row has no 'tgt_text' to fall back to (columns {columns})")
            else:  # an empty hypothesis (EOS only)
                symbols = []
            rows[utt_id] = TokenSequenceRow(utt_id, line, symbols, text)
    return rows


def symbols_to_ids(symbols: Sequence[str], dictionary, where: str, error: Optional[Type[Exception]] = None) -> List[int]:
    """Dictionary ids of ``symbols``; a symbol the dictionary does not know is an error naming it."""
    unknown = [s for s in symbols if dictionary.index(s) == dictionary.unk() and s != dictionary.unk_word]
    if unknown:
        raise (error or TokenSequenceError)(f"{where}: symbols not in the target dictionary: {unknown[:5]}")
    return [dictionary.index(s) for s in symbols]
