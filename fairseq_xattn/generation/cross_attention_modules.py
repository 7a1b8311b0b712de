"""Find the per-layer cross-attention (encoder-decoder attention) modules of a fairseq decoder."""
from __future__ import annotations

from typing import List

from fairseq.modules import MultiheadAttention
from torch import nn


def cross_attention_modules(decoder: nn.Module) -> List[MultiheadAttention]:
    """The L encoder-decoder ``MultiheadAttention`` modules of ``decoder``, first layer first.

    Our ``xattn_conformer`` decoder lists them itself (``cross_attention_modules()``); any stock
    fairseq ``TransformerDecoder`` (``s2t_transformer``, ``s2t_conformer``) has them at
    ``layers[l].encoder_attn``.
    """
    if hasattr(decoder, "cross_attention_modules"):
        modules = list(decoder.cross_attention_modules())
    else:
        layers = getattr(decoder, "layers", None)
        if layers is None:
            raise TypeError(
                f"cannot record cross-attention of {type(decoder).__name__}: it has neither "
                "cross_attention_modules() nor .layers[l].encoder_attn (a fairseq TransformerDecoder)"
            )
        modules = [getattr(layer, "encoder_attn", None) for layer in layers]
    missing = [i for i, m in enumerate(modules) if m is None]
    if missing or not modules:
        raise TypeError(
            f"cannot record cross-attention of {type(decoder).__name__}: decoder layers {missing} "
            "have no encoder attention (a decoder-only model?)"
        )
    not_mha = [i for i, m in enumerate(modules) if not isinstance(m, MultiheadAttention)]
    if not_mha:
        raise TypeError(
            f"cannot record cross-attention of {type(decoder).__name__}: layers {not_mha} use "
            f"{type(modules[not_mha[0]]).__name__}, not fairseq.modules.MultiheadAttention"
        )
    return modules
