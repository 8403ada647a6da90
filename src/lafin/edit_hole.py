"""The hole a landmark edit needs on a photo: the user's hole joined with a box over the points
the edit moved (:func:`lafin.landmarks.edit_region`, the hole training's edited faces get), its
margin sized by the face rather than the image and kept within the face's aligned crop (what
the generator paints; beyond it a photo's hole gets only OpenCV's smooth fill), so that "open
mouth" opens a mouth the user did not paint over. Known pixels always stay the user's: without
the box such an edit could not show. Used by ``lafin inpaint --expression`` and the web demo's
Regenerate."""

from __future__ import annotations

import cv2
import numpy as np

from lafin.crop_frame import face_side
from lafin.landmarks import edit_region

# the box grows by at least this share of the face's crop side: training's least growth
# (edit_region's 4% of its aligned crops), where a share of a whole photo would be too much
# around a small face and too little around a close-up
FACE_MARGIN = 0.04
# points that move less than this share of the face's crop side do not grow the hole: a smile
# narrows the lower eyelids by 0.6%, raised eyebrows lift the upper ones by 0.9%; repainting
# the eyes for that would lose what the user's eyes look like (glasses, gaze) for no visible change
LEAST_MOVE = 0.01


def face_footprint(points: np.ndarray, shape: tuple[int, int], size: int = 256) -> np.ndarray:
    """HxW bool: the pixels of an image of ``shape`` inside the aligned crop of the face of these
    (68, 2) landmarks, framed on all of them as given landmarks are framed for the generator
    (:func:`lafin.photo.robust_alignment`)."""
    from lafin.photo import robust_alignment

    points = np.asarray(points, np.float64)
    matrix = robust_alignment(points, None, size)  # image -> crop
    height, width = (int(v) for v in shape)
    square = np.ones((size, size), np.uint8)
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(square, matrix, (width, height), flags=flags, borderValue=0).astype(bool)


def hole_over_edit(hole: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``hole`` (HxW, nonzero = hole) joined with the box over every point that moved from
    ``before`` to ``after`` by more than :data:`LEAST_MOVE` of the face's crop side
    (``before``'s face; at least 0.5 px), grown by a quarter of the box and at least
    :data:`FACE_MARGIN` of that side, the box kept within the face's aligned crop
    (:func:`face_footprint`). Returns HxW uint8, 1 = hole; the hole itself when nothing moved
    that far."""
    hole = np.asarray(hole)
    if hole.ndim != 2:
        raise ValueError(f"expected an HxW hole mask, got shape {hole.shape}")
    side = face_side(before)
    least = None if side is None else FACE_MARGIN * side  # None: edit_region's share of the image
    move = 0.5 if side is None else max(0.5, LEAST_MOVE * side)
    region = edit_region(before, after, hole.shape, min_margin_px=least, min_move_px=move)
    if side is not None and region.any():
        region &= face_footprint(before, hole.shape)
    return (hole.astype(bool) | region).astype(np.uint8)
