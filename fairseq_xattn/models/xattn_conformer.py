"""``xattn_conformer``: Conformer encoder + fairseq Transformer decoder + two CTC heads.

The paper's models (Appendix B): two stride-2 convolutions (kernel 5), Conformer blocks with
relative-position self-attention and depthwise kernel 31, a Transformer decoder, a CTC head on an
intermediate encoder layer (source transcript) and one on the final encoder output (target text).
"""

from dataclasses import dataclass, field, fields
from typing import Dict, Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import FairseqEncoderDecoderModel, register_model, register_model_architecture
from fairseq.models.transformer import Embedding
from fairseq.utils import get_available_activation_fns

from .dataclass_config import complete_dataclass_config, set_default
from .conformer_encoder import ConformerEncoder
from .ctc_head import CtcHead
from .decoder import XattnTransformerDecoder


@dataclass
class XattnConformerConfig(FairseqDataclass):
    """Defaults are the paper's base model; the archs below change what differs."""

    input_feat_per_channel: int = field(default=80, metadata={"help": "filterbank bins F of the input"})
    conv_channels: int = field(default=1024, metadata={"help": "channels of the first subsampling convolution"})
    conv_kernel_size: int = field(default=5, metadata={"help": "kernel of both stride-2 subsampling convolutions"})
    encoder_embed_dim: int = field(default=512, metadata={"help": "encoder width D"})
    encoder_ffn_embed_dim: int = field(default=2048, metadata={"help": "encoder feed-forward width"})
    encoder_layers: int = field(default=12, metadata={"help": "Conformer blocks"})
    encoder_attention_heads: int = field(default=8, metadata={"help": "encoder self-attention heads"})
    depthwise_conv_kernel_size: int = field(default=31, metadata={"help": "Conformer depthwise convolution kernel"})
    decoder_embed_dim: int = field(default=512, metadata={"help": "decoder width"})
    decoder_ffn_embed_dim: int = field(default=2048, metadata={"help": "decoder feed-forward width"})
    decoder_layers: int = field(default=6, metadata={"help": "Transformer decoder layers"})
    decoder_attention_heads: int = field(default=8, metadata={"help": "decoder self- and cross-attention heads"})
    decoder_activation_fn: ChoiceEnum(get_available_activation_fns()) = field(
        default="relu", metadata={"help": "activation of the decoder feed-forward layers"}
    )
    dropout: float = field(default=0.1, metadata={"help": "dropout probability"})
    attention_dropout: float = field(default=0.1, metadata={"help": "dropout on attention weights"})
    activation_dropout: float = field(default=0.1, metadata={"help": "dropout after feed-forward activations"})
    share_decoder_input_output_embed: bool = field(
        default=False,
        metadata={"help": "tie the decoder input embedding and output projection (the paper's counts imply untied)"},
    )
    no_scale_embedding: bool = field(default=False, metadata={"help": "do not scale embeddings by sqrt(D)"})
    ctc_src_layer: int = field(
        default=8, metadata={"help": "encoder layer (1-based) feeding the source-transcript CTC head; 0 = no head"}
    )
    # Negative flag on purpose: fairseq turns a bool field defaulting to True into a store_false
    # option, so a "--ctc-tgt" flag would switch the head off.
    no_ctc_tgt: bool = field(
        default=False, metadata={"help": "do not build the target-text CTC head on the final encoder output"}
    )
    max_source_positions: int = field(default=6000, metadata={"help": "maximum input frames"})
    max_target_positions: int = field(default=1024, metadata={"help": "maximum target tokens"})


def complete_config(cfg) -> XattnConformerConfig:
    """Every field of ``cfg``, missing ones at their defaults (:func:`complete_dataclass_config`)."""
    return complete_dataclass_config(XattnConformerConfig, cfg)


