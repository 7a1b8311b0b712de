"""Relative-position self-attention against a direct, loop-based computation of its formula."""
import math

import torch

from fairseq_xattn.models import RelPositionMultiHeadAttention, relative_positional_encoding, relative_shift


def test_relative_encoding_rows_are_positions_t_minus_1_down_to_minus_t_plus_1():
    enc = relative_positional_encoding(5, 8)
    assert enc.shape == (9, 8)
    r, i = -2, 1  # row of relative position -2 is k = T - 1 - r = 6; feature pair i uses frequency 10000^(-2i/8)
    freq = 10000 ** (-2 * i / 8)
    torch.testing.assert_close(enc[6, 2 * i], torch.tensor(math.sin(r * freq)))
    torch.testing.assert_close(enc[6, 2 * i + 1], torch.tensor(math.cos(r * freq)))
    torch.testing.assert_close(enc[4], torch.tensor([0.0, 1.0] * 4))  # position 0


def test_relative_shift_selects_the_score_of_position_i_minus_j():
    t = 6
    scores = torch.randn(2, 3, t, 2 * t - 1)
    shifted = relative_shift(scores)
    for i in range(t):
        for j in range(t):
            assert torch.equal(shifted[:, :, i, j], scores[:, :, i, t - 1 - (i - j)])


def naive_attention(m: RelPositionMultiHeadAttention, x, padding_mask):
    """score(i, j) = [(q_i + u) . k_j + (q_i + v) . W_pos p(i - j)] / sqrt(d_k), loops over i, j."""
    b, t, d = x.shape
    h, dk = m.num_heads, m.head_dim
    q = m.q_proj(x).view(b, t, h, dk)
    k = m.k_proj(x).view(b, t, h, dk)
    v = m.v_proj(x).view(b, t, h, dk)
    out = torch.zeros(b, t, h, dk)
    for bi in range(b):
        for hi in range(h):
            for i in range(t):
                scores = torch.full((t,), float("-inf"))
                for j in range(t):
                    if padding_mask[bi, j]:
                        continue
                    p = m.linear_pos(relative_positional_encoding_single(i - j, d)).view(h, dk)[hi]
                    scores[j] = ((q[bi, i, hi] + m.pos_bias_u[hi]) @ k[bi, j, hi]
                                 + (q[bi, i, hi] + m.pos_bias_v[hi]) @ p) / math.sqrt(dk)
                out[bi, i, hi] = torch.softmax(scores, 0) @ v[bi, :, hi]
    return m.out_proj(out.reshape(b, t, d))


def relative_positional_encoding_single(r: int, d: int) -> torch.Tensor:
    freqs = torch.tensor([10000 ** (-2 * i / d) for i in range(d // 2)])
    return torch.stack([torch.sin(r * freqs), torch.cos(r * freqs)], -1).flatten()


def test_fused_attention_equals_the_formula_with_masked_keys():
    torch.manual_seed(0)
    m = RelPositionMultiHeadAttention(embed_dim=8, num_heads=2).eval()
    x = torch.randn(2, 5, 8)
    padding_mask = torch.tensor([[False] * 5, [False, False, False, True, True]])
    with torch.no_grad():
        fused = m(x, relative_positional_encoding(5, 8), padding_mask)
        expected = naive_attention(m, x, padding_mask)
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)


def test_training_path_with_attention_dropout_is_the_same_maths_as_the_fused_path():
    torch.manual_seed(0)
    m = RelPositionMultiHeadAttention(embed_dim=8, num_heads=2, dropout=1e-9)  # drops nothing in practice
    x = torch.randn(2, 6, 8)
    padding_mask = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    pos = relative_positional_encoding(6, 8)
    with torch.no_grad():
        explicit = m.train()(x, pos, padding_mask)
        fused = m.eval()(x, pos, padding_mask)
        expected = naive_attention(m, x, padding_mask)
    torch.testing.assert_close(explicit, fused, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(explicit, expected, rtol=1e-5, atol=1e-5)
