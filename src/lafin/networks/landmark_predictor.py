"""LaFIn's landmark predictor: a MobileNetV2 trunk with a multi-scale regression head.

With ``width_mult=1.0`` every tensor has the shape of the published ``landmark_detector.pth``.
The head pools three views of the trunk (the 320-channel map, the 1280-channel map, and the
1280-channel map reduced to 64 channels with PReLU), concatenates them (128 + 128 + 64 = 320
channels at width 1.0) and regresses 2 * num_points numbers: x0, y0, x1, y1, ... as fractions
of the image side. ``head="spatial"`` (the compact preset) replaces the third, globally pooled
branch by a 4x4 grid of the 1280-channel map reduced to 32 channels (512 features), the way PFLD's
last branch convolves the whole map: a pooled vector must encode positions in its channels,
a grid shows them directly.
"""

from __future__ import annotations

import torch
from torch import nn

from lafin.config import LandmarkConfig

# MobileNetV2 inverted-residual settings: expansion t, channels c, repeats n, first stride s.
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


# The "spatial" head: the last feature map pooled to a 4x4 grid (its size at 128 px), 32 channels.
_SPATIAL_GRID = 4
_SPATIAL_CHANNELS = 32


def _pool_matrix(size: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """(bins, size) rows that average the windows ``adaptive_avg_pool`` uses along one axis
    (bin i spans floor(i * size / bins) to ceil((i + 1) * size / bins))."""
    matrix = torch.zeros(bins, size, dtype=like.dtype, device=like.device)
    for i in range(bins):
        start, end = (i * size) // bins, -((-(i + 1) * size) // bins)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def grid_pool(x: torch.Tensor, bins: int) -> torch.Tensor:
    """``adaptive_avg_pool2d(x, bins)`` for (B, C, H, W) ``x``, also where ``bins`` does not
    divide H or W (the map of a 192-px input is 6x6): written as two small matrix products
    there, because ONNX has no adaptive pooling with overlapping windows."""
    # plain ints: the map size is fixed by the input size, so an export may bake it in
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % bins == 0 and w % bins == 0:
        return nn.functional.adaptive_avg_pool2d(x, bins)
    # along W, then along H (as linear layers over the last axis: ONNX MatMul with a 2-D weight)
    along_w = nn.functional.linear(x, _pool_matrix(w, bins, x))  # (B, C, H, bins)
    return nn.functional.linear(along_w.transpose(-1, -2), _pool_matrix(h, bins, x)).transpose(-1, -2)


def _make_divisible(value: float, divisor: int = 8) -> int:
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.use_residual = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class LandmarkPredictor(nn.Module):
    """Masked face (B, 3, S, S) in [0, 1] -> (B, 2 * num_points) coordinates in [0, 1]."""

    def __init__(self, config: LandmarkConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width_mult
        c = _make_divisible(32 * w)
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU6(inplace=True))
        ]
        for t, c_base, n, s in _SETTINGS:
            c_out = _make_divisible(c_base * w)
            for i in range(n):
                layers.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
                c = c_out
        self.features = nn.Sequential(*layers)
        c_last = _make_divisible(1280 * max(1.0, w))
        self.last_block = nn.Sequential(
            nn.Conv2d(c, c_last, 1, bias=False), nn.BatchNorm2d(c_last), nn.ReLU6(inplace=True)
        )
        self.conv_node1 = nn.Conv2d(c, 128, 1)
        self.conv_node2 = nn.Conv2d(c_last, 128, 1)
        self.spatial = config.head == "spatial"
        node3_channels = _SPATIAL_CHANNELS if self.spatial else 64
        self.conv1_after_mbnet = nn.Conv2d(c_last, node3_channels, 1)
        self.prelu = nn.PReLU()
        node3_features = node3_channels * _SPATIAL_GRID**2 if self.spatial else node3_channels
        self.fc_landmark = nn.Linear(128 + 128 + node3_features, 2 * config.num_points)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, 3, S, S) float in [0, 1], hole pixels set to 1.

        Returns:
            (B, 2 * num_points) float, x and y interleaved, as fractions of S.
        """
        feat = self.features(x)
        wide = self.last_block(feat)
        node1 = self.conv_node1(feat).mean(dim=(2, 3))
        node2 = self.conv_node2(wide).mean(dim=(2, 3))
        if self.spatial:
            grid = grid_pool(wide, _SPATIAL_GRID)
            node3 = self.prelu(self.conv1_after_mbnet(grid)).flatten(1)
        else:
            node3 = self.prelu(self.conv1_after_mbnet(wide.mean(dim=(2, 3), keepdim=True))).flatten(1)
        return self.fc_landmark(torch.cat([node1, node2, node3], dim=1))
