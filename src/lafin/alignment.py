"""Face alignment: the canonical face frame and similarity transforms into and out of it.

The models are trained on crops framed like CelebA's aligned faces. ``CANONICAL_LANDMARKS`` is
that frame: the mean of the 68 points over the CelebA training crops (dlib labels, averaged with
their mirror images so it is symmetric), as fractions of the crop side.
"""

from __future__ import annotations

import cv2
import numpy as np

CANONICAL_LANDMARKS: np.ndarray = np.array(
    [
        [0.1337, 0.3438],
        [0.1345, 0.4416],
        [0.1436, 0.5409],
        [0.1634, 0.6387],
        [0.2013, 0.7294],
        [0.2596, 0.8088],
        [0.3302, 0.8768],
        [0.4100, 0.9317],
        [0.5000, 0.9478],
        [0.5900, 0.9317],
        [0.6698, 0.8768],
        [0.7404, 0.8088],
        [0.7987, 0.7294],
        [0.8366, 0.6387],
        [0.8564, 0.5409],
        [0.8655, 0.4416],
        [0.8663, 0.3438],
        [0.2129, 0.2596],
        [0.2591, 0.2241],
        [0.3202, 0.2152],
        [0.3828, 0.2262],
        [0.4415, 0.2523],
        [0.5585, 0.2523],
        [0.6172, 0.2262],
        [0.6798, 0.2152],
        [0.7409, 0.2241],
        [0.7871, 0.2596],
        [0.5000, 0.3293],
        [0.5000, 0.3931],
        [0.5000, 0.4567],
        [0.5000, 0.5217],
        [0.4293, 0.5664],
        [0.4632, 0.5802],
        [0.5000, 0.5916],
        [0.5368, 0.5802],
        [0.5707, 0.5664],
        [0.2837, 0.3358],
        [0.3219, 0.3122],
        [0.3691, 0.3131],
        [0.4086, 0.3445],
        [0.3652, 0.3534],
        [0.3194, 0.3529],
        [0.5914, 0.3445],
        [0.6309, 0.3131],
        [0.6781, 0.3122],
        [0.7163, 0.3358],
        [0.6806, 0.3529],
        [0.6348, 0.3534],
        [0.3615, 0.6882],
        [0.4115, 0.6637],
        [0.4634, 0.6521],
        [0.5000, 0.6612],
        [0.5366, 0.6521],
        [0.5885, 0.6637],
        [0.6385, 0.6882],
        [0.5902, 0.7404],
        [0.5398, 0.7644],
        [0.5000, 0.7687],
        [0.4602, 0.7644],
        [0.4098, 0.7404],
        [0.3835, 0.6911],
        [0.4632, 0.6861],
        [0.5000, 0.6895],
        [0.5368, 0.6861],
        [0.6165, 0.6911],
        [0.5375, 0.7134],
        [0.5000, 0.7180],
        [0.4625, 0.7134],
    ],
    dtype=np.float32,
)


def rescale_points(points: np.ndarray, scale: float) -> np.ndarray:
    """Pixel coordinates (..., 2) of an image resized by ``scale`` (pixel centres kept: pixel
    x covers [x - 0.5, x + 0.5], so x + 0.5 scales). Same dtype for float32 and float64 input."""
    return (points + 0.5) * scale - 0.5


