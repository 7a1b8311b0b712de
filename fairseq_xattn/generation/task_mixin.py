"""Task mixin that makes fairseq-generate record per-head, per-layer cross-attention.

Usage in a task (the mixin goes first so that its ``build_generator``/``inference_step`` wrap the
task's own)::

    @dataclass
    class SpeechToTextCtcConfig(RecordingConfig): ...

    class SpeechToTextCtcTask(RecordingTaskMixin, SpeechToTextTask): ...

Flags (task options): ``--record-cross-attn OUT_DIR``, ``--record-float16``,
``--teacher-forced {reference,FILE.tsv}``.  Without ``--record-cross-attn`` the task behaves as its
base class, except that ``--print-alignment`` works on speech input (alignments to encoder frames).

Rerunning into an existing store resumes it (finished utterances are kept, not recomputed) only
when the run is the same: model weights, data, split and generation options are store-level
settings (:mod:`.run_settings`), and a difference stops the run with an error naming it.
"""

import atexit
import contextlib
import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from fairseq.dataclass import FairseqDataclass
from fairseq.dataclass.utils import gen_parser_from_dataclass

from ..stores import StoreError, settings_differences, settings_mismatch_message
from .attention_store import AttentionStoreWriter, leading_lang_tags, record_meta
from .recording_generator import CrossAttentionRecordingGenerator, attach_alignment
from .run_settings import files_fingerprint, model_fingerprint, search_settings
from .teacher_forced import teacher_forced_pass

logger = logging.getLogger(__name__)

TEACHER_FORCED_REFERENCE = "reference"


@dataclass
class RecordingConfig(FairseqDataclass):
    record_cross_attn: Optional[str] = field(
        default=None,
        metadata={"help": "record every final hypothesis' cross-attention (L x H x I x T') into this "
                          "store directory (fairseq_xattn.stores, kind cross_attention; see docs/generation.md)"},
    )
    record_float16: bool = field(
        default=False, metadata={"help": "store the recorded attention in float16 (half the size)"},
    )
    teacher_forced: Optional[str] = field(
        default=None,
        metadata={"help": "record the attention of given token sequences instead of beam-search "
                          "hypotheses: 'reference' (the targets) or a TSV with columns id and tokens "
                          "(space-separated dictionary symbols) or tgt_text (raw text, tokenized as the "
                          "dataset does); needs --record-cross-attn"},
    )


def _option(cfg, name: str):
    return getattr(cfg, name, getattr(RecordingConfig, name)) if cfg is not None else getattr(RecordingConfig, name)


@contextlib.contextmanager
def _without_print_alignment(args):
    """Let the base task build a plain SequenceGenerator (its alignment variant fails on speech)."""
    value = getattr(args, "print_alignment", None)
    if value is None:
        yield
        return
    setattr(args, "print_alignment", None)
    try:
        yield
    finally:
        setattr(args, "print_alignment", value)


