"""Training data: augmentation moves landmarks with the pixels; flips keep left/right semantics."""

from __future__ import annotations

import cv2
import numpy as np

from lafin.alignment import canonical_landmarks
from lafin.data.batches import GeometryAugment, sample_batch
from lafin.data.cache import write_cache


def _dots(size: int, points: np.ndarray) -> np.ndarray:
    """An image with a distinct colour at each landmark pixel (index in the red channel)."""
    image = np.zeros((size, size, 3), np.uint8)
    for i, (x, y) in enumerate(np.round(points).astype(int)):
        image[y - 1 : y + 2, x - 1 : x + 2] = (i + 1, 200, 0)
    return image


def _located(image: np.ndarray, i: int) -> np.ndarray:
    ys, xs = np.nonzero((image[..., 0] == i + 1) & (image[..., 1] > 100))
    return np.array([xs.mean(), ys.mean()])


def test_geometry_augmentation_moves_landmarks_with_pixels():
    size = 128
    points = canonical_landmarks(size)
    aug = GeometryAugment()
    for seed in range(5):
        for i in (0, 8, 16, 30, 36, 45, 48, 54):  # jaw, nose, eye and mouth corners
            image = np.zeros((size, size, 3), np.uint8)
            x, y = np.round(points[i]).astype(int)
            image[y - 1 : y + 2, x - 1 : x + 2] = 255  # one bright dot at point i only
            out, moved = aug(image, points, 96, np.random.default_rng(seed))
            assert out.shape == (96, 96, 3)
            lo, hi = moved.min(axis=0), moved.max(axis=0)
            assert 0.5 * 96 <= (hi - lo).max() <= 1.05 * 96  # between tight and loose framing
            weight = out[..., 0].astype(np.float64)
            if not (0 <= moved[i, 0] < 96 and 0 <= moved[i, 1] < 96):
                continue  # the point was moved out of the frame
            # blobs: the dot, plus mirror copies where the border is reflected
            n, labels = cv2.connectedComponents((weight > 0).astype(np.uint8))
            ys, xs = np.mgrid[0:96, 0:96]
            centres = [
                np.array([(xs * weight)[labels == k].sum(), (ys * weight)[labels == k].sum()])
                / weight[labels == k].sum()
                for k in range(1, n)
            ]
            offset = np.array([x, y]) - points[i]  # the dot is centred on the rounded point
            nearest = min(np.linalg.norm(c - moved[i]) for c in centres)
            assert nearest < 1.5 + np.linalg.norm(offset)


def test_sample_batch_flip_mirrors_landmarks_and_image(tmp_path):
    size = 64
    points = canonical_landmarks(size)
    points[36] += (-3, 0)  # make the face asymmetric: move the right eye's outer corner
    image = _dots(size, points)
    cache = write_cache(tmp_path / "c", image[None], points[None].astype(np.float32))
    none = lambda rng, lm: np.zeros((size, size), np.uint8)  # noqa: E731
    flipped = None
    for seed in range(10):
        batch = sample_batch(cache, 1, np.random.default_rng(seed), none, flip=True)
        img = (batch.images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        lm = batch.landmarks[0].numpy()
        if not np.array_equal(img, image):
            flipped = (img, lm)
            break
    assert flipped is not None, "no flip in 10 draws"
    img, lm = flipped
    # the point now at index 45 (left eye's outer corner) is the old point 36, mirrored
    assert np.allclose(lm[45], [size - 1 - points[36, 0], points[36, 1]])
    assert lm[45, 0] > size / 2  # and it sits on the image's right half, as a left eye should
    assert np.linalg.norm(_located(img, 36) - [size - 1 - points[36, 0], points[36, 1]]) < 1.0
