"""Models: the ``xattn_conformer`` speech-to-text model and its building blocks (registered on import)."""
from .conformer_block import ConformerBlock, ConvolutionModule, FeedForwardModule, MaskedBatchNorm1d  # noqa: F401
from .conformer_encoder import ConformerEncoder  # noqa: F401
from .ctc_head import CtcHead  # noqa: F401
from .decoder import XattnTransformerDecoder  # noqa: F401
from .rel_pos_attention import RelPositionMultiHeadAttention, relative_positional_encoding, relative_shift  # noqa: F401
from .subsampler import Conv1dSubsampler, subsampled_lengths  # noqa: F401
from .xattn_conformer import ARCHS, XattnConformerConfig, XattnConformerModel, complete_config  # noqa: F401
