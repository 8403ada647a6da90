"""68-point landmarks (iBUG 300-W order): maps, mirroring, file formats, drawing.

Landmarks are (68, 2) float arrays, x then y, in pixel coordinates of the image they belong to.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lafin.errors import LandmarksError, OutputPathError

NUM_POINTS = 68

# Index of each point's mirror image under a horizontal flip (iBUG 300-W, 0-based).
FLIP_PERMUTATION: np.ndarray = np.array(
    list(range(16, -1, -1))  # jaw 0-16
    + list(range(26, 16, -1))  # brows 17-26
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nose base
    + [45, 44, 43, 42, 47, 46]  # right eye <- left eye
    + [39, 38, 37, 36, 41, 40]  # left eye <- right eye
    + [54, 53, 52, 51, 50, 49, 48]  # outer lip top
    + [59, 58, 57, 56, 55]  # outer lip bottom
    + [64, 63, 62, 61, 60]  # inner lip top
    + [67, 66, 65],  # inner lip bottom
    dtype=np.int64,
)

# Groups of point indices, for drawing and for part-wise evaluation.
PARTS: dict[str, tuple[int, int]] = {
    "jaw": (0, 17),
    "right_brow": (17, 22),
    "left_brow": (22, 27),
    "nose_bridge": (27, 31),
    "nose_base": (31, 36),
    "right_eye": (36, 42),
    "left_eye": (42, 48),
    "outer_lip": (48, 60),
    "inner_lip": (60, 68),
}
_CLOSED = {"right_eye", "left_eye", "outer_lip", "inner_lip"}

# The part (a key of PARTS) each point belongs to, by point index.
POINT_PARTS: tuple[str, ...] = tuple(
    name for name, (a, b) in sorted(PARTS.items(), key=lambda kv: kv[1][0]) for _ in range(a, b)
)

# Outer eye corners (0-based), the standard inter-ocular normalisation of NME.
OUTER_EYE_CORNERS = (36, 45)


def flip_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks of the horizontally flipped image: mirror x and swap left/right points.

    Args:
        landmarks: (..., 68, 2) x, y pixel coordinates.
        width: image width in pixels; pixel centres map as x -> width - 1 - x.
    """
    out = landmarks[..., FLIP_PERMUTATION, :].copy()
    out[..., 0] = width - 1 - out[..., 0]
    return out


def landmark_map(landmarks: torch.Tensor, size: int) -> torch.Tensor:
    """Render landmarks as LaFIn does: one channel of zeros with 1 at each rounded landmark pixel.

    Args:
        landmarks: (B, 68, 2) float x, y in pixels of a ``size`` x ``size`` image.
        size: side of the map.

    Returns:
        (B, 1, size, size) float tensor on the landmarks' device.
    """
    b, n, _ = landmarks.shape
    xy = landmarks.round().long().clamp(0, size - 1)
    flat = xy[..., 1] * size + xy[..., 0]  # (B, N)
    out = torch.zeros(b, size * size, device=landmarks.device, dtype=torch.float32)
    out.scatter_(1, flat, 1.0)
    return out.view(b, 1, size, size)


