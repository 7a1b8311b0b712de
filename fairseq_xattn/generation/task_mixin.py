"""Task mixin that makes fairseq-generate record per-head, per-layer cross-attention.

The mixin plumbs options and the generator; the store and its records belong to a
:class:`~.recorder.CrossAttentionRecorder` the task holds; ids, text and the run's identity come from
:class:`~.task_support.GenerationTaskSupport`.

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

import contextlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from fairseq.dataclass import FairseqDataclass
from fairseq.dataclass.utils import gen_parser_from_dataclass
from omegaconf import II

from ..errors import OptionError
from ..stores import KIND_CROSS_ATTENTION
from .recorder import TEACHER_FORCED_REFERENCE, CrossAttentionRecorder, ForcedSequences
from .recording_generator import CrossAttentionRecordingGenerator, attach_alignment
from .run_settings import search_settings
from .sharding import ShardedStoreRun, finished_in_job_store
from .task_support import GenerationTaskSupport
from .teacher_forced import decoder_first_input, teacher_forced_pass


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
    # fairseq's dataset options, read here: a recording run shards by them (see .sharding)
    num_shards: int = II("dataset.num_shards")
    shard_id: int = II("dataset.shard_id")


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


class RecordingTaskMixin(ShardedStoreRun, GenerationTaskSupport):
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

    @property
    def recorder(self) -> CrossAttentionRecorder:
        """The run's recorder (created on first use: the options and the shard are final by then)."""
        if getattr(self, "_recorder", None) is None:
            self._recorder = CrossAttentionRecorder(
                str(self.process_store_path()), bool(self.recording_option("record_float16")),
                self.recording_option("teacher_forced"),
                done_elsewhere=lambda settings: finished_in_job_store(self.run_shard, self.store_option(), settings,
                                                                      KIND_CROSS_ATTENTION),
                partition_meta=self.run_shard.part_meta())
        return self._recorder

    # -- the store of a (sharded) run: see .sharding ------------------------------------------------
    def writes_store(self) -> bool:
        return self.records_cross_attention

    def store_option(self) -> str:
        return self.recording_option("record_cross_attn")

    def open_run_store(self, models, generator) -> None:
        self.recorder.open(generator, models, lambda: self.run_identity(models))

    def close_run_store(self) -> None:
        self.close_recording()

    # -- generator ----------------------------------------------------------------------------------
    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **kwargs):
        print_alignment = getattr(args, "print_alignment", None)
        print_alignment = None if print_alignment is None else str(print_alignment)
        if self.recording_option("teacher_forced") and not self.records_cross_attention:
            raise OptionError("--teacher-forced needs --record-cross-attn OUT_DIR (where to store the attention)")
        if not self.records_cross_attention and not print_alignment:
            return super().build_generator(models, args, seq_gen_cls=seq_gen_cls,
                                           extra_gen_cls_kwargs=extra_gen_cls_kwargs, **kwargs)
        if getattr(args, "score_reference", False):
            raise OptionError("--record-cross-attn / --print-alignment cannot be used with --score-reference; "
                             "use --teacher-forced reference to record the attention of the references")
        with _without_print_alignment(args):
            stock = super().build_generator(models, args, seq_gen_cls=seq_gen_cls,
                                            extra_gen_cls_kwargs=extra_gen_cls_kwargs, **kwargs)
        generator = CrossAttentionRecordingGenerator(stock, nbest=getattr(args, "nbest", 1),
                                                     print_alignment=print_alignment)
        # the options that shape the records, for the store's settings (a resume must match them)
        generator.recording_settings = search_settings(args, bool(self.recording_option("teacher_forced")))
        if self.records_cross_attention:
            self.remember_generation(models, generator)
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
        recorder = self.recorder
        try:
            # open (or check) the store before decoding: a mismatched resume fails before any work
            recorder.open(generator, models, lambda: self.run_identity(models))
            prompt_len = len(self.decoder_prompt_prefix())  # Whisper's forced task prompt (after its first input)
            if recorder.teacher_forced:
                hypos = self._teacher_forced_hypos(generator, models, sample)
                forced_prefix_len = prompt_len or None  # else each sequence's own leading language tags
            else:
                # the task's inference_step forces the prompt (prefix_tokens) itself
                hypos = super().inference_step(generator, models, sample, prefix_tokens=prefix_tokens,
                                               constraints=constraints)
                # without --prefix-size, a generated language tag still opens the hypothesis
                forced_prefix_len = prompt_len + prefix_tokens.size(1) if prefix_tokens is not None \
                    else prompt_len or None
            recorder.write(self.utterance_ids(sample), sample["net_input"]["src_lengths"].tolist(),
                           self._references(generator, sample), hypos, self.target_dictionary,
                           lambda tokens: self.decode_tokens(tokens, self._strip(generator)), forced_prefix_len,
                           subsampling=getattr(models[0].encoder, "subsampling_factor", None))
        except BaseException:
            # Interrupted (Ctrl-C, an error): release the store now, not at exit, so that the rerun
            # (perhaps another process, while this interpreter lives on) can open it; its records stay.
            self.close_recording()
            raise
        return hypos

    def close_recording(self) -> None:
        """Flush and close the attention store (also done at interpreter exit)."""
        if getattr(self, "_recorder", None) is not None:
            self._recorder.close()

    def _strip(self, generator):
        return getattr(generator, "symbols_to_strip_from_output", None) or {self.target_dictionary.eos()}

    def _references(self, generator, sample) -> Optional[List[str]]:
        """The batch's targets as fairseq-generate prints them (T- lines), or None without targets."""
        if sample.get("target") is None:
            return None
        pad, strip = self.target_dictionary.pad(), self._strip(generator)
        return [self.decode_tokens([t for t in target if t != pad], strip, escape_unk=True)
                for target in sample["target"].tolist()]  # one copy per batch

    # -- teacher forcing ----------------------------------------------------------------------------
    def _teacher_forced_hypos(self, generator, models, sample) -> List[List[Dict]]:
        if len(models) != 1:
            raise OptionError(f"--teacher-forced records one model, got an ensemble of {len(models)}")
        tgt_dict = self.target_dictionary
        sequences = [self.with_prompt(seq) for seq in self._forced_sequences(sample)]
        out = teacher_forced_pass(models[0], sample["net_input"], sequences, tgt_dict.pad(), generator.eos,
                                  first_input=decoder_first_input(tgt_dict))
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
                raise OptionError("--teacher-forced reference: the batch has no targets (a split without tgt_text?)")
            return [t[t.ne(tgt_dict.pad())] for t in sample["target"]]
        if getattr(self, "_forced", None) is None:
            self._forced = ForcedSequences(source, tgt_dict, self.encode_text)
        device = sample["net_input"]["src_tokens"].device
        return [self._forced.get(utt_id).to(device) for utt_id in self.utterance_ids(sample)]
