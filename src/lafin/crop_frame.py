"""Geometry between the user's image and the networks' squares, both ways: a face crop padded
and resized (:class:`CropFrame`), a photo's face warped by its alignment (:func:`face_view`,
:func:`warp_back`). Only hole pixels ever change on the way back."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from lafin.alignment import (
    canonical_landmarks,
    cut_for_crop,
    invert_affine,
    rescale_points,
    similarity_transform,
    warp_to_crop,
)
from lafin.blend import harmonize, masked_mean, paste

# Hole pixels are harmonised inside the hole's bounding box grown by this margin (px): wider than
# harmonize()'s ring plus its Telea radius, so the result is the same as over the whole face.
HARMONIZE_MARGIN = 16


@dataclass(frozen=True)
class CropFrame:
    """How an input image maps to the model's square: pad to a square, then scale to ``size``."""

    pad_top: int
    pad_left: int
    side: int
    size: int

    @classmethod
    def around(cls, shape: tuple[int, int], size: int) -> "CropFrame":
        """The frame of an HxW image centred on a square, scaled to ``size``."""
        h, w = shape
        side = max(h, w)
        return cls((side - h) // 2, (side - w) // 2, side, size)

    @property
    def scale(self) -> float:
        return self.size / self.side

    def to_model(self, points: np.ndarray) -> np.ndarray:
        """Input pixel coordinates -> model pixel coordinates (pixel centres preserved)."""
        shifted = points + np.array([self.pad_left, self.pad_top], dtype=np.float32)
        return rescale_points(shifted, self.scale)

    def to_input(self, points: np.ndarray) -> np.ndarray:
        """Model pixel coordinates -> input pixel coordinates."""
        shifted = rescale_points(points, 1 / self.scale)
        return shifted - np.array([self.pad_left, self.pad_top], dtype=np.float32)

    def tensors(
        self, image: np.ndarray, hole: np.ndarray, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, 3, S, S) image in [0, 1] and (1, 1, S, S) hole (1 = hole) at the frame's size; a
        model pixel is hole if any input pixel under it is, and an enlarged crop's hole is
        painted first (:func:`paint_hole`), so nothing of the hole leaks in."""
        h, w = hole.shape
        pads = ((self.pad_top, self.side - h - self.pad_top), (self.pad_left, self.side - w - self.pad_left))
        square = np.pad(image, pads + ((0, 0),), mode="edge")
        square_hole = np.pad(hole, pads, mode="constant").astype(np.float32)
        s = self.size
        if self.side < s:  # the cubic kernel reads 2 px past the pixels the hole touches
            square = paint_hole(square, square_hole)
        interp = cv2.INTER_AREA if self.side > s else cv2.INTER_CUBIC
        small = cv2.resize(square, (s, s), interpolation=interp)
        small_hole = (
            cv2.resize(square_hole, (s, s), interpolation=interp if self.side > s else cv2.INTER_LINEAR) > 0
        ).astype(np.float32)
        img_t = torch.from_numpy(small).permute(2, 0, 1).float().div(255).unsqueeze(0)
        hole_t = torch.from_numpy(small_hole)[None, None]
        return img_t.to(device), hole_t.to(device)

    def paste(self, image: np.ndarray, hole: np.ndarray, generated: np.ndarray) -> np.ndarray:
        """``image`` with its hole pixels taken from the generated (S, S, 3) square in [0, 1],
        resized back to the input; every other pixel is the input's."""
        up = cv2.resize(
            generated,
            (self.side, self.side),
            interpolation=cv2.INTER_CUBIC if self.side > self.size else cv2.INTER_AREA,
        )
        h, w = hole.shape
        up = up[self.pad_top : self.pad_top + h, self.pad_left : self.pad_left + w] * 255.0
        return paste(image, up, hole)


#: the scales (canonical face size over this face's) of a crop's face that crop mode generates on
#: directly; outside them the crop is loose
ALIGNED_SCALES = (0.75, 1.4)


def face_scale(points: np.ndarray, size: int) -> float:
    """How much the face of these (68, 2) landmarks (pixels of a ``size`` crop) must be enlarged
    to the canonical frame's face (over 1: a smaller face)."""
    matrix = similarity_transform(np.asarray(points, np.float64), canonical_landmarks(size))
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def face_side(points: np.ndarray) -> float | None:
    """The side in pixels of the square crop in which the face of these (68, 2) landmarks sits
    as the model's aligned faces do (the face keeps its size); None for points that make no
    face (all in one place, or not finite)."""
    points = np.asarray(points, np.float64)
    if not np.isfinite(points).all() or np.ptp(points, axis=0).max() < 1e-6:
        return None
    size = 256  # any side: the face's own size comes out
    scale = face_scale(points, size)
    return size / scale if np.isfinite(scale) and scale > 0 else None


def is_small_face(points: np.ndarray, size: int) -> bool:
    """Is the face of these landmarks smaller in the crop than :data:`ALIGNED_SCALES` allow?"""
    return face_scale(points, size) > ALIGNED_SCALES[1]


def is_loose(points: np.ndarray, size: int) -> bool:
    """Is the face of these (68, 2) landmarks (pixels of a ``size`` crop) far from the canonical
    frame the generator was trained on: at under 0.75 or over 1.4 times its scale, turned by
    over 18 degrees or off-centre by over 15% of the side? (Predicted landmarks on CelebA's
    aligned crops under large holes stay well inside these limits, docs/MODEL_CARD.md; aligning
    a crop that is not loose costs, as the parts of the hole outside the aligned face get
    OpenCV's fill.)"""
    matrix = similarity_transform(np.asarray(points, np.float64), canonical_landmarks(size))
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    angle = abs(float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))))
    centre = np.full(2, (size - 1) / 2)
    shift = float(np.hypot(*(matrix[:, :2] @ centre + matrix[:, 2] - centre)))
    low, high = ALIGNED_SCALES
    return not (low <= scale <= high) or angle > 18 or shift > 0.15 * size


