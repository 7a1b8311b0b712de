"""The hooks give us per-head weights of every layer and give the caller exactly what it asked for."""
from __future__ import annotations

import pytest
import torch
from fairseq.modules import MultiheadAttention
from torch import nn

from fairseq_xattn.generation import CrossAttentionCapture, cross_attention_modules

from .helpers import random_xattn_conformer


class _OneLayerDecoder(nn.Module):
    def __init__(self, mha):
        super().__init__()
        self.mha = mha

    def cross_attention_modules(self):
        return [self.mha]


def _cross_attention(heads=2, dim=8, kdim=6):
    torch.manual_seed(0)
    return MultiheadAttention(dim, heads, kdim=kdim, vdim=kdim, encoder_decoder_attention=True).eval()


def test_caller_gets_what_it_asked_for_and_we_get_per_head_weights():
    mha = _cross_attention()
    query, key = torch.randn(3, 2, 8), torch.randn(5, 2, 6)  # I x B x D, S x B x D
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    plain_avg = mha(query=query, key=key, value=key, key_padding_mask=padding, static_kv=True)
    plain_heads = mha(query=query, key=key, value=key, key_padding_mask=padding, static_kv=True, need_head_weights=True)
    with CrossAttentionCapture(_OneLayerDecoder(mha)) as capture:
        out, weights = mha(query=query, key=key, value=key, key_padding_mask=padding, static_kv=True)
        assert torch.equal(out, plain_avg[0]) and torch.equal(weights, plain_avg[1])  # head average, as asked
        captured = capture.pop()
        out, weights = mha(query, key, key, padding, None, False, True)  # positional, need_weights=False
        assert weights is None and torch.equal(out, plain_avg[0])
        assert torch.equal(capture.pop(), captured)
        _, weights = mha(query=query, key=key, value=key, key_padding_mask=padding, static_kv=True, need_head_weights=True)
        assert torch.equal(weights, plain_heads[1])
    assert captured.shape == (2, 1, 2, 3, 5)  # B x L x H x I x S
    assert torch.equal(captured[:, 0], plain_heads[1].transpose(0, 1))
    assert torch.all(captured[1, ..., 3:] == 0)  # padding frames get no attention
    torch.testing.assert_close(captured.sum(-1), torch.ones(2, 1, 2, 3))


def test_hooks_are_removed_on_exit():
    mha = _cross_attention()
    capture = CrossAttentionCapture(_OneLayerDecoder(mha))
    with capture:
        assert mha._forward_hooks and mha._forward_pre_hooks
    assert not mha._forward_hooks and not mha._forward_pre_hooks
    mha(query=torch.randn(1, 1, 8), key=torch.randn(4, 1, 6), value=torch.randn(4, 1, 6), static_kv=True)
    with pytest.raises(RuntimeError, match="not captured"):
        capture.pop()


def test_decoder_output_is_unchanged_by_capture(loaded, mixed_batch):
    _, task = loaded
    model = random_xattn_conformer(task)  # its decoder returns the stock head-averaged alignment attention
    net_input = mixed_batch["net_input"]
    encoder_out = model.encoder(src_tokens=net_input["src_tokens"], src_lengths=net_input["src_lengths"])
    prev = net_input["prev_output_tokens"]
    with torch.no_grad():
        logits, extra = model.decoder(prev, encoder_out=encoder_out)
        with CrossAttentionCapture(model.decoder) as capture:
            logits_c, extra_c = model.decoder(prev, encoder_out=encoder_out)
            weights = capture.pop()
    assert torch.equal(logits, logits_c)
    assert torch.equal(extra["attn"][0], extra_c["attn"][0])
    assert weights.shape[:3] == (prev.size(0), 3, 4) and weights.shape[3] == prev.size(1)
    # the stock alignment attention is our last layer averaged over heads
    torch.testing.assert_close(extra["attn"][0], weights[:, -1].mean(dim=1))


def test_decoder_without_cross_attention_is_refused(loaded):
    _, task = loaded
    model = random_xattn_conformer(task)
    for layer in model.decoder.layers:
        layer.encoder_attn = None
    with pytest.raises(TypeError, match="no encoder attention"):
        cross_attention_modules(model.decoder)
    with pytest.raises(TypeError, match="cross_attention_modules"):
        cross_attention_modules(nn.Linear(2, 2))
