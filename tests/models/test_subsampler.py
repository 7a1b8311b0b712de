"""The convolutional front end: T' = ceil(T / 4), and no padding leaks into valid frames."""
import math

import torch

from fairseq_xattn.models import Conv1dSubsampler, subsampled_lengths


def test_subsampled_lengths_are_ceil_t_over_4_and_match_the_convolutions():
    torch.manual_seed(0)
    sub = Conv1dSubsampler(in_channels=6, mid_channels=8, out_channels=4, kernel_size=5)
    for t in range(1, 40):
        assert int(subsampled_lengths(torch.tensor([t]))) == math.ceil(t / 4)
        out, lengths = sub(torch.randn(1, t, 6), torch.tensor([t]))
        assert out.shape == (1, math.ceil(t / 4), 4)
        assert int(lengths) == out.size(1)


def test_garbage_in_padded_frames_does_not_change_valid_outputs():
    torch.manual_seed(0)
    sub = Conv1dSubsampler(in_channels=6, mid_channels=8, out_channels=4, kernel_size=5)
    x = torch.randn(1, 23, 6)
    alone, n_alone = sub(x, torch.tensor([23]))
    padded = torch.cat([x, 100 * torch.randn(1, 17, 6)], dim=1)  # 40 frames, 17 of them garbage
    batched, n_batched = sub(padded, torch.tensor([23]))
    assert int(n_batched) == int(n_alone) == 6
    torch.testing.assert_close(batched[:, :6], alone, rtol=0, atol=1e-6)
    # Without the zeroing the last valid frames would read the garbage (sanity of the test itself).
    raw = torch.nn.functional.glu(sub.convs[0](padded), dim=-1)
    clean = torch.nn.functional.glu(sub.convs[0](x), dim=-1)
    assert (raw[:, 11] - clean[:, 11]).abs().max() > 1e-3


def test_channels_last_convolution_equals_conv1d_with_the_same_weights():
    from fairseq_xattn.models.channels_last_conv import ChannelsLastConv1d

    torch.manual_seed(0)
    for kwargs in (dict(stride=2, padding=2), dict(padding=3, groups=6)):
        conv = ChannelsLastConv1d(6, 12, 7 if "groups" in kwargs else 5, **kwargs)
        plain = torch.nn.Conv1d(6, 12, conv.kernel_size[0], **kwargs)
        plain.load_state_dict(conv.state_dict())
        x = torch.randn(3, 17, 6, requires_grad=True)
        out = conv(x)
        expected = plain(x.transpose(1, 2)).transpose(1, 2)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        grad = torch.randn_like(out)
        (g1,) = torch.autograd.grad(out, x, grad)
        (g2,) = torch.autograd.grad(expected, x, grad)
        torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-5)