@register_model("xattn_conformer", dataclass=XattnConformerConfig)
class XattnConformerModel(FairseqEncoderDecoderModel):
    """Encoder ``B x T x F`` -> ``T' x B x D``; decoder -> ``B x I x V`` logits; CTC heads ->
    ``T' x B x V`` log-probabilities (``ctc_src_head`` over the source dictionary, ``ctc_tgt_head``
    over the target dictionary)."""

    def __init__(self, cfg: XattnConformerConfig, encoder, decoder, ctc_src_head=None, ctc_tgt_head=None):
        super().__init__(encoder, decoder)
        self.cfg = cfg
        self.ctc_src_head: Optional[CtcHead] = ctc_src_head
        self.ctc_tgt_head: Optional[CtcHead] = ctc_tgt_head

    @classmethod
    def build_model(cls, cfg, task):
        """Reads only ``task.target_dictionary`` and ``task.source_dictionary`` (the CTC source
        vocabulary; None means the target dictionary)."""
        cfg = complete_config(cfg)
        tgt_dict = task.target_dictionary
        src_dict = getattr(task, "source_dictionary", None) or tgt_dict
        encoder = ConformerEncoder(cfg)
        embed_tokens = Embedding(len(tgt_dict), cfg.decoder_embed_dim, tgt_dict.pad())
        decoder = XattnTransformerDecoder(cfg, tgt_dict, embed_tokens)
        d = cfg.encoder_embed_dim
        ctc_src = CtcHead(d, len(src_dict), src_dict.bos()) if cfg.ctc_src_layer > 0 else None
        ctc_tgt = None if cfg.no_ctc_tgt else CtcHead(d, len(tgt_dict), tgt_dict.bos())
        return cls(cfg, encoder, decoder, ctc_src, ctc_tgt)

    def forward(self, src_tokens, src_lengths, prev_output_tokens, run_decoder: bool = True):
        """Returns the decoder output ``(B x I x V logits, extra)`` with ``extra["encoder_out"]`` set,
        so a criterion can read the CTC heads from the same forward pass.  With run_decoder=False
        (a criterion whose CE weight is 0) the decoder is skipped: ``(None, {"encoder_out": ...})``."""
        encoder_out = self.encoder(src_tokens=src_tokens, src_lengths=src_lengths)
        if not run_decoder:
            return None, {"encoder_out": encoder_out}
        logits, extra = self.decoder(prev_output_tokens=prev_output_tokens, encoder_out=encoder_out)
        extra["encoder_out"] = encoder_out
        return logits, extra

    def get_ctc_output(self, net_output_or_encoder_out, which: str = "tgt"):
        """CTC log-probabilities ``T' x B x V`` (float32) and lengths ``B`` of one head.

        Args:
            net_output_or_encoder_out: what :meth:`forward` returned, or an encoder-output dict.
            which: ``"src"`` (intermediate layer, source dictionary) or ``"tgt"`` (final layer).
        """
        encoder_out = net_output_or_encoder_out
        if isinstance(encoder_out, (tuple, list)):
            encoder_out = encoder_out[1]["encoder_out"]
        if which == "src":
            if self.ctc_src_head is None or not encoder_out.get("ctc_src_out"):
                raise ValueError(
                    "the model has no source CTC head (--ctc-src-layer 0): build it with --ctc-src-layer N > 0 "
                    "or set --ctc-src-weight 0"
                )
            lprobs = self.ctc_src_head(encoder_out["ctc_src_out"][0])
        elif which == "tgt":
            if self.ctc_tgt_head is None:
                raise ValueError(
                    "the model has no target CTC head (--no-ctc-tgt): build it without that flag "
                    "or set --ctc-tgt-weight 0"
                )
            lprobs = self.ctc_tgt_head(encoder_out["encoder_out"][0])
        else:
            raise ValueError(f"which must be 'src' or 'tgt', got {which!r}")
        return lprobs, encoder_out["encoder_lengths"][0]

    def max_positions(self):
        return (self.cfg.max_source_positions, self.cfg.max_target_positions)


# --- architectures: each sets what differs from the base on a (possibly partial) config -------------

_set_default = set_default


def _apply(cfg, values: Dict[str, object]):
    for name, value in values.items():
        _set_default(cfg, name, value)
    for f in fields(XattnConformerConfig):
        _set_default(cfg, f.name, f.default)


#: Architecture name -> the values it sets (anything unset keeps the dataclass default).
ARCHS: Dict[str, Dict[str, object]] = {
    # 12 enc / 6 dec, 8 heads, d 512, FFN 2048: 125M parameters with the paper's 8000-piece vocabulary.
    "xattn_conformer_base": {},
    # 12 / 6, 16 heads, d 1024, FFN 4096: 474M with 16000 pieces + 2 language tags.
    "xattn_conformer_small": dict(
        encoder_embed_dim=1024, encoder_ffn_embed_dim=4096, encoder_attention_heads=16,
        decoder_embed_dim=1024, decoder_ffn_embed_dim=4096, decoder_attention_heads=16,
    ),
    # 24 / 12, same widths: 878M; intermediate CTC on layer 16.
    "xattn_conformer_large": dict(
        encoder_layers=24, decoder_layers=12, ctc_src_layer=16,
        encoder_embed_dim=1024, encoder_ffn_embed_dim=4096, encoder_attention_heads=16,
        decoder_embed_dim=1024, decoder_ffn_embed_dim=4096, decoder_attention_heads=16,
    ),
    # What learns the synthetic espeak corpus on 2 CPU cores (docs/method.md section 8b: a 4.3M-parameter 6/2-layer
    # d-192 model did).  A Conformer block has ~2x the weights of a Transformer layer of the same width,
    # so d 144 / FFN 576 keeps the size (4.1M with 200 pieces, both CTC heads); intermediate CTC on layer 4.
    "xattn_conformer_tiny": dict(
        encoder_layers=6, decoder_layers=2, ctc_src_layer=4, conv_channels=256,
        encoder_embed_dim=144, encoder_ffn_embed_dim=576, encoder_attention_heads=4,
        decoder_embed_dim=144, decoder_ffn_embed_dim=576, decoder_attention_heads=4,
    ),
}


def _register_arch(arch_name: str, values: Dict[str, object]):
    def arch_fn(cfg):
        _apply(cfg, values)

    arch_fn.__name__ = arch_name
    arch_fn.__doc__ = f"{arch_name}: {values or 'the XattnConformerConfig defaults'}"
    return register_model_architecture("xattn_conformer", arch_name)(arch_fn)


for _name, _values in ARCHS.items():
    globals()[_name] = _register_arch(_name, _values)