def nme(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Normalised mean error per face: mean point distance over the outer-eye-corner distance.

    Args:
        pred, truth: (..., 68, 2) pixel coordinates; normalisation uses the ground truth.

    Returns:
        (...,) float array (a fraction, multiply by 100 for percent).
    """
    dist = np.linalg.norm(pred - truth, axis=-1).mean(axis=-1)
    a, b = OUTER_EYE_CORNERS
    return dist / np.linalg.norm(truth[..., a, :] - truth[..., b, :], axis=-1)


def read_pts(path: str | Path) -> np.ndarray:
    """Read an iBUG ``.pts`` file (1-based pixel coordinates) as 0-based (68, 2) float32.

    Raises :class:`~lafin.errors.LandmarksError` (a ``ValueError``) for a malformed file.
    """
    text = _read_text(path).split("{", 1)
    if len(text) != 2 or "}" not in text[1]:
        raise LandmarksError(f"{path}: not an iBUG .pts file (no '{{ ... }}' block)")
    try:
        values = np.array(text[1].split("}", 1)[0].split(), dtype=np.float32)
    except ValueError:
        raise LandmarksError(f"{path}: the .pts block holds something that is not a number") from None
    if values.size != 2 * NUM_POINTS:
        raise LandmarksError(f"{path}: expected {NUM_POINTS} points, found {values.size / 2:g}")
    return values.reshape(NUM_POINTS, 2) - 1.0


def _read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise LandmarksError(
            f"landmarks file not found: {path}"
            if not path.exists()
            else f"landmarks path is not a file: {path}"
        )
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise LandmarksError(f"{path}: not a text file") from None
    except OSError as exc:
        raise LandmarksError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def write_pts(path: str | Path, landmarks: np.ndarray) -> None:
    """Write (68, 2) 0-based pixel coordinates as an iBUG ``.pts`` file (1-based)."""
    pts = np.asarray(landmarks, dtype=np.float64) + 1.0
    lines = ["version: 1", f"n_points: {len(pts)}", "{"]
    lines += [f"{x:.3f} {y:.3f}" for x, y in pts]
    lines.append("}")
    Path(path).write_text("\n".join(lines) + "\n")


def save_landmarks(path: str | Path, landmarks: np.ndarray) -> None:
    """Save landmarks by extension: ``.pts`` (iBUG), ``.json`` ({"landmarks": [[x, y], ...]}),
    or ``.npy``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pts":
        write_pts(path, landmarks)
    elif suffix == ".json":
        path.write_text(
            json.dumps({"format": "ibug68-xy-pixels", "landmarks": np.asarray(landmarks).round(3).tolist()})
        )
    elif suffix == ".npy":
        np.save(path, np.asarray(landmarks, dtype=np.float32))
    else:
        raise OutputPathError(f"{path}: unknown landmark format {suffix!r}; use .pts, .json or .npy")


def load_landmarks(path: str | Path) -> np.ndarray:
    """Load (68, 2) float32 landmarks from ``.pts``, ``.json`` or ``.npy`` (see save_landmarks).

    Raises :class:`~lafin.errors.LandmarksError` (a ``ValueError``) with a one-line reason for a
    missing, malformed or non-finite file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pts":
        pts = read_pts(path)
    elif suffix == ".json":
        try:
            data = json.loads(_read_text(path))
        except json.JSONDecodeError as exc:
            raise LandmarksError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if isinstance(data, dict) and "landmarks" not in data:
            raise LandmarksError(f"{path}: a JSON object needs a 'landmarks' list of [x, y] pairs")
        try:
            with np.errstate(over="ignore"):  # 1e40 becomes inf, refused below
                pts = np.asarray(data["landmarks"] if isinstance(data, dict) else data, dtype=np.float32)
        except (TypeError, ValueError, OverflowError):
            raise LandmarksError(f"{path}: 'landmarks' must be 68 [x, y] number pairs") from None
    elif suffix == ".npy":
        if not path.is_file():
            _read_text(path)  # the same not-found / not-a-file message
        try:
            raw = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise LandmarksError(f"{path}: not a readable .npy array ({exc})") from None
        if not isinstance(raw, np.ndarray) or not (np.issubdtype(raw.dtype, np.number)):
            raise LandmarksError(f"{path}: the .npy file must hold a numeric (68, 2) array")
        pts = raw.astype(np.float32)
    else:
        raise LandmarksError(f"{path}: unknown landmark format {suffix!r}; use .pts, .json or .npy")
    if pts.shape != (NUM_POINTS, 2):
        raise LandmarksError(f"{path}: expected landmarks of shape (68, 2), got {pts.shape}")
    if not np.isfinite(pts).all():
        raise LandmarksError(f"{path}: landmarks contain NaN or infinite values")
    return pts


def draw_landmarks(
    image: np.ndarray,
    landmarks: np.ndarray,
    color: tuple[int, int, int] = (0, 255, 0),
    radius: int | None = None,
) -> np.ndarray:
    """Return a copy of an HxWx3 uint8 image with the landmarks drawn as dots joined by lines."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    scale = max(out.shape[:2]) / 256
    r = radius if radius is not None else max(1, round(1.5 * scale))
    thickness = max(1, round(scale))
    pts = np.asarray(landmarks, dtype=np.float64)
    for name, (a, b) in PARTS.items():
        poly = np.round(pts[a:b]).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [poly], name in _CLOSED, color, thickness, cv2.LINE_AA)
    for x, y in pts:
        cv2.circle(out, (int(round(x)), int(round(y))), r, color, -1, cv2.LINE_AA)
    return out


# ---------------------------------------------------------------------------- expressions
# Moves of point groups that change a face's expression, in the face's own frame (its eye line
# gives "right" and "down") and in units of the inter-ocular distance, so they work for any face
# size and in-plane rotation. Used by the web demo's expression buttons and by the landmark
# fidelity evaluation (does the generator follow edited landmarks?).


