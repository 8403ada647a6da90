"""Procedural old-photo damage: the training data of the damage detector and its benchmark.

``make_damaged(clean, rng, config)`` turns a clean photo into an old one and draws damage on it:

1. **content** (part of the clean photo, never in the mask): hard negatives that look like
   damage but are not (hair-like strands, wrinkle lines, glasses frames, text, jewellery dots,
   catch-lights), then the old-photo *look*: grey or sepia, faded contrast, lens softness;
2. **damage** (the mask is exactly what is drawn here): thin bright and dark scratches of varying
   width, opacity and curvature, branching cracks, dust and spots, folds, torn or missing corners,
   edges and patches;
3. **scan** (applied alike to the clean and the damaged photo, with the same noise): a little
   scanner blur, film grain, scanner noise, JPEG.

It returns the clean old photo (the restoration's target), the damaged photo and the mask; outside
the mask the two differ only by what the scan stage spreads across the mask's edge (blur, JPEG),
and without the scan stage (``config.scan=False``) they are bit-identical there.

Two presets: :data:`TRAINING` (the detector's training distribution) and :data:`HELD_OUT` (the
benchmark's: other ranges, so the benchmark measures more than memorisation of one generator).
With ``modern_share`` a share of the photos skips the look and the scan (modern photos, damaged
or not: the detector must leave their content alone too).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import cv2
import numpy as np

# a drawn pixel whose opacity is below this is not drawn at all: every pixel the damage changes
# is in the mask, and every pixel of the mask is visibly changed (not a faint anti-aliasing rim)
MIN_ALPHA = 0.2
# sepia tint: the colour a mid-grey becomes (RGB, per unit of luminance)
SEPIA = np.array([1.12, 0.98, 0.76], np.float32)


@dataclass(frozen=True)
class DamageConfig:
    """Parameter ranges of the generator (lo, hi pairs are sampled uniformly per image).

    Sizes are in pixels of a 256-px photo and scale with the photo's shorter side.
    """

    scratches: tuple[int, int] = (0, 6)
    scratch_width: tuple[float, float] = (1.0, 3.0)
    scratch_opacity: tuple[float, float] = (0.35, 1.0)
    scratch_curvature: tuple[float, float] = (0.0, 0.06)  # radians of turn per step (std)
    cracks: tuple[int, int] = (0, 2)
    crack_branches: tuple[int, int] = (1, 5)
    dust: tuple[int, int] = (0, 40)
    dust_radius: tuple[float, float] = (0.6, 3.0)
    folds: tuple[int, int] = (0, 1)
    tears: tuple[int, int] = (0, 1)  # torn corners/edges
    patches: tuple[int, int] = (0, 1)  # missing (flaked-off) patches
    # share of images with no damage at all (clean old photos must stay clean)
    clean_share: float = 0.1
    # hard negatives drawn as content
    negatives: tuple[int, int] = (0, 4)
    # look
    grey_share: float = 0.35
    sepia_share: float = 0.35
    fade: tuple[float, float] = (0.0, 0.45)
    lens_blur: tuple[float, float] = (0.0, 1.2)
    scan: bool = True
    scan_blur: tuple[float, float] = (0.0, 0.5)
    grain: tuple[float, float] = (0.0, 7.0)
    jpeg_quality: tuple[int, int] = (55, 100)
    # share of photos kept modern: no old look and no scan, the damage drawn on the photo as it
    # is (saturated colours, specular highlights, crisp contours are not damage either)
    modern_share: float = 0.0


TRAINING = DamageConfig()
# the benchmark's settings: other ranges (wider and fainter scratches, more dust, more cracks,
# stronger fading and grain, lower JPEG quality) and always some damage
HELD_OUT = DamageConfig(
    scratches=(1, 8),
    scratch_width=(1.0, 4.0),
    scratch_opacity=(0.3, 0.95),
    scratch_curvature=(0.01, 0.08),
    cracks=(0, 3),
    crack_branches=(2, 6),
    dust=(5, 60),
    dust_radius=(0.8, 3.5),
    folds=(0, 1),
    tears=(0, 1),
    patches=(0, 1),
    clean_share=0.0,
    negatives=(1, 4),
    fade=(0.1, 0.5),
    lens_blur=(0.2, 1.4),
    scan_blur=(0.0, 0.6),
    grain=(1.0, 8.0),
    jpeg_quality=(50, 95),
)
# clean old photos: the look and the scan, hard negatives, no damage (the false-alarm benchmark)
CLEAN_OLD = replace(HELD_OUT, clean_share=1.0)


class Damaged(NamedTuple):
    """What :func:`make_damaged` returns (all HxW(x3) uint8)."""

    clean: np.ndarray  # the old photo without damage: the restoration's target
    damaged: np.ndarray
    mask: np.ndarray  # 255 where damage was drawn


def _u(rng: np.random.Generator, lo_hi) -> float:
    return float(rng.uniform(*lo_hi))


def _n(rng: np.random.Generator, lo_hi: tuple[int, int]) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


# ---------------------------------------------------------------------- drawing primitives


def _random_walk(rng, start, angle, steps, step, curvature, shape) -> np.ndarray:
    """A smooth curve: (N, 2) float points, its heading turning by a random, correlated amount."""
    pts = [np.asarray(start, np.float64)]
    turn = 0.0
    for _ in range(steps):
        turn = 0.8 * turn + rng.normal(0, curvature)
        angle += turn
        pts.append(pts[-1] + step * np.array([np.cos(angle), np.sin(angle)]))
    return np.array(pts)


def _polyline(canvas: np.ndarray, pts: np.ndarray, width: float, value: float = 1.0) -> None:
    """Anti-aliased polyline into a float canvas (max-combined); sub-pixel widths via the value."""
    shift = 4
    layer = np.zeros(canvas.shape, np.uint8)
    thick = max(1, int(round(width)))
    cv2.polylines(
        layer,
        [np.round(pts * (1 << shift)).astype(np.int32)],
        False,
        255,
        thickness=thick,
        lineType=cv2.LINE_AA,
        shift=shift,
    )
    strength = value * min(1.0, width)  # a 0.6-px line is a fainter 1-px line
    np.maximum(canvas, layer.astype(np.float32) / 255 * strength, out=canvas)


def _edge_point(rng, h, w) -> tuple[np.ndarray, float]:
    """A point on or near the border and a heading into the image."""
    side = rng.integers(4)
    t = rng.uniform(0.05, 0.95)
    point = [(t * w, 0), (w - 1, t * h), (t * w, h - 1), (0, t * h)][side]
    heading = [np.pi / 2, np.pi, -np.pi / 2, 0.0][side] + rng.normal(0, 0.5)
    return np.array(point, np.float64), heading


def _scratch(rng, alpha, cfg, scale) -> None:
    h, w = alpha.shape
    if rng.random() < 0.5:
        start, angle = _edge_point(rng, h, w)
    else:
        start, angle = np.array([rng.uniform(0, w), rng.uniform(0, h)]), rng.uniform(0, 2 * np.pi)
    length = rng.uniform(0.1, 1.3) * max(h, w)
    step = 3.0 * scale
    pts = _random_walk(
        rng, start, angle, max(2, int(length / step)), step, _u(rng, cfg.scratch_curvature), (h, w)
    )
    width = _u(rng, cfg.scratch_width) * scale * (0.6 if rng.random() < 0.3 else 1.0)
    opacity = _u(rng, cfg.scratch_opacity)
    if rng.random() < 0.35:
        # broken scratch: it skips along the emulsion
        keep = np.repeat(rng.random(len(pts) // 6 + 1) < 0.7, 6)[: len(pts)]
        for seg in np.split(np.arange(len(pts)), np.nonzero(np.diff(keep.astype(int)))[0] + 1):
            if keep[seg[0]] and len(seg) > 1:
                _polyline(alpha, pts[seg], width, opacity)
    else:
        _polyline(alpha, pts, width, opacity)


def _crack(rng, alpha, cfg, scale) -> None:
    h, w = alpha.shape
    start = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    opacity = _u(rng, (0.6, 1.0))
    stack = [(start, rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.6) * max(h, w))]
    branches = _n(rng, cfg.crack_branches)
    while stack:
        p, angle, length = stack.pop()
        step = 4.0 * scale
        n = max(2, int(length / step))
        # jagged: large random heading noise, no smoothing
        pts = [p]
        a = angle
        for _ in range(n):
            a = angle + rng.normal(0, 0.5)
            pts.append(pts[-1] + step * np.array([np.cos(a), np.sin(a)]))
        pts = np.array(pts)
        _polyline(alpha, pts, _u(rng, (0.8, 2.2)) * scale, opacity)
        if branches > 0:
            for _ in range(rng.integers(1, 3)):
                if branches <= 0:
                    break
                branches -= 1
                k = rng.integers(1, len(pts))
                stack.append(
                    (
                        pts[k],
                        angle + rng.choice([-1, 1]) * rng.uniform(0.4, 1.3),
                        length * rng.uniform(0.3, 0.7),
                    )
                )


def _dust(rng, alpha, cfg, scale) -> None:
    h, w = alpha.shape
    for _ in range(_n(rng, cfg.dust)):
        c = (rng.uniform(0, w), rng.uniform(0, h))
        r = _u(rng, cfg.dust_radius) * scale
        layer = np.zeros((h, w), np.uint8)
        if rng.random() < 0.7:
            cv2.circle(layer, (int(c[0] * 16), int(c[1] * 16)), max(1, int(r * 16)), 255, -1, cv2.LINE_AA, 4)
        else:  # a fibre or irregular speck
            pts = _random_walk(
                rng, c, rng.uniform(0, 2 * np.pi), int(rng.integers(2, 6)), r * 1.5, 0.6, (h, w)
            )
            cv2.polylines(
                layer, [np.round(pts * 16).astype(np.int32)], False, 255, max(1, int(r / 2)), cv2.LINE_AA, 4
            )
        np.maximum(alpha, layer.astype(np.float32) / 255 * _u(rng, (0.5, 1.0)), out=alpha)


def _fold(rng, alpha, cfg, scale) -> None:
    h, w = alpha.shape
    start, angle = _edge_point(rng, h, w)
    pts = _random_walk(rng, start, angle, int(2 * max(h, w) / (4 * scale)), 4 * scale, 0.01, (h, w))
    _polyline(alpha, pts, _u(rng, (2.0, 5.0)) * scale, _u(rng, (0.5, 0.9)))


def _rough_polygon(rng, pts: np.ndarray, jitter: float) -> np.ndarray:
    """Densify a polygon and jitter it: a torn, ragged edge."""
    out = []
    for a, b in zip(pts, np.roll(pts, -1, axis=0)):
        n = max(2, int(np.linalg.norm(b - a) / 3))
        for t in np.linspace(0, 1, n, endpoint=False):
            out.append(a + t * (b - a) + rng.normal(0, jitter, 2))
    return np.array(out)


def _tear(rng, alpha, cfg, scale) -> None:
    h, w = alpha.shape
    corner = rng.integers(4)
    if rng.random() < 0.6:  # a corner
        cx, cy = [(0, 0), (w, 0), (w, h), (0, h)][corner]
        a, b = rng.uniform(0.08, 0.35) * w, rng.uniform(0.08, 0.35) * h
        sx, sy = (1 if cx == 0 else -1), (1 if cy == 0 else -1)
        poly = np.array(
            [
                [cx - sx * 5, cy - sy * 5],
                [cx + sx * a, cy - sy * 5],
                [cx + sx * a * rng.uniform(0.2, 0.7), cy + sy * b * rng.uniform(0.2, 0.7)],
                [cx - sx * 5, cy + sy * b],
            ],
            np.float64,
        )
    else:  # a strip of an edge
        depth = rng.uniform(0.03, 0.12) * min(h, w)
        t0, t1 = sorted(rng.uniform(0, 1, 2))
        t1 = max(t1, t0 + 0.2)
        if corner % 2 == 0:
            y = -5 if corner == 0 else h + 5
            s = 1 if corner == 0 else -1
            poly = np.array(
                [
                    [t0 * w, y],
                    [t1 * w, y],
                    [t1 * w, y + s * depth],
                    [t0 * w, y + s * depth * rng.uniform(0.3, 1.5)],
                ]
            )
        else:
            x = -5 if corner == 3 else w + 5
            s = 1 if corner == 3 else -1
            poly = np.array(
                [
                    [x, t0 * h],
                    [x, t1 * h],
                    [x + s * depth, t1 * h],
                    [x + s * depth * rng.uniform(0.3, 1.5), t0 * h],
                ]
            )
    poly = _rough_polygon(rng, poly, 1.5 * scale)
    layer = np.zeros((h, w), np.uint8)
    cv2.fillPoly(layer, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    np.maximum(alpha, layer.astype(np.float32) / 255, out=alpha)


def _patch(rng, alpha, cfg, scale) -> None:
    h, w = alpha.shape
    c = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h])
    r = rng.uniform(0.02, 0.08) * min(h, w)
    angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 10))))
    poly = c + (r * rng.uniform(0.5, 1.3, len(angles)))[:, None] * np.stack(
        [np.cos(angles), np.sin(angles)], 1
    )
    poly = _rough_polygon(rng, poly, 0.8 * scale)
    layer = np.zeros((h, w), np.uint8)
    cv2.fillPoly(layer, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    np.maximum(alpha, layer.astype(np.float32) / 255 * _u(rng, (0.7, 1.0)), out=alpha)


def _damage_colour(rng, image: np.ndarray) -> np.ndarray:
    """Scratches are mostly bright (emulsion gone: paper shows), sometimes dark (dirt, ink)."""
    if rng.random() < 0.65:
        base = rng.uniform(200, 255)
        paper = np.array([base, base * rng.uniform(0.95, 1.0), base * rng.uniform(0.85, 1.0)])
    else:
        base = rng.uniform(0, 70)
        paper = np.array([base, base, base * rng.uniform(0.9, 1.0)])
    return paper.astype(np.float32)


def draw_damage(
    image: np.ndarray, rng: np.random.Generator, config: DamageConfig = TRAINING, scale: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw damage on an HxWx3 uint8 photo; returns (damaged uint8, mask uint8 255 = drawn).

    Outside the mask the result is the input bit for bit. ``scale``: pixels per pixel of a
    256-px photo (default: the shorter side / 256).
    """
    h, w = image.shape[:2]
    scale = scale or min(h, w) / 256
    out = image.astype(np.float32)
    mask = np.zeros((h, w), bool)
    if rng.random() < config.clean_share:
        return image.copy(), mask.astype(np.uint8) * 255
    # each kind is drawn as its own layers, each with one colour, composited in turn
    kinds = (
        [_scratch] * _n(rng, config.scratches)
        + [_crack] * _n(rng, config.cracks)
        + [_dust] * (1 if config.dust[1] and rng.random() < 0.7 else 0)
        + [_fold] * _n(rng, config.folds)
        + [_tear] * _n(rng, config.tears)
        + [_patch] * _n(rng, config.patches)
    )
    if not kinds:  # the share of clean images is clean_share; the others get something
        kinds = [_scratch]
    for draw in kinds:
        alpha = np.zeros((h, w), np.float32)
        draw(rng, alpha, config, scale)
        alpha[alpha < MIN_ALPHA] = 0
        if not alpha.any():
            continue
        colour = _damage_colour(rng, image)
        if draw in (_tear, _patch):
            colour = np.full(3, rng.choice([rng.uniform(210, 250), rng.uniform(5, 40)]), np.float32)
        a = alpha[..., None]
        out = out * (1 - a) + colour * a
        mask |= alpha > 0
    damaged = np.round(out).clip(0, 255).astype(np.uint8)
    damaged[~mask] = image[~mask]
    return damaged, mask.astype(np.uint8) * 255


