"""Beam-search decoding of (perturbed) utterances with a real fairseq checkpoint and task.

Used by the faithfulness metrics: the model, task, dataset, generator and detokenisation are
fairseq's own, as in ``fairseq_cli/generate.py``:

* ``checkpoint_utils.load_model_ensemble_and_task`` with ``arg_overrides={"data": ...}``;
* features from ``task.dataset(split)`` (after the data config's feature transforms) and the
  dataset's own collater;
* ``task.build_generator`` + ``task.inference_step``;
* text: ``tgt_dict.string`` (post-process, generator's symbols to strip) then the task's BPE and
  tokenizer decoders.
"""
from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..errors import UserError



class DecodingError(UserError, ValueError):
    """The checkpoint, data or options of a decoding session do not fit together."""


def check_readable_checkpoint(path, flag: str) -> None:
    """Refuse, as one line naming ``flag`` and the file, a checkpoint torch cannot read: missing, truncated,
    or another kind of file.  Memory-mapped (tensors are not read) when the file's format allows it."""
    from ..compat import load_checkpoint_state, unreadable_checkpoint

    path = Path(path)
    if not path.is_file():
        raise DecodingError(f"{flag} {path}: no such file")
    try:
        try:
            load_checkpoint_state(path, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            load_checkpoint_state(path)  # a legacy (non-zip) checkpoint: no memory map, but readable
    except Exception as e:  # whatever torch.load raises on a file it cannot read: pickle, zip, weights-only errors
        raise unreadable_checkpoint(path, e, flag) from None

def check_data_split(data, split: str) -> None:
    """The data folder exists and holds the manifest of every split of ``split`` (comma-joined, as fairseq's)."""
    folder = Path(data)
    if not folder.is_dir():
        raise DecodingError(f"--data {data}: no such folder (give the data folder of the model: TSV manifests, "
                            "config.yaml)")
    for name in split.split(","):
        if not (folder / f"{name}.tsv").is_file():
            found = sorted(p.stem for p in folder.glob("*.tsv"))
            raise DecodingError(f"--split {name}: {data} has no {name}.tsv (splits there: {', '.join(found) or 'none'})")


@dataclass
class DecodingConfig:
    beam: int = 5
    no_repeat_ngram_size: int = 5
    max_len_a: float = 0.0
    max_len_b: int = 200
    #: number of target tokens forced as prefix (1 for a language tag)
    prefix_size: int = 0
    #: fairseq post-process for tgt_dict.string (e.g. sentencepiece); None: the task's BPE decodes
    post_process: Optional[str] = None
    cpu: bool = False


@dataclass
class Utterance:
    """One dataset item: features ``T x F`` after the transforms the model sees, target ids, text."""

    utt_id: str
    index: int
    features: torch.Tensor
    target: torch.Tensor
    reference: str


class FairseqDecodingSession:
    """A loaded checkpoint with its task and split, able to decode batches of perturbed inputs."""

    def __init__(self, checkpoint: str, data: str, split: str, cfg: DecodingConfig = DecodingConfig(),
                 config_yaml: Optional[str] = None, user_dir: Optional[str] = None,
                 infer_tgt_lang: Optional[str] = None, checkpoint_flag: str = "--checkpoint"):
        """``checkpoint_flag``: the option that named the checkpoint, for error messages."""
        import fairseq_xattn.plugin  # noqa: F401  (registers the plugin's tasks and models, applies shims)
        from fairseq import checkpoint_utils, utils
        from fairseq.dataclass.configs import GenerationConfig
        from omegaconf import OmegaConf

        from .encoder_override import EncoderOutputOverrideModel

        if user_dir:
            utils.import_user_module(Namespace(user_dir=user_dir))
        check_readable_checkpoint(checkpoint, checkpoint_flag)
        check_data_split(data, split)
        overrides: Dict[str, object] = {"data": str(data)}
        if config_yaml:
            overrides["config_yaml"] = config_yaml
        if infer_tgt_lang:  # a multilingual model: the transcript (source language) or the translation
            overrides["infer_tgt_lang"] = infer_tgt_lang
        models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)], arg_overrides=overrides)
        self.cfg = cfg
        self.device = torch.device("cuda" if torch.cuda.is_available() and not cfg.cpu else "cpu")
        self.model = models[0].to(self.device).eval()
        self.task = task
        self.split = split
        task.load_dataset(split)
        self.dataset = task.dataset(split)
        if infer_tgt_lang and getattr(self.dataset, "infer_tgt_lang", None) != infer_tgt_lang:
            # fairseq drops an override the task does not declare: say so instead of scoring the wrong target
            raise DecodingError(f"--infer-tgt-lang {infer_tgt_lang}: the checkpoint's task "
                             f"({type(task).__name__}, dataset {type(self.dataset).__name__}) does not take it; "
                             "it needs the speech_to_text_ctc task")
        ids = getattr(self.dataset, "ids", None)
        if ids is None:
            raise ValueError(f"dataset of split {split!r} ({type(self.dataset).__name__}) has no 'ids': "
                             "cannot join it with the explanation stores by utterance id")
        self.index = {str(u): i for i, u in enumerate(ids)}
        gen = OmegaConf.structured(GenerationConfig(
            beam=cfg.beam, no_repeat_ngram_size=cfg.no_repeat_ngram_size, max_len_a=cfg.max_len_a,
            max_len_b=cfg.max_len_b, prefix_size=cfg.prefix_size, nbest=1))
        self.generator = task.build_generator([self.model], gen)
        self.override_model = EncoderOutputOverrideModel(self.model).to(self.device).eval()
        self.encoder_generator = task.build_generator([self.override_model], gen)
        self.tgt_dict = task.target_dictionary
        self.tokenizer = task.build_tokenizer(Namespace(tokenizer=None))
        self.bpe = task.build_bpe(Namespace(bpe=None))
        strip = getattr(self.generator, "symbols_to_strip_from_output", None)
        self.strip = strip if strip is not None else {self.generator.eos}

    # ------------------------------------------------------------------ data
    def utterance(self, utt_id: str) -> Utterance:
        try:
            idx = self.index[str(utt_id)]
        except KeyError:
            raise KeyError(f"utterance {utt_id!r} is not in split {self.split!r} of the model's data") from None
        sample = self.dataset.collater([self.dataset[idx]])
        length = int(sample["net_input"]["src_lengths"][0])
        feats = sample["net_input"]["src_tokens"][0, :length]
        if sample.get("target") is None:
            raise DecodingError(f"split {self.split!r} has no target text: references are needed for the scores")
        target = sample["target"][0]
        target = target[target.ne(self.tgt_dict.pad())]
        reference = self.to_text(target, escape_unk=True)
        return Utterance(str(utt_id), idx, feats, target, reference)

    def to_text(self, tokens: torch.Tensor, escape_unk: bool = False) -> str:
        text = self.tgt_dict.string(tokens.int().cpu(), self.cfg.post_process, escape_unk=escape_unk,
                                    extra_symbols_to_ignore=self.strip)
        if self.bpe is not None:
            text = self.bpe.decode(text)
        if self.tokenizer is not None:
            text = self.tokenizer.decode(text)
        return text

    # ------------------------------------------------------------------ decoding
    def _prefix(self, utt: Utterance, batch: int) -> Optional[torch.Tensor]:
        if self.cfg.prefix_size <= 0:
            return None
        return utt.target[: self.cfg.prefix_size].unsqueeze(0).expand(batch, -1).to(self.device)

    @torch.no_grad()
    def decode_inputs(self, utt: Utterance, features: torch.Tensor) -> List[str]:
        """Decode ``B x T x F`` perturbed copies of ``utt``'s features; one text per row."""
        batch = features.shape[0]
        sample = {"net_input": {
            "src_tokens": features.to(self.device),
            "src_lengths": torch.full((batch,), features.shape[1], dtype=torch.long, device=self.device),
        }}
        hypos = self.task.inference_step(self.generator, [self.model], sample, prefix_tokens=self._prefix(utt, batch))
        return [self.to_text(h[0]["tokens"]) for h in hypos]

    @torch.no_grad()
    def encode(self, utt: Utterance):
        """The encoder output of ``utt`` alone (batch of 1)."""
        feats = utt.features.unsqueeze(0).to(self.device)
        lengths = torch.tensor([feats.shape[1]], device=self.device)
        return self.model.encoder(src_tokens=feats, src_lengths=lengths)

    @torch.no_grad()
    def decode_encoder_outputs(self, utt: Utterance, encoder_out) -> List[str]:
        """Decode a batch of (perturbed) encoder outputs of ``utt``; the encoder is not re-run."""
        from .encoder_override import PRECOMPUTED_KEY

        batch = encoder_out["encoder_out"][0].shape[1]
        feats = utt.features.unsqueeze(0).expand(batch, -1, -1).to(self.device)
        sample = {"net_input": {
            "src_tokens": feats,
            "src_lengths": torch.full((batch,), feats.shape[1], dtype=torch.long, device=self.device),
            PRECOMPUTED_KEY: encoder_out,
        }}
        hypos = self.task.inference_step(self.encoder_generator, [self.override_model], sample,
                                         prefix_tokens=self._prefix(utt, batch))
        return [self.to_text(h[0]["tokens"]) for h in hypos]