# paint_hole's scale: the Gaussian (px) of the known pixels' local mean, which reaches ~2 sigma
# into the hole before its weight falls under the floor (past the cubic kernel's 2 px)
PAINT_SIGMA = 2.0
PAINT_WEIGHT_FLOOR = 0.02


def paint_hole(image: np.ndarray, hole: np.ndarray, sigma: float = PAINT_SIGMA) -> np.ndarray:
    """A copy of HxWx3 uint8 ``image`` whose hole pixels read nothing of what lies under them:
    near the hole's edge the local mean of the known pixels around (a Gaussian-weighted mean
    over known pixels only, of scale ``sigma`` px), deeper in the hole white.

    Resampling reads a few pixels past the hole's edge into known crop pixels. One colour there
    (white) rang through the cubic kernel's lobes into the known pixels beside the hole, and
    the generator carried that brighter rim into its fill (on AFW photos the fill came out
    several grey levels brighter than the truth, with a step at the hole's edge)."""
    holes = hole > 0
    out = np.where(holes[..., None], np.uint8(255), image)
    x, y, w, h = cv2.boundingRect(holes.astype(np.uint8))
    if w == 0:
        return out
    # only pixels within a few sigma of the hole matter: work on its bounding box grown by that
    m = int(np.ceil(4 * sigma))
    top, left = max(0, y - m), max(0, x - m)
    bottom, right = min(holes.shape[0], y + h + m), min(holes.shape[1], x + w + m)
    box_holes = holes[top:bottom, left:right]
    box = image[top:bottom, left:right].astype(np.float32)
    mean, cover = masked_mean(box, (~box_holes).astype(np.float32), sigma)
    band = box_holes & (cover > PAINT_WEIGHT_FLOOR)
    out[top:bottom, left:right][band] = np.clip(mean[band] + 0.5, 0, 255).astype(np.uint8)
    return out


def face_view(
    img: np.ndarray, hole: np.ndarray, matrix: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The generator's view of a photo face: (S, S, 3) uint8 crop and (S, S) bool hole for a
    ``matrix`` mapping the photo to an S = ``size`` crop, a crop pixel being hole if the hole
    touches it at all (nothing under the hole leaks in)."""
    img, hole, matrix = cut_for_crop(img, hole, matrix, size)
    # the hole painted first, as the cubic kernel reaches past the pixels the hole touches
    # (the kernel's 2 px are 2 / scale photo pixels where the crop is smaller than the photo)
    scale = float(np.hypot(matrix[0, 0], matrix[0, 1]))
    source = paint_hole(img, hole, PAINT_SIGMA * max(1.0, 1.0 / max(scale, 1e-6)))
    crop = warp_to_crop(source, matrix, size, interpolation=cv2.INTER_CUBIC)
    # area-reduced first (warp_to_crop), so a thin hole in a large photo is not skipped
    crop_hole = warp_to_crop(hole.astype(np.float32), matrix, size, border=cv2.BORDER_CONSTANT) > 0
    return crop, crop_hole


def warp_back(hole: np.ndarray, content: np.ndarray, generated: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Warp one generated (S, S, 3) crop (0-255) back into ``content`` (HxWx3 uint8, in place)
    over the face's footprint, harmonised with ``content`` at the hole's edge; ``matrix`` maps
    the photo to the crop. Returns the HxW bool hole pixels it covered."""
    s = generated.shape[0]
    inv = invert_affine(matrix)
    corners = np.array([[0, 0], [s - 1, 0], [0, s - 1], [s - 1, s - 1]], np.float64)
    corners = corners @ inv[:, :2].T + inv[:, 2]
    h, w = hole.shape
    lo, hi = np.floor(corners.min(axis=0)).astype(int), np.ceil(corners.max(axis=0)).astype(int)
    left, top = max(0, int(lo[0])), max(0, int(lo[1]))
    right, bottom = min(w, int(hi[0]) + 1), min(h, int(hi[1]) + 1)
    if right <= left or bottom <= top:
        return np.zeros(hole.shape, bool)
    # work only around the hole's part inside the footprint: warping and harmonising the whole
    # face of a large photo costs far more than the hole's surroundings
    x, y, bw, bh = cv2.boundingRect(hole[top:bottom, left:right].astype(np.uint8))
    if bw == 0 or bh == 0:
        return np.zeros(hole.shape, bool)
    m = HARMONIZE_MARGIN
    left, top, right, bottom = (
        max(left, left + x - m),
        max(top, top + y - m),
        min(right, left + x + bw + m),
        min(bottom, top + y + bh + m),
    )
    shifted = inv.copy()
    shifted[:, 2] -= (left, top)
    size = (right - left, bottom - top)
    back = cv2.warpAffine(
        generated.astype(np.float32), shifted, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    inside = (
        cv2.warpAffine(
            np.ones((s, s), np.float32),
            shifted,
            size,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        > 0.999
    )
    region_hole = hole[top:bottom, left:right].astype(bool) & inside
    if region_hole.any():
        # against ``content``, not the photo: where the hole runs on past this face's crop, the
        # ring holds OpenCV's fill, never what lies under the hole
        view = content[top:bottom, left:right]
        fixed = harmonize(view, back, region_hole.astype(np.uint8))
        view[...] = paste(view, fixed, region_hole)
    face_hole = np.zeros(hole.shape, bool)
    face_hole[top:bottom, left:right] = region_hole
    return face_hole
