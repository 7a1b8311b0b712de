"""Capture the per-head cross-attention weights of every decoder layer while the decoder runs.

Stock fairseq asks ``MultiheadAttention`` for weights only at the alignment layer, averaged over
heads, and the speech decoders then drop them.  We do not patch fairseq: while a
:class:`CrossAttentionCapture` is active, hooks on each layer's ``encoder_attn`` force
``need_head_weights=True`` for that call, keep the ``H x B x I x S`` weights, and hand the caller
exactly what it asked for (per-head, head-averaged, or ``None``), so the decoder computes the same
numbers with and without recording (the weights are a by-product of the softmax it runs anyway).
"""
from __future__ import annotations

import inspect
from typing import List, Optional

import torch
from fairseq.modules import MultiheadAttention
from torch import Tensor, nn

from .cross_attention_modules import cross_attention_modules

# MultiheadAttention.forward parameters in order (without self), to read positional calls.
_MHA_PARAMS = list(inspect.signature(MultiheadAttention.forward).parameters)[1:]


class CrossAttentionCapture:
    """Context manager that records each cross-attention call of one decoder.

    After a decoder forward inside the context, :meth:`pop` returns ``B x L x H x I x S`` (batch,
    layers, heads, query positions of that call, encoder frames incl. padding) and clears the buffer.
    """

    def __init__(self, decoder: nn.Module):
        self.modules: List[MultiheadAttention] = cross_attention_modules(decoder)
        self.num_layers = len(self.modules)
        self.num_heads = self.modules[0].num_heads
        self._weights: List[Optional[Tensor]] = [None] * self.num_layers
        self._asked: List[tuple] = [(True, False)] * self.num_layers
        self._handles = []

    # -- hooks -----------------------------------------------------------------------------------
    def _pre_hook(self, layer: int):
        def hook(module, args, kwargs):
            if args:  # read a positional call by name
                kwargs = {**dict(zip(_MHA_PARAMS, args)), **kwargs}
            self._asked[layer] = (kwargs.get("need_weights", True), kwargs.get("need_head_weights", False))
            kwargs["need_weights"] = True
            kwargs["need_head_weights"] = True
            return (), kwargs
        return hook

    def _post_hook(self, layer: int):
        def hook(module, args, kwargs, output):
            attn, weights = output  # weights: H x B x I x S
            self._weights[layer] = weights
            need_weights, need_head_weights = self._asked[layer]
            if need_head_weights:
                return attn, weights
            if need_weights:
                return attn, weights.mean(dim=0)  # what MultiheadAttention returns for this request
            return attn, None
        return hook

    def __enter__(self) -> "CrossAttentionCapture":
        for layer, module in enumerate(self.modules):
            self._handles.append(module.register_forward_pre_hook(self._pre_hook(layer), with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._post_hook(layer), with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()

    # -- results ---------------------------------------------------------------------------------
    def clear(self) -> None:
        self._weights = [None] * self.num_layers

    def pop(self) -> Tensor:
        """Weights of the last decoder call: ``B x L x H x I x S``."""
        missing = [i for i, w in enumerate(self._weights) if w is None]
        if missing:
            raise RuntimeError(
                f"cross-attention of decoder layers {missing} was not captured: the decoder did not "
                "call them (is the capture active around the decoder forward?)"
            )
        stacked = torch.stack(self._weights, dim=0)  # L x H x B x I x S
        self.clear()
        return stacked.permute(2, 0, 1, 3, 4)