# ---------------------------------------------------------------------- content and look


def draw_negatives(
    image: np.ndarray, rng: np.random.Generator, count: int, scale: float | None = None
) -> np.ndarray:
    """Draw ``count`` things that look like damage but are photo content (never masked):
    hair-like strands (soft, in the image's own dark or light tones, in bunches), wrinkle lines,
    glasses frames, text, jewellery dots and catch-lights."""
    h, w = image.shape[:2]
    scale = scale or min(h, w) / 256
    out = image.astype(np.float32)
    grey = image.mean(axis=2)
    for _ in range(count):
        kind = rng.integers(6)
        alpha = np.zeros((h, w), np.float32)
        if kind == 0:  # a bunch of hair strands: roughly parallel, soft, in a hair-like tone
            start = np.array([rng.uniform(0, w), rng.uniform(0, h)])
            angle = rng.uniform(0, 2 * np.pi)
            for _ in range(int(rng.integers(2, 7))):
                s = start + rng.normal(0, 4 * scale, 2)
                pts = _random_walk(
                    rng, s, angle + rng.normal(0, 0.1), int(rng.integers(8, 30)), 3 * scale, 0.04, (h, w)
                )
                _polyline(alpha, pts, rng.uniform(0.7, 1.5) * scale, rng.uniform(0.3, 0.7))
            dark = np.percentile(grey, rng.choice([5, 15, 85]))
            colour = np.array([dark, dark * rng.uniform(0.8, 1.0), dark * rng.uniform(0.6, 0.95)])
            alpha = cv2.GaussianBlur(alpha, (0, 0), 0.6 * scale)
        elif kind == 1:  # a wrinkle: short, soft, dark, with a highlight beside it
            start = np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.3, 0.9) * h])
            pts = _random_walk(
                rng, start, rng.uniform(0, 2 * np.pi), int(rng.integers(4, 12)), 3 * scale, 0.08, (h, w)
            )
            _polyline(alpha, pts, 1.5 * scale, rng.uniform(0.2, 0.4))
            alpha = cv2.GaussianBlur(alpha, (0, 0), 1.0 * scale)
            colour = np.full(3, np.percentile(grey, 10))
        elif kind == 2:  # glasses frames: two rounded rectangles and a bridge
            cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.3, 0.55) * h
            ax, ay = rng.uniform(0.09, 0.14) * w, rng.uniform(0.06, 0.09) * h
            gap = rng.uniform(0.13, 0.2) * w
            layer = np.zeros((h, w), np.uint8)
            t = max(1, int(round(rng.uniform(1, 3.5) * scale)))
            for sx in (-1, 1):
                cv2.ellipse(
                    layer, (int(cx + sx * gap), int(cy)), (int(ax), int(ay)), 0, 0, 360, 255, t, cv2.LINE_AA
                )
            cv2.line(layer, (int(cx - gap + ax), int(cy)), (int(cx + gap - ax), int(cy)), 255, t, cv2.LINE_AA)
            alpha = layer.astype(np.float32) / 255 * rng.uniform(0.7, 1.0)
            colour = np.full(3, rng.choice([rng.uniform(10, 60), rng.uniform(150, 220)]))
        elif kind == 3:  # text (a caption, a sign, a date stamp)
            layer = np.zeros((h, w), np.uint8)
            text = "".join(
                rng.choice(list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789 ."))
                for _ in range(int(rng.integers(3, 12)))
            )
            cv2.putText(
                layer,
                text,
                (int(rng.uniform(0, 0.6) * w), int(rng.uniform(0.1, 1) * h)),
                int(rng.choice([0, 1, 2, 3, 4])),
                rng.uniform(0.3, 1.0) * scale,
                255,
                max(1, int(rng.uniform(1, 2.5) * scale)),
                cv2.LINE_AA,
            )
            alpha = layer.astype(np.float32) / 255 * rng.uniform(0.7, 1.0)
            colour = np.full(3, rng.choice([rng.uniform(0, 50), rng.uniform(200, 255)]))
        elif kind == 4:  # jewellery: a chain of small beads (a necklace, an earring)
            start = np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.6, 1.0) * h])
            pts = _random_walk(
                rng,
                start,
                rng.uniform(0, 2 * np.pi),
                int(rng.integers(6, 20)),
                rng.uniform(2.5, 4) * scale,
                0.1,
                (h, w),
            )
            layer = np.zeros((h, w), np.uint8)
            rad = max(1, int(rng.uniform(1, 2) * scale))
            for p in pts:
                cv2.circle(layer, (int(p[0]), int(p[1])), rad, 255, -1, cv2.LINE_AA)
            alpha = cv2.GaussianBlur(layer.astype(np.float32) / 255, (0, 0), 0.5) * 0.8
            colour = np.full(3, rng.uniform(180, 255))
        else:  # catch-lights: a pair of soft bright dots at eye distance
            cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.5) * h
            gap = rng.uniform(0.15, 0.2) * w
            for sx in (-1, 1):
                cv2.circle(
                    alpha, (int(cx + sx * gap), int(cy)), max(1, int(1.5 * scale)), 1.0, -1, cv2.LINE_AA
                )
            alpha = cv2.GaussianBlur(alpha, (0, 0), 0.8 * scale) * 1.5
            colour = np.full(3, 250.0)
        a = np.clip(alpha, 0, 1)[..., None]
        out = out * (1 - a) + np.asarray(colour, np.float32) * a
    return np.round(out).clip(0, 255).astype(np.uint8)


