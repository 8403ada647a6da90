"""Face detection and 68-point annotation with dlib (offline models from face-recognition-models).

dlib's HOG detector finds frontal-ish faces; its ERT shape predictor places the 68 iBUG points
(about 2.8% NME on real annotated faces when the face is visible). These are the *annotator*
used to label training data and to locate faces in photos; the learned landmark predictor in
``lafin.networks`` is what fills in points hidden by a hole.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

log = logging.getLogger(__name__)


def _model_path(filename: str) -> str:
    """Locate a model file shipped by ``face_recognition_models`` without importing it
    (its __init__ imports the deprecated pkg_resources)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package's __init__ warns about pkg_resources
        path = resources.files("face_recognition_models") / "models" / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"dlib model {filename} not found; install it with 'pip install face-recognition-models'"
        )
    return str(path)


@dataclass(frozen=True)
class FaceBox:
    """A detected face: box corners in pixels and the detector's confidence score."""

    left: float
    top: float
    right: float
    bottom: float
    score: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top


@lru_cache(maxsize=1)
def _frontal_detector() -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import dlib
    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=1)
def _dlib_models() -> tuple[object, object]:
    import dlib

    # the 68-point model is large: loaded only when points are asked for, not for detection
    predictor = dlib.shape_predictor(_model_path("shape_predictor_68_face_landmarks.dat"))
    return _frontal_detector(), predictor


def detect_faces(image: np.ndarray, upsample: int = 0, min_score: float = 0.0) -> list[FaceBox]:
    """Detect faces with dlib's HOG detector, largest first.

    Args:
        image: HxWx3 uint8 RGB.
        upsample: times to upsample the image first (finds smaller faces, slower).
        min_score: drop detections scored below this (weak false faces appear when upsampling).
    """
    detector = _frontal_detector()
    rects, scores, _ = detector.run(np.ascontiguousarray(image), upsample, -0.5)
    boxes = [
        FaceBox(r.left(), r.top(), r.right(), r.bottom(), float(s))
        for r, s in zip(rects, scores)
        if s >= min_score
    ]
    return sorted(boxes, key=lambda b: b.width * b.height, reverse=True)


@lru_cache(maxsize=1)
def _dlib_cnn() -> object:
    import dlib

    return dlib.cnn_face_detection_model_v1(_model_path("mmod_human_face_detector.dat"))


CNN_MIN_SIDE = 16


def detect_faces_cnn(image: np.ndarray, upsample: int = 0, max_side: int = 640) -> list[FaceBox]:
    """Detect faces with dlib's CNN (MMOD) detector: slower than HOG (a few hundred ms per
    640-px image on a CPU) but it finds turned, tilted and partly hidden faces HOG misses.
    Images are downscaled to ``max_side`` first. Largest face first."""
    import cv2

    scale = min(1.0, max_side / max(image.shape[:2]))
    small = (
        image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    )
    if min(small.shape[:2]) < CNN_MIN_SIDE:
        # dlib's CNN reads outside images narrower than ~12 px (a RuntimeError, or a corrupted
        # heap); no face it could find fits in them anyway
        return []
    found = _dlib_cnn()(np.ascontiguousarray(small), upsample)
    boxes = [
        FaceBox(
            d.rect.left() / scale,
            d.rect.top() / scale,
            d.rect.right() / scale,
            d.rect.bottom() / scale,
            float(d.confidence),
        )
        for d in found
    ]
    return sorted(boxes, key=lambda b: b.width * b.height, reverse=True)


def annotate(image: np.ndarray, box: FaceBox) -> np.ndarray:
    """Place the 68 iBUG points inside a face box with dlib's shape predictor.

    Args:
        image: HxWx3 uint8 RGB.
        box: the face box (from :func:`detect_faces` or any other source).

    Returns:
        (68, 2) float32 x, y pixel coordinates.
    """
    import dlib

    _, predictor = _dlib_models()
    rect = dlib.rectangle(
        int(round(box.left)), int(round(box.top)), int(round(box.right)), int(round(box.bottom))
    )
    shape = predictor(np.ascontiguousarray(image), rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def annotate_largest_face(
    image: np.ndarray, upsample: int = 0, min_score: float = 0.0
) -> tuple[np.ndarray | None, list[FaceBox]]:
    """Detect faces and annotate the largest. Returns (landmarks or None, all boxes found)."""
    boxes = detect_faces(image, upsample=upsample, min_score=min_score)
    if not boxes:
        return None, boxes
    return annotate(image, boxes[0]), boxes


def detect_aligned(
    image: np.ndarray, prior: FaceBox, threshold: float = -1.6, tolerance: float = 0.2
) -> tuple[FaceBox, str]:
    """The face box of an already aligned face crop, without re-cropping it.

    The crop holds exactly one face whose box is close to ``prior`` (the dataset's typical box),
    so weak detections are accepted when they are plausible: centre within ``tolerance`` of the
    crop side from the prior's and size within +/-30%. The crop is padded first because tight
    crops cut off the context HOG needs.

    Returns:
        The detected box and ``"detected"``, or ``prior`` and ``"prior"``.
    """
    detector, _ = _dlib_models()
    side = image.shape[0]
    pad = max(8, side // 4)
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    rects, scores, _ = detector.run(padded, 0, threshold)
    pcx, pcy = (prior.left + prior.right) / 2, (prior.top + prior.bottom) / 2
    for r, s in sorted(zip(rects, scores), key=lambda rs: -rs[1]):
        box = FaceBox(r.left() - pad, r.top() - pad, r.right() - pad, r.bottom() - pad, float(s))
        cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2
        if (
            abs(cx - pcx) <= tolerance * side
            and abs(cy - pcy) <= tolerance * side
            and 0.7 <= box.width / prior.width <= 1.3
        ):
            return box, "detected"
    return prior, "prior"


def annotate_aligned(
    image: np.ndarray, prior: FaceBox, threshold: float = -1.6, tolerance: float = 0.2
) -> tuple[np.ndarray, str]:
    """Annotate an already aligned face crop in the box :func:`detect_aligned` finds.

    Returns:
        (68, 2) float32 landmarks in the crop's pixels, and ``"detected"`` or ``"prior"``.
    """
    box, source = detect_aligned(image, prior, threshold, tolerance)
    return annotate(image, box), source


# Offsets (left, top, right, bottom) of dlib's HOG detector box from the landmarks' extent, as
# fractions of that extent: medians over the 387 of 400 human-annotated HELEN training crops
# (256 px) where the detector found the face. dlib's predictor in this box: 2.6% NME there, as in
# the detector's own box. (Earlier versions had wrong constants, (-0.23, -0.149, -0.156,
# -0.089): a box shifted left by a fifth of the face, 19-29% NME.)
_BOX_FIT = (-0.019, -0.088, 0.019, -0.059)


def box_from_landmarks(landmarks: np.ndarray) -> FaceBox:
    """The box dlib's HOG detector would give for a face with these landmarks (approximately),
    so a face can be annotated by dlib's shape predictor without a detection."""
    x0, y0 = landmarks.min(axis=0)
    x1, y1 = landmarks.max(axis=0)
    w, h = x1 - x0, y1 - y0
    return FaceBox(
        float(x0 + _BOX_FIT[0] * w),
        float(y0 + _BOX_FIT[1] * h),
        float(x1 + _BOX_FIT[2] * w),
        float(y1 + _BOX_FIT[3] * h),
        score=float("nan"),
    )