class RecordingTaskMixin:
    """Adds cross-attention recording to a fairseq speech-to-text task (see module docstring)."""

    # -- options ------------------------------------------------------------------------------------
    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        if "--record-cross-attn" not in parser._option_string_actions:  # legacy argparse task
            gen_parser_from_dataclass(parser, RecordingConfig())

    def recording_option(self, name: str):
        cfg = getattr(self, "cfg", None)
        if cfg is None:
            cfg = getattr(self, "args", None)
        return _option(cfg, name)

    @property
    def records_cross_attention(self) -> bool:
        return bool(self.recording_option("record_cross_attn"))

    # -- datasets: remember the split being generated (for ids when batches lack utt_id) -------------
    def load_dataset(self, split, *args, **kwargs):
        self._recording_split = split
        return super().load_dataset(split, *args, **kwargs)

    # -- generator ----------------------------------------------------------------------------------
    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **kwargs):
        print_alignment = getattr(args, "print_alignment", None)
        print_alignment = None if print_alignment is None else str(print_alignment)
        if self.recording_option("teacher_forced") and not self.records_cross_attention:
            raise ValueError("--teacher-forced needs --record-cross-attn OUT_DIR (where to store the attention)")
        if not self.records_cross_attention and not print_alignment:
            return super().build_generator(models, args, seq_gen_cls=seq_gen_cls,
                                           extra_gen_cls_kwargs=extra_gen_cls_kwargs, **kwargs)
        if getattr(args, "score_reference", False):
            raise ValueError("--record-cross-attn / --print-alignment cannot be used with --score-reference; "
                             "use --teacher-forced reference to record the attention of the references")
        with _without_print_alignment(args):
            stock = super().build_generator(models, args, seq_gen_cls=seq_gen_cls,
                                            extra_gen_cls_kwargs=extra_gen_cls_kwargs, **kwargs)
        generator = CrossAttentionRecordingGenerator(stock, nbest=getattr(args, "nbest", 1),
                                                     print_alignment=print_alignment)
        # the options that shape the records, for the store's settings (a resume must match them)
        generator.recording_settings = search_settings(args, bool(self.recording_option("teacher_forced")))
        return generator

    # -- inference ----------------------------------------------------------------------------------
    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        if not self.records_cross_attention:
            return super().inference_step(generator, models, sample, prefix_tokens=prefix_tokens,
                                          constraints=constraints)
        if not isinstance(generator, CrossAttentionRecordingGenerator):
            raise TypeError(
                f"--record-cross-attn needs the generator built by {type(self).__name__}.build_generator, "
                f"got {type(generator).__name__}"
            )
        try:
            # open (or check) the store before decoding: a mismatched resume fails before any work
            writer = self._attention_writer(generator, models)
            if self.recording_option("teacher_forced"):
                hypos = self._teacher_forced_hypos(generator, models, sample)
                source = "teacher_forced:" + str(self.recording_option("teacher_forced"))
            else:
                hypos = super().inference_step(generator, models, sample, prefix_tokens=prefix_tokens,
                                               constraints=constraints)
                source = "beam_search"
            self._write_records(writer, generator, sample, hypos, prefix_tokens, source)
        except BaseException:
            # Interrupted (Ctrl-C, an error): release the store now, not at exit, so that the rerun
            # (perhaps another process, while this interpreter lives on) can open it; its records stay.
            self.close_recording()
            raise
        return hypos

    # -- teacher forcing ----------------------------------------------------------------------------
    def _teacher_forced_hypos(self, generator, models, sample) -> List[List[Dict]]:
        if len(models) != 1:
            raise ValueError(f"--teacher-forced records one model, got an ensemble of {len(models)}")
        sequences = self._forced_sequences(sample)
        tgt_dict = self.target_dictionary
        out = teacher_forced_pass(models[0], sample["net_input"], sequences, tgt_dict.pad(), generator.eos)
        hypos = []
        for seq, xattn, pos in zip(sequences, out.cross_attention, out.positional_scores):
            score = pos.sum()
            if getattr(generator, "normalize_scores", True):
                score = score / (len(seq) ** getattr(generator, "len_penalty", 1.0))
            hypo = {"tokens": seq, "score": score, "positional_scores": pos,
                    "cross_attention": xattn, "attention": xattn.mean(dim=(0, 1)).t(), "alignment": torch.empty(0)}
            attach_alignment(hypo, generator.print_alignment, tgt_dict.pad(), generator.eos)
            hypos.append([hypo])
        return hypos

    def _forced_sequences(self, sample) -> List[torch.Tensor]:
        source = self.recording_option("teacher_forced")
        tgt_dict = self.target_dictionary
        if source == TEACHER_FORCED_REFERENCE:
            if sample.get("target") is None:
                raise ValueError("--teacher-forced reference: the batch has no targets (a split without tgt_text?)")
            return [t[t.ne(tgt_dict.pad())] for t in sample["target"]]
        table = self._forced_table()
        device = sample["net_input"]["src_tokens"].device
        sequences = []
        for utt_id in self._utterance_ids(sample):
            if utt_id not in table:
                raise KeyError(f"--teacher-forced {source}: no token sequence for utterance {utt_id!r}")
            sequences.append(table[utt_id].to(device))
        return sequences

    def _forced_table(self) -> Dict[str, torch.Tensor]:
        """``{utterance id: LongTensor I}`` (tokens + EOS) of the ``--teacher-forced`` TSV, read once."""
        if getattr(self, "_forced_table_cache", None) is not None:
            return self._forced_table_cache
        path = Path(self.recording_option("teacher_forced"))
        if not path.is_file():
            raise FileNotFoundError(f"--teacher-forced {path}: no such file (give 'reference' or a TSV)")
        tgt_dict = self.target_dictionary
        table, first_line = {}, {}
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            columns = reader.fieldnames or []
            if "id" not in columns or not ({"tokens", "tgt_text"} & set(columns)):
                raise ValueError(f"--teacher-forced {path}: needs columns 'id' and 'tokens' or 'tgt_text', has {columns}")
            tokenizer, bpe = self._text_codecs()
            for row in reader:
                line_no = reader.line_num  # physical line (DictReader skips blank lines)
                utt_id = row.get("id") or ""
                where = f"--teacher-forced {path} line {line_no} (id {utt_id!r})"
                if not utt_id:
                    raise ValueError(f"{where}: empty id")
                if utt_id in first_line:
                    raise ValueError(f"{where}: duplicate id, already given on line {first_line[utt_id]} "
                                     "(one sequence per utterance)")
                first_line[utt_id] = line_no
                tokens = row.get("tokens")
                if tokens is not None and tokens.strip():
                    symbols = tokens.split()
                    unknown = [s for s in symbols if tgt_dict.index(s) == tgt_dict.unk() and s != tgt_dict.unk_word]
                    if unknown:
                        raise ValueError(f"{where}: symbols not in the target dictionary: {unknown[:5]}")
                    ids = [tgt_dict.index(s) for s in symbols] + [tgt_dict.eos()]
                else:
                    text = row.get("tgt_text")
                    if text is None:  # no such column, or a short row
                        raise ValueError(f"{where}: the 'tokens' field is empty or missing and the row has no "
                                         f"'tgt_text' to fall back to (columns {columns})")
                    if tokenizer is not None:
                        text = tokenizer.encode(text)
                    if bpe is not None:
                        text = bpe.encode(text)
                    ids = tgt_dict.encode_line(text, add_if_not_exist=False, append_eos=True).tolist()
                table[utt_id] = torch.tensor(ids, dtype=torch.long)
        self._forced_table_cache = table
        return table

    # -- records ------------------------------------------------------------------------------------
    def _utterance_ids(self, sample) -> List[str]:
        if sample.get("utt_id") is not None:
            return [str(u) for u in sample["utt_id"]]
        dataset = self.datasets.get(getattr(self, "_recording_split", None)) if hasattr(self, "datasets") else None
        ids = getattr(dataset, "ids", None)
        if ids is None:
            return [str(i) for i in sample["id"].tolist()]
        return [str(ids[i]) for i in sample["id"].tolist()]

    def _text_codecs(self):
        if not hasattr(self, "_text_codecs_cache"):
            cfg = getattr(self, "args", None) or getattr(self, "cfg", None)
            self._text_codecs_cache = (self.build_tokenizer(cfg), self.build_bpe(cfg))
        return self._text_codecs_cache

    def _decode(self, tokens: List[int], strip, escape_unk: bool = False) -> str:
        """Text as fairseq-generate prints it: symbols, then BPE and tokenizer decoding.

        fairseq escapes unknown words only in references (T- lines, ``<<unk>>``), not in hypotheses
        (D- lines, ``<unk>``): ``escape_unk=True`` for references only.
        """
        # a list, not a tensor: Dictionary.string is several times slower on tensor elements
        text = self.target_dictionary.string(tokens, escape_unk=escape_unk, extra_symbols_to_ignore=strip)
        tokenizer, bpe = self._text_codecs()
        if bpe is not None:
            text = bpe.decode(text)
        if tokenizer is not None:
            text = tokenizer.decode(text)
        return text

    def run_identity(self, models) -> Dict[str, Any]:
        """What a store's records depend on besides the task's own options: the model (a hash of its
        weights), the data (folder, config, split, a hash of the manifests) and ``--infer-tgt-lang``.
        Shared by the attention store and the saliency store of ``speech_explain``."""
        cfg = getattr(self, "cfg", None) or getattr(self, "args", None)
        data = getattr(cfg, "data", None)
        data = str(Path(data).resolve()) if data else None
        config_yaml = getattr(cfg, "config_yaml", "config.yaml")
        split = getattr(self, "_recording_split", None)
        data_files = [Path(data) / config_yaml] + [Path(data) / f"{s}.tsv" for s in (split or "").split(",") if s] \
            if data else []
        return {
            "model_sha256": model_fingerprint(models),
            "data": data, "config_yaml": config_yaml, "gen_subset": split,
            "data_sha256": files_fingerprint(data_files),
            "infer_tgt_lang": getattr(cfg, "infer_tgt_lang", None),
        }

    def _store_settings(self, generator, models) -> Dict[str, Any]:
        """Store-level settings of this run: everything that determines its records (see run_settings)."""
        search = getattr(generator, "recording_settings", None)
        if search is None:
            raise TypeError(f"--record-cross-attn needs the generator built by {type(self).__name__}.build_generator "
                            "(it carries the generation options the store records)")
        teacher_forced = self.recording_option("teacher_forced")
        if teacher_forced and teacher_forced != TEACHER_FORCED_REFERENCE:
            teacher_forced = str(Path(teacher_forced).resolve())  # a rerun from another directory matches
        settings = {
            "layers": generator.num_layers, "heads": generator.num_heads,
            "mode": "teacher_forced" if teacher_forced else "beam_search",
            "teacher_forced": teacher_forced,
            "beam": None if teacher_forced else int(generator.beam_size),
            "nbest": 1 if teacher_forced else generator.nbest,
            **self.run_identity(models),
            **search,
            "schema": "fairseq-xattn docs/generation.md",
        }
        if teacher_forced and teacher_forced != TEACHER_FORCED_REFERENCE:
            settings["teacher_forced_sha256"] = files_fingerprint([Path(teacher_forced)])
        return settings

    def _attention_writer(self, generator, models) -> AttentionStoreWriter:
        """The open store of this run; opened on first use, resumed when it exists with the same settings."""
        writer = getattr(self, "_attention_store", None)
        path = self.recording_option("record_cross_attn")
        if writer is None:
            writer = AttentionStoreWriter(path, self._store_settings(generator, models),
                                          float16=bool(self.recording_option("record_float16")))
            if writer.existing:
                logger.info(f"{path} already holds {len(writer.existing)} records of the same run settings: "
                            "resuming, they are kept (delete the directory for a fresh run)")
            atexit.register(writer.close)
            self._attention_store = writer
        elif not self._same_run(generator, models):  # another generator or model on the open store
            stored = {k: v for k, v in writer.meta.items() if k not in ("format", "version", "kind", "float16")}
            differences = settings_differences(stored, self._store_settings(generator, models))
            if differences:
                raise StoreError(settings_mismatch_message(path, differences))
        self._attention_store_run = (generator, list(models))
        return writer

    def _same_run(self, generator, models) -> bool:
        """The generator and models the open store was last checked with (the same objects)."""
        last_generator, last_models = getattr(self, "_attention_store_run", (None, []))
        return generator is last_generator and len(models) == len(last_models) \
            and all(m is n for m, n in zip(models, last_models))

    def close_recording(self) -> None:
        """Flush and close the attention store (also done at interpreter exit)."""
        writer = getattr(self, "_attention_store", None)
        if writer is not None:
            writer.close()
            self._attention_store = None

    def _write_records(self, writer: AttentionStoreWriter, generator, sample, hypos, prefix_tokens,
                       source: str) -> None:
        tgt_dict = self.target_dictionary
        strip = getattr(generator, "symbols_to_strip_from_output", None) or {tgt_dict.eos()}
        utt_ids = self._utterance_ids(sample)
        src_lengths = sample["net_input"]["src_lengths"].tolist()
        targets = sample["target"].tolist() if sample.get("target") is not None else None  # one copy per batch
        pad = tgt_dict.pad()
        for i, utt_id in enumerate(utt_ids):
            reference = None
            if targets is not None:
                reference = self._decode([t for t in targets[i] if t != pad], strip, escape_unk=True)
            for rank, hypo in enumerate(hypos[i]):
                if "cross_attention" not in hypo:
                    continue  # beyond --nbest
                tokens = hypo["tokens"].tolist()
                token_strings = [tgt_dict[t] for t in tokens]
                xattn = hypo["cross_attention"]
                prefix_len = prefix_tokens.size(1) if prefix_tokens is not None and source == "beam_search" \
                    else leading_lang_tags(token_strings)
                meta = record_meta(
                    tokens, token_strings, self._decode(tokens, strip), reference,
                    n_frames=src_lengths[i], n_encoder_frames=xattn.size(-1), num_layers=xattn.size(0),
                    num_heads=xattn.size(1), prefix_len=prefix_len, score=float(hypo["score"]), source=source,
                )
                writer.write(utt_id, rank, xattn.cpu().numpy(), meta)
