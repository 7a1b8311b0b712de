"""A model whose encoder hands back a given (perturbed) encoder output, for decoding through fairseq.

Deletion on encoder frames (SM^H, or CA on the encoder grid) zeroes rows of the encoder output
``H`` (``T' x B x D``) and decodes with beam search.  fairseq's ``SequenceGenerator`` runs the
encoder itself (``model.encoder.forward_torchscript(net_input)``), so we wrap the model: its
encoder returns ``net_input["precomputed_encoder_out"]`` when present and runs the real encoder
otherwise.  Everything else (decoder, reordering of the encoder output with the beam, output
probabilities) is the wrapped model's own.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from fairseq.models import FairseqEncoder, FairseqEncoderDecoderModel

PRECOMPUTED_KEY = "precomputed_encoder_out"


class PrecomputedOutputEncoder(FairseqEncoder):
    """Encoder that returns ``precomputed_encoder_out`` if given, else runs the wrapped encoder."""

    def __init__(self, encoder: FairseqEncoder):
        super().__init__(getattr(encoder, "dictionary", None))
        self.inner = encoder

    def forward(self, src_tokens=None, src_lengths=None, **kwargs):
        precomputed = kwargs.pop(PRECOMPUTED_KEY, None)
        if precomputed is not None:
            return precomputed
        return self.inner(src_tokens=src_tokens, src_lengths=src_lengths, **kwargs)

    def reorder_encoder_out(self, encoder_out, new_order):
        return self.inner.reorder_encoder_out(encoder_out, new_order)

    def max_positions(self):
        return self.inner.max_positions()


class EncoderOutputOverrideModel(FairseqEncoderDecoderModel):
    """``model`` with a :class:`PrecomputedOutputEncoder`; shares every parameter with ``model``."""

    def __init__(self, model: FairseqEncoderDecoderModel):
        super().__init__(PrecomputedOutputEncoder(model.encoder), model.decoder)
        self.wrapped = [model]  # a list: not registered as a submodule twice

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        return self.wrapped[0].get_normalized_probs(net_output, log_probs, sample)

    def max_positions(self):
        return self.wrapped[0].max_positions()


def zero_encoder_frames(encoder_out: Dict[str, List[torch.Tensor]], keep: torch.Tensor) -> Dict[str, List[torch.Tensor]]:
    """Zero the encoder states where ``keep`` (``B x T'`` bool) is False.

    ``encoder_out["encoder_out"][0]`` is ``T' x B x D`` (fairseq's S2T encoders); a copy is returned.
    """
    states = encoder_out["encoder_out"][0]
    if keep.shape != (states.shape[1], states.shape[0]):
        raise ValueError(f"keep mask {tuple(keep.shape)} does not match encoder output T' x B = "
                         f"{states.shape[0]} x {states.shape[1]}")
    out = dict(encoder_out)
    out["encoder_out"] = [states * keep.t().unsqueeze(-1).to(states.dtype)]
    return out


def encoder_length_of(encoder_out: Dict[str, List[torch.Tensor]], b: int = 0) -> int:
    """Number of non-padded encoder frames of batch row ``b``."""
    states = encoder_out["encoder_out"][0]
    masks: Optional[List[torch.Tensor]] = encoder_out.get("encoder_padding_mask")
    if masks and masks[0] is not None and masks[0].numel():
        return int((~masks[0][b]).sum())
    return int(states.shape[0])
