"""Training batches drawn from a :class:`FaceCache` with an explicit random generator.

Everything random (which faces, flips, geometry, holes) comes from one ``numpy.random.Generator``
that the trainer owns and checkpoints, so a resumed run draws exactly the batches it would have
drawn without the interruption.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from lafin.alignment import rescale_points
from lafin.data.cache import FaceCache
from lafin.landmarks import EXPRESSION_NAMES, edit_expression, edit_region, flip_landmarks


@dataclass
class Batch:
    """images (B, 3, S, S) float in [0, 1]; masks (B, 1, S, S) float, 1 = hole;
    landmarks (B, 68, 2) float pixels of the S x S crop (the truth).

    ``guide`` (B, 68, 2), when set, holds the landmarks the generator is asked to follow where
    they differ from the truth (an edited expression, see :func:`edit_expressions`); ``edited``
    (B,) float marks those faces (1 = edited): their true image shows another expression, so no
    pixel loss may compare them with it."""

    images: torch.Tensor
    masks: torch.Tensor
    landmarks: torch.Tensor
    guide: torch.Tensor | None = None
    edited: torch.Tensor | None = None

    def to(
        self, device: torch.device | str, memory_format: torch.memory_format = torch.contiguous_format
    ) -> "Batch":
        """The batch on ``device``; images and masks in ``memory_format`` (NCHW or NHWC)."""
        move = lambda t: None if t is None else t.to(device)
        return Batch(
            self.images.to(device, memory_format=memory_format),
            self.masks.to(device, memory_format=memory_format),
            self.landmarks.to(device),
            move(self.guide),
            move(self.edited),
        )

    @property
    def target_landmarks(self) -> torch.Tensor:
        """The landmarks the generator is given: ``guide`` where set, else the truth."""
        return self.landmarks if self.guide is None else self.guide

    @property
    def masked(self) -> torch.Tensor:
        """Images with hole pixels set to 1 (white), the networks' input convention."""
        return self.images * (1 - self.masks) + self.masks


@dataclass(frozen=True)
class GeometryAugment:
    """Random similarity transform that reframes the face, for the landmark predictor.

    The landmarks' bounding box is made to span ``box_fraction`` of the output side (the issue's
    'tight to loose' framing: ~1.0 down to ~0.55), rotated by up to ``max_rotation`` degrees and
    shifted by up to ``max_shift`` of the side.
    """

    box_fraction: tuple[float, float] = (0.55, 1.0)
    max_rotation: float = 20.0
    max_shift: float = 0.08

    def __call__(
        self, image: np.ndarray, landmarks: np.ndarray, size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
        centre = (lo + hi) / 2
        extent = float(max(hi - lo))
        scale = rng.uniform(*self.box_fraction) * size / max(extent, 1.0)
        angle = rng.uniform(-self.max_rotation, self.max_rotation)
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
        shift = rng.uniform(-self.max_shift, self.max_shift, size=2) * size
        matrix[:, 2] += (size - 1) / 2 - centre + shift
        out = cv2.warpAffine(
            image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        pts = landmarks @ matrix[:, :2].T + matrix[:, 2]
        return out, pts.astype(np.float32)


def sample_batch(
    cache: FaceCache,
    batch_size: int,
    rng: np.random.Generator,
    mask_fn,
    size: int | None = None,
    flip: bool = True,
    geometry: GeometryAugment | None = None,
    indices: np.ndarray | None = None,
) -> Batch:
    """Draw a batch: faces at random (or ``indices``), random horizontal flip, optional geometry
    augmentation, a hole from ``mask_fn(rng, landmarks) -> (S, S) uint8``, resize to ``size``."""
    size = size or cache.size
    if indices is None:
        indices = rng.integers(0, len(cache), size=batch_size)
    images = np.empty((len(indices), size, size, 3), np.uint8)
    masks = np.empty((len(indices), size, size), np.float32)
    points = np.empty((len(indices), 68, 2), np.float32)
    for j, i in enumerate(indices):
        image = np.asarray(cache.images[i])
        lm = cache.landmarks[i].copy()
        if geometry is not None:
            image, lm = geometry(image, lm, size, rng)
        elif image.shape[0] != size:
            s = size / image.shape[0]
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
            lm = rescale_points(lm, s)
        if flip and rng.random() < 0.5:
            image = image[:, ::-1]
            lm = flip_landmarks(lm, size)
        images[j] = image
        masks[j] = mask_fn(rng, lm)
        points[j] = lm
    return Batch(
        torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255),
        torch.from_numpy(masks).unsqueeze(1),
        torch.from_numpy(points),
    )


# Sepia toning (the common RGB matrix of photo editors), applied to the luminance of a grey print
_SEPIA_TINT = torch.tensor([1.0, 0.85, 0.62])
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def old_photo_look(images: torch.Tensor, looks: torch.Tensor) -> torch.Tensor:
    """Per image: 0 keeps the colours, 1 makes it grey (three equal channels), 2 sepia.

    Args:
        images: (B, 3, H, W) float in [0, 1].
        looks: (B,) integer codes as above.
    """
    grey = torch.einsum("bchw,c->bhw", images, _LUMA.to(images)).unsqueeze(1)
    sepia = (grey * _SEPIA_TINT.to(images).view(1, 3, 1, 1)).clamp(0, 1)
    looks = looks.to(images.device).view(-1, 1, 1, 1)
    return torch.where(looks == 1, grey.expand_as(images), torch.where(looks == 2, sepia, images))


def edit_expressions(
    batch: Batch,
    share: float,
    rng: np.random.Generator,
    amount: tuple[float, float] = (0.3, 1.2),
    margin: float = 0.25,
) -> Batch:
    """Give a ``share`` of the faces an edited expression to follow.

    Each chosen face gets one of :data:`lafin.landmarks.EXPRESSION_NAMES` at a random amount as
    its ``guide``, and a hole over every point the edit moved (:func:`lafin.landmarks.edit_region`:
    a box around their old and new positions, grown by ``margin`` of its size and at least 4% of
    the side) joined to its own, so the generator can draw the new expression. The truth stays
    in ``landmarks`` (the discriminator's real images are paired with it). Returns a new batch;
    the others are unedited.
    """
    size = batch.images.shape[-1]
    chosen = rng.random(len(batch.images)) < share
    guide = batch.landmarks.clone()
    masks = batch.masks.clone()
    for i in np.flatnonzero(chosen):
        truth = batch.landmarks[i].numpy()
        name = EXPRESSION_NAMES[int(rng.integers(len(EXPRESSION_NAMES)))]
        try:
            moved_to = edit_expression(truth, name, float(rng.uniform(*amount)))
        except ValueError:  # degenerate landmarks: leave this face unedited
            chosen[i] = False
            continue
        region = edit_region(truth, moved_to, (size, size), margin)
        if not region.any():  # e.g. "close mouth" on a closed mouth
            chosen[i] = False
            continue
        masks[i, :, torch.from_numpy(region)] = 1.0
        guide[i] = torch.from_numpy(moved_to)
    return Batch(batch.images, masks, batch.landmarks, guide, torch.from_numpy(chosen.astype(np.float32)))
