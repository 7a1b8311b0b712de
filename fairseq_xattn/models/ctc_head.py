"""CTC projection head: encoder states -> log-probabilities over a dictionary (blank = its bos)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class CtcHead(nn.Module):
    """Linear(D, V) then log-softmax in float32: ``T' x B x D`` -> ``T' x B x V``.

    The blank symbol is the dictionary's ``bos()`` (index 0 in a fairseq Dictionary, as in fairseq's
    own ``ctc`` criterion): BOS never occurs inside a target, so it is free to mean "no token".
    """

    def __init__(self, embed_dim: int, vocab_size: int, blank_index: int):
        super().__init__()
        self.proj = nn.Linear(embed_dim, vocab_size)
        self.blank_index = blank_index

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.proj(states).float(), dim=-1)
