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


def keep_tone(original: np.ndarray, filled: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, str]:
    """Make the filled hole of ``filled`` grey or tinted like ``original``'s known pixels;
    pixels outside ``hole`` are returned unchanged."""
    sel = hole > 0
    tone, tint = photo_tone(original, ~sel)
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
