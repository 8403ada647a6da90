"""Facial-component discriminators (training only): one judges eyes, one mouths, each on a
small crop cut out of the face around its landmarks (GFPGAN's component discriminators, Wang et
al. 2021, here with the hole as a fourth channel). A whole-face or patch discriminator spends
little of its attention on the few pixels that make an eye or a mouth look real; these see
nothing else.

Crops (:func:`component_crops`) are squares centred on the mean of a part's points, turned with
the line through the eye centres (a tilted face gives upright crops), their side a multiple of
the distance between the eye centres; the right eye is mirrored, so one network judges both
eyes. Sampling is bilinear (``grid_sample``): gradients reach the image's pixels, not the boxes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm

# the points of each part (iBUG 300-W order) and the crop's side in eye-centre distances, its
# size in pixels in a 128-px face (scaled with the face: ``scale``); a CelebA 128-px crop has
# its eye centres about 41 px apart: eyes 33 px, the mouth (0.87 of that distance wide, up to
# 0.6 high when open) 57 px
COMPONENTS: dict[str, tuple[slice, float, int]] = {
    "left_eye": (slice(36, 42), 0.8, 32),
    "right_eye": (slice(42, 48), 0.8, 32),
    "mouth": (slice(48, 68), 1.4, 48),
}
# which network judges which part
JUDGES = {"left_eye": "eye", "right_eye": "eye", "mouth": "mouth"}


def component_crops(
    images: torch.Tensor, points: torch.Tensor, part: str, scale: float = 1.0
) -> torch.Tensor:
    """``part``'s crops of ``images`` (B, C, H, W), placed by ``points`` (B, 68, 2: x, y in
    pixels of the images, pixel centres at whole numbers as everywhere in lafin): (B, C, S, S),
    S the part's crop size times ``scale`` (2 for 256-px faces); the right eye mirrored.
    Outside the image reads as zeros."""
    rows, side_factor, size = COMPONENTS[part]
    size = round(size * scale)
    b, _, h, w = images.shape
    points = points.detach().to(images.dtype)
    left = points[:, 36:42].mean(1)
    right = points[:, 42:48].mean(1)
    axis = right - left
    distance = axis.norm(dim=-1).clamp_min(1e-3)
    cos, sin = axis[:, 0] / distance, axis[:, 1] / distance
    centre = points[:, rows].mean(1)
    half = side_factor * distance / 2
    mirror = -1.0 if part == "right_eye" else 1.0
    # output (u, v) in [-1, 1] -> image pixels centre + half * R (mirror * u, v), then to
    # grid_sample's normalised coordinates (align_corners=False: -1 and 1 are the outer edges)
    theta = images.new_zeros(b, 2, 3)
    theta[:, 0, 0] = mirror * half * cos * 2 / w
    theta[:, 0, 1] = -half * sin * 2 / w
    theta[:, 1, 0] = mirror * half * sin * 2 / h
    theta[:, 1, 1] = half * cos * 2 / h
    theta[:, 0, 2] = (2 * centre[:, 0] + 1) / w - 1
    theta[:, 1, 2] = (2 * centre[:, 1] + 1) / h - 1
    grid = nn.functional.affine_grid(theta, [b, images.shape[1], size, size], align_corners=False)
    return nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class ComponentDiscriminator(nn.Module):
    """Image crop + hole crop (4 channels) -> patch logits and the hidden features (for the
    Gram-matrix style term). Spectral-normalised 4x4 convolutions (strides 2, 2, 2), LeakyReLU
    0.2, a 3x3 convolution to the logits: a 32-px crop gives 4x4 logits, each seeing 30 px."""

    def __init__(self, base_channels: int = 32, in_channels: int = 4) -> None:
        super().__init__()
        widths = [in_channels, base_channels, 2 * base_channels, 4 * base_channels]
        self.convs = nn.ModuleList(
            spectral_norm(nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1)) for i in range(3)
        )
        self.head = spectral_norm(nn.Conv2d(widths[-1], 1, 3, 1, 1))

    def forward(self, crops: torch.Tensor, holes: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = torch.cat([crops, holes], dim=1)
        features = []
        for conv in self.convs:
            x = nn.functional.leaky_relu(conv(x), 0.2)
            features.append(x)
        return self.head(x), features


class FaceComponentDiscriminators(nn.Module):
    """The eye and mouth discriminators (``judges``, by the names of ``JUDGES``'s values)."""

    def __init__(self, base_channels: int = 32) -> None:
        super().__init__()
        names = sorted(set(JUDGES.values()))
        self.judges = nn.ModuleDict({name: ComponentDiscriminator(base_channels) for name in names})

    def forward(
        self, crops: dict[str, torch.Tensor], holes: dict[str, torch.Tensor]
    ) -> dict[str, tuple[torch.Tensor, list[torch.Tensor]]]:
        """Each part's (logits, features) for its crops and hole crops. The parts one network
        judges go through it as one batch: one pass per network and call, as DDP needs."""
        out: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        for name, judge in self.judges.items():
            parts = [part for part in crops if JUDGES[part] == name]
            if not parts:
                continue
            sizes = [crops[part].shape[0] for part in parts]
            logits, features = judge(
                torch.cat([crops[part] for part in parts]), torch.cat([holes[part] for part in parts])
            )
            per_part = [f.split(sizes) for f in features]
            for k, (part, part_logits) in enumerate(zip(parts, logits.split(sizes))):
                out[part] = (part_logits, [f[k] for f in per_part])
        return out