def old_look(
    image: np.ndarray, rng: np.random.Generator, config: DamageConfig = TRAINING, scale: float | None = None
) -> np.ndarray:
    """Grey or sepia or faded colour, faded contrast, lens softness."""
    img = image.astype(np.float32)
    lum = img @ np.array([0.299, 0.587, 0.114], np.float32)
    r = rng.random()
    if r < config.grey_share:
        img = np.repeat(lum[..., None], 3, axis=2)
    elif r < config.grey_share + config.sepia_share:
        tint = SEPIA * rng.uniform(0.9, 1.1, 3).astype(np.float32)
        img = lum[..., None] * tint
    else:  # faded colour print: desaturated, a colour cast
        sat = rng.uniform(0.3, 1.0)
        img = lum[..., None] + sat * (img - lum[..., None])
        img = img * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    fade = _u(rng, config.fade)
    paper = rng.uniform(170, 235)
    img = img * (1 - fade) + paper * fade * rng.uniform(0.8, 1.0)
    sigma = _u(rng, config.lens_blur) * (scale or min(image.shape[:2]) / 256)
    if sigma > 0.2:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    return np.round(img).clip(0, 255).astype(np.uint8)


def scan(
    images: list[np.ndarray],
    rng: np.random.Generator,
    config: DamageConfig = TRAINING,
    scale: float | None = None,
) -> list[np.ndarray]:
    """Scanner blur, grain, noise and JPEG applied alike (same parameters, same noise) to each
    of ``images`` (all the same shape)."""
    h, w = images[0].shape[:2]
    scale = scale or min(h, w) / 256
    sigma = _u(rng, config.scan_blur) * scale
    grain = _u(rng, config.grain)
    noise = rng.normal(0, 1, (h, w)).astype(np.float32)
    if grain > 0 and rng.random() < 0.5:  # clumpy film grain rather than per-pixel noise
        noise = cv2.GaussianBlur(noise, (0, 0), 0.7) * 2.0
    colour_noise = rng.normal(0, 0.3, (h, w, 3)).astype(np.float32)
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    use_jpeg = quality < 100 and rng.random() < 0.7
    out = []
    for image in images:
        img = image.astype(np.float32)
        if sigma > 0.2:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        img = img + grain * (noise[..., None] + colour_noise)
        img = np.round(img).clip(0, 255).astype(np.uint8)
        if use_jpeg:
            ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            img = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
        out.append(img)
    return out


def make_damaged(
    clean: np.ndarray, rng: np.random.Generator, config: DamageConfig = TRAINING, scale: float | None = None
) -> Damaged:
    """A clean HxWx3 uint8 photo -> (old photo, the same damaged, the damage mask).

    See the module docstring for the stages. Deterministic for a given ``rng`` state.
    ``scale``: pixels per pixel of a 256-px photo (default: the shorter side / 256), for a crop
    cut from a larger photo.
    """
    if clean.ndim != 3 or clean.shape[2] != 3 or clean.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {clean.shape} {clean.dtype}")
    # drawn only when asked for, so that the presets without modern photos keep their streams
    modern = bool(config.modern_share) and rng.random() < config.modern_share
    content = draw_negatives(clean, rng, _n(rng, config.negatives), scale)
    old = content if modern else old_look(content, rng, config, scale)
    damaged, mask = draw_damage(old, rng, config, scale)
    if config.scan and not modern:
        old, damaged = scan([old, damaged], rng, config, scale)
    return Damaged(old, damaged, mask)
