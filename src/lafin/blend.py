"""Putting generated content back into a photo: only hole pixels change, without a seam.

Diffusion (OpenCV's Navier-Stokes fill) and the generator err differently, so a small share of
the fill mixed into the generated content (:func:`diffusion_mix`, a two-member ensemble) lowers
the error of a bare generator.

The generator's colours can drift slightly from the photo's at the hole's edge (different
resolution, compression, lighting). :func:`harmonize` measures the difference between photo and
generated content on a thin ring of known pixels around the hole and spreads it smoothly into the
hole (a membrane/Poisson-style correction that fades towards the hole's centre). Known pixels
are never modified.
"""

from __future__ import annotations

import cv2
import numpy as np


def harmonize(
    photo: np.ndarray, generated: np.ndarray, hole: np.ndarray, ring: int = 3, fade: float | None = None
) -> np.ndarray:
    """Correct ``generated`` inside ``hole`` so it meets ``photo`` at the hole's edge.

    Args:
        photo: HxWx3 uint8, the known content (values inside the hole are ignored).
        generated: HxWx3 float32 in [0, 255], content for the hole (same size).
        hole: HxW uint8/bool, 1 = hole.
        ring: width in pixels of the known ring used to measure the colour offset.
        fade: None spreads the edge offset over the whole hole (like Poisson cloning); a number
            makes it fade out at that fraction of the hole's largest inner distance.

    Returns:
        HxWx3 float32: ``generated`` plus the correction inside the hole (unchanged elsewhere).
    """
    hole_u8 = (hole > 0).astype(np.uint8)
    if not hole_u8.any():
        return generated
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
    ring_mask = cv2.dilate(hole_u8, kernel) & (1 - hole_u8)
    if not ring_mask.any():  # the hole covers everything reachable
        return generated
    diff = photo.astype(np.float32) - generated.astype(np.float32)
    out = generated.astype(np.float32).copy()
    # fill the difference into the hole from the ring (Telea on each channel, float32 allowed)
    known_or_ring = ring_mask.astype(bool)
    if fade is None:
        weight = np.ones(hole_u8.shape, np.float32)
    else:
        dist = cv2.distanceTransform(hole_u8, cv2.DIST_L2, 3)
        weight = np.clip(1.0 - dist / max(1.0, fade * float(dist.max())), 0.0, 1.0)
    # only ring values may spread into the hole, so the ring is all Telea may read; the rest is
    # unknown as far as a hole pixel's fill can reach (a few radii): beyond that it is left out
    # (marked known with a zero difference, which no hole pixel reads), since filling it cost
    # seconds for scattered scratches across a whole face (lafin.restore)
    # (twice the Telea radius ring + 2, plus a margin: as exact as filling everything on scratch
    # masks, tests/test_restore.py)
    far = 2 * (ring + 2) + 2
    reach = cv2.dilate(hole_u8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * far + 1,) * 2))
    unknown = (reach & (1 - ring_mask)).astype(np.uint8)
    for c in range(3):
        channel = np.where(known_or_ring, diff[..., c], 0).astype(np.float32)
        filled = cv2.inpaint(channel, unknown, ring + 2, cv2.INPAINT_TELEA)
        out[..., c] += np.where(hole_u8 > 0, filled * weight, 0)
    return out


# match_edge_colour's scales, in pixels of the model's crop (256 or 128 px for a face): the
# local means either side of the hole's edge, the band inside the edge where they are compared,
# and the smoothing that spreads the measured offsets along the edge and fades them into the hole
# (wide: a colour shift, never texture). The means are narrow: wider ones also measured the
# face's own shading across the edge (a cheek brightening towards the hole) as a cast, and
# "corrected" it into a step at the edge (docs/MODEL_CARD.md, the pipeline's choices)
EDGE_SIGMA = 1.0
EDGE_BAND = 1.0
EDGE_SPREAD_SIGMA = 16.0
# an offset larger than this (0-255) is an edge of the picture, not a colour cast
EDGE_MAX_OFFSET = 40.0


