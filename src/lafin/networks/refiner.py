"""The texture refiner: the generator's face, upsampled, in; the same face with skin, lips and hair
detail at the refiner's resolution out (LaFIn's refinement step as a network of its own).

The landmark-guided generator decides the structure at its own size (128 px for the compact
model); this network works at ``output_size`` (256 px) and is trained adversarially for texture.
It sees the coarse face composited with the known pixels at full resolution, the hole mask, a
noise channel inside the hole (texture is not determined by the input, so it needs a source of
variation) and the landmarks as a heat map (where the lips, eyes and brows go: the coarse face is
vague about them under a large hole), and adds a bounded residual to the coarse face: where
nothing needs changing it can return the coarse face unchanged.

Shape: a dense 3x3 stem at full size, a dense stride-2 convolution to 1/2 size (depthwise
convolutions at full resolution are slow on CPUs), separable convolutions below, dilated residual
blocks at 1/8 size, upsampling with skips (nearest-neighbour or bilinear, ``upsample``), and a
separable layer at full size before the RGB residual. :class:`RefinerDiscriminator` is its
training partner: a spectral-normalised patch network (~70-px receptive field at 256 px) on the
image, the hole mask and a landmark heat map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from lafin.config import RefinerConfig
from lafin.networks.attention import SeparableConv2d
from lafin.networks.compact_generator import SeparableResBlock


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class Refiner(nn.Module):
    """R(coarse, mask, landmark heat map, noise) -> image at the refiner's size."""

    #: largest change the refiner can make to a coarse pixel (images are in [0, 1])
    max_residual = 0.5

    def __init__(self, config: RefinerConfig) -> None:
        super().__init__()
        self.config = config
        c0, c1, c2, c3 = config.channels
        self.stem = nn.Sequential(nn.Conv2d(6, c0, 3, padding=1), _act())
        self.down1 = nn.Sequential(
            nn.Conv2d(c0, c1, 3, stride=2, padding=1), _act(), SeparableConv2d(c1, c1, 3), _act()
        )
        self.down2 = nn.Sequential(
            SeparableConv2d(c1, c2, 3, stride=2), _act(), SeparableConv2d(c2, c2, 3), _act()
        )
        self.down3 = nn.Sequential(
            SeparableConv2d(c2, c3, 3, stride=2), _act(), SeparableConv2d(c3, c3, 3), _act()
        )
        self.middle = nn.Sequential(
            *[SeparableResBlock(c3, 1 + i % 2) for i in range(config.num_residual_blocks)]
        )
        self.up3 = nn.Sequential(SeparableConv2d(c3 + c2, c2, 3), _act(), SeparableConv2d(c2, c2, 3), _act())
        self.up2 = nn.Sequential(SeparableConv2d(c2 + c1, c1, 3), _act(), SeparableConv2d(c1, c1, 3), _act())
        self.up1 = nn.Sequential(SeparableConv2d(c1 + c0, c0, 3), _act())
        self.to_rgb = nn.Conv2d(c0, 3, 3, padding=1)
        # a new refiner returns the coarse face unchanged and learns its changes from there
        nn.init.zeros_(self.to_rgb.weight)
        nn.init.zeros_(self.to_rgb.bias)

    def _up(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if self.config.upsample == "bilinear":
            return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(x, size=like.shape[-2:], mode="nearest")

    def forward(
        self,
        coarse: torch.Tensor,
        mask: torch.Tensor,
        heatmap: torch.Tensor,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            coarse: (B, 3, S, S) float in [0, 1]: the generator's face upsampled to S and
                composited with the known pixels at S.
            mask: (B, 1, S, S) float, 1 = hole.
            heatmap: (B, 1, S, S) the landmarks as :func:`landmark_heatmap` draws them.
            noise: (B, 1, S, S) standard normal noise (multiplied by the mask here); None draws it
                from torch's global generator.

        Returns:
            (B, 3, S, S) float in [0, 1], not composited with the known pixels.
        """
        if noise is None:
            noise = torch.randn_like(mask)
        x0 = self.stem(torch.cat([coarse, mask, heatmap, noise * mask], dim=1))
        x1 = self.down1(x0)
        x2 = self.down2(x1)
        x = self.middle(self.down3(x2))
        x = self.up3(torch.cat([self._up(x, x2), x2], 1))
        x = self.up2(torch.cat([self._up(x, x1), x1], 1))
        x = self.up1(torch.cat([self._up(x, x0), x0], 1))
        residual = self.max_residual * torch.tanh(self.to_rgb(x))
        return (coarse + residual).clamp(0, 1)


class RefinerDiscriminator(nn.Module):
    """Patch discriminator on (image, hole mask, landmark heat map): raw logits on a grid of
    1/8 the input size, and its hidden features."""

    def __init__(self, base_channels: int = 32) -> None:
        super().__init__()
        b = base_channels
        specs = [(5, b, 4, 2), (b, 2 * b, 4, 2), (2 * b, 4 * b, 4, 2), (4 * b, 4 * b, 3, 1)]
        self.convs = nn.ModuleList(
            spectral_norm(nn.Conv2d(cin, cout, k, s, padding=(k - 1) // 2 if s == 1 else 1))
            for cin, cout, k, s in specs
        )
        self.head = spectral_norm(nn.Conv2d(4 * b, 1, 3, 1, padding=1))

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, heatmap: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = torch.cat([image * 2 - 1, mask, heatmap], dim=1)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            features.append(x)
        return self.head(x), features


class MultiScalePatchDiscriminator(nn.Module):
    """One :class:`RefinerDiscriminator` per scale, on the image, mask and heat map halved in size
    from one scale to the next: the coarser ones see whole faces in one patch. Returns a list of
    logits (finest first) and all the features."""

    def __init__(self, base_channels: int = 32, scales: int = 2) -> None:
        super().__init__()
        self.scales = nn.ModuleList(RefinerDiscriminator(base_channels) for _ in range(scales))

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, heatmap: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        all_logits, all_features = [], []
        for i, disc in enumerate(self.scales):
            if i:
                image = F.avg_pool2d(image, 2)
                mask = F.max_pool2d(mask, 2)  # a patch touching the hole stays "generated"
                heatmap = F.max_pool2d(heatmap, 2)  # the landmarks' peaks stay 1
            logits, features = disc(image, mask, heatmap)
            all_logits.append(logits)
            all_features.extend(features)
        return all_logits, all_features


def build_patch_discriminator(base_channels: int, scales: int = 1) -> nn.Module:
    """The hole-aware patch discriminator: one scale (the :class:`RefinerDiscriminator` of
    earlier checkpoints, same state dict) or several."""
    if scales == 1:
        return RefinerDiscriminator(base_channels)
    return MultiScalePatchDiscriminator(base_channels, scales)


def landmark_heatmap(
    points: torch.Tensor, size: int | tuple[int, int], sigma: float = 2.0, origin: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """(B, 68, 2) pixel points -> (B, 1, size, size): the maximum of one Gaussian per point.

    ``size`` may also be (H, W), and ``origin`` (x, y) the pixel the map's top-left corner
    shows: a window of the full map, drawn without drawing the rest."""
    h, w = (size, size) if isinstance(size, int) else size
    xs = torch.arange(origin[0], origin[0] + w, dtype=points.dtype, device=points.device)
    ys = torch.arange(origin[1], origin[1] + h, dtype=points.dtype, device=points.device)
    gx = torch.exp(-((xs[None, None, :] - points[..., 0:1]) ** 2) / (2 * sigma**2))  # B,N,W
    gy = torch.exp(-((ys[None, None, :] - points[..., 1:2]) ** 2) / (2 * sigma**2))  # B,N,H
    return torch.einsum("bnh,bnw->bnhw", gy, gx).amax(dim=1, keepdim=True)
