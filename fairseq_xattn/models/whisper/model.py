"""``whisper``: OpenAI's Whisper as a fairseq encoder-decoder model.

Encoder (:class:`WhisperAudioEncoder`, a ``FairseqEncoder``): log-mel ``B x T x n_mels`` ->
conv1 (kernel 3, padding 1) -> GELU -> conv2 (kernel 3, stride 2, padding 1) -> GELU -> + Whisper's
sinusoidal positions -> pre-LN Transformer blocks (fairseq's ``TransformerEncoderLayerBase``, GELU)
-> final LayerNorm.  Decoder (:class:`WhisperTextDecoder`, fairseq's ``TransformerDecoderBase``):
learned positions starting at 0, no embedding scaling, pre-LN blocks with GELU, final LayerNorm,
output projection tied to the token embedding; its ``layers[l].encoder_attn`` are stock fairseq
``MultiheadAttention`` modules, so our recorder hooks them and ``SequenceGenerator``'s incremental
decoding works unchanged.

**The 30 s window.**  Whisper always encodes 30 s: 3000 input frames, 1500 encoder frames, the
frames after the audio holding the log-mel of silence.  With ``pad_to_30s`` (the default,
``--no-pad-to-30s`` off) the encoder does exactly that: it appends, per utterance, frames of the
silence value (:func:`fairseq_xattn.data.whisper_features.silence_value` of the utterance's real
frames, or the ``padding_value`` given to :meth:`WhisperAudioEncoder.forward`) up to 3000 frames;
the decoder then attends all 1500 encoder frames, as Whisper's does, so ``encoder_padding_mask`` is
all False.  ``encoder_lengths`` reports the real-audio frames ``T' = ceil(T / 2)`` per utterance, so
recording and analysis crop the attention to the audio (the attention mass on the padding is the
rest of each row).

**Speed option** ``--no-pad-to-30s`` (``encoder.pad_to_30s = False``): the encoder runs on the real
frames only (``T' = ceil(T / 2)`` encoder frames, padding frames masked in self-attention and
cross-attention).  The convolutions still see the two silence frames after the audio, so the
convolution outputs equal Whisper's; only the self-attention no longer sees the 30 s of padding,
which changes the encoder states (Whisper was trained with the padding), hence the transcripts and
maps may change: measure before relying on it.

**Vocabulary.**  The target dictionary (:class:`.vocabulary.WhisperDictionary`) has index == Whisper
token id for the ``n_vocab`` Whisper tokens plus fairseq's pad symbol at index ``n_vocab`` (fairseq
needs pad != eos).  The token embedding has the ``n_vocab`` Whisper rows only; the output layer appends a
constant ``-inf`` logit for pad, so the softmax over Whisper's tokens is Whisper's own.
"""

from dataclasses import dataclass, field, fields
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from fairseq.dataclass import FairseqDataclass
from fairseq.models import (
    FairseqEncoder,
    FairseqEncoderDecoderModel,
    register_model,
    register_model_architecture,
)
from fairseq.models.transformer import TransformerConfig, TransformerDecoderBase
from fairseq.modules import (
    FairseqDropout,
    LayerNorm,
    MultiheadAttention,
    SinusoidalPositionalEmbedding,
)
from fairseq.modules.transformer_layer import TransformerEncoderLayerBase
from torch import Tensor, nn

from ..dataclass_config import complete_dataclass_config, set_default
from ...geometry import WHISPER_SUBSAMPLING
from ...errors import UserError
from ...data.whisper_features import DYNAMIC_RANGE, SILENCE_FLOOR
from ...geometry import encoder_length

#: Whisper's one stride-2 convolution: ``T' = ceil(T / 2)``.


class WhisperModelError(UserError, ValueError):
    """An input or configuration this Whisper model cannot run (one line, naming the culprit)."""


