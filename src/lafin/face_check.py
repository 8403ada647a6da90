"""Crop mode's check that the image is a face: it fills the hole anyway, but says so when not.

Two signals. The first is the landmark predictor's agreement with itself: on a face, the
landmarks predicted on the crop and on its mirror image (mirrored back) nearly coincide; on a
landscape, a texture or an object the predictor has nothing to hold on to and the two sets
differ. The mirror pass is the one the landmark flip average makes anyway, so the check costs a
few arithmetic operations.

It judges only when the hole leaves the middle of the crop (where crop mode expects the face)
mostly visible: a face whose hole hides it disagrees with its mirror as much as a non-face does,
and a false alarm on a face is worse than a miss. Over the limit, two second opinions, asked only
then: the predictor again on the face re-aligned by the landmarks it placed (as photo mode views
a face; a turned or loosely framed face agrees with itself there more often than a non-face
does), and dlib's HOG face detector (photo mode's) on the known pixels, the hole filled by
OpenCV. Either one silences the warning.

The second judges the known pixels themselves, wherever the hole is (also over the crop's
middle, where the landmarks cannot tell): at 64 px, noise (neighbouring pixels barely correlate,
:data:`NOISE_CORRELATION_LIMIT`), a smooth gradient (a quadratic surface explains them,
:data:`SMOOTH_RESIDUAL_LIMIT`) or sky above vegetation with no skin colour (a landscape,
:data:`LANDSCAPE_SKIN_LIMIT` and the shares beside it) is no face's surroundings (about 1 ms).
Grey and sepia images have no blue or green, so the colour rule never judges them. Only the face
detector, asked then, silences it. The thresholds were set on 1,000 CelebA train faces and all
AFW and HELEN crops (also grey and sepia), each with a random 10-60% hole and a block over the
middle: none of those faces shows a sign, with a margin (noise: faces' correlation 0.65 or more;
gradient: their residual 0.23 of the spread or more; landscape: the nearest face, an outdoor
HELEN photo whose hole hid the face, had 3.5% skin colour and 34% vegetation). Not adopted,
measured: a fine-texture rule (the variance left at 16 px) reaches HELEN faces with a textured
background (0.20) before gravel and grass are caught (0.11-0.17); flat graphics (few colours)
reach HELEN crops padded with a constant colour.

benchmarks/face_check.py measures each step on faces (CelebA val, loose iBUG AFW and HELEN crops)
and non-faces (pictures, noise, gradients, synthetic landscapes) with 10-60% holes and with holes
over the middle (docs/MODEL_CARD.md, limits).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from lafin.landmarks import OUTER_EYE_CORNERS

if TYPE_CHECKING:
    import torch

    from lafin.crop_frame import CropFrame
    from lafin.landmark_locator import LandmarkLocator

log = logging.getLogger(__name__)

# Mirror disagreement (mean point distance over the outer-eye-corner distance) above which crop
# mode warns that the image may not be a face (if the face detector finds none either). Chosen on
# CelebA val and the iBUG AFW/HELEN crops with 10-60% holes (benchmarks/face_check.py): no false
# alarm on those faces, while most judged non-faces are over it.
MIRROR_DISAGREEMENT_LIMIT = 0.11
# The check is not made when the hole covers this share or more of the crop's middle (the
# central half of its padded square, each way): the face's place is hidden, a face cannot be
# told from a non-face there.
CENTRE_HIDDEN_LIMIT = 0.6

# Known-pixel signs (:func:`known_pixel_sign`), measured at 64 px on the known pixels.
# Noise: the correlation of neighbouring grey values under this (faces: 0.65 or more; uniform
# noise: about 0; fine textures such as gravel: 0.3-0.5).
NOISE_CORRELATION_LIMIT = 0.4
# A smooth gradient: a quadratic surface per channel leaves a residual under this share of the
# grey spread (faces: 0.23 or more; linear gradients: 0.05 or less), the spread over 8 levels.
SMOOTH_RESIDUAL_LIMIT = 0.15
# A landscape: under this share of skin-coloured (warm) pixels, with sky (blue) making up over
# SKY_SHARE of the top third and vegetation (green) over VEGETATION_SHARE of the bottom third.
LANDSCAPE_SKIN_LIMIT = 0.01
SKY_SHARE = 0.6
VEGETATION_SHARE = 0.5
# Too few known pixels at 64 px to judge.
MIN_KNOWN_PIXELS = 200

NOT_A_FACE_PIXELS = (
    "the image does not look like a face (its known pixels {sign}, and no face was detected): "
    "the hole was filled by the face generator anyway (lafin is made for faces; the result may "
    "look wrong on other images)"
)

NOT_A_FACE = (
    "the image does not look like a face (the landmark predictor disagrees with itself on its "
    "mirror image by {disagreement:.1%} of the eye distance, over the {limit:.0%} limit, also on "
    "the face it found re-aligned, and no face was detected): the hole was filled by the face "
    "generator anyway (lafin is made for faces; the result may look wrong on other images)"
)


def mirror_disagreement(points: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """(B,) mean distance between (B, 68, 2) landmarks predicted on crops and those predicted on
    their mirror images (mirrored back), over the outer-eye-corner distance of their mean (at
    least one pixel)."""
    mean = (points + mirrored) / 2
    a, b = OUTER_EYE_CORNERS
    eyes = np.linalg.norm(mean[..., a, :] - mean[..., b, :], axis=-1)
    return np.linalg.norm(points - mirrored, axis=-1).mean(axis=-1) / np.maximum(eyes, 1.0)


def detector_sees_face(image: np.ndarray, hole: np.ndarray) -> bool:
    """Does dlib's HOG detector find a face in the known pixels of ``image`` (HxWx3 uint8; hole
    HxW, nonzero = hole)? The image is brought to 208 px, its hole filled by OpenCV (Telea; a
    flat hole hides a face from the detector twice as often) and padded by a quarter of its
    side (a tight crop's face touches the edges, which the detector's window must see past)."""
    from lafin.face import detect_faces

    h, w = hole.shape
    scale = 208 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    # the hole painted white first and grown by the resize: nothing under it is read
    source = cv2.resize(np.where(hole[..., None] > 0, np.uint8(255), image), size, interpolation=interp)
    small_hole = (cv2.resize(hole.astype(np.float32), size, interpolation=interp) > 0).astype(np.uint8)
    filled = cv2.inpaint(source, small_hole, 5, cv2.INPAINT_TELEA)
    pad = 208 // 4
    return bool(detect_faces(cv2.copyMakeBorder(filled, pad, pad, pad, pad, cv2.BORDER_REPLICATE)))


def known_pixel_sign(image: np.ndarray, hole: np.ndarray) -> str | None:
    """Why the known pixels of ``image`` (HxWx3 uint8; hole HxW, nonzero = hole) look like no
    face's surroundings ("look like noise", "are a smooth gradient", "look like sky above
    vegetation, with no skin colour"), or None. Measured at 64 px (the longest side), a pixel
    with any hole in it counting as hole; None when fewer than :data:`MIN_KNOWN_PIXELS` are known."""
    h, w = hole.shape
    scale = 64 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    known = cv2.resize((hole > 0).astype(np.float32), size, interpolation=cv2.INTER_AREA) == 0
    if np.count_nonzero(known) < MIN_KNOWN_PIXELS:
        return None
    grey = small.mean(axis=-1)
    spread = float(grey[known].std())
    # noise: neighbouring known pixels (across and down) barely correlate
    across, down = known[:, :-1] & known[:, 1:], known[:-1] & known[1:]
    a = np.concatenate([grey[:, :-1][across], grey[:-1][down]])
    b = np.concatenate([grey[:, 1:][across], grey[1:][down]])
    if spread > 2 and a.size > 1 and a.std() > 0 and b.std() > 0:
        if float(np.corrcoef(a, b)[0, 1]) < NOISE_CORRELATION_LIMIT:
            return "look like noise"
    # a smooth gradient: a quadratic surface explains each channel
    if spread > 8:
        yy, xx = np.nonzero(known)
        x, y = xx / 64.0, yy / 64.0
        basis = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=-1)
        values = small[known].astype(np.float64)
        # the normal equations (6x6): a least-squares solver's threads cost more than the fit
        coef = np.linalg.solve(basis.T @ basis + 1e-9 * np.eye(6), basis.T @ values)
        if float((values - basis @ coef).std(axis=0).mean()) < SMOOTH_RESIDUAL_LIMIT * spread:
            return "are a smooth gradient"
    # a landscape: sky at the top, vegetation at the bottom, no skin colour anywhere
    lab = cv2.cvtColor(small / 255, cv2.COLOR_RGB2Lab)[known]
    chroma_a, chroma_b = lab[:, 1], lab[:, 2]
    hue = np.degrees(np.arctan2(chroma_b, chroma_a)) % 360
    warm = (np.hypot(chroma_a, chroma_b) > 8) & ((hue < 100) | (hue > 340))
    row = np.nonzero(known)[0] / known.shape[0]
    top, bottom = row < 1 / 3, row >= 2 / 3
    sky = (chroma_b < -8) & (chroma_a < 12)
    vegetation = (chroma_a < -6) & (chroma_b > -2)
    if (
        warm.mean() < LANDSCAPE_SKIN_LIMIT
        and top.any()
        and bottom.any()
        and sky[top].mean() > SKY_SHARE
        and vegetation[bottom].mean() > VEGETATION_SHARE
    ):
        return "look like sky above vegetation, with no skin colour"
    return None


def centre_hidden(hole: np.ndarray) -> float:
    """The share of the middle of an HxW hole's padded square (its central half, each way;
    padding counts as known) that is hole."""
    h, w = hole.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2  # the image's place in its square (CropFrame)
    lo, hi = side // 4, side - side // 4
    inside = hole[max(0, lo - top) : max(0, hi - top), max(0, lo - left) : max(0, hi - left)]
    return float(np.count_nonzero(inside)) / float((hi - lo) ** 2)


def crop_face_warnings(
    image: np.ndarray,
    hole: np.ndarray,
    disagreement: float,
    limit: float | None,
    aligned_disagreement: Callable[[], float] | None = None,
) -> list[str]:
    """The warning (one, also logged) for a face crop that may not be a face, when the face
    detector finds no face in the known pixels and either the known pixels show a sign
    (:func:`known_pixel_sign`) or its landmarks' mirror ``disagreement`` is over ``limit``, the
    hole leaves the crop's middle visible (:data:`CENTRE_HIDDEN_LIMIT`) and the disagreement on
    the face re-aligned by those landmarks (``aligned_disagreement()``, asked only then; None:
    not asked) is over it too. Else none. ``limit`` None: no check at all."""
    if limit is None:
        return []
    sign = known_pixel_sign(image, hole)
    if sign is None:
        if not disagreement > limit or centre_hidden(hole) >= CENTRE_HIDDEN_LIMIT:
            return []
        second = disagreement if aligned_disagreement is None else aligned_disagreement()
        if not second > limit:
            return []
    if detector_sees_face(image, hole):
        return []
    from lafin.results import log_result_warning

    if sign is not None:
        text = NOT_A_FACE_PIXELS.format(sign=sign)
    else:
        text = NOT_A_FACE.format(disagreement=min(disagreement, second), limit=limit)
    return [log_result_warning(log, text)]


def locate_crop_face(
    locator: "LandmarkLocator",
    img: np.ndarray,
    hole: np.ndarray,
    frame: "CropFrame",
    img_t: "torch.Tensor",
    hole_t: "torch.Tensor",
    limit: float | None,
) -> tuple[np.ndarray, list[str]]:
    """Crop mode's landmarks (:meth:`lafin.landmark_locator.LandmarkLocator.locate`) and the
    check's warnings (:func:`crop_face_warnings`; ``limit`` None: no check, no mirror pass)."""
    if limit is None:
        return locator.locate(img, hole, frame, img_t, hole_t), []
    points, disagreement = locator.locate_with_mirror_check(img, hole, frame, img_t, hole_t)
    aligned = lambda: locator.aligned_mirror_check(img, hole, frame.to_input(points))
    return points, crop_face_warnings(img, hole, disagreement, limit, aligned)
