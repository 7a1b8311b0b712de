"""The token sequences to explain, per utterance id: from a recording run's attention store or a TSV.

* attention store (directory; kind ``cross_attention``, written by ``--record-cross-attn``): the
  rank-0 record's meta ``tokens`` (ids incl. EOS), ``token_strings`` and ``prefix_len``;
* TSV with a header: columns ``id`` and ``tokens`` (space-separated target-dictionary symbols, as
  the generation task's ``--teacher-forced`` TSV).

EOS is appended when a sequence does not end with it.  ``prompt`` (the task's forced decoder prompt
after its first input, e.g. Whisper's ``<|notimestamps|>``): a TSV sequence without it gets it in
front, and counts it in ``prefix_len``; a stored one must start with it (else it was decoded with
another prompt).  Checked against the target dictionary: ids out
of range, symbols the dictionary does not know, or stored ``token_strings`` that the dictionary spells
differently (a store made with another vocabulary) raise :class:`HypothesisError` naming the file and
the utterance id.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..data.token_sequences import TokenSequenceError, read_token_sequences, symbols_to_ids
from ..language_tags import leading_lang_tags
from ..stores import KIND_CROSS_ATTENTION, StoreError, StoreReader


class HypothesisError(TokenSequenceError):
    """Hypotheses missing or inconsistent with the model's vocabulary."""


@dataclass
class Hypothesis:
    tokens: List[int]              # ids incl. EOS
    token_strings: List[str]
    prefix_len: int                # leading language-tag tokens


class HypothesisSource:
    """Random access to hypotheses by utterance id; ``path`` is a store directory or a TSV file."""

    def __init__(self, path: str, dictionary, prompt: Sequence[int] = ()):
        self.path = Path(path)
        self.dictionary = dictionary
        self.prompt = [int(t) for t in prompt]
        self._store: Optional[StoreReader] = None
        self._table: Dict[str, Hypothesis] = {}
        if self.path.is_dir():
            try:
                self._store = StoreReader(self.path, expect_kind=KIND_CROSS_ATTENTION)
            except StoreError as e:
                raise HypothesisError(f"--explain-hypotheses {self.path}: {e}") from None
        elif self.path.is_file():
            self._read_tsv()
        else:
            raise HypothesisError(f"--explain-hypotheses {self.path}: no such store directory or TSV file")

    def __len__(self) -> int:
        return len(self._store) if self._store is not None else len(self._table)

    def get(self, utt_id: str) -> Hypothesis:
        utt_id = str(utt_id)
        if self._store is not None:
            if utt_id not in self._store:
                raise HypothesisError(f"--explain-hypotheses {self.path}: no hypothesis for utterance {utt_id!r} "
                                      f"(the store has {len(self._store)} records; was it recorded on another split?)")
            meta = self._store.row_meta(utt_id, 0)
            return self._check(utt_id, list(meta["tokens"]), meta.get("token_strings"), int(meta.get("prefix_len", 0)))
        if utt_id not in self._table:
            raise HypothesisError(f"--explain-hypotheses {self.path}: no row for utterance {utt_id!r}")
        return self._table[utt_id]

    def _read_tsv(self) -> None:
        for row in read_token_sequences(self.path, "--explain-hypotheses", error=HypothesisError).values():
            ids = symbols_to_ids(row.symbols, self.dictionary, row.where("--explain-hypotheses", self.path),
                                 error=HypothesisError)
            n = len(self.prompt)
            if n and ids[:n] != self.prompt:
                ids = self.prompt + ids
            self._table[row.utt_id] = self._check(row.utt_id, ids, None,
                                                  n + leading_lang_tags([self.dictionary[t] for t in ids[n:]]))

    def _check(self, utt_id: str, tokens: List[int], token_strings, prefix_len: int) -> Hypothesis:
        d = self.dictionary
        tokens = [int(t) for t in tokens]
        if self.prompt and tokens[:len(self.prompt)] != self.prompt:
            raise HypothesisError(f"--explain-hypotheses {self.path}, utterance {utt_id!r}: the tokens do not start with "
                                  f"the decoder prompt {[d[t] for t in self.prompt if 0 <= t < len(d)]} of this task "
                                  "(decoded with another language or task?)")
        bad = [t for t in tokens if not 0 <= t < len(d)]
        if bad:
            raise HypothesisError(f"--explain-hypotheses {self.path}, utterance {utt_id!r}: token ids {bad[:5]} are "
                                  f"outside the target dictionary ({len(d)} symbols): another vocabulary?")
        if token_strings is not None:
            ours = [d[t] for t in tokens]
            if list(token_strings) != ours:
                diff = next(i for i, (a, b) in enumerate(zip(token_strings, ours)) if a != b) \
                    if len(token_strings) == len(ours) else min(len(token_strings), len(ours))
                raise HypothesisError(
                    f"--explain-hypotheses {self.path}, utterance {utt_id!r}: the stored tokens spell "
                    f"{list(token_strings)[diff:diff + 3]} but the model's dictionary reads them as "
                    f"{ours[diff:diff + 3]} (position {diff}): the store was made with another vocabulary")
        if not tokens or tokens[-1] != d.eos():
            tokens = tokens + [d.eos()]
        return Hypothesis(tokens, [d[t] for t in tokens], prefix_len)

