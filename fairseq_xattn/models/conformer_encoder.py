"""Conformer encoder: subsampler -> scale -> dropout -> N Conformer blocks.

Returns fairseq's encoder-output dict (T' x B x D), plus the intermediate output that the source
CTC head reads.
"""
from __future__ import annotations

import math
from typing import Dict, List

import torch
import torch.nn as nn
from fairseq.models import FairseqEncoder

from .conformer_block import ConformerBlock
from .dropout import Dropout
from .masking import lengths_to_padding_mask
from .rel_pos_attention import relative_positional_encoding
from ..geometry import CONFORMER_SUBSAMPLING
from .subsampler import Conv1dSubsampler

#: Keys of the encoder-output dict whose tensors are ``T' x B x D`` (reordered along dim 1).
TIME_MAJOR_KEYS = ("encoder_out", "ctc_src_out")
#: Keys whose tensors have the batch first (reordered along dim 0).
BATCH_MAJOR_KEYS = ("encoder_padding_mask", "encoder_embedding", "src_lengths", "encoder_lengths")


class ConformerEncoder(FairseqEncoder):
    """``B x T x F`` filterbanks -> ``T' x B x D`` states, T' = ceil(T / 4).

    Args:
        cfg: an :class:`~fairseq_xattn.models.xattn_conformer.XattnConformerConfig` (or namespace).
    """

    def __init__(self, cfg):
        super().__init__(None)
        d = cfg.encoder_embed_dim
        if not 0 <= cfg.ctc_src_layer <= cfg.encoder_layers:
            raise ValueError(
                f"--ctc-src-layer {cfg.ctc_src_layer} is outside the encoder's 1..{cfg.encoder_layers} layers "
                "(0 = no intermediate CTC head)"
            )
        self.ctc_src_layer = cfg.ctc_src_layer
        self.subsample = Conv1dSubsampler(cfg.input_feat_per_channel, cfg.conv_channels, d, cfg.conv_kernel_size)
        #: time subsampling s (T' = ceil(T / s)), read by the recorder and the explainer
        self.subsampling_factor = CONFORMER_SUBSAMPLING
        self.embed_scale = 1.0 if cfg.no_scale_embedding else math.sqrt(d)
        self.dropout = Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            ConformerBlock(
                d,
                cfg.encoder_ffn_embed_dim,
                cfg.encoder_attention_heads,
                cfg.depthwise_conv_kernel_size,
                cfg.dropout,
                cfg.attention_dropout,
                cfg.activation_dropout,
            )
            for _ in range(cfg.encoder_layers)
        )
        self.max_source_positions = cfg.max_source_positions

    def forward(self, src_tokens: torch.Tensor, src_lengths: torch.Tensor, return_all_hiddens: bool = False):
        """src_tokens ``B x T x F`` features, src_lengths ``B`` -> dict:

        * ``encoder_out``: [``T' x B x D``]; ``encoder_padding_mask``: [``B x T'``] (always present)
        * ``ctc_src_out``: [``T' x B x D``] output of layer ``ctc_src_layer`` ([] when it is 0)
        * ``encoder_states``: per-layer ``T' x B x D`` when return_all_hiddens
        * ``src_lengths``: [``B`` input frames T]; ``encoder_lengths``: [``B`` encoder frames T']
        """
        x, lengths = self.subsample(src_tokens, src_lengths)  # B x T' x D
        padding_mask = lengths_to_padding_mask(lengths, x.size(1))
        x = self.dropout(x * self.embed_scale)
        pos_enc = relative_positional_encoding(x.size(1), x.size(2), device=x.device, dtype=x.dtype)

        ctc_src_out: List[torch.Tensor] = []
        states: List[torch.Tensor] = []
        for index, layer in enumerate(self.layers, start=1):
            x = layer(x, padding_mask, pos_enc)
            if index == self.ctc_src_layer:
                ctc_src_out.append(x.transpose(0, 1))
            if return_all_hiddens:
                states.append(x.transpose(0, 1))

        return {
            "encoder_out": [x.transpose(0, 1)],
            "encoder_padding_mask": [padding_mask],
            "encoder_embedding": [],
            "encoder_states": states,
            "src_tokens": [],
            "src_lengths": [src_lengths],
            "encoder_lengths": [lengths],
            "ctc_src_out": ctc_src_out,
        }

    def reorder_encoder_out(self, encoder_out: Dict[str, List[torch.Tensor]], new_order: torch.Tensor):
        """Select/reorder batch entries (beam search) in every tensor of the dict."""
        out: Dict[str, List[torch.Tensor]] = {}
        for key, values in encoder_out.items():
            if key in TIME_MAJOR_KEYS or key == "encoder_states":
                out[key] = [v.index_select(1, new_order) for v in values]
            elif key in BATCH_MAJOR_KEYS:
                out[key] = [v.index_select(0, new_order) for v in values]
            else:
                out[key] = values
        return out

    def max_positions(self):
        return self.max_source_positions
