"""Short+long-term attention (Zheng et al., "Pluralistic Image Completion", 2019), as LaFIn uses it.

Short-term: self-attention over the decoder features. Long-term: the same attention map copies
encoder features from the known region into the hole, gated by the hole mask; a residual block
then fuses both streams.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FusionResBlock(nn.Module):
    """Pre-activation residual block ``2C -> C`` that fuses the two attention streams.

    The original wraps these convolutions in spectral norm; ``lafin.original_release`` folds the
    normalisation into the plain weights when it imports an original checkpoint.
    """

    def __init__(self, in_channels: int, out_channels: int, separable: bool = False) -> None:
        super().__init__()
        if separable:
            self.conv1: nn.Module = SeparableConv2d(in_channels, out_channels, 3)
            self.conv2: nn.Module = SeparableConv2d(out_channels, out_channels, 3)
        else:
            self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bypass = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.leaky_relu(x, 0.01))
        y = self.conv2(F.leaky_relu(y, 0.01))
        return y + self.bypass(x)


class ShortLongAttention(nn.Module):
    """Self-attention with an optional long-range copy of encoder features into the hole.

    Args:
        channels: C, channels of the feature map it attends over.
        separable: use depthwise-separable convolutions in the fusion block.
    """

    def __init__(self, channels: int, separable: bool = False) -> None:
        super().__init__()
        self.query_conv = nn.Conv2d(channels, channels // 4, 1)
        # Both gates start at 0 so that a fresh layer is the identity (as in the original).
        self.gamma = nn.Parameter(torch.zeros(1))
        self.alpha = nn.Parameter(torch.zeros(1))
        self.fuse = FusionResBlock(2 * channels, channels, separable=separable)

    def forward(
        self,
        x: torch.Tensor,
        encoder_features: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            x: (B, C, H, W) features.
            encoder_features: (B, C, H, W) encoder features at the same scale, or None for
                self-attention only (the discriminator's use).
            mask: (B, 1, H, W) hole mask at this scale, 1 = hole; required with encoder_features.

        Returns:
            (B, C, H, W) features.
        """
        b, c, h, w = x.shape
        query = self.query_conv(x).flatten(2)  # (B, C/4, N); the key is the query itself
        attention = torch.softmax(query.transpose(1, 2) @ query, dim=-1)  # (B, N, N)
        attended = (x.flatten(2) @ attention.transpose(1, 2)).view(b, c, h, w)
        out = self.gamma * attended + x
        if encoder_features is None:
            return out
        if mask is None:
            raise ValueError("the long-term branch needs the hole mask")
        copied = (encoder_features.flatten(2) @ attention.transpose(1, 2)).view_as(encoder_features)
        context = self.alpha * mask * copied + (1 - mask) * encoder_features
        return self.fuse(torch.cat([out, context], dim=1))


class SeparableConv2d(nn.Sequential):
    """Depthwise ``k x k`` convolution followed by a pointwise ``1 x 1`` one (MobileNet style)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1
    ) -> None:
        pad = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_channels,
                in_channels,
                kernel_size,
                stride=stride,
                padding=pad,
                dilation=dilation,
                groups=in_channels,
                bias=False,
            ),
            nn.Conv2d(in_channels, out_channels, 1),
        )
