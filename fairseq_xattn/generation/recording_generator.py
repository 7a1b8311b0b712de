"""A beam-search generator that also returns each hypothesis' per-layer, per-head cross-attention.

It decorates the stock fairseq ``SequenceGenerator`` that the task built (so every search option:
beam size, ``--nbest``, ``--no-repeat-ngram-size``, prefixes, length penalties, sampling, keeps
working exactly as in fairseq) and swaps its ``EnsembleModel`` for a
:class:`~fairseq_xattn.generation.recording_ensemble.RecordingEnsembleModel`.

Each returned hypothesis gains (for the first ``nbest`` of every utterance):

* ``hypo["cross_attention"]``: ``L x H x I x T'`` float tensor: layers, heads, output tokens (EOS
  included, prefix tokens included), unpadded encoder frames; rows sum to 1;
* ``hypo["attention"]``: ``T' x I``, the layer- and head-average (fairseq's layout, src x tgt);
* ``hypo["alignment"]``: hard or soft token -> encoder-frame alignment when ``print_alignment`` is set.

Tokens, scores and positional scores are exactly those of the stock generator.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from fairseq.sequence_generator import SequenceGenerator, SequenceGeneratorWithAlignment
from torch import Tensor

from .alignment import hard_alignment, soft_alignment
from .recording_ensemble import RecordingEnsembleModel


class CrossAttentionRecordingGenerator:
    """Wraps ``generator`` (a stock ``SequenceGenerator``); see the module docstring.

    Args:
        generator: the fairseq generator to decorate (its ensemble is replaced in place).
        nbest: record only the best ``nbest`` hypotheses of each utterance (None: all of them).
        print_alignment: ``"hard"``, ``"soft"`` or None, as fairseq's ``--print-alignment``.
    """

    def __init__(self, generator: SequenceGenerator, nbest: Optional[int] = None,
                 print_alignment: Optional[str] = None):
        if not isinstance(generator, SequenceGenerator) or isinstance(generator, SequenceGeneratorWithAlignment):
            raise TypeError(
                f"can only record cross-attention with fairseq's SequenceGenerator, not "
                f"{type(generator).__name__} (--score-reference and dual-decoder models are not supported)"
            )
        if print_alignment not in (None, "hard", "soft"):
            raise ValueError(f"--print-alignment must be 'hard' or 'soft', not {print_alignment!r}")
        self.generator = generator
        self.ensemble = RecordingEnsembleModel(list(generator.model.models))
        generator.model = self.ensemble
        self.nbest = nbest
        self.print_alignment = print_alignment

    @classmethod
    def build(cls, models, tgt_dict, nbest: Optional[int] = None, print_alignment: Optional[str] = None,
              **sequence_generator_kwargs) -> "CrossAttentionRecordingGenerator":
        """Build the stock ``SequenceGenerator(models, tgt_dict, **kwargs)`` and decorate it."""
        return cls(SequenceGenerator(models, tgt_dict, **sequence_generator_kwargs), nbest, print_alignment)

    @property
    def num_layers(self) -> int:
        return self.ensemble.num_layers

    @property
    def num_heads(self) -> int:
        return self.ensemble.num_heads

    def __getattr__(self, name):
        # beam_size, symbols_to_strip_from_output, eos, ...: whatever fairseq code reads off a generator.
        generator = self.__dict__.get("generator")
        if generator is None:
            raise AttributeError(name)
        return getattr(generator, name)

    @torch.no_grad()
    def generate(self, models, sample: Dict, **kwargs) -> List[List[Dict[str, Tensor]]]:
        """As ``SequenceGenerator.generate``; hypotheses carry ``cross_attention`` (see module doc)."""
        self.ensemble.start()
        try:
            finalized = self.generator.generate(models, sample, **kwargs)
        finally:
            self.ensemble.stop()
        try:
            encoder_lengths = self.ensemble.encoder_lengths.tolist()
            recorded = []  # (utterance, hypothesis) pairs within --nbest
            for sent, hypos in enumerate(finalized):
                for rank, hypo in enumerate(hypos):
                    if self.nbest is None or rank < self.nbest:
                        recorded.append((sent, hypo))
                    else:
                        hypo["attention"] = torch.empty(0)
            # hypo["attention"] holds the step-wise row indices (1 x I), see RecordingEnsembleModel
            gathered = self.ensemble.gather([hypo["attention"][0] for _, hypo in recorded])
            for (sent, hypo), attention in zip(recorded, gathered):
                self._attach(hypo, attention[..., : encoder_lengths[sent]])
        finally:
            self.ensemble.reset()
        return finalized

    def _attach(self, hypo: Dict, cross_attention: Tensor) -> None:
        cross_attention = cross_attention.float()
        hypo["cross_attention"] = cross_attention  # L x H x I x T'
        hypo["attention"] = cross_attention.mean(dim=(0, 1)).t()  # T' x I
        attach_alignment(hypo, self.print_alignment, self.generator.pad, self.generator.eos)


def attach_alignment(hypo: Dict, print_alignment: Optional[str], pad: int, eos: int) -> None:
    """Set ``hypo["alignment"]`` from ``hypo["cross_attention"]`` as ``--print-alignment`` asks."""
    if print_alignment == "hard":
        hypo["alignment"] = hard_alignment(hypo["cross_attention"], hypo["tokens"], pad, eos)
    elif print_alignment == "soft":
        hypo["alignment"] = soft_alignment(hypo["cross_attention"], hypo["tokens"], pad)
