"""A built-in example: a face from scikit-image's sample data and a hole over it.

``skimage.data.astronaut()`` (Eileen Collins, NASA, public domain) ships with scikit-image, so
the example needs no download. The crop box frames her face the way the training crops are
framed (eyes at about a third of the height, mouth at about 70%); it was measured once with
dlib's 68-point annotator (eye centre and mouth centre matched to the CelebA crops' means).
"""

from __future__ import annotations

import cv2
import numpy as np

# (left, top, side) of the face crop in the 512x512 astronaut image
_ASTRONAUT_FACE = (167, 64, 117)
EXAMPLE_SIZE = 128


def example_face(size: int = EXAMPLE_SIZE) -> np.ndarray:
    """The example face crop, ``size`` x ``size`` x 3 uint8 RGB."""
    from skimage import data

    x, y, side = _ASTRONAUT_FACE
    crop = data.astronaut()[y : y + side, x : x + side]
    interp = cv2.INTER_AREA if size < side else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


def example_mask(size: int = EXAMPLE_SIZE) -> np.ndarray:
    """A hole over the nose and mouth of the example face: ``size`` x ``size`` uint8, 1 = hole."""
    mask = np.zeros((size, size), np.uint8)
    mask[round(0.45 * size) : round(0.85 * size), round(0.28 * size) : round(0.72 * size)] = 1
    return mask
