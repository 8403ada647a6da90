"""A CPU-friendly LaFIn generator: the same structure, built from depthwise-separable convolutions.

Kept from the original: the landmark map as input, dilated residual blocks and the short+long
attention at the smallest scale, and decoder skips gated by ``1 - mask`` so that only known
content is copied. Changed for speed (after MI-GAN, Sargsyan et al. 2023): separable convolutions,
nearest-neighbour (or bilinear, ``upsample``) upsampling instead of transposed convolutions, no
instance norm, one more downsampling so the middle runs at 1/8 size, and the hole mask as an
explicit input channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lafin.config import GeneratorConfig
from lafin.networks.attention import SeparableConv2d, ShortLongAttention


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class SeparableResBlock(nn.Module):
    """``x + sep(act(sep_dilated(x)))``."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            SeparableConv2d(channels, channels, 3, dilation=dilation),
            _act(),
            SeparableConv2d(channels, channels, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CompactGenerator(nn.Module):
    """G(masked image, landmark map, mask) -> image, for CPU inference at 128 px."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels
        in_ch = 4 + int(config.mask_channel)
        self.stem = nn.Sequential(nn.Conv2d(in_ch, ch[0], 3, padding=1), _act())
        self.encoders = nn.ModuleList(
            nn.Sequential(
                SeparableConv2d(c_in, c_out, 3, stride=2), _act(), SeparableConv2d(c_out, c_out, 3), _act()
            )
            for c_in, c_out in zip(ch[:-1], ch[1:])
        )
        dilations = [1 + (i % 2) * (config.dilation - 1) for i in range(config.num_residual_blocks)]
        self.middle = nn.Sequential(*[SeparableResBlock(ch[-1], d) for d in dilations])
        self.attention = ShortLongAttention(ch[-1], separable=True) if config.attention else None
        self.decoders = nn.ModuleList(
            nn.Sequential(SeparableConv2d(c_deep + c, c, 3), _act(), SeparableConv2d(c, c, 3), _act())
            for c_deep, c in zip(reversed(ch[1:]), reversed(ch[:-1]))
        )
        self.to_rgb = nn.Conv2d(ch[0], 3, 3, padding=1)

    def forward(self, masked: torch.Tensor, landmark_map: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            masked: (B, 3, H, W) float in [0, 1], hole pixels set to 1.
            landmark_map: (B, 1, H, W) float, 1 at each landmark pixel.
            mask: (B, 1, H, W) float, 1 = hole.

        Returns:
            (B, 3, H, W) float in [0, 1], not composited with the known pixels.
        """
        parts = [masked, landmark_map] + ([mask] if self.config.mask_channel else [])
        x = self.stem(torch.cat(parts, dim=1))
        skips = [x]
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        x = self.middle(x)
        if self.attention is not None:
            # max-pooling: a coarse cell counts as hole if any of its pixels is one
            x = self.attention(x, skips[-1], F.adaptive_max_pool2d(mask, x.shape[-2:]))
        for decoder, skip in zip(self.decoders, reversed(skips[:-1])):
            if self.config.upsample == "bilinear":
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            else:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            m = F.adaptive_max_pool2d(mask, x.shape[-2:])
            x = decoder(torch.cat([x, skip * (1 - m)], dim=1))
        return torch.sigmoid(self.to_rgb(x))