@dataclass
class WhisperConfig(FairseqDataclass):
    """Whisper's ModelDimensions (OpenAI's names) except ``n_vocab``, which is the dictionary's size
    minus fairseq's pad symbol.  Defaults are Whisper tiny."""

    n_mels: int = field(default=80, metadata={"help": "log-mel bins of the input (80; 128 for large-v3)"})
    n_audio_ctx: int = field(default=1500, metadata={"help": "encoder frames of the 30 s window (input frames / 2)"})
    n_audio_state: int = field(default=384, metadata={"help": "encoder width"})
    n_audio_head: int = field(default=6, metadata={"help": "encoder attention heads"})
    n_audio_layer: int = field(default=4, metadata={"help": "encoder blocks"})
    n_text_ctx: int = field(default=448, metadata={"help": "decoder positions (maximum tokens incl. the prompt)"})
    n_text_state: int = field(default=384, metadata={"help": "decoder width"})
    n_text_head: int = field(default=6, metadata={"help": "decoder self- and cross-attention heads"})
    n_text_layer: int = field(default=4, metadata={"help": "decoder blocks"})
    # Negative flag on purpose: fairseq turns a bool field defaulting to True into a store_false option.
    no_pad_to_30s: bool = field(
        default=False,
        metadata={"help": "speed option: run the encoder on the real frames only (T' = ceil(T/2)) instead of "
                          "Whisper's 30 s window (exact Whisper); changes the encoder states"},
    )
    alignment_heads: Optional[str] = field(
        default=None,
        metadata={"help": "Whisper's alignment heads as 'layer:head,layer:head' (0-based); set by xattn whisper-import"},
    )
    dropout: float = field(default=0.0, metadata={"help": "dropout probability (Whisper: 0)"})
    attention_dropout: float = field(default=0.0, metadata={"help": "dropout on attention weights"})
    activation_dropout: float = field(default=0.0, metadata={"help": "dropout after the feed-forward GELU"})


#: Fields of :class:`WhisperConfig` that are Whisper's ModelDimensions.
DIMS_FIELDS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
               "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer")


def complete_config(cfg) -> WhisperConfig:
    """Every field of ``cfg``, missing ones at their defaults (:func:`complete_dataclass_config`)."""
    return complete_dataclass_config(WhisperConfig, cfg)


def format_alignment_heads(heads: Optional[List[Tuple[int, int]]]) -> Optional[str]:
    """``[(layer, head), ...]`` -> ``"layer:head,..."`` (None stays None)."""
    if heads is None:
        return None
    return ",".join(f"{int(layer)}:{int(head)}" for layer, head in heads)


def parse_alignment_heads(text: Optional[str], n_layers: int, n_heads: int) -> List[Tuple[int, int]]:
    """``"layer:head,..."`` -> 0-based pairs, each checked against the decoder's size."""
    if not text:
        return []
    heads = []
    for item in str(text).split(","):
        try:
            layer, head = (int(v) for v in item.split(":"))
        except ValueError:
            raise WhisperModelError(f"alignment_heads {text!r}: expected 'layer:head,layer:head' (0-based)") from None
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise WhisperModelError(f"alignment_heads {text!r}: ({layer}, {head}) is outside the decoder's "
                                    f"{n_layers} layers x {n_heads} heads")
        heads.append((layer, head))
    return heads


def _transformer_config(cfg: WhisperConfig) -> TransformerConfig:
    """fairseq's nested TransformerConfig for Whisper's blocks (pre-LN, GELU, FFN 4 x width)."""
    tc = TransformerConfig()
    tc.dropout = cfg.dropout
    tc.attention_dropout = cfg.attention_dropout
    tc.activation_dropout = cfg.activation_dropout
    tc.activation_fn = "gelu"  # fairseq's gelu is the exact erf GELU Whisper uses (not gelu_accurate)
    tc.encoder.embed_dim = cfg.n_audio_state
    tc.encoder.ffn_embed_dim = 4 * cfg.n_audio_state
    tc.encoder.attention_heads = cfg.n_audio_head
    tc.encoder.layers = cfg.n_audio_layer
    tc.encoder.normalize_before = True
    tc.decoder.embed_dim = cfg.n_text_state
    tc.decoder.input_dim = cfg.n_text_state
    tc.decoder.output_dim = cfg.n_text_state
    tc.decoder.ffn_embed_dim = 4 * cfg.n_text_state
    tc.decoder.attention_heads = cfg.n_text_head
    tc.decoder.layers = cfg.n_text_layer
    tc.decoder.normalize_before = True
    tc.max_target_positions = cfg.n_text_ctx
    tc.no_scale_embedding = True
    tc.share_decoder_input_output_embed = True
    # Our positions (WhisperTextPositions) replace fairseq's, which offset positions by padding_idx + 1.
    tc.no_token_positional_embeddings = True
    return tc