def canonical_landmarks(size: int) -> np.ndarray:
    """The canonical 68 points in pixels of a ``size`` x ``size`` crop (pixel-centre convention)."""
    return CANONICAL_LANDMARKS * size - 0.5


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src onto dst.

    Umeyama's closed form, optionally weighted (e.g. 0 for points hidden by a hole).

    Args:
        src, dst: (N, 2) point sets, N >= 2.
        weights: (N,) non-negative weights, or None for equal weights.

    Returns:
        (2, 3) float64 matrix M with ``dst ~= src @ M[:, :2].T + M[:, 2]``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    if w.sum() <= 0 or (w > 0).sum() < 2:
        raise ValueError("a similarity transform needs at least two weighted points")
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    s, d = src - mu_s, dst - mu_d
    cov = (d * w[:, None]).T @ s
    u, sig, vt = np.linalg.svd(cov)
    sign = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0
    e = np.diag([1.0, sign])
    rot = u @ e @ vt
    var = (w * (s**2).sum(axis=1)).sum()
    scale = (sig * np.diag(e)).sum() / var if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix."""
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    return np.asarray(points) @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def warp_to_crop(
    image: np.ndarray,
    matrix: np.ndarray,
    size: int,
    interpolation: int = cv2.INTER_LINEAR,
    border: int = cv2.BORDER_REFLECT_101,
) -> np.ndarray:
    """Resample ``image`` into a ``size`` x ``size`` crop by the (2, 3) image->crop ``matrix``.

    ``cv2.warpAffine`` reads 2x2 (bilinear) or 4x4 (cubic) source pixels per crop pixel whatever
    the scale, and ignores ``INTER_AREA``: a face shrunk more than 2x from a large photo
    aliases, and a thin hole that falls between the samples vanishes from the crop. Then the
    source region the crop sees is first reduced with ``cv2.resize(INTER_AREA)`` (every source
    pixel counts) to about the crop's scale; the rest of the warp is a near-unit rotation.

    Args:
        image: HxW or HxWxC array (uint8 or float32).
        matrix: (2, 3) float matrix mapping image pixels to crop pixels.
        size: side of the crop.
        interpolation: the flag for the remaining (scale >= ~1) warp.
        border: OpenCV border mode for crop pixels outside the image.

    Returns:
        (size, size[, C]) array of ``image``'s dtype.
    """
    matrix = np.asarray(matrix, np.float64)
    scale = float(np.hypot(matrix[0, 0], matrix[0, 1]))
    # above half scale the 2x2 kernel still reads every source pixel (samples < 2 px apart): a
    # hole touches the crop, and the crops match what the benchmarks measured (AFW's ~0.75)
    if scale >= 0.5:
        return cv2.warpAffine(image, matrix, (size, size), flags=interpolation, borderMode=border)
    h, w = image.shape[:2]
    corners = transform_points(
        np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64), invert_affine(matrix)
    )
    margin = 2.0 / scale  # the remaining warp's kernel reaches two reduced pixels out
    x0 = int(np.clip(np.floor(corners[:, 0].min() - margin), 0, w - 1))
    y0 = int(np.clip(np.floor(corners[:, 1].min() - margin), 0, h - 1))
    x1 = int(np.clip(np.ceil(corners[:, 0].max() + margin), x0 + 1, w))
    y1 = int(np.clip(np.ceil(corners[:, 1].max() + margin), y0 + 1, h))
    if (x1 - x0) * scale < 2 or (y1 - y0) * scale < 2:  # the crop lies (almost) outside the image
        return cv2.warpAffine(image, matrix, (size, size), flags=interpolation, borderMode=border)
    roi = image[y0:y1, x0:x1]
    small_w, small_h = max(2, round((x1 - x0) * scale)), max(2, round((y1 - y0) * scale))
    small = cv2.resize(roi, (small_w, small_h), interpolation=cv2.INTER_AREA)
    fx, fy = small_w / (x1 - x0), small_h / (y1 - y0)
    # a reduced pixel q is the image point (q + 0.5) / f - 0.5 + offset (pixel centres)
    to_image = np.array([[1 / fx, 0, 0.5 / fx - 0.5 + x0], [0, 1 / fy, 0.5 / fy - 0.5 + y0]])
    combined = matrix[:, :2] @ to_image[:, :2]
    shift = matrix[:, :2] @ to_image[:, 2] + matrix[:, 2]
    # pixels outside the region (clipped at the image's edge) reflect there, as before
    return cv2.warpAffine(
        small, np.hstack([combined, shift[:, None]]), (size, size), flags=interpolation, borderMode=border
    )


def crop_source_box(shape: tuple[int, ...], matrix: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom): the part of an image of ``shape`` that :func:`warp_to_crop`
    reads for a ``size`` crop by ``matrix`` (the crop's footprint, the resampling kernel's reach,
    and the pixels that reflect into crop pixels outside the image), clipped to the image.

    Warping ``image[top:bottom, left:right]`` by :func:`offset_matrix` gives the same crop as
    warping the whole image: work on a large photo's face (whitening its hole, converting types)
    can then be done on this box only.
    """
    h, w = shape[:2]
    matrix = np.asarray(matrix, np.float64)
    scale = float(np.hypot(matrix[0, 0], matrix[0, 1]))
    corners = transform_points(
        np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64), invert_affine(matrix)
    )
    # the cubic kernel reads two source pixels out; a reduced warp (scale < 0.5) two reduced ones
    reach = 2.0 / min(scale, 0.5) + 2.0
    lo, hi = corners.min(axis=0) - reach, corners.max(axis=0) + reach
    box = []
    for axis, side in ((0, w), (1, h)):
        start, stop = lo[axis], hi[axis]
        # BORDER_REFLECT_101 mirrors crop pixels beyond an edge back into the image, as far in
        # as they lie out
        if start < 0:
            stop = max(stop, -start + 1)
        if stop > side - 1:
            start = min(start, 2 * (side - 1) - stop - 1)
        box.append((int(np.clip(np.floor(start), 0, side - 1)), int(np.clip(np.ceil(stop) + 1, 1, side))))
    (left, right), (top, bottom) = box
    return left, top, max(right, left + 1), max(bottom, top + 1)


def offset_matrix(matrix: np.ndarray, left: float, top: float) -> np.ndarray:
    """The image->crop ``matrix`` for the same image cut at (``left``, ``top``)."""
    matrix = np.asarray(matrix, np.float64)
    out = matrix.copy()
    out[:, 2] += matrix[:, :2] @ np.array([left, top], np.float64)
    return out


def cut_for_crop(
    image: np.ndarray, hole: np.ndarray, matrix: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, hole, matrix) cut to :func:`crop_source_box`: the views of ``image`` and its
    ``hole`` that a ``size`` crop by ``matrix`` reads, and the matrix for them. Whitening a
    hole or converting types on these views, not on a whole large photo, is the point."""
    left, top, right, bottom = crop_source_box(hole.shape, matrix, size)
    return image[top:bottom, left:right], hole[top:bottom, left:right], offset_matrix(matrix, left, top)


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Warp the face to the canonical ``size`` x ``size`` crop (anti-aliased: `warp_to_crop`).

    Args:
        image: HxWx3 uint8.
        landmarks: (68, 2) x, y pixels of ``image``.
        weights: optional per-point weights for the fit (0 = ignore the point).

    Returns:
        (crop, matrix): the crop (size x size x 3 uint8) and the (2, 3) image->crop matrix.
    """
    matrix = similarity_transform(landmarks, canonical_landmarks(size), weights)
    return warp_to_crop(image, matrix, size, interpolation=cv2.INTER_CUBIC), matrix


def scale_crop_matrix(matrix: np.ndarray, factor: float) -> np.ndarray:
    """The 2x3 photo -> crop matrix of the same crop at ``factor`` times its side (pixel centres
    kept, as :func:`rescale_points`: crop pixel p becomes (p + 0.5) * factor - 0.5)."""
    scaled = np.asarray(matrix, np.float64) * factor
    scaled[:, 2] += 0.5 * (factor - 1)
    return scaled