def masked_mean(image: np.ndarray, weight: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-weighted local mean of ``image`` over the pixels ``weight`` selects, and the
    weight's own local mean (how much of the neighbourhood the mean rests on)."""
    num = cv2.GaussianBlur(image * weight[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)
    return num / np.maximum(den, 1e-6)[..., None], den


def _smooth_masked_mean(image: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """:func:`masked_mean` for a wide ``sigma``, computed on a grid ``sigma // 4`` times
    coarser: a Gaussian that wide leaves nothing the coarser grid cannot hold, and at full size
    it took half of the whole edge colour match's time (``benchmarks/edge_colour.py``)."""
    factor = int(sigma // 4)
    h, w = weight.shape
    if factor < 2 or min(h, w) < 4 * factor:
        return masked_mean(image, weight, sigma)[0]
    small = (max(1, round(w / factor)), max(1, round(h / factor)))  # cv2 sizes are (width, height)
    num = cv2.resize(image * weight[..., None], small, interpolation=cv2.INTER_AREA)
    den = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    num = cv2.GaussianBlur(num, (0, 0), sigma / factor)
    den = cv2.GaussianBlur(den, (0, 0), sigma / factor)
    num = cv2.resize(num, (w, h), interpolation=cv2.INTER_LINEAR)
    den = cv2.resize(den, (w, h), interpolation=cv2.INTER_LINEAR)
    return num / np.maximum(den, 1e-6)[..., None]


def match_edge_colour(
    known: np.ndarray, filled: np.ndarray, hole: np.ndarray, scale: float = 1.0
) -> np.ndarray:
    """Shift the fill's colour so it meets the known pixels at the hole's edge.

    A network's fill can carry a colour cast (a greener or paler skin than the face around it)
    that shows as a seam. Just inside the edge, the local mean of the known pixels outside is
    compared with the local mean of the fill inside; the offsets are spread along the edge by a
    wide smoothing and fade with the distance into the hole (a Gaussian of the depth with the same
    sigma), so only a slow colour field is added near the edge: the fill's texture and structure
    are kept, nothing is blurred, and the middle of a large hole (lips whose colour is not the
    skin's) keeps the network's colour.

    Args:
        known: HxWx3, the known pixels (values inside the hole are ignored).
        filled: HxWx3 float or uint8, the content for the hole.
        hole: HxW, nonzero = hole.
        scale: pixels per pixel of a 256-px face crop (the scales above are in those).

    Returns:
        HxWx3 float32 in [0, 255]: ``filled`` with the correction inside the hole (unchanged
        elsewhere).
    """
    sel = hole > 0
    out = np.asarray(filled, np.float32)
    if not sel.any() or sel.all():
        return out.copy()
    # at least the first ring of hole pixels (their distance to the edge is 1)
    sigma, band, spread = (max(1.0, v * scale) for v in (EDGE_SIGMA, EDGE_BAND, EDGE_SPREAD_SIGMA))
    outside_mean, outside_cover = masked_mean(known.astype(np.float32), (~sel).astype(np.float32), sigma)
    inside_mean, inside_cover = masked_mean(out, sel.astype(np.float32), sigma)
    depth = cv2.distanceTransform(sel.astype(np.uint8), cv2.DIST_L2, 3)
    edge = sel & (depth <= band) & (outside_cover > 0.05) & (inside_cover > 0.05)
    if not edge.any():
        return out.copy()
    offset = np.clip(outside_mean - inside_mean, -EDGE_MAX_OFFSET, EDGE_MAX_OFFSET)
    field = _smooth_masked_mean(offset, edge.astype(np.float32), spread)
    fade = np.exp(-0.5 * (np.maximum(depth - band, 0.0) / spread) ** 2)[..., None]
    field = field * fade
    return np.where(sel[..., None], np.clip(out + field, 0, 255), out).astype(np.float32)


# The fill's share in the generated hole (for weights without a refiner), chosen by
# benchmarks/diffusion_mix.py on CelebA validation faces (docs/MODEL_CARD.md).
DIFFUSION_MIX = 0.15
_NS_RADIUS = 5


def diffusion_mix(
    known: np.ndarray, generated: np.ndarray, hole: np.ndarray, weight: float = DIFFUSION_MIX
) -> np.ndarray:
    """Mix a share of OpenCV's Navier-Stokes fill of the hole into ``generated``.

    Args:
        known: HxWx3 uint8, the known content (values inside the hole are ignored).
        generated: HxWx3 float32 in [0, 255], content for the hole.
        hole: HxW uint8/bool, 1 = hole.
        weight: the fill's share in [0, 1] (0 returns ``generated`` unchanged).

    Returns:
        HxWx3 float32: ``(1 - weight) * generated + weight * fill`` inside the hole,
        ``generated`` elsewhere.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must lie in [0, 1], not {weight!r}")
    hole_u8 = (hole > 0).astype(np.uint8)
    # a hole over everything has nothing to diffuse from
    if weight == 0 or not hole_u8.any() or hole_u8.all():
        return generated
    fill = cv2.inpaint(
        np.ascontiguousarray(known, dtype=np.uint8), hole_u8, _NS_RADIUS, cv2.INPAINT_NS
    ).astype(np.float32)
    sel = hole_u8[..., None] > 0
    return np.where(sel, (1 - weight) * generated + weight * fill, generated).astype(np.float32)


def paste(photo: np.ndarray, content: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """A copy of ``photo`` with the hole's pixels taken from ``content`` (rounded, clipped).

    Pixels outside the hole are bit-identical to ``photo``.
    """
    out = photo.copy()
    sel = hole > 0
    out[sel] = np.clip(np.round(content[sel]), 0, 255).astype(np.uint8)
    return out


# a photo whose channels differ by at most this (0-255) on average is grey (JPEG noise allowed)
GREY_TOLERANCE = 1.0
# a photo whose channels each fit a linear function of luminance to this RMS error (0-255) is a
# tinted monochrome (sepia); colour photos fit far worse
TINT_TOLERANCE = 4.0
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def photo_tone(image: np.ndarray, known: np.ndarray | None = None) -> tuple[str, np.ndarray | None]:
    """(``grey``/``tinted``/``colour``, tint) of an HxWx3 uint8 photo, judged on ``known`` pixels.

    ``tint`` is (2, 3): per channel, the slope and offset of the channel against luminance
    (tinted photos only).
    """
    pixels = image.reshape(-1, 3)
    if known is not None:
        pixels = pixels[known.reshape(-1)]
    # a regular sample of at most ~64k pixels judges a photo as well as all of them (and a
    # 1024-px photo's least-squares fit over every pixel costs tens of milliseconds)
    pixels = pixels[:: max(1, len(pixels) // 65536)].astype(np.float32)
    if len(pixels) == 0:
        return "colour", None
    spread = np.abs(pixels - pixels.mean(axis=1, keepdims=True)).mean()
    if spread <= GREY_TOLERANCE:
        return "grey", None
    lum = pixels @ _LUMA
    design = np.stack([lum, np.ones_like(lum)], 1)
    coef, *_ = np.linalg.lstsq(design, pixels, rcond=None)
    rms = float(np.sqrt(np.mean((design @ coef - pixels) ** 2)))
    if rms <= TINT_TOLERANCE:
        return "tinted", coef.astype(np.float32)
    return "colour", None


def tone_context(hole: np.ndarray, min_known: int = 4096) -> np.ndarray:
    """HxW bool: the known pixels a fill's tone is judged on: those in the hole's bounding box
    grown by its larger side on every side (what surrounds the fill, not a neutral wall, a
    print's white border or a scan's page far from it); all known pixels when that leaves
    fewer than ``min_known``."""
    sel = np.asarray(hole) > 0
    known = ~sel
    rows, cols = np.nonzero(sel.any(axis=1))[0], np.nonzero(sel.any(axis=0))[0]
    if not len(rows):
        return known
    grow = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    near = np.zeros_like(sel)
    near[max(0, rows[0] - grow) : rows[-1] + 1 + grow, max(0, cols[0] - grow) : cols[-1] + 1 + grow] = True
    context = known & near
    return context if context.sum() >= min_known else known


def keep_tone(original: np.ndarray, filled: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, str]:
    """Make the filled hole of ``filled`` grey or tinted like ``original``'s known pixels
    around it (:func:`tone_context`); pixels outside ``hole`` are returned unchanged."""
    sel = hole > 0
    tone, tint = photo_tone(original, tone_context(sel))
    if tone == "colour" or not sel.any():
        return filled, tone
    lum = filled[sel].astype(np.float32) @ _LUMA
    if tone == "grey":
        # the fill takes the photo's own grey relation (channels equal, up to JPEG noise)
        values = np.repeat(lum[:, None], 3, axis=1)
        if (original[..., 0] == original[..., 1]).all() and (original[..., 1] == original[..., 2]).all():
            values = np.repeat(np.round(lum)[:, None], 3, axis=1)  # exactly grey in, exactly grey out
    else:
        values = lum[:, None] * tint[0] + tint[1]
    out = filled.copy()
    out[sel] = np.clip(np.round(values), 0, 255).astype(np.uint8)
    return out, tone


# A soft photo (a small original enlarged, a blurred scan) holds no detail finer than some
# scale, and a fill as sharp as a sharp photo's shows in it as a patch of grain. The scale is
# read off the known pixels around the hole: resampled to 1/factor of their side and back, a
# soft photo keeps most of its finest detail (Laplacian energy) up to its own factor, a sharp
# one loses it at once. Chosen on held-out HELEN photos made soft by resampling and by blur,
# where they never fire on the sharp ones (benchmarks/photo_holes.py --soften; docs/EVALUATION.md).
SOFTNESS_FACTORS = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0)
# the share of the Laplacian energy a factor must keep for the photo to count as that soft
SOFTNESS_KEEP = 0.65
# the fill is softened by this part of the photo's factor: its shapes are smoother than a
# photo's, so the whole factor would leave it blurrier than the photo around it
SOFTNESS_SHARE = 0.75
# the known pixels within this many px of the hole (less the 3 px at its edge) are judged
SOFTNESS_RING = 15


def resample_soften(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` resized to 1/``factor`` of its side (area averaging) and back (bicubic), as
    float32: the detail of a photo ``factor`` times smaller, enlarged. Factor 1: a float copy."""
    out = np.asarray(image, np.float32)
    if factor <= 1:
        return out.copy()
    h, w = out.shape[:2]
    small = cv2.resize(
        out, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _laplacian_energy(grey: np.ndarray, region: np.ndarray) -> float:
    return float(cv2.Laplacian(grey, cv2.CV_32F, ksize=1)[region].var())


def photo_softness(image: np.ndarray, hole: np.ndarray, ring: int = SOFTNESS_RING) -> float:
    """How soft the known pixels around the hole are: the largest of :data:`SOFTNESS_FACTORS`
    (tried in order) through which :func:`resample_soften` keeps at least
    :data:`SOFTNESS_KEEP` of their Laplacian energy; 1 for a sharp photo, and when there is
    nothing to judge (no known ring, a flat one).

    Args:
        image: HxWx3 (or HxW) photo, uint8 or float on the 0-255 scale.
        hole: HxW, nonzero = hole.
        ring: the known pixels within this many px of the hole are judged (less its 3-px edge).
    """
    sel = np.asarray(hole) > 0
    rows, cols = np.nonzero(sel.any(axis=1))[0], np.nonzero(sel.any(axis=0))[0]
    if not len(rows):
        return 1.0
    # the hole's box grown by the ring and a margin for the resampling kernels: the rest of a
    # large photo does not change the answer
    grow = ring + 8
    top, left = max(0, rows[0] - grow), max(0, cols[0] - grow)
    bottom, right = rows[-1] + 1 + grow, cols[-1] + 1 + grow
    sel = sel[top:bottom, left:right].astype(np.uint8)
    pixels = np.asarray(image, np.float32)[top:bottom, left:right]
    grey = pixels @ _LUMA if pixels.ndim == 3 else pixels
    edge = cv2.dilate(sel, np.ones((7, 7), np.uint8))
    band = cv2.dilate(sel, np.ones((2 * ring + 1,) * 2, np.uint8)).astype(bool) & ~edge.astype(bool)
    energy = _laplacian_energy(grey, band) if band.any() else 0.0
    if energy < 1e-3:
        return 1.0
    factor = 1.0
    for f in SOFTNESS_FACTORS:
        if (
            min(grey.shape) / f < 4
            or _laplacian_energy(resample_soften(grey, f), band) < SOFTNESS_KEEP * energy
        ):
            break
        factor = f
    return factor


def match_softness(original: np.ndarray, filled: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, float]:
    """Soften the hole of ``filled`` (HxWx3 uint8) to the softness of ``original``'s known
    pixels around it: :func:`resample_soften` by :data:`SOFTNESS_SHARE` of the factor
    :func:`photo_softness` finds beyond 1. A sharp photo's fill is returned as it is (never
    sharpened); pixels outside ``hole`` are never changed. Returns (image, factor applied)."""
    factor = 1.0 + SOFTNESS_SHARE * (photo_softness(original, hole) - 1.0)
    sel = np.asarray(hole) > 0
    if factor <= 1.0 or not sel.any():
        return filled, 1.0
    rows, cols = np.nonzero(sel.any(axis=1))[0], np.nonzero(sel.any(axis=0))[0]
    grow = 16  # the resampling kernels' reach, at the largest factor, in the photo's pixels
    top, left = max(0, rows[0] - grow), max(0, cols[0] - grow)
    bottom, right = rows[-1] + 1 + grow, cols[-1] + 1 + grow
    soft = resample_soften(filled[top:bottom, left:right], factor)
    out = filled.copy()
    window = out[top:bottom, left:right]
    inner = sel[top:bottom, left:right]
    window[inner] = np.clip(np.round(soft[inner]), 0, 255).astype(np.uint8)
    return out, factor
