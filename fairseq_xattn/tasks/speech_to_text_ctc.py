"""Task ``speech_to_text_ctc``: fairseq's speech-to-text task with a dataclass config (so
fairseq-hydra-train can build it), a source (CTC) vocabulary, multitask ASR+ST targets, validated
manifests, batching that provably keeps every utterance, and cross-attention recording
(:class:`~fairseq_xattn.generation.task_mixin.RecordingTaskMixin`).

Data folder (``xattn prep`` writes it; see docs/data.md): ``<split>.tsv`` manifests and
``config.yaml`` with the usual fairseq S2T keys plus ``src_vocab_filename`` and
``src_bpe_tokenizer`` for the source vocabulary.  Without them the CTC source vocabulary is the
target one.

Inference: with language tags (``prepend_tgt_lang_tag``) decode with ``--prefix-size 1``; the
first target token, the language tag, is then forced, and ``--infer-tgt-lang`` picks it (the
source language gives the transcript, i.e. ASR; the target language the translation).

**Whisper data folders** (``xattn whisper-import`` writes one; config.yaml has a ``whisper:``
section with the prompt's ``language`` and ``task``, and ``features: whisper``): the target
dictionary is the :class:`~fairseq_xattn.models.whisper.vocabulary.WhisperDictionary` of
``vocab_filename`` (also the source one); references are tokenised with Whisper's BPE
(:class:`~fairseq_xattn.models.whisper.vocabulary.WhisperTextCodec` as the task's ``bpe``), so
fairseq-generate's T-/D- lines are Whisper's decoded text; decoding starts from
``<|startoftranscript|>`` (``bos_token``) and forces the rest of Whisper's prompt
(:meth:`SpeechToTextCtcTaskBase.decoder_prompt_prefix`, e.g. ``<|notimestamps|>``) as
``prefix_tokens`` in :meth:`SpeechToTextCtcTaskBase.inference_step`, which recording wraps.  The
prompt comes from config.yaml, so ``--prefix-size`` (it would force reference tokens) and
``--infer-tgt-lang`` (the language is ``whisper.language``) are refused.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Set

import numpy as np
import torch
from fairseq.data import Dictionary, data_utils
from fairseq.data.audio.data_cfg import S2TDataConfig
from fairseq.dataclass import FairseqDataclass
from fairseq.dataclass.utils import gen_parser_from_dataclass
from fairseq.tasks import register_task
from fairseq.tasks.fairseq_task import LegacyFairseqTask
from fairseq.tasks.speech_to_text import SpeechToTextTask
from omegaconf import II, MISSING, DictConfig, open_dict

from ..errors import MissingFileError, OptionError
from ..language_tags import is_lang_tag
from ..data.s2t_ctc_dataset import SpeechToTextCtcConcatDataset, build_tokenizer_from_config, load_s2t_ctc_dataset
from ..generation.task_mixin import RecordingConfig, RecordingTaskMixin
from ..generation.task_support import GenerationTaskSupport
from ..generation.teacher_forced import decoder_first_input

logger = logging.getLogger(__name__)


@dataclass
class SpeechToTextCtcDataConfig(FairseqDataclass):
    """The data options shared by our tasks (training, decoding and recording, explaining)."""

    data: str = field(default=MISSING, metadata={"help": "data folder: <split>.tsv manifests and config.yaml"})
    config_yaml: str = field(default="config.yaml", metadata={"help": "data configuration YAML, under the data folder"})
    max_source_positions: int = field(default=6000, metadata={"help": "max input frames"})
    max_target_positions: int = field(default=1024, metadata={"help": "max target tokens"})
    multitask_asr_prob: float = field(
        default=0.5,
        metadata={"help": "training only: probability that a sample's target is its transcript (ASR) rather "
                          "than its translation (ST); needs src_text in the manifest"})
    infer_tgt_lang: Optional[str] = field(
        default=None,
        metadata={"help": "the target language to produce, on every split (for fairseq-generate): the source "
                          "language gives the transcript (ASR), the target language the translation; default: "
                          "the multitask draw on training splits, the translation elsewhere"})
    seed: int = II("common.seed")
    train_subset: str = II("dataset.train_subset")


@dataclass
class SpeechToTextCtcConfig(SpeechToTextCtcDataConfig, RecordingConfig):
    """``speech_to_text_ctc``: the data options and the cross-attention recording options."""


class CtcSourceDictionary(Dictionary):
    """The source (CTC) vocabulary.  fairseq-generate prints ``source_dictionary.string(src_tokens)``
    for every sentence; our "source tokens" are filterbank frames, which have no text, so a
    floating-point tensor gives an empty string instead of an indexing error."""

    def string(self, tensor, *args, **kwargs):
        if torch.is_tensor(tensor) and tensor.is_floating_point():
            return ""
        return super().string(tensor, *args, **kwargs)


def whisper_options(data_cfg: S2TDataConfig, yaml_path=None) -> Optional[dict]:
    """config.yaml's ``whisper:`` section (the decoder prompt of an imported Whisper model), or None.
    Its presence makes the data folder a Whisper one (dictionary, text codec, prompt)."""
    section = data_cfg.config.get("whisper")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise OptionError(f"{yaml_path or 'config.yaml'}: whisper: must be a mapping (language, task, n_mels), "
                          f"got {section!r}")
    return dict(section)


class BatchingError(RuntimeError):
    """Batching lost or duplicated utterances."""


class SpeechToTextCtcTaskBase(GenerationTaskSupport, SpeechToTextTask):
    """Everything but recording; :class:`SpeechToTextCtcTask` adds the recording mixin on top."""

    @classmethod
    def add_args(cls, parser):
        # SpeechToTextTask.add_args is argparse-only; options come from the dataclass instead
        gen_parser_from_dataclass(parser, getattr(cls, "__dataclass", SpeechToTextCtcConfig)())

    def __init__(self, cfg, tgt_dict: Dictionary, src_dict: Optional[Dictionary] = None):
        super().__init__(cfg, tgt_dict)
        self.cfg = cfg  # RecordingTaskMixin and FairseqTask read options from self.cfg
        self.data_cfg.yaml_path = Path(cfg.data) / cfg.config_yaml  # named in the dataset's config errors
        self.src_dict = src_dict if src_dict is not None else CtcSourceDictionary.load(
            str(Path(cfg.data) / self.data_cfg.vocab_filename))
        self.whisper = whisper_options(self.data_cfg)
        if self.whisper is not None and getattr(cfg, "infer_tgt_lang", None):
            raise OptionError(f"--infer-tgt-lang {cfg.infer_tgt_lang}: a Whisper model's prompt language is "
                              f"whisper.language of {self.data_cfg.yaml_path}; edit it there instead")
        cfg_src_bpe = self.data_cfg.config.get("src_bpe_tokenizer")
        self.src_bpe_tokenizer_cfg = self.data_cfg._auto_convert_to_abs_path(cfg_src_bpe) if cfg_src_bpe else None
        if not 0.0 <= float(cfg.multitask_asr_prob) <= 1.0:
            raise OptionError(f"--multitask-asr-prob must be in [0, 1], got {cfg.multitask_asr_prob}")

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        data = Path(cfg.data)
        yaml_path = data / cfg.config_yaml
        if not yaml_path.is_file():
            raise MissingFileError(f"data configuration not found: {yaml_path} (is {data} a folder made by xattn prep?)")
        data_cfg = S2TDataConfig(yaml_path)
        tgt_path = data / data_cfg.vocab_filename
        if not tgt_path.is_file():
            raise MissingFileError(f"target dictionary not found: {tgt_path} (vocab_filename in {yaml_path})")
        if whisper_options(data_cfg, yaml_path) is not None:
            from ..models.whisper.vocabulary import WhisperDictionary

            tgt_dict = WhisperDictionary.load(tgt_path)  # the tokenizer files are beside it
            logger.info(f"Whisper dictionary: {tgt_dict.n_vocab} tokens")
            return cls(cfg, tgt_dict, tgt_dict)  # one vocabulary: the source (CTC) one is the target one
        tgt_dict = Dictionary.load(str(tgt_path))
        src_name = data_cfg.config.get("src_vocab_filename")
        src_dict = None
        if src_name:
            if not (data / src_name).is_file():
                raise MissingFileError(f"source dictionary not found: {data / src_name} (src_vocab_filename in {yaml_path})")
            src_dict = CtcSourceDictionary.load(str(data / src_name))
        logger.info(f"target dictionary: {len(tgt_dict)} types; source (CTC) dictionary: "
                    f"{len(src_dict) if src_dict is not None else 'same as target'}")
        train_subset = getattr(cfg, "train_subset", None)
        if isinstance(train_subset, str) and not all(s.startswith("train") for s in train_subset.split(",")):
            raise OptionError(f'training splits must be named "train*", got --train-subset {train_subset}')
        return cls(cfg, tgt_dict, src_dict)

    # --- dictionaries -------------------------------------------------------------------------
    @property
    def source_dictionary(self):
        """The CTC source vocabulary (the target one when config.yaml names none)."""
        return self.src_dict

    @property
    def target_dictionary(self):
        return self.tgt_dict

    # --- Whisper ------------------------------------------------------------------------------
    def build_bpe(self, args):
        """fairseq's text codec; a Whisper data folder's is Whisper's BPE (see the module docstring)."""
        if getattr(self, "whisper", None) is not None:
            from ..models.whisper.vocabulary import WhisperTextCodec

            return WhisperTextCodec(self.tgt_dict)
        return super().build_bpe(args)

    def decoder_prompt_prefix(self) -> List[int]:
        """Whisper's prompt after ``<|startoftranscript|>`` (language and task for multilingual
        models, ``<|notimestamps|>``), from config.yaml's ``whisper:``; empty for our models."""
        if getattr(self, "whisper", None) is None:
            return []
        from ..models.whisper.prompt import whisper_prompt

        prompt = whisper_prompt(self.tgt_dict, self.whisper.get("language"), self.whisper.get("task") or "transcribe")
        if prompt[0] != decoder_first_input(self.tgt_dict):
            raise RuntimeError(f"Whisper's prompt {prompt} does not start with the decoder's first input")
        return prompt[1:]

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        """fairseq's, with Whisper's prompt forced: ``bos_token`` = the decoder's first input and
        ``prefix_tokens`` = :meth:`decoder_prompt_prefix` (beam search otherwise unchanged)."""
        prompt = self.decoder_prompt_prefix()
        if not prompt:
            return super().inference_step(generator, models, sample, prefix_tokens=prefix_tokens,
                                          constraints=constraints)
        if prefix_tokens is not None:
            raise OptionError(f"--prefix-size {prefix_tokens.size(1)}: a Whisper model's prompt "
                              f"({' '.join(self.tgt_dict[t] for t in prompt)}) is forced already; drop --prefix-size")
        src = sample["net_input"]["src_tokens"]
        prefix = torch.tensor(prompt, dtype=torch.long, device=src.device).unsqueeze(0).expand(src.size(0), -1)
        with torch.no_grad():
            return generator.generate(models, sample, prefix_tokens=prefix.contiguous(), constraints=constraints,
                                      bos_token=decoder_first_input(self.tgt_dict))

    def lang_tag_indices(self) -> Set[int]:
        """Target-dictionary indices of the language tags ``<lang:xx>``."""
        return {i for s, i in self.tgt_dict.indices.items() if is_lang_tag(s)}

    # --- data ---------------------------------------------------------------------------------
    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        """``split`` may be comma-joined (``train_en,train_it``): the splits are concatenated
        (:class:`SpeechToTextCtcConcatDataset`); each is a training split when its name starts
        with "train"."""
        self.generated_split = split  # what a store records as gen_subset (GenerationTaskSupport)
        pre_tokenizer = self.build_tokenizer(self.args)
        bpe_tokenizer = self.build_bpe(self.args)
        # the source vocabulary has its own SentencePiece model; without one it is the target's
        has_src_vocab = self.data_cfg.config.get("src_vocab_filename") is not None
        src_bpe = build_tokenizer_from_config(self.src_bpe_tokenizer_cfg) \
            if has_src_vocab and self.src_bpe_tokenizer_cfg else bpe_tokenizer
        datasets = [
            load_s2t_ctc_dataset(
                self.cfg.data, name, self.data_cfg, self.tgt_dict, self.src_dict, name.startswith("train"),
                pre_tokenizer=pre_tokenizer, bpe_tokenizer=bpe_tokenizer,
                src_bpe_tokenizer=src_bpe,
                multitask_asr_prob=float(self.cfg.multitask_asr_prob), infer_tgt_lang=self.cfg.infer_tgt_lang,
                seed=int(self.cfg.seed))
            for name in split.split(",")
        ]
        self.datasets[split] = datasets[0] if len(datasets) == 1 else SpeechToTextCtcConcatDataset(datasets)

    # --- model and criterion ------------------------------------------------------------------
    def build_model(self, cfg, from_checkpoint=False):
        check_model_is_registered(cfg)
        values = {"input_feat_per_channel": self.data_cfg.input_feat_per_channel,
                  "input_channels": self.data_cfg.input_channels, "speaker_to_id": self.speaker_to_id}
        if isinstance(cfg, DictConfig):  # dataclass model configs only take keys they declare
            with open_dict(cfg):
                for k, v in values.items():
                    if k in cfg and v is not None:
                        cfg[k] = v
        else:
            for k, v in values.items():
                setattr(cfg, k, v)
        return LegacyFairseqTask.build_model(self, cfg, from_checkpoint)

    def build_criterion(self, cfg):
        from fairseq import criterions

        prefix = getattr(cfg, "ignore_prefix_size", None)
        if self.data_cfg.prepend_tgt_lang_tag and prefix is not None and prefix != 1:
            raise OptionError("config.yaml prepends the target language tag: set --ignore-prefix-size 1 "
                             "(the tag is given as a prefix at inference, not predicted)")
        return criterions.build_criterion(cfg, self)

    # --- batching -----------------------------------------------------------------------------
    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, max_positions=None,
                           ignore_invalid_inputs=False, required_batch_size_multiple=1, seed=1, num_shards=1,
                           shard_id=0, num_workers=0, epoch=1, data_buffer_size=0, disable_iterator_cache=False,
                           skip_remainder_batch=False, grouped_shuffling=False, update_epoch_batch_itr=False):
        itr = super().get_batch_iterator(
            dataset, max_tokens=max_tokens, max_sentences=max_sentences, max_positions=max_positions,
            ignore_invalid_inputs=ignore_invalid_inputs, required_batch_size_multiple=required_batch_size_multiple,
            seed=seed, num_shards=num_shards, shard_id=shard_id, num_workers=num_workers, epoch=epoch,
            data_buffer_size=data_buffer_size, disable_iterator_cache=disable_iterator_cache,
            skip_remainder_batch=skip_remainder_batch, grouped_shuffling=grouped_shuffling,
            update_epoch_batch_itr=update_epoch_batch_itr)
        if not getattr(itr, "_xattn_batches_checked", False):
            check_batches_cover_dataset(dataset, itr.frozen_batches, max_positions, seed, epoch)
            itr._xattn_batches_checked = True
        if getattr(itr, "num_workers", 0) > 0:
            # persistent loader workers keep the dataset of the first epoch, so the multitask draw
            # (keyed by epoch) would repeat; fresh workers see set_epoch
            itr.persistent_workers = False
        return itr


