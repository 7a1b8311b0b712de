"""Models (registered on import): ``xattn_conformer`` and its building blocks, and ``whisper``
(:mod:`.whisper`: OpenAI Whisper in fairseq, imported from OpenAI, Hugging Face or CTranslate2 checkpoints)."""
from .conformer_block import ConformerBlock, ConvolutionModule, FeedForwardModule, MaskedBatchNorm1d  # noqa: F401
from .conformer_encoder import ConformerEncoder  # noqa: F401
from .ctc_head import CtcHead  # noqa: F401
from .decoder import XattnTransformerDecoder  # noqa: F401
from .rel_pos_attention import RelPositionMultiHeadAttention, relative_positional_encoding, relative_shift  # noqa: F401
from .subsampler import Conv1dSubsampler, subsampled_lengths  # noqa: F401
from .xattn_conformer import ARCHS, XattnConformerConfig, XattnConformerModel, complete_config  # noqa: F401
from . import whisper  # noqa: F401,E402  (registers the whisper model and its archs)
