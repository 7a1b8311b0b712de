"""The cross-attention recorder of one fairseq-generate run: its store, its settings, its records.

A task holds one :class:`CrossAttentionRecorder` (``--record-cross-attn``).  The store is opened on the
first batch, when the run's settings are known (model hash, data, generation options: see
:mod:`.run_settings`); a store that exists is resumed only when they match, and a later batch decoded
with another generator or model is checked again.  Records follow :mod:`fairseq_xattn.stores.schema`.
"""
from __future__ import annotations

import atexit
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from ..data.token_sequences import TokenSequenceError, read_token_sequences, symbols_to_ids
from ..language_tags import leading_lang_tags
from ..stores import (StoreError, attention_record_meta, run_settings, settings_differences,
                      settings_mismatch_message)
from .attention_store import AttentionStoreWriter

logger = logging.getLogger(__name__)

#: ``--teacher-forced reference``: record the attention of the targets.
TEACHER_FORCED_REFERENCE = "reference"


class CrossAttentionRecorder:
    """Writes the cross-attention of final hypotheses (or forced sequences) of a run into a store."""

    def __init__(self, path: str, float16: bool = False, teacher_forced: Optional[str] = None,
                 done_elsewhere: Optional[Callable[[Mapping[str, Any]], Iterable[Tuple[str, int]]]] = None,
                 partition_meta: Optional[Mapping[str, Any]] = None):
        """``done_elsewhere(settings)``: records of this run already in another store (a sharded run's
        merged store, see :mod:`.sharding`), not written again; ``partition_meta``: the part of the data
        this store holds (``shard_*``/``part_*`` keys, store-level meta)."""
        self.path = path
        self.float16 = float16
        self.teacher_forced = teacher_forced
        self.done_elsewhere = done_elsewhere
        self.partition_meta = dict(partition_meta or {})
        self._writer: Optional[AttentionStoreWriter] = None
        self._checked_run = (None, [])  # (generator, models) the open store was last checked with

    @property
    def source(self) -> str:
        return "teacher_forced:" + str(self.teacher_forced) if self.teacher_forced else "beam_search"

    def store_settings(self, generator, identity: Mapping[str, Any]) -> Dict[str, Any]:
        """Store-level settings of this run: everything that determines its records (see run_settings)."""
        search = getattr(generator, "recording_settings", None)
        if search is None:
            raise TypeError("--record-cross-attn needs the generator built by the task's build_generator "
                            "(it carries the generation options the store records)")
        forced = self.teacher_forced
        if forced and forced != TEACHER_FORCED_REFERENCE:
            forced = str(Path(forced).resolve())  # a rerun from another directory matches
        settings = {
            "layers": generator.num_layers, "heads": generator.num_heads,
            "mode": "teacher_forced" if forced else "beam_search",
            "teacher_forced": forced,
            "beam": None if forced else int(generator.beam_size),
            "nbest": 1 if forced else generator.nbest,
            **identity, **search,
            "schema": "fairseq-xattn docs/generation.md",
        }
        if forced and forced != TEACHER_FORCED_REFERENCE:
            from .run_settings import files_fingerprint

            settings["teacher_forced_sha256"] = files_fingerprint([Path(forced)])
        return settings

    def open(self, generator, models: Sequence, identity: Callable[[], Mapping[str, Any]]) -> AttentionStoreWriter:
        """The open store of this run: opened (or resumed) on first use, re-checked for another run.

        ``identity()`` gives the model and data identity (the task's ``run_identity``); it hashes the
        weights, so it is called only when the store is opened or the run changes.
        """
        if self._writer is None:
            settings = self.store_settings(generator, identity())
            self._writer = AttentionStoreWriter(self.path, {**settings, **self.partition_meta}, float16=self.float16)
            if self.done_elsewhere is not None:
                self._writer.existing |= set(self.done_elsewhere(self._writer.meta))
            if self._writer.existing:
                logger.info(f"{self.path} already holds {len(self._writer.existing)} records of the same run "
                            "settings: resuming, they are kept (delete the directory for a fresh run)")
            atexit.register(self._writer.close)
        elif not self._same_run(generator, models):
            stored = run_settings(self._writer.meta)
            differences = settings_differences(stored, self.store_settings(generator, identity()))
            if differences:
                raise StoreError(settings_mismatch_message(self.path, differences))
        self._checked_run = (generator, list(models))
        return self._writer

    def _same_run(self, generator, models) -> bool:
        last_generator, last_models = self._checked_run
        return generator is last_generator and len(models) == len(last_models) \
            and all(m is n for m, n in zip(models, last_models))

    def close(self) -> None:
        """Flush and close the store (also done at interpreter exit)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write(self, utt_ids: Sequence[str], src_lengths: Sequence[int], references: Optional[Sequence[str]],
              hypos: Sequence[Sequence[Dict]], tgt_dict, decode: Callable[[List[int]], str],
              forced_prefix_len: Optional[int], subsampling: Optional[int] = None) -> None:
        """Append the records of one batch.

        ``forced_prefix_len``: rows forced by ``--prefix-size`` (beam search), or None to count the
        leading language tags of each sequence (teacher forcing).
        """
        for i, utt_id in enumerate(utt_ids):
            for rank, hypo in enumerate(hypos[i]):
                if "cross_attention" not in hypo:
                    continue  # beyond --nbest
                tokens = hypo["tokens"].tolist()
                token_strings = [tgt_dict[t] for t in tokens]
                xattn = hypo["cross_attention"]
                prefix_len = forced_prefix_len if forced_prefix_len is not None else leading_lang_tags(token_strings)
                meta = attention_record_meta(
                    tokens, token_strings, decode(tokens), references[i] if references is not None else None,
                    n_frames=src_lengths[i], n_encoder_frames=xattn.size(-1), num_layers=xattn.size(0),
                    num_heads=xattn.size(1), prefix_len=prefix_len, score=float(hypo["score"]), source=self.source,
                    subsampling=subsampling)
                self._writer.write(utt_id, rank, xattn.cpu().numpy(), meta)


class MissingSequenceError(TokenSequenceError, KeyError):
    """An utterance of the data that the ``--teacher-forced`` TSV does not list."""

    def __str__(self) -> str:  # the message, not KeyError's repr of it
        return str(self.args[0]) if self.args else ""


class ForcedSequences:
    """``--teacher-forced FILE.tsv``: ``{utterance id: LongTensor I}`` (tokens + EOS), read once."""

    def __init__(self, path: str, tgt_dict, encode_text: Callable[[str], str]):
        flag = "--teacher-forced"
        self.path = Path(path)
        self.table: Dict[str, torch.Tensor] = {}
        for row in read_token_sequences(self.path, flag, allow_text=True).values():
            where = row.where(flag, self.path)
            if row.symbols is not None:
                ids = symbols_to_ids(row.symbols, tgt_dict, where) + [tgt_dict.eos()]
            else:
                ids = tgt_dict.encode_line(encode_text(row.text), add_if_not_exist=False, append_eos=True).tolist()
            self.table[row.utt_id] = torch.tensor(ids, dtype=torch.long)

    def get(self, utt_id: str) -> torch.Tensor:
        if utt_id not in self.table:
            raise MissingSequenceError(f"--teacher-forced {self.path}: no token sequence for utterance {utt_id!r}")
        return self.table[utt_id]