def check_model_is_registered(cfg) -> None:
    """A checkpoint of a model that no loaded plugin registers gets a message that names it (fairseq's
    own error for this case is a ``KeyError: "'_name'"``)."""
    from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_DATACLASS_REGISTRY, MODEL_REGISTRY

    name = getattr(cfg, "_name", None) or getattr(cfg, "arch", None)
    if name is None or name in ARCH_MODEL_REGISTRY or name in MODEL_REGISTRY or name in MODEL_DATACLASS_REGISTRY:
        return
    ours = sorted(k for k, v in ARCH_MODEL_REGISTRY.items() if v.__module__.startswith("fairseq_xattn"))
    raise OptionError(
        f"unknown model architecture {name!r}: no loaded fairseq module registers it. If the checkpoint "
        f"comes from another plugin, pass that plugin's --user-dir as well; fairseq-xattn provides "
        f"{', '.join(ours)}.")


def check_batches_cover_dataset(dataset, batches, max_positions, seed: int, epoch: int) -> None:
    """Raise :class:`BatchingError` unless every index that survives the size filter is in exactly
    one batch (fairseq-fixed's batch_by_size drops the remainder batch; see docs/method.md section 8)."""
    with data_utils.numpy_seed(seed + epoch):
        indices = dataset.ordered_indices()
    if max_positions is not None:
        indices, _ = dataset.filter_indices_by_size(indices, max_positions)
    expected = np.unique(np.asarray(indices, dtype=np.int64))
    got = np.concatenate([np.asarray(b, dtype=np.int64) for b in batches]) if len(batches) else np.zeros(0, np.int64)
    values, counts = np.unique(got, return_counts=True)
    duplicated = values[counts > 1]
    missing = np.setdiff1d(expected, values)
    extra = np.setdiff1d(values, expected)
    if len(missing) or len(duplicated) or len(extra):
        ids = getattr(dataset, "ids", None)
        name = lambda i: repr(ids[i]) if ids is not None else str(int(i))  # noqa: E731
        parts = []
        if len(missing):
            parts.append(f"{len(missing)} of {len(expected)} utterances are in no batch "
                         f"(e.g. {', '.join(name(i) for i in missing[:5])})")
        if len(duplicated):
            parts.append(f"{len(duplicated)} are in several batches (e.g. {', '.join(name(i) for i in duplicated[:5])})")
        if len(extra):
            parts.append(f"{len(extra)} batched indices are not in the filtered dataset")
        raise BatchingError(f"batching of split {getattr(dataset, 'split', '?')!r} is wrong: " + "; ".join(parts)
                            + ". Is fairseq_xattn.compat applied (it fixes batch_by_size)?")


@register_task("speech_to_text_ctc", dataclass=SpeechToTextCtcConfig)
class SpeechToTextCtcTask(RecordingTaskMixin, SpeechToTextCtcTaskBase):
    """Speech-to-text (ASR, ST, multitask) with CTC source targets and cross-attention recording."""
