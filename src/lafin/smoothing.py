"""Gaussian blur of image tensors, shared by inference and training (the same kernel in both)."""

from __future__ import annotations

import cv2
import numpy as np
import torch


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (radius 3 sigma, at least 1 px) of (B, C, H, W), edges replicated.
    No gradient flows through it on the CPU (it runs in OpenCV there)."""
    radius = max(1, int(3 * sigma))
    b, c, h, w = x.shape
    if x.device.type == "cpu":  # OpenCV's blur: the same kernel, far cheaper than conv2d
        planes = x.detach().float().numpy().reshape(b * c, h, w).transpose(1, 2, 0)
        size = 2 * radius + 1
        out = cv2.GaussianBlur(
            np.ascontiguousarray(planes), (size, size), sigma, borderType=cv2.BORDER_REPLICATE
        )
        out = out.reshape(h, w, b * c).transpose(2, 0, 1).reshape(b, c, h, w)
        return torch.from_numpy(np.ascontiguousarray(out)).to(x.dtype)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(t**2) / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    x = torch.nn.functional.pad(x.reshape(b * c, 1, h, w), (radius,) * 4, mode="replicate")
    x = torch.nn.functional.conv2d(x, kernel.view(1, 1, 1, -1))
    return torch.nn.functional.conv2d(x, kernel.view(1, 1, -1, 1)).reshape(b, c, h, w)
