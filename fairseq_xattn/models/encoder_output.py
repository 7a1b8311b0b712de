"""The encoder-output contract our recorder and explainer read (fairseq's dict plus ``encoder_lengths``)."""
from __future__ import annotations

from typing import Dict, List

import torch
from torch import Tensor


def encoder_output_lengths(encoder_out: Dict[str, List[Tensor]]) -> Tensor:
    """Encoder frames T' of real input per utterance (``B``) of a fairseq encoder-output dict.

    Our encoders say it (``encoder_lengths``: Whisper's covers the real audio of a 30-second window);
    stock fairseq encoders give it through the padding mask (``B x T'``, True at padding); without
    either, every state counts.
    """
    lengths = encoder_out.get("encoder_lengths") or []
    if len(lengths) > 0 and lengths[0] is not None:
        return lengths[0].long()
    states = encoder_out["encoder_out"][0]  # T' x B x D
    masks = encoder_out.get("encoder_padding_mask") or []
    if len(masks) > 0 and masks[0] is not None and masks[0].numel() > 0:
        return (~masks[0].bool()).sum(dim=1)
    return torch.full((states.size(1),), states.size(0), dtype=torch.long, device=states.device)
