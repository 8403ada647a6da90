"""Putting generated content back into a photo: only hole pixels change, without a seam.

The generator's colours can drift slightly from the photo's at the hole's edge (different
resolution, compression, lighting). :func:`harmonize` measures the difference between photo and
generated content on a thin ring of known pixels around the hole and spreads it smoothly into the
hole (a membrane/Poisson-style correction that fades towards the hole's centre). Known pixels
are never modified.
"""

from __future__ import annotations

import cv2
import numpy as np


def harmonize(photo: np.ndarray, generated: np.ndarray, hole: np.ndarray, ring: int = 3,
              fade: float | None = None) -> np.ndarray:
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
    # everything but the ring is unknown, so only ring values spread into the hole
    unknown = (1 - ring_mask).astype(np.uint8)
    for c in range(3):
        channel = np.where(known_or_ring, diff[..., c], 0).astype(np.float32)
        filled = cv2.inpaint(channel, unknown, ring + 2, cv2.INPAINT_TELEA)
        out[..., c] += np.where(hole_u8 > 0, filled * weight, 0)
    return out


def paste(photo: np.ndarray, content: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """A copy of ``photo`` with the hole's pixels taken from ``content`` (rounded, clipped).

    Pixels outside the hole are bit-identical to ``photo``.
    """
    out = photo.copy()
    sel = hole > 0
    out[sel] = np.clip(np.round(content[sel]), 0, 255).astype(np.uint8)
    return out
