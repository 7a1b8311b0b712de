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
    raw = torch.nn.functional.glu(sub.convs[0](padded.transpose(1, 2)), dim=1)
    clean = torch.nn.functional.glu(sub.convs[0](x.transpose(1, 2)), dim=1)
    assert (raw[..., 11] - clean[..., 11]).abs().max() > 1e-3
