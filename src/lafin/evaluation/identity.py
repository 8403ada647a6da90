"""Identity preservation and structure with dlib: face descriptors and the 68-point annotator.

For each ground-truth face a reference is built once (:func:`reference_face`): a face box (dlib's
detector on the crop; if it finds nothing plausible, the box implied by the ground-truth
landmarks when they are given, else the typical box of an aligned crop), dlib's 68 points inside
that box, and dlib's 128-d face descriptor (``dlib_face_recognition_resnet_model_v1.dat`` from
the ``face-recognition-models`` package). Every output of that face is then measured with the
*same* box and alignment, so the numbers reflect what the inpainting changed:

- identity distance: Euclidean distance between the descriptors of output and truth; above 0.6
  (dlib's threshold) the face counts as a different person ("identity lost");
- landmark consistency: NME between dlib's points on the output and on the truth.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from lafin.face import FaceBox, annotate, box_from_landmarks, detect_aligned

log = logging.getLogger(__name__)

DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
# The typical face box of an aligned crop, as fractions of its side (lafin.data.prepare's prior).
ALIGNED_BOX = (0.11, 0.055, 0.905, 0.85)


def descriptor_model_path() -> str:
    """Path of dlib's face descriptor network inside ``face_recognition_models``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package's __init__ warns about pkg_resources
        path = resources.files("face_recognition_models") / "models" / DESCRIPTOR_MODEL
    if not path.is_file():
        raise FileNotFoundError(
            f"dlib model {DESCRIPTOR_MODEL} not found; install it with 'pip install face-recognition-models'"
        )
    return str(path)


@lru_cache(maxsize=1)
def _recognizer() -> object:
    import dlib

    return dlib.face_recognition_model_v1(descriptor_model_path())


def _shape(box: FaceBox, landmarks: np.ndarray) -> object:
    import dlib

    rect = dlib.rectangle(
        int(round(box.left)), int(round(box.top)), int(round(box.right)), int(round(box.bottom))
    )
    points = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in landmarks])
    return dlib.full_object_detection(rect, points)


def face_descriptor(image: np.ndarray, box: FaceBox, landmarks: np.ndarray) -> np.ndarray:
    """dlib's 128-d descriptor of the face aligned by these 68 landmarks.

    Args:
        image: HxWx3 uint8 RGB. box: the face box. landmarks: (68, 2) x, y pixels.

    Returns:
        (128,) float64.
    """
    shape = _shape(box, landmarks)
    return np.array(
        _recognizer().compute_face_descriptor(np.ascontiguousarray(image), shape, 0), dtype=np.float64
    )


@dataclass
class ReferenceFace:
    """What is measured once per ground-truth face.

    Attributes:
        box: the face box used for every image of this face.
        box_source: ``detected``, ``landmarks`` (from the given ground truth) or ``prior``.
        landmarks: (68, 2) dlib's points on the ground truth, inside ``box``.
        descriptor: (128,) the ground truth's descriptor, or None if identity is off.
    """

    box: FaceBox
    box_source: str
    landmarks: np.ndarray
    descriptor: np.ndarray | None


def reference_face(
    truth: np.ndarray, given_landmarks: np.ndarray | None = None, with_descriptor: bool = True
) -> ReferenceFace:
    """Find the face box of an aligned ground-truth crop and annotate it (see module docs)."""
    side = truth.shape[0]
    if given_landmarks is not None:
        prior, fallback = box_from_landmarks(given_landmarks), "landmarks"
    else:
        prior = FaceBox(*(v * side for v in ALIGNED_BOX), score=float("nan"))
        fallback = "prior"
    # The box every image of this face is measured in: the detector's box on the truth (the
    # same for the truth and all outputs, so only the content differs). Re-deriving a box from
    # the points is not stable: on turned faces it can move the box off the face.
    box, source = detect_aligned(truth, prior)
    landmarks = annotate(truth, box)
    descriptor = face_descriptor(truth, box, landmarks) if with_descriptor else None
    return ReferenceFace(box, "detected" if source == "detected" else fallback, landmarks, descriptor)


def identity_distance(output: np.ndarray, reference: ReferenceFace) -> float:
    """Descriptor distance between an output and its ground truth, both aligned by the truth's
    landmarks (so only the content differs)."""
    if reference.descriptor is None:
        raise ValueError("the reference face was built without a descriptor")
    d = face_descriptor(output, reference.box, reference.landmarks)
    return float(np.linalg.norm(d - reference.descriptor))


def output_landmarks(output: np.ndarray, reference: ReferenceFace) -> np.ndarray:
    """dlib's 68 points on an output, inside the reference face's box: (68, 2) float32."""
    return annotate(output, reference.box)
