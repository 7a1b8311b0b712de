"""Transformer decoder whose per-layer cross-attention modules are exposed for recording.

A plain subclass of fairseq's ``TransformerDecoderBase``: ``layers[l].encoder_attn`` stays a stock
``fairseq.modules.MultiheadAttention`` (hooks see per-head weights with need_head_weights=True), and
incremental decoding in ``SequenceGenerator`` works unchanged.
"""
from __future__ import annotations

from typing import List

from fairseq.models.transformer import TransformerConfig, TransformerDecoderBase
from fairseq.modules import MultiheadAttention

from .dropout import use_fast_dropout


def decoder_transformer_config(cfg) -> TransformerConfig:
    """fairseq's nested TransformerConfig from our flat model config (decoder side only)."""
    tc = TransformerConfig()
    tc.dropout = cfg.dropout
    tc.attention_dropout = cfg.attention_dropout
    tc.activation_dropout = cfg.activation_dropout
    tc.activation_fn = cfg.decoder_activation_fn
    tc.share_decoder_input_output_embed = cfg.share_decoder_input_output_embed
    tc.no_scale_embedding = cfg.no_scale_embedding
    tc.max_target_positions = cfg.max_target_positions
    tc.encoder.embed_dim = cfg.encoder_embed_dim  # key/value width of the cross-attention
    tc.decoder.embed_dim = cfg.decoder_embed_dim
    tc.decoder.input_dim = cfg.decoder_embed_dim
    tc.decoder.output_dim = cfg.decoder_embed_dim
    tc.decoder.ffn_embed_dim = cfg.decoder_ffn_embed_dim
    tc.decoder.layers = cfg.decoder_layers
    tc.decoder.attention_heads = cfg.decoder_attention_heads
    tc.decoder.normalize_before = True
    tc.decoder.learned_pos = False
    return tc


class XattnTransformerDecoder(TransformerDecoderBase):
    """fairseq's Transformer decoder (pre-norm, sinusoidal positions) over ``T' x B x D`` encoder states.

    Args:
        cfg: our model config; dictionary: the target dictionary; embed_tokens: ``V x D`` embedding.
    """

    def __init__(self, cfg, dictionary, embed_tokens):
        super().__init__(decoder_transformer_config(cfg), dictionary, embed_tokens)
        use_fast_dropout(self)  # fairseq's F.dropout is slow on CPUs (see dropout.py); same maths

    def cross_attention_modules(self) -> List[MultiheadAttention]:
        """The L per-layer encoder-decoder attention modules, first layer first."""
        return [layer.encoder_attn for layer in self.layers]
