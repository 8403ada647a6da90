"""The landmark view: what the model sees (the hole pure white) with the landmarks drawn, and
the mapping of a click on it back to image pixels."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from lafin.alignment import rescale_points
from lafin.landmarks import draw_landmarks
from lafin.webapp.session import Session

DISPLAY_SIDE = 512  # the landmark view's longer side, in screen pixels


def render_view(session: Session) -> np.ndarray:
    """What the model sees: the image the shown run started from with the hole pure white (the
    model gets no pixel from under it), the landmarks drawn: the current set green, other faces
    blue, the selected point red. Large photos show the region around the face. Sets
    ``session.view`` for :func:`view_to_image`. Needs a run (``session.mask``)."""
    image, hole = session.image, session.mask
    assert image is not None and hole is not None
    h, w = hole.shape
    x0, y0, x1, y1 = 0, 0, w, h
    if session.landmarks is not None and max(h, w) > 2 * DISPLAY_SIDE:
        lo, hi = session.landmarks.min(axis=0), session.landmarks.max(axis=0)
        centre, half = (lo + hi) / 2, 0.9 * float(max(hi - lo))
        x0, y0 = int(max(0, centre[0] - half)), int(max(0, centre[1] - half))
        x1, y1 = int(min(w, centre[0] + half + 1)), int(min(h, centre[1] + half + 1))
        if x1 - x0 < 16 or y1 - y0 < 16:
            x0, y0, x1, y1 = 0, 0, w, h
    scale = DISPLAY_SIDE / max(x1 - x0, y1 - y0)
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    crop = image[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    view = cv2.resize(crop, size, interpolation=interp)
    hole_view = cv2.resize(hole[y0:y1, x0:x1], size, interpolation=cv2.INTER_NEAREST) > 0
    view[hole_view] = 255
    session.view = (float(x0), float(y0), float(scale))

    def to_view(points: np.ndarray) -> np.ndarray:
        return rescale_points(np.asarray(points, np.float64) - (x0, y0), scale)

    for other in session.other_faces:
        view = draw_landmarks(view, to_view(other), color=(0, 160, 255))
    if session.landmarks is not None:
        pts = to_view(session.landmarks)
        view = draw_landmarks(view, pts, color=(0, 220, 0))
        if session.selected is not None:
            x, y = pts[session.selected]
            cv2.circle(view, (int(round(x)), int(round(y))), 6, (255, 0, 0), 2, cv2.LINE_AA)
    return view


def view_to_image(session: Session, xy: Sequence[float]) -> np.ndarray:
    """A view pixel (x, y) of the last :func:`render_view` in image pixels, float64 (2,)."""
    x0, y0, scale = session.view
    return rescale_points(np.asarray(xy[:2], np.float64), 1 / scale) + (x0, y0)
