"""Hole masks for training, evaluation and tests.

Every generator returns an HxW uint8 array, 1 = hole, 0 = known, and draws all randomness from
the ``numpy.random.Generator`` it is given, so the same seed gives the same mask.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Sequence

import cv2
import numpy as np

RATIO_BINS = ((0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6))


def hole_ratio(mask: np.ndarray) -> float:
    """Fraction of the pixels that are hole."""
    return float((np.asarray(mask) > 0).mean())


def ratio_bin(mask: np.ndarray) -> int:
    """0..5 for hole ratios 0-10% ... 50-60%; 6 above 60%."""
    r = hole_ratio(mask)
    return min(int(r * 10), 6) if r < 0.6 else 6


def _ratio(mask: np.ndarray) -> float:  # for functions whose hole_ratio argument hides hole_ratio()
    return float((mask > 0).mean())


def _strokes(
    size: int,
    rng: np.random.Generator,
    width: tuple[float, float],
    vertices: tuple[int, int],
    length: tuple[float, float],
    mask: np.ndarray,
) -> None:
    """Draw one free-form brush stroke (a random walk of thick line segments) into ``mask``."""
    x, y = rng.uniform(0, size, 2)
    w = max(1, int(round(rng.uniform(*width) * size)))
    angle = rng.uniform(0, 2 * np.pi)
    for _ in range(int(rng.integers(vertices[0], vertices[1] + 1))):
        angle += rng.uniform(-np.pi / 3, np.pi / 3)
        step = rng.uniform(*length) * size
        nx = float(np.clip(x + step * np.cos(angle), 0, size - 1))
        ny = float(np.clip(y + step * np.sin(angle), 0, size - 1))
        cv2.line(mask, (int(x), int(y)), (int(nx), int(ny)), 1, w)
        cv2.circle(mask, (int(nx), int(ny)), w // 2, 1, -1)
        x, y = nx, ny


def _fit_ratio(
    draw, size: int, rng: np.random.Generator, lo: float, hi: float, max_tries: int = 50
) -> np.ndarray:
    """Draw strokes until the hole ratio lands in [lo, hi]; strokes that overshoot are undone."""
    target = rng.uniform(lo, hi)
    for _ in range(max_tries):
        mask = np.zeros((size, size), np.uint8)
        while hole_ratio(mask) < target:
            before = mask.copy()
            draw(mask)
            if hole_ratio(mask) > hi:
                mask = before
                if hole_ratio(mask) >= lo:
                    return mask
                break
        if lo <= hole_ratio(mask) <= hi:
            return mask
    # Fall back to eroding/dilating the last attempt towards the target (rarely needed).
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(size):
        r = hole_ratio(mask)
        if lo <= r <= hi:
            return mask
        mask = cv2.dilate(mask, kernel) if r < lo else cv2.erode(mask, kernel)
    return mask


def irregular_mask(
    size: int, rng: np.random.Generator, hole_ratio: tuple[float, float] = (0.1, 0.6)
) -> np.ndarray:
    """Free-form brush strokes (Yu et al. 2019 style) covering a ratio in ``hole_ratio``."""
    lo, hi = hole_ratio

    def draw(mask: np.ndarray) -> None:
        _strokes(size, rng, width=(0.04, 0.12), vertices=(3, 8), length=(0.08, 0.3), mask=mask)

    return _fit_ratio(draw, size, rng, lo, hi)


def blob_mask(
    size: int, rng: np.random.Generator, hole_ratio: tuple[float, float] = (0.1, 0.6)
) -> np.ndarray:
    """Ragged, fragmented holes covering a ratio in ``hole_ratio``: smooth random noise at a random
    scale, roughened by finer noise and thresholded at the quantile that gives the ratio, plus
    at times the outline of another blob and scattered specks of 1-3 px.

    Brush strokes have smooth edges and a fixed width; damage and occlusion maps (such as the
    NVIDIA irregular masks, which are test data here and never trained on) are patchy, with
    frayed borders, thin outlines and specks. This draws that look without using any of them.
    """
    lo, hi = hole_ratio
    target = rng.uniform(lo, hi)

    def field(cells: int) -> np.ndarray:
        noise = rng.standard_normal((cells, cells)).astype(np.float32)
        return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)

    coarse = int(rng.choice([3, 4, 6, 8, 12]))
    value = field(coarse) + rng.uniform(0.1, 0.45) * field(coarse * int(rng.choice([3, 4, 6])))
    outline = None
    if rng.random() < 0.3:  # a thin outline of another shape, as in occlusion maps
        other = (field(int(rng.choice([3, 4, 6]))) > rng.uniform(-0.3, 0.3)).astype(np.uint8)
        width = int(rng.integers(1, max(2, size // 40) + 1))
        outline = cv2.morphologyEx(other, cv2.MORPH_GRADIENT, np.ones((width + 1, width + 1), np.uint8))
    specks = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(0, 40))):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(1, max(2, size // 40) + 1))
        specks[y : y + r, x : x + r] = 1
    extra = specks if outline is None else specks | outline
    # the blob takes whatever of the target the outline and specks leave
    rest = max(0.0, target - _ratio(extra))
    mask = extra.copy()
    if rest > 0:
        free = value[extra == 0]
        threshold = np.quantile(free, max(0.0, 1 - rest / max(1e-6, free.size / value.size)))
        mask |= (value > threshold).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(size):  # rarely needed: nudge into the range
        r = _ratio(mask)
        if lo <= r <= hi:
            break
        mask = cv2.dilate(mask, kernel) if r < lo else cv2.erode(mask, kernel)
    return mask


def block_mask(
    size: int, rng: np.random.Generator, hole_ratio: tuple[float, float] = (0.1, 0.5)
) -> np.ndarray:
    """One axis-aligned rectangle whose area ratio lies in ``hole_ratio``."""
    area = rng.uniform(*hole_ratio)
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    h = int(round(np.clip(np.sqrt(area / aspect), 0.05, 1.0) * size))
    w = int(round(np.clip(area * size * size / max(h, 1), 1, size)))
    h = int(np.clip(round(area * size * size / w), 1, size))
    top = int(rng.integers(0, size - h + 1))
    left = int(rng.integers(0, size - w + 1))
    mask = np.zeros((size, size), np.uint8)
    mask[top : top + h, left : left + w] = 1
    return mask


def center_block_mask(size: int, fraction: float = 0.5) -> np.ndarray:
    """The middle ``fraction`` of the width and height (the 'centre block' benchmark hole)."""
    side = int(round(size * fraction))
    start = (size - side) // 2
    mask = np.zeros((size, size), np.uint8)
    mask[start : start + side, start : start + side] = 1
    return mask


LamaKind = Literal["thin", "medium", "thick"]
# (stroke width, vertices, segment length) as fractions of the side, and the hole-ratio range.
_LAMA = {
    "thin": ((0.01, 0.03), (4, 12), (0.05, 0.2), (0.05, 0.3)),
    "medium": ((0.04, 0.08), (4, 10), (0.08, 0.3), (0.1, 0.4)),
    "thick": ((0.08, 0.16), (2, 6), (0.1, 0.35), (0.2, 0.6)),
}


def lama_mask(size: int, rng: np.random.Generator, kind: LamaKind = "medium") -> np.ndarray:
    """LaMa-style masks (Suvorov et al. 2022): ``thin`` strokes cover 5-30% of the image,
    ``medium`` 10-40%, ``thick`` strokes plus boxes 20-60%."""
    if kind not in _LAMA:
        raise ValueError(f"unknown LaMa mask kind {kind!r}; use thin, medium or thick")
    width, vertices, length, (lo, hi) = _LAMA[kind]

    def draw(mask: np.ndarray) -> None:
        if kind == "thick" and rng.random() < 0.3:
            mask |= block_mask(size, rng, (0.03, 0.15))
        else:
            _strokes(size, rng, width, vertices, length, mask)

    return _fit_ratio(draw, size, rng, lo, hi)


_PARTS = {"eyes": slice(36, 48), "nose": slice(27, 36), "mouth": slice(48, 68)}


def part_mask(
    size: int,
    landmarks: np.ndarray,
    part: Literal["eyes", "nose", "mouth"],
    rng: np.random.Generator | None = None,
    margin: float = 0.25,
) -> np.ndarray:
    """A block over both eyes, the nose or the mouth, from (68, 2) iBUG landmarks.

    The part's landmark box is grown by ``margin`` of its size on each side (at least 4% of the
    image side); with ``rng`` the box is also jittered by up to 10% of its size.
    """
    if part not in _PARTS:
        raise ValueError(f"unknown face part {part!r}; use eyes, nose or mouth")
    pts = np.asarray(landmarks, np.float64)[_PARTS[part]]
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    w, h = x1 - x0, y1 - y0
    mx = max(margin * w, 0.04 * size)
    my = max(margin * h, 0.04 * size)
    if rng is not None:
        dx, dy = rng.uniform(-0.1, 0.1, 2) * (w, h)
        x0, x1, y0, y1 = x0 + dx, x1 + dx, y0 + dy, y1 + dy
    mask = np.zeros((size, size), np.uint8)
    top, bottom = int(np.clip(np.floor(y0 - my), 0, size)), int(np.clip(np.ceil(y1 + my), 0, size))
    left, right = int(np.clip(np.floor(x0 - mx), 0, size)), int(np.clip(np.ceil(x1 + mx), 0, size))
    mask[top:bottom, left:right] = 1
    return mask


class MaskFolder:
    """Masks from a folder of image files (white = hole).

    With the NVIDIA irregular-mask test set, the file number encodes the hole-ratio bin
    (0-1999: 0-10%, 2000-3999: 10-20%, ... 10000-11999: 50-60%); ``bins`` selects bins by index.

    Args:
        path: the folder.
        size: resize masks to ``size`` x ``size`` (area interpolation, threshold at 50%).
        bins: ratio-bin indices (0..5) to keep, by file number // 2000 (numeric names only).
        augment: random flips and 90-degree rotations in :meth:`sample` (for training).
    """

    def __init__(
        self,
        path: str | Path,
        size: int | None = None,
        bins: Sequence[int] | None = None,
        augment: bool = False,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"mask folder not found: {self.path}")
        files = sorted(
            p for p in self.path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp")
        )
        if bins is not None:
            keep = set(bins)
            numbered = [(p, re.fullmatch(r"\d+", p.stem)) for p in files]
            if not all(m for _, m in numbered):
                raise ValueError(f"{self.path}: bins need numeric file names (e.g. 06000.png)")
            files = [p for p, _ in numbered if int(p.stem) // 2000 in keep]
        if not files:
            raise FileNotFoundError(
                f"no mask images in {self.path}" + (f" for bins {list(bins)}" if bins is not None else "")
            )
        self.files = files
        self.size = size
        self.augment = augment

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:
        image = cv2.imread(str(self.files[index]), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ValueError(f"cannot read mask {self.files[index]}")
        if self.size is not None and image.shape != (self.size, self.size):
            image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return (image >= 128).astype(np.uint8)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        mask = self[int(rng.integers(len(self)))]
        if self.augment:
            mask = np.rot90(mask, int(rng.integers(4)))
            if rng.random() < 0.5:
                mask = mask[:, ::-1]
            mask = np.ascontiguousarray(mask)
        return mask


class MaskSampler:
    """A training mixture of hole types.

    Args:
        size: mask side in pixels.
        mix: weights per type: ``irregular`` (brush strokes), ``blobs`` (ragged patches,
            :func:`blob_mask`), ``block``, ``center``, ``thin``, ``medium``, ``thick`` (LaMa
            sets), ``folder`` (needs ``folder``), ``none`` (no hole).
        folder: the :class:`MaskFolder` for ``folder``.
        hole_ratio: range for ``irregular``, ``blobs`` and ``block``.
    """

    KINDS = ("irregular", "blobs", "block", "center", "thin", "medium", "thick", "folder", "none")

    def __init__(
        self,
        size: int,
        mix: dict[str, float] | None = None,
        folder: MaskFolder | None = None,
        hole_ratio: tuple[float, float] = (0.1, 0.6),
    ) -> None:
        mix = dict(mix or {"irregular": 0.7, "block": 0.3})
        unknown = sorted(set(mix) - set(self.KINDS))
        if unknown:
            raise ValueError(f"unknown mask type(s) {unknown}; valid: {list(self.KINDS)}")
        if mix.get("folder", 0) > 0 and folder is None:
            raise ValueError("mask type 'folder' needs a mask folder (data.mask_dir)")
        mix = {k: float(v) for k, v in mix.items() if v > 0}
        total = sum(mix.values())
        if total <= 0:
            raise ValueError("mask mixture weights must add up to more than 0")
        self.kinds = sorted(mix)  # the order of the config's keys must not change the draws
        self.probs = np.array([mix[k] / total for k in self.kinds])
        self.size, self.folder, self.hole_ratio = size, folder, tuple(hole_ratio)

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        kind = self.kinds[int(rng.choice(len(self.kinds), p=self.probs))]
        if kind == "irregular":
            return irregular_mask(self.size, rng, self.hole_ratio)
        if kind == "blobs":
            return blob_mask(self.size, rng, self.hole_ratio)
        if kind == "block":
            return block_mask(self.size, rng, (self.hole_ratio[0], min(self.hole_ratio[1], 0.5)))
        if kind == "center":
            return center_block_mask(self.size)
        if kind in ("thin", "medium", "thick"):
            return lama_mask(self.size, rng, kind)  # type: ignore[arg-type]
        if kind == "folder":
            assert self.folder is not None
            return self.folder.sample(rng)
        return np.zeros((self.size, self.size), np.uint8)
