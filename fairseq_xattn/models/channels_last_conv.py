"""1D convolution over time on channels-last frames (``B x T x C`` in and out).

Same parameters as ``nn.Conv1d`` (``C_out x C_in/groups x K``), computed as a 2D convolution on the
``B x C x 1 x T`` channels-last view of the frames.  That view needs no copy, and on CPU oneDNN's
channels-last kernels are far faster than its 1D path: measured here (1 thread) for the depthwise
kernel-31 convolution of 64 x 103 frames x 144 channels, 64 ms -> 1.9 ms forward and 146 ms ->
40 ms forward + backward; the first subsampling convolution 73 ms -> 32 ms.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ChannelsLastConv1d(nn.Conv1d):
    """``nn.Conv1d`` applied to ``B x T x C_in`` frames, returning ``B x T' x C_out``."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = frames.transpose(1, 2).unsqueeze(2).contiguous(memory_format=torch.channels_last)  # B x C x 1 x T
        y = F.conv2d(
            x,
            self.weight.unsqueeze(2),
            self.bias,
            stride=(1, self.stride[0]),
            padding=(0, self.padding[0]),
            dilation=(1, self.dilation[0]),
            groups=self.groups,
        )
        return y.squeeze(2).transpose(1, 2)
