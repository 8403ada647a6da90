"""Shared fixtures: tiny random-weight models and synthetic face-like images (no datasets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lafin.config import get_preset
from lafin.networks import build_generator, build_landmark_predictor


@pytest.fixture(autouse=True)
def _fast_torch() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture
def tiny_config():
    return get_preset("tiny")


@pytest.fixture
def tiny_model(tiny_config):
    from lafin.pipeline import LaFInModel

    torch.manual_seed(0)
    return LaFInModel.from_networks(
        tiny_config, build_generator(tiny_config), build_landmark_predictor(tiny_config)
    )


@pytest.fixture
def tiny_weights(tmp_path: Path, tiny_config) -> Path:
    """A tiny random-weights checkpoint file in our format."""
    from lafin.checkpoint import save_weights

    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    save_weights(
        path,
        tiny_config,
        generator=build_generator(tiny_config),
        landmark_predictor=build_landmark_predictor(tiny_config),
    )
    return path


class _MeanColourInception(torch.nn.Module):
    """A stand-in with the TorchScript Inception's interface: (B, 3, 299, 299) -> (B, 2048),
    features of the image's mean colour (so a paler set of faces is a shifted set)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


def save_tiny_inception(path: Path) -> Path:
    """Write the mean-colour Inception stand-in as TorchScript to ``path`` (its weights seeded,
    the global random state untouched); returns ``path``."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = _MeanColourInception()
    torch.jit.save(torch.jit.script(net), str(path))
    return path


def face_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth synthetic 'face': skin-coloured ellipse, darker eyes and mouth, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
    img = np.zeros((h, w, 3), np.float64) + [60, 80, 120]
    face = ((xx - 0.5) / 0.35) ** 2 + ((yy - 0.5) / 0.45) ** 2 < 1
    img[face] = [210, 170, 140]
    for cx in (0.36, 0.64):
        img[((xx - cx) / 0.07) ** 2 + ((yy - 0.4) / 0.035) ** 2 < 1] = [40, 30, 30]
    img[((xx - 0.5) / 0.15) ** 2 + ((yy - 0.72) / 0.04) ** 2 < 1] = [150, 60, 60]
    img += rng.normal(0, 4, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def write_face_cache(path: Path, count: int, jitter: float, size: int = 64) -> Path:
    """A training cache of ``count`` face_like crops with canonical landmarks jittered by
    ``jitter`` px (seeded): what the training tests learn on."""
    from lafin.alignment import canonical_landmarks
    from lafin.data.cache import write_cache

    rng = np.random.default_rng(0)
    images = np.stack([face_like(size, size, seed=i) for i in range(count)])
    base = canonical_landmarks(size)
    landmarks = np.stack([base + rng.normal(0, jitter, base.shape) for _ in range(count)])
    write_cache(path, images, landmarks.astype(np.float32))
    return path


def box_mask(
    h: int, w: int, top: float = 0.3, left: float = 0.3, bottom: float = 0.7, right: float = 0.7
) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[int(top * h) : int(bottom * h), int(left * w) : int(right * w)] = 1
    return mask
