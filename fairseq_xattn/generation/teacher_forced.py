"""Cross-attention of given token sequences under teacher forcing (one full decoder pass), and the
decoder's first input.

Used by the teacher-forced recording mode (a reference, or hypotheses produced elsewhere, for
forced-alignment studies) and by the tests that check beam-search recording against it.

**The decoder's first input** (:func:`decoder_first_input`) is the one home of that convention:
fairseq decoders start from EOS; Whisper's from ``<|startoftranscript|>`` (its dictionary says so
with ``decoder_start``).  Beam search (``bos_token``), teacher forcing and the explainer's forced
decoding all read it from here, so a hypothesis ``y`` is always scored with the decoder input
``[first input] + y[:-1]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from fairseq.data import data_utils
from torch import Tensor, nn

from .capture import CrossAttentionCapture
from ..models.encoder_output import encoder_output_lengths


def decoder_first_input(dictionary) -> int:
    """The token the decoder reads before the first output token: the dictionary's
    ``decoder_start`` when it has one (Whisper: ``<|startoftranscript|>``), else EOS (fairseq)."""
    start = getattr(dictionary, "decoder_start", None)
    return int(start) if start is not None else int(dictionary.eos())


def decoder_input(tokens: Tensor, first_input: int) -> Tensor:
    """``I`` tokens (ending with EOS) -> the decoder input ``[first_input] + tokens[:-1]`` (``I``)."""
    return torch.cat([tokens.new_tensor([first_input]), tokens[:-1]])


@dataclass
class TeacherForcedOutput:
    """Per sequence b: ``cross_attention[b]`` is ``L x H x I_b x T'_b``; ``positional_scores[b]`` is
    ``I_b`` log-probabilities (natural log) of each token given its history."""

    cross_attention: List[Tensor]
    positional_scores: List[Tensor]
    encoder_lengths: List[int]


@torch.no_grad()
def teacher_forced_pass(model: nn.Module, net_input: Dict[str, Tensor], token_sequences: Sequence[Tensor],
                        pad: int, eos: int, first_input: Optional[int] = None) -> TeacherForcedOutput:
    """Run ``model`` on the batch ``net_input`` with ``prev_output_tokens = first_input + tokens[:-1]``
    (``first_input``: :func:`decoder_first_input` of the target dictionary; None: EOS).

    Args:
        model: a fairseq encoder-decoder model (in eval mode).
        net_input: ``{"src_tokens": B x T x F, "src_lengths": B, ...}`` (``prev_output_tokens`` ignored).
        token_sequences: B LongTensors, each ending with EOS (as fairseq's targets and hypotheses).
    """
    batch = net_input["src_tokens"].size(0)
    if len(token_sequences) != batch:
        raise ValueError(f"teacher forcing needs one token sequence per utterance: got {len(token_sequences)} for {batch}")
    device = net_input["src_tokens"].device
    sequences = [torch.as_tensor(s, dtype=torch.long, device=device) for s in token_sequences]
    for b, seq in enumerate(sequences):
        if seq.numel() == 0 or int(seq[-1]) != eos:
            raise ValueError(f"token sequence {b} must end with EOS ({eos}): {seq.tolist()}")
    prev_output_tokens = data_utils.collate_tokens(sequences, pad, eos, move_eos_to_beginning=True)
    if first_input is not None:  # column 0 is the moved EOS of every sequence
        prev_output_tokens[:, 0] = first_input
    targets = data_utils.collate_tokens(sequences, pad, eos)

    capture = CrossAttentionCapture(model.decoder)
    saved_beam = [m.beam_size for m in capture.modules]
    for m in capture.modules:  # a previous beam search may have set the beamable-attention size
        m.beam_size = 1
    try:
        encoder_input = {k: v for k, v in net_input.items() if k != "prev_output_tokens"}
        encoder_out = model.encoder.forward_torchscript(encoder_input)
        with capture:
            decoder_out = model.decoder(prev_output_tokens, encoder_out=encoder_out)
            weights = capture.pop()  # B x L x H x I x S
    finally:
        for m, size in zip(capture.modules, saved_beam):
            m.beam_size = size
    lprobs = model.get_normalized_probs(decoder_out, log_probs=True).float()  # B x I x V
    scores = lprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # B x I
    lengths = encoder_output_lengths(encoder_out).tolist()
    attention, positional = [], []
    for b, seq in enumerate(sequences):
        n = seq.numel()
        attention.append(weights[b, :, :, :n, : lengths[b]].float().contiguous())
        positional.append(scores[b, :n])
    return TeacherForcedOutput(attention, positional, lengths)