# --- encoder ----------------------------------------------------------------------------------------

def whisper_sinusoids(length: int, width: int) -> Tensor:
    """Whisper's encoder positions ``length x width``: ``[sin(t w_i), cos(t w_i)]`` with
    ``w_i = 10000^(-i / (width/2 - 1))``, which is fairseq's sinusoidal table without a padding
    offset (position 0 is the first frame)."""
    return SinusoidalPositionalEmbedding.get_embedding(length, width)


def silence_values(src_tokens: Tensor, src_lengths: Tensor) -> Tensor:
    """Per-utterance log-mel of the zero padding after the audio (``B``), from the real frames of
    ``src_tokens`` (``B x T x n_mels``): ``max(SILENCE_FLOOR, max - DYNAMIC_RANGE)`` as in
    :func:`fairseq_xattn.data.whisper_features.silence_value`."""
    real = torch.arange(src_tokens.size(1), device=src_tokens.device)[None, :] < src_lengths[:, None]
    peak = src_tokens.masked_fill(~real[..., None], float("-inf")).amax(dim=(1, 2))
    return (peak - DYNAMIC_RANGE).clamp_min(SILENCE_FLOOR)


class WhisperAudioEncoder(FairseqEncoder):
    """``B x T x n_mels`` log-mel (+ lengths) -> fairseq's encoder-output dict:
    ``encoder_out`` ``[T' x B x D]`` (T' = n_audio_ctx with the 30 s window, else max ceil(T/2)),
    ``encoder_padding_mask`` ``[B x T']`` (all False with the 30 s window), ``encoder_lengths``
    ``[B]`` (real-audio encoder frames ceil(T/2)), ``src_lengths`` ``[B]``."""

    def __init__(self, cfg: WhisperConfig):
        super().__init__(None)
        width = cfg.n_audio_state
        self.n_mels = cfg.n_mels
        self.n_input_frames = WHISPER_SUBSAMPLING * cfg.n_audio_ctx  # 3000 = 30 s
        self.pad_to_30s = not cfg.no_pad_to_30s
        #: time subsampling s (T' = ceil(T / s)), read by the recorder and the explainer
        self.subsampling_factor = WHISPER_SUBSAMPLING
        self.conv1 = nn.Conv1d(cfg.n_mels, width, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(width, width, kernel_size=3, stride=2, padding=1)
        # A checkpoint buffer (not recomputed): imports copy the source model's own table.
        self.register_buffer("embed_positions", whisper_sinusoids(cfg.n_audio_ctx, width))
        self.dropout_module = FairseqDropout(cfg.dropout, module_name=self.__class__.__name__)
        tc = _transformer_config(cfg)
        self.layers = nn.ModuleList([TransformerEncoderLayerBase(tc) for _ in range(cfg.n_audio_layer)])
        self.layer_norm = LayerNorm(width)

    def forward(self, src_tokens: Tensor, src_lengths: Tensor, padding_value: Optional[Tensor] = None,
                return_all_hiddens: bool = False) -> Dict[str, List[Tensor]]:
        """Args:
            src_tokens: ``B x T x n_mels`` Whisper log-mel (frames after ``src_lengths`` ignored).
            src_lengths: ``B`` real frames per utterance (``T <= 3000``).
            padding_value: ``B`` log-mel of the silence appended after each utterance; default
                :func:`silence_values` of the input.  Pass the unperturbed utterance's value when
                ``src_tokens`` is a perturbed copy (a masked maximum would otherwise move the padding).
        """
        batch, n_frames, n_mels = src_tokens.shape
        if n_mels != self.n_mels:
            raise WhisperModelError(f"the Whisper encoder expects {self.n_mels} log-mel bins, got {n_mels} "
                                    f"(input_feat_per_channel / --features of the data)")
        if n_frames > self.n_input_frames:
            raise WhisperModelError(f"an input of {n_frames} frames is longer than Whisper's 30 s window "
                                    f"({self.n_input_frames} frames); split the audio")
        src_lengths = src_lengths.to(src_tokens.device)
        if padding_value is None:
            padding_value = silence_values(src_tokens, src_lengths)
        # The convolution outputs for the real frames read the input up to two frames past the audio:
        # give them the silence Whisper has there (capped at the window, where conv padding is zeros).
        n_in = self.input_frames_per_pass(n_frames)
        x = F.pad(src_tokens, (0, 0, 0, n_in - n_frames))
        real = torch.arange(n_in, device=x.device)[None, :] < src_lengths[:, None]
        x = torch.where(real[..., None], x, padding_value.to(x)[:, None, None])
        x = F.gelu(self.conv1(x.transpose(1, 2)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # B x ceil(n_in / 2) x D

        encoder_lengths = (src_lengths + WHISPER_SUBSAMPLING - 1) // WHISPER_SUBSAMPLING
        if self.pad_to_30s:
            padding_mask = torch.zeros(batch, x.size(1), dtype=torch.bool, device=x.device)
        else:
            x = x[:, : encoder_length(n_frames, WHISPER_SUBSAMPLING)]
            padding_mask = torch.arange(x.size(1), device=x.device)[None, :] >= encoder_lengths[:, None]
        x = self.dropout_module(x + self.embed_positions[: x.size(1)].to(x))
        x = x.transpose(0, 1)  # T' x B x D
        attention_mask = padding_mask if padding_mask.any() else None
        states = []
        for layer in self.layers:
            x = layer(x, encoder_padding_mask=attention_mask)
            if return_all_hiddens:
                states.append(x)
        x = self.layer_norm(x)
        return {
            "encoder_out": [x],
            "encoder_padding_mask": [padding_mask],
            "encoder_embedding": [],
            "encoder_states": states,
            "encoder_lengths": [encoder_lengths],
            "src_tokens": [],
            "src_lengths": [src_lengths],
        }

    def input_fill_value(self, features: Tensor) -> float:
        """The input value that holds no audio for the utterance ``features`` (``T x n_mels``, real
        frames): its log-mel of digital silence, the value of the padding after it.  Occluded input
        cells take it (explanations), and passing it as ``padding_value`` keeps a perturbed copy's
        padding that of the unperturbed utterance."""
        lengths = torch.tensor([features.shape[0]], device=features.device)
        return float(silence_values(features.unsqueeze(0), lengths)[0])

    def input_frames_per_pass(self, n_frames: int) -> int:
        """Input frames the encoder actually processes for ``n_frames`` of audio: the 30 s window
        (3000), or with ``--no-pad-to-30s`` the audio and the two silence frames after it."""
        return self.n_input_frames if self.pad_to_30s else min(int(n_frames) + 2, self.n_input_frames)

    def reorder_encoder_out(self, encoder_out: Dict[str, List[Tensor]], new_order: Tensor):
        """Select/reorder batch entries (beam search) in every tensor of the dict."""
        time_major = {"encoder_out", "encoder_states"}
        out: Dict[str, List[Tensor]] = {}
        for key, values in encoder_out.items():
            dim = 1 if key in time_major else 0
            out[key] = [v.index_select(dim, new_order) for v in values]
        return out

    def max_positions(self):
        return self.n_input_frames


# --- decoder ----------------------------------------------------------------------------------------

class WhisperTokenEmbedding(nn.Embedding):
    """Whisper's ``n_vocab x D`` token embedding, looked up with fairseq token ids.

    ``padding_idx`` is fairseq's extra pad symbol (index ``n_vocab``), which has no row: the decoder
    reads it to mask pad positions in self-attention, and their lookups return row 0 (any row: a pad
    position's output is never used and its key is masked).
    """

    def __init__(self, n_vocab: int, width: int, pad_index: int):
        super().__init__(n_vocab, width)
        self.padding_idx = pad_index

    def forward(self, tokens: Tensor) -> Tensor:
        return F.embedding(tokens.masked_fill(tokens.eq(self.padding_idx), 0), self.weight)


class WhisperTextPositions(nn.Module):
    """Whisper's learned decoder positions (``n_text_ctx x D``); token ``i`` gets row ``i``.

    Called like fairseq's PositionalEmbedding: ``B x S`` tokens -> ``B x S x D``; in incremental
    decoding (``S`` = tokens so far) the last position only, ``B x 1 x D``.
    """

    def __init__(self, n_ctx: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_ctx, width).normal_(std=0.01))
        self.max_positions = n_ctx

    def forward(self, tokens: Tensor, incremental_state=None, positions=None) -> Tensor:
        batch, length = tokens.shape
        if length > self.max_positions:
            raise WhisperModelError(f"{length} decoder tokens exceed Whisper's {self.max_positions} positions")
        if incremental_state is not None:
            return self.weight[length - 1: length].unsqueeze(0).expand(batch, 1, -1)
        return self.weight[:length].unsqueeze(0).expand(batch, length, -1)


class WhisperTextDecoder(TransformerDecoderBase):
    """fairseq's Transformer decoder with Whisper's positions, embedding and output layer.

    ``B x I`` tokens (+ encoder output) -> ``B x I x (n_vocab + 1)`` logits, the last (pad) column
    ``-inf``.  Key projections: Whisper's have no bias, fairseq's ``k_proj`` has one, loaded with
    zeros; that is exact anyway, since a key bias ``b`` adds ``q . b`` to every score of a query,
    which the softmax over keys cancels.
    """

    def __init__(self, cfg: WhisperConfig, dictionary, embed_tokens: WhisperTokenEmbedding):
        super().__init__(_transformer_config(cfg), dictionary, embed_tokens)
        self.embed_positions = WhisperTextPositions(cfg.n_text_ctx, cfg.n_text_state)
        # Whisper's alignment heads (word timestamps); not fairseq's ``alignment_heads`` forward
        # argument, which counts heads to average for its own alignment output.
        self.alignment_heads: List[Tuple[int, int]] = parse_alignment_heads(
            cfg.alignment_heads, cfg.n_text_layer, cfg.n_text_head)

    def output_layer(self, features: Tensor) -> Tensor:
        logits = self.output_projection(features)  # tied to the n_vocab embedding rows
        pad_column = logits.new_full(logits.shape[:-1] + (1,), float("-inf"))
        return torch.cat([logits, pad_column], dim=-1)

    def cross_attention_modules(self) -> List[MultiheadAttention]:
        """The L per-layer encoder-decoder attention modules, first layer first."""
        return [layer.encoder_attn for layer in self.layers]


# --- model ------------------------------------------------------------------------------------------

def check_whisper_dictionary(dictionary) -> int:
    """``n_vocab`` of a Whisper target dictionary: Whisper's tokens at their ids, then fairseq's pad
    as the last symbol (vocabulary.py)."""
    n_vocab = len(dictionary) - 1
    if dictionary.pad() != n_vocab:
        raise WhisperModelError(
            f"the target dictionary is not a Whisper dictionary: pad is index {dictionary.pad()}, expected the "
            f"last index {n_vocab} (import the model with xattn whisper-import and use its dictionary)")
    return n_vocab


@register_model("whisper", dataclass=WhisperConfig)
class WhisperModel(FairseqEncoderDecoderModel):
    """Whisper: ``B x T x n_mels`` log-mel -> encoder -> decoder ``B x I x (n_vocab + 1)`` logits."""

    def __init__(self, cfg: WhisperConfig, encoder: WhisperAudioEncoder, decoder: WhisperTextDecoder):
        super().__init__(encoder, decoder)
        self.cfg = cfg

    @classmethod
    def build_model(cls, cfg, task):
        """Reads only ``task.target_dictionary`` (a Whisper dictionary)."""
        return cls.from_config(complete_config(cfg), task.target_dictionary)

    @classmethod
    def from_config(cls, cfg: WhisperConfig, dictionary) -> "WhisperModel":
        """An untrained model of ``cfg`` over a Whisper ``dictionary``."""
        n_vocab = check_whisper_dictionary(dictionary)
        embed_tokens = WhisperTokenEmbedding(n_vocab, cfg.n_text_state, dictionary.pad())
        return cls(cfg, WhisperAudioEncoder(cfg), WhisperTextDecoder(cfg, dictionary, embed_tokens))

    def forward(self, src_tokens, src_lengths, prev_output_tokens, padding_value: Optional[Tensor] = None):
        """``(B x I x V logits, extra)`` with ``extra["encoder_out"]`` set."""
        encoder_out = self.encoder(src_tokens=src_tokens, src_lengths=src_lengths, padding_value=padding_value)
        logits, extra = self.decoder(prev_output_tokens=prev_output_tokens, encoder_out=encoder_out)
        extra["encoder_out"] = encoder_out
        return logits, extra

    @property
    def alignment_heads(self) -> List[Tuple[int, int]]:
        """Whisper's alignment heads (0-based ``(layer, head)``; empty when the checkpoint had none)."""
        return self.decoder.alignment_heads

    @property
    def subsampling(self) -> int:
        return self.encoder.subsampling_factor

    def cross_attention_modules(self) -> List[MultiheadAttention]:
        return self.decoder.cross_attention_modules()

    def max_positions(self):
        return (self.encoder.max_positions(), self.decoder.max_positions())


# --- architectures: Whisper's published sizes ------------------------------------------------------

def _size(width: int, heads: int, layers: int, n_mels: int = 80) -> Dict[str, int]:
    return dict(n_mels=n_mels, n_audio_state=width, n_audio_head=heads, n_audio_layer=layers,
                n_text_state=width, n_text_head=heads, n_text_layer=layers)


#: Architecture name -> dims (multilingual vs English-only differs only in the dictionary's size).
#: whisper_large is large-v3 (128 mel bins); large-v1/v2 checkpoints import with n_mels 80.
ARCHS: Dict[str, Dict[str, int]] = {
    "whisper_tiny": _size(384, 6, 4),
    "whisper_base": _size(512, 8, 6),
    "whisper_small": _size(768, 12, 12),
    "whisper_medium": _size(1024, 16, 24),
    "whisper_large": _size(1280, 20, 32, n_mels=128),
}


def arch_for_dims(dims: Dict[str, int]) -> str:
    """The registered arch whose encoder size matches ``dims`` (``"whisper"`` when none does, e.g.
    large-v3-turbo's 4-layer decoder; the checkpoint's config carries every dimension anyway)."""
    for name, size in ARCHS.items():
        if all(int(dims[k]) == v for k, v in size.items() if k != "n_mels"):
            return name
    return "whisper"


def _register_arch(arch_name: str, values: Dict[str, int]):
    def arch_fn(cfg):
        for name, value in values.items():
            set_default(cfg, name, value)
        for f in fields(WhisperConfig):
            set_default(cfg, f.name, f.default)

    arch_fn.__name__ = arch_name
    arch_fn.__doc__ = f"{arch_name}: {values}"
    return register_model_architecture("whisper", arch_name)(arch_fn)


for _name, _values in ARCHS.items():
    globals()[_name] = _register_arch(_name, _values)
