"""Hand-built models with a known answer, implementing the forced-decoding adapter protocol.

:class:`RegionOracle`: its output depends only on the cells of a known ``region`` (``T x F`` bool) of
the input; the "encoder" is the identity (``T' = T``, ``D = F``), so zeroing encoder frame t zeroes
input row t.  Logits of token i are ``scale * s * A[i]`` with ``s`` the mean of the region's cells.
"""
from __future__ import annotations

import torch


class RegionOracle:
    def __init__(self, region: torch.Tensor, vocab: int = 6, n_tokens: int = 3, scale: float = 4.0, seed: int = 0,
                 device: str = "cpu"):
        self.region = region.bool().to(device)
        g = torch.Generator().manual_seed(seed)
        self.A = torch.randn(n_tokens, vocab, generator=g).to(device)
        self.scale = scale
        self.calls = []  # batch sizes seen (for tests of batching)

    # -- protocol -------------------------------------------------------------------------------
    def encode(self, features, lengths):
        return features  # B x T x F

    def n_encoder_frames(self, encoded):
        return encoded.shape[1]

    def _logprobs(self, h):  # B x T x F -> B x I x V
        s = (h * self.region).sum((1, 2)) / self.region.sum()
        logits = self.scale * s[:, None, None] * self.A[None]
        return torch.log_softmax(logits, -1)

    def decode_logprobs(self, encoded, prev_output_tokens):
        return self._logprobs(encoded)

    def logprobs_for_inputs(self, features, lengths, prev_output_tokens):
        self.calls.append(features.shape[0])
        return self._logprobs(features)

    def prepare_frame_zeroing(self, encoded):
        return encoded

    def logprobs_with_frames_zeroed(self, state, zeroed, prev_output_tokens):
        self.calls.append(zeroed.shape[0])
        return self._logprobs(state * (~zeroed)[:, :, None])
