"""What an inpainting call reports: the result, its faces and background parts, and the timed
stages (with the labels the CLI and the web demo show)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# what ``mode=`` accepts (LaFInModel.__call__, lafin.restore.restore, the CLI's --mode): auto
# chooses crop or photo by the image (InpaintResult.mode says which ran)
MODES = ("auto", "crop", "photo")

# stage name -> label, in the usual order of a call's stages (the web demo's progress bar)
STAGE_LABELS = {
    "prepare": "Preparing",
    "background": "Filling background",
    "detect": "Detecting faces",
    "landmarks": "Predicting landmarks",
    "generate": "Generating face",
    "refine": "Refining detail",
    "blend": "Blending",
}


# ``extra`` of the log record of a result's warning: a front end that shows ``warnings`` itself
# (the CLI) drops these log lines, so each warning is read once
RESULT_WARNING = {"result_warning": True}


def log_result_warning(logger: logging.Logger, text: str) -> str:
    """Log ``text``, a warning that also goes into :attr:`InpaintResult.warnings`; returns it."""
    logger.warning(text, extra=RESULT_WARNING)
    return text


@dataclass
class BackgroundRegion:
    """A part of the hole that no face took, filled by OpenCV (photo mode).

    Attributes:
        box: (left, top, right, bottom) of the part in photo pixels (right, bottom exclusive).
        pixels: its hole pixels.
    """

    box: tuple[int, int, int, int]
    pixels: int


@dataclass
class FaceReport:
    """One face of a photo that the hole touched (photo mode).

    Attributes:
        path: how it was found: ``detected``, ``detected-upsampled``, ``detected-confirmed``,
            ``detected-cnn``, ``hole-surroundings`` (see :mod:`lafin.photo`) or ``given-landmarks``.
        box: (left, top, right, bottom) in photo pixels.
        landmarks: (68, 2) float32, the landmarks used for generation, in photo pixels.
        hole_pixels: hole pixels filled from this face's generated crop.
        notes: what the face finder noted about this face.
    """

    path: str
    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    hole_pixels: int
    notes: list[str] = field(default_factory=list)


@dataclass
class InpaintResult:
    """What :meth:`lafin.pipeline.LaFInModel.__call__` returns.

    Attributes:
        image: HxWx3 uint8 RGB, the input with the hole filled; known pixels are the input's.
        landmarks: (68, 2) float32 x, y in the input image's pixels (predicted or given); in
            photo mode those of the largest face, None when the hole touched no face.
        mask: HxW uint8, 1 = hole, as used.
        landmarks_given: True when the caller supplied the landmarks.
        timings: seconds spent per stage.
        mode: ``crop`` (the input is a face crop) or ``photo`` (faces found and aligned).
        faces: per-face reports (photo mode).
        background_pixels: hole pixels outside every face, filled by OpenCV (photo mode).
        background_regions: where those pixels are, one entry per separate part of the hole
            that no face took (photo mode).
        tone: ``grey``, ``tinted`` (e.g. sepia) or ``colour``: the photo's tone, judged on its
            known pixels; the fill of a grey or tinted photo is given that tone
            (:func:`lafin.blend.keep_tone`).
        warnings: what the user should know about the result, one sentence each (also logged):
            the image may not be a face (crop mode, :mod:`lafin.face_check`), or no face was
            found near part of the hole (photo mode). The hole is filled all the same.
    """

    image: np.ndarray
    landmarks: np.ndarray | None
    mask: np.ndarray
    landmarks_given: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    mode: str = "crop"
    faces: list[FaceReport] = field(default_factory=list)
    background_pixels: int = 0
    background_regions: list[BackgroundRegion] = field(default_factory=list)
    tone: str = "colour"
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def unchanged(
        cls, image: np.ndarray, hole: np.ndarray, landmarks: np.ndarray | None, given: bool, mode: str
    ) -> "InpaintResult":
        """The result of an empty hole: a copy of ``image``, nothing timed."""
        lm = None if landmarks is None else np.asarray(landmarks, np.float32)
        return cls(image.copy(), lm, hole, given, {}, mode)


class Stages:
    """Times consecutive stages and tells an optional ``progress(stage)`` callback as each
    starts (stage names: the keys of :data:`STAGE_LABELS`)."""

    def __init__(self, progress: Callable[[str], None] | None = None) -> None:
        self.timings: dict[str, float] = {}
        self.progress = progress
        self._name: str | None = None
        self._t = 0.0

    def start(self, name: str) -> None:
        if name == self._name:  # the same stage again (e.g. two blending steps): one stage
            return
        self.stop()
        self._name, self._t = name, time.perf_counter()
        if self.progress is not None:
            self.progress(name)

    def stop(self) -> dict[str, float]:
        if self._name is not None:
            self.timings[self._name] = self.timings.get(self._name, 0.0) + time.perf_counter() - self._t
            self._name = None
        return self.timings
