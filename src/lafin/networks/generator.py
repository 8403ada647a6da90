"""The original LaFIn inpainting generator (Yang et al., 2019), with configurable sizes.

With the ``paper`` preset (channels 64/128/256, 7 residual blocks) every tensor has the shape of
the published ``InpaintingModel_gen.pth``; ``lafin.original_release.load_original`` maps the names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lafin.config import GeneratorConfig
from lafin.networks.attention import ShortLongAttention


def _norm_relu(channels: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(channels, track_running_stats=False), nn.ReLU(inplace=True)]


def _resize_mask(mask: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """The original resizes the hole mask bilinearly with aligned corners (soft at hole edges)."""
    return F.interpolate(mask, size=tuple(size), mode="bilinear", align_corners=True)


class DilatedResnetBlock(nn.Module):
    """``x + IN(conv3x3(ReLU(IN(dilated conv3x3(x)))))`` with reflection padding."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            nn.Conv2d(channels, channels, 3, dilation=dilation),
            *_norm_relu(channels),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels, track_running_stats=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class LaFInGenerator(nn.Module):
    """G(masked image, landmark map, mask) -> image.

    Encoder: 7x7 conv at full size, then stride-2 4x4 convs (instance norm + ReLU after each).
    Middle: dilated residual blocks and the short+long attention at the smallest scale.
    Decoder: stride-2 transposed convs, each followed by a 1x1 fusion conv over the concatenation
    with the encoder feature of that size, multiplied by ``1 - mask`` (skip only known content).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels
        in_ch = 4 + int(config.mask_channel)
        self.encoders = nn.ModuleList(
            [nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ch[0], 7), *_norm_relu(ch[0]))]
        )
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            self.encoders.append(
                nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), *_norm_relu(c_out))
            )
        self.middle = nn.Sequential(
            *[DilatedResnetBlock(ch[-1], config.dilation) for _ in range(config.num_residual_blocks)]
        )
        self.attention = ShortLongAttention(ch[-1]) if config.attention else None
        self.decoders = nn.ModuleList()
        self.fusions = nn.ModuleList()
        dec_in = ch[-1]
        for c in reversed(ch[:-1]):
            self.decoders.append(
                nn.Sequential(nn.ConvTranspose2d(dec_in, c, 4, stride=2, padding=1), *_norm_relu(c))
            )
            self.fusions.append(nn.Sequential(nn.Conv2d(2 * c, 2 * c, 1), *_norm_relu(2 * c)))
            dec_in = 2 * c
        self.to_rgb = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(dec_in, 3, 7))

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
        x = torch.cat(parts, dim=1)
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        x = self.middle(x)
        if self.attention is not None:
            x = self.attention(x, skips[-1], _resize_mask(mask, x.shape[-2:]))
        for decoder, fusion, skip in zip(self.decoders, self.fusions, reversed(skips[:-1])):
            x = decoder(x)
            m = _resize_mask(mask, x.shape[-2:])
            x = fusion(torch.cat([skip * (1 - m), x], dim=1))
        return (torch.tanh(self.to_rgb(x)) + 1) / 2
