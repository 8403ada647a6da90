"""LaFIn's discriminator: a spectral-normalised patch discriminator conditioned on the landmark map.

Input: the image and its landmark map (4 channels). Five 4x4 convolutions (strides 2, 2, 2, 1, 1)
with LeakyReLU 0.2 and a self-attention layer after the second. Returns raw patch logits and the
intermediate features (used by the feature-matching loss).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from lafin.config import DiscriminatorConfig
from lafin.networks.attention import ShortLongAttention


class Discriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig, in_channels: int = 4) -> None:
        super().__init__()
        self.config = config
        b = config.base_channels
        widths = [in_channels, b, 2 * b, 4 * b, 8 * b, 1]
        strides = [2, 2, 2, 1, 1]
        self.convs = nn.ModuleList()
        for i, stride in enumerate(strides):
            conv = spectral_norm(nn.Conv2d(widths[i], widths[i + 1], 4, stride, 1, bias=False))
            self.convs.append(conv)
        self.attention = ShortLongAttention(2 * b) if config.attention else None

    def forward(
        self, image: torch.Tensor, landmark_map: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """
        Args:
            image: (B, 3, H, W) float in [0, 1].
            landmark_map: (B, 1, H, W) float.

        Returns:
            logits (B, 1, h, w) before any sigmoid, and the list of the four hidden feature maps.
        """
        x = torch.cat([image, landmark_map], dim=1)
        features = []
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = nn.functional.leaky_relu(x, 0.2)
                if i == 1 and self.attention is not None:
                    x = self.attention(x)
                features.append(x)
        return x, features