def face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The face's own axes: unit ``right`` (from the image-left eye's centre to the other's),
    unit ``down`` (perpendicular, towards the chin) and the inter-ocular distance in pixels.

    Raises:
        ValueError: both eyes at the same place (degenerate landmarks).
    """
    right_eye, left_eye = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
    across = left_eye - right_eye
    iod = float(np.hypot(*across))
    if not np.isfinite(iod) or iod < 1e-3:
        raise ValueError(
            "the landmarks are degenerate (both eyes at the same place): an expression cannot be applied"
        )
    right = across / iod
    down = np.array([-right[1], right[0]])
    return right, down, iod


def _move(points: np.ndarray, weights: dict[int, float], vector: np.ndarray) -> None:
    for i, w in weights.items():
        points[i] += w * vector


# how far each point follows the lower lip when the mouth opens (jaw drops with it)
_OPEN_MOUTH = {
    66: 1.0,
    65: 0.9,
    67: 0.9,
    57: 1.0,
    56: 0.95,
    58: 0.95,
    55: 0.7,
    59: 0.7,
    60: 0.3,
    64: 0.3,
    48: 0.25,
    54: 0.25,
    61: -0.05,
    62: -0.05,
    63: -0.05,
    8: 1.0,
    7: 0.85,
    9: 0.85,
    6: 0.6,
    10: 0.6,
    5: 0.35,
    11: 0.35,
    4: 0.15,
    12: 0.15,
}
_INNER_TOP, _INNER_BOTTOM = (61, 62, 63), (67, 66, 65)
_LID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))  # (upper, lower) eyelid points


def _open_mouth(p: np.ndarray, s: float) -> None:
    _, down, iod = face_axes(p)
    _move(p, _OPEN_MOUTH, 0.30 * iod * s * down)


def _close_mouth(p: np.ndarray, s: float) -> None:
    _, down, _ = face_axes(p)
    gap = float((p[list(_INNER_BOTTOM)] - p[list(_INNER_TOP)]).mean(axis=0) @ down)
    if gap <= 0:
        return
    # the inner lips move towards each other by (mean bottom weight - top weight) per unit
    closing = np.mean([_OPEN_MOUTH[i] for i in _INNER_BOTTOM]) - _OPEN_MOUTH[62]
    _move(p, _OPEN_MOUTH, -gap * min(s, 1.0) / closing * down)


def _smile(p: np.ndarray, s: float) -> None:
    right, down, iod = face_axes(p)
    out, up = 0.10 * iod * s, -0.10 * iod * s
    for weight, left_pts, right_pts in (
        (1.0, (48,), (54,)),
        (0.8, (60,), (64,)),
        (0.45, (49, 59), (53, 55)),
        (0.2, (61, 67), (63, 65)),
    ):
        for i in left_pts:
            p[i] += weight * (-out * right + up * down)
        for i in right_pts:
            p[i] += weight * (out * right + up * down)
    _move(p, {40: 1.0, 41: 1.0, 46: 1.0, 47: 1.0}, -0.02 * iod * s * down)  # cheeks lift the lids


def _raise_eyebrows(p: np.ndarray, s: float) -> None:
    _, down, iod = face_axes(p)
    brows = {i: 1.0 for i in range(17, 27)} | {17: 0.8, 26: 0.8, 18: 0.9, 25: 0.9}
    _move(p, brows, -0.12 * iod * s * down)
    _move(p, {37: 1.0, 38: 1.0, 43: 1.0, 44: 1.0}, -0.03 * iod * s * down)


def _frown(p: np.ndarray, s: float) -> None:
    right, down, iod = face_axes(p)
    _move(
        p,
        {17: 0.4, 18: 0.6, 19: 0.8, 20: 1.0, 21: 1.0, 22: 1.0, 23: 1.0, 24: 0.8, 25: 0.6, 26: 0.4},
        0.08 * iod * s * down,
    )
    _move(p, {20: 0.5, 21: 1.0}, 0.05 * iod * s * right)  # inner ends knit together
    _move(p, {22: 1.0, 23: 0.5}, -0.05 * iod * s * right)


def _close_eyes(p: np.ndarray, s: float) -> None:
    s = min(max(s, 0.0), 1.0)
    for upper, lower in _LID_PAIRS:  # the upper lid does most of the closing
        gap = p[lower] - p[upper]
        p[upper] += 0.8 * s * gap
        p[lower] -= 0.2 * s * gap


def _widen_eyes(p: np.ndarray, s: float) -> None:
    _, down, iod = face_axes(p)
    _move(p, {37: 1.0, 38: 1.0, 43: 1.0, 44: 1.0}, -0.06 * iod * s * down)
    _move(p, {40: 1.0, 41: 1.0, 46: 1.0, 47: 1.0}, 0.02 * iod * s * down)


_EXPRESSION_MOVES = {
    "open mouth": _open_mouth,
    "close mouth": _close_mouth,
    "smile": _smile,
    "raise eyebrows": _raise_eyebrows,
    "frown": _frown,
    "close eyes": _close_eyes,
    "widen eyes": _widen_eyes,
}
EXPRESSION_NAMES: tuple[str, ...] = tuple(_EXPRESSION_MOVES)
"""The expressions :func:`edit_expression` knows."""


def edit_expression(landmarks: np.ndarray, name: str, amount: float = 1.0) -> np.ndarray:
    """Move the iBUG-68 point groups of one expression; returns a new (68, 2) float32 array.

    Args:
        landmarks: (68, 2) x, y pixels.
        name: one of :data:`EXPRESSION_NAMES` (``open mouth``, ``close mouth``, ``smile``,
            ``raise eyebrows``, ``frown``, ``close eyes``, ``widen eyes``).
        amount: 1 is a moderate change (e.g. the mouth opens by 0.3 inter-ocular distances);
            0 changes nothing; the "close" expressions stop at closed (amount capped at 1).

    Raises:
        ValueError: an unknown name, landmarks not (68, 2), or degenerate landmarks.
    """
    if name not in _EXPRESSION_MOVES:
        raise ValueError(f"unknown expression {name!r}; choose one of {', '.join(EXPRESSION_NAMES)}")
    points = np.array(landmarks, dtype=np.float64)
    if points.shape != (NUM_POINTS, 2):
        raise ValueError(f"landmarks must have shape (68, 2), got {points.shape}")
    _EXPRESSION_MOVES[name](points, float(amount))
    return points.astype(np.float32)


def edit_region(
    before: np.ndarray,
    after: np.ndarray,
    shape: tuple[int, int],
    margin: float = 0.25,
    min_margin: float = 0.04,
    min_margin_px: float | None = None,
    min_move_px: float = 0.5,
) -> np.ndarray:
    """The hole an edit of the landmarks needs: a box over every point that moved.

    Known pixels stay the user's, so a mouth that lies outside the hole cannot open whatever
    its landmarks say. The box covers the moved points at their old and new places, grown on
    each side by ``margin`` of its width (height) and at least ``min_margin`` of the image's
    width (height), clipped to the image. Training draws its edited faces' holes with it
    (:func:`lafin.data.batches.edit_expressions`) and the landmark-fidelity benchmarks join it
    to the hole of an edited guide.

    Args:
        before, after: (68, 2) x, y pixels, the landmarks before and after the edit.
        shape: (height, width) of the image.
        margin, min_margin: growth as fractions of the box and of the image.
        min_margin_px: the least growth on each side in pixels, in place of ``min_margin``
            (for a face that is small in a large photo: the web demo gives 4% of its crop side).
        min_move_px: a point counts as moved when it moved by more than this.

    Returns:
        HxW bool, True over the box; all False when no point moved by more than ``min_move_px``.
    """
    old, new = np.asarray(before, np.float64), np.asarray(after, np.float64)
    if old.shape != (NUM_POINTS, 2) or new.shape != (NUM_POINTS, 2):
        raise ValueError(f"landmarks must have shape (68, 2), got {old.shape} and {new.shape}")
    if min_margin_px is not None and not min_margin_px >= 0:
        raise ValueError(f"min_margin_px must be >= 0, not {min_margin_px}")
    height, width = (int(s) for s in shape)
    region = np.zeros((height, width), bool)
    moved = np.linalg.norm(new - old, axis=1) > min_move_px
    if not moved.any():
        return region
    pts = np.concatenate([old[moved], new[moved]])
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    least_x, least_y = (
        (min_margin * width, min_margin * height) if min_margin_px is None else (min_margin_px,) * 2
    )
    mx, my = max(margin * (x1 - x0), least_x), max(margin * (y1 - y0), least_y)
    top, bottom = int(np.clip(np.floor(y0 - my), 0, height)), int(np.clip(np.ceil(y1 + my), 0, height))
    left, right = int(np.clip(np.floor(x0 - mx), 0, width)), int(np.clip(np.ceil(x1 + mx), 0, width))
    region[top:bottom, left:right] = True
    return region
