"""Token -> encoder-frame alignments from recorded cross-attention, for ``--print-alignment``.

Stock fairseq builds them from source *tokens* (``utils.extract_hard_alignment``) and fails on
speech input; here the source positions are encoder frames (``T'``, after subsampling).
"""
from __future__ import annotations

from typing import List, Tuple

from torch import Tensor


def alignment_attention(cross_attention: Tensor) -> Tensor:
    """fairseq's default alignment view: last layer, heads averaged. ``L x H x I x T'`` -> ``I x T'``."""
    return cross_attention[-1].mean(dim=0)


def hard_alignment(cross_attention: Tensor, tokens: Tensor, pad: int, eos: int) -> List[Tuple[int, int]]:
    """``(encoder_frame, token_position)`` pairs, one per output token except EOS/padding: the frame
    each token attends to most (``A-`` lines print them as ``frame-token``)."""
    attn = alignment_attention(cross_attention)
    frames = attn.argmax(dim=-1).tolist()
    return [(frames[i], i) for i, t in enumerate(tokens.tolist()) if t != pad and t != eos]


def soft_alignment(cross_attention: Tensor, tokens: Tensor, pad: int) -> List[List[str]]:
    """For each output token (EOS included, as stock fairseq does), its attention over the ``T'``
    encoder frames formatted ``%.6f``."""
    attn = alignment_attention(cross_attention)
    return [["{:.6f}".format(p) for p in attn[i].tolist()]
            for i, t in enumerate(tokens.tolist()) if t != pad]
