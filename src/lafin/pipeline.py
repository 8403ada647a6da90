"""The inference pipeline: ``LaFInModel().inpaint(image, mask)``.

Structure first, appearance second: the landmark predictor places the 68 points on the masked
face, the generator fills the hole guided by them, and the result is composited so that every
known pixel stays exactly the user's.

The input is treated as a face crop (the face roughly centred and filling the frame, as in
CelebA-style aligned data). It may have any size: it is padded to a square, resized to the
model's resolution for the networks, and only the hole is replaced at the input's own resolution.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from lafin.config import ModelConfig
from lafin.io import ImageInput, InputError, load_image, load_mask
from lafin.landmarks import NUM_POINTS, landmark_map

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS_NAME = "lafin-compact.safetensors"


class WeightsNotFoundError(FileNotFoundError):
    """No weights were given and none ship with the installed package."""


def default_weights_path() -> Path:
    """Path of the weights shipped inside the package (may not exist in a development build)."""
    return Path(str(resources.files("lafin") / "weights" / DEFAULT_WEIGHTS_NAME))


@dataclass
class InpaintResult:
    """What :meth:`LaFInModel.__call__` returns.

    Attributes:
        image: HxWx3 uint8 RGB, the input with the hole filled; known pixels are the input's.
        landmarks: (68, 2) float32 x, y in the input image's pixels (predicted or given).
        mask: HxW uint8, 1 = hole, as used.
        landmarks_given: True when the caller supplied the landmarks.
        timings: seconds spent per stage.
    """

    image: np.ndarray
    landmarks: np.ndarray
    mask: np.ndarray
    landmarks_given: bool = False
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Frame:
    """How an input image maps to the model's square: pad to a square, then scale."""

    pad_top: int
    pad_left: int
    side: int
    size: int

    @property
    def scale(self) -> float:
        return self.size / self.side

    def to_model(self, points: np.ndarray) -> np.ndarray:
        """Input pixel coordinates -> model pixel coordinates (pixel centres preserved)."""
        shifted = points + np.array([self.pad_left, self.pad_top], dtype=np.float32)
        return (shifted + 0.5) * self.scale - 0.5

    def to_input(self, points: np.ndarray) -> np.ndarray:
        shifted = (points + 0.5) / self.scale - 0.5
        return shifted - np.array([self.pad_left, self.pad_top], dtype=np.float32)


class LaFInModel:
    """Landmark-guided face inpainting.

    Args:
        weights: a weights file (ours, ``.safetensors``) or the original LaFIn release's
            ``.pth`` files (a list: generator and landmark detector). None uses the weights that
            ship with the package.
        device: torch device, ``"cpu"`` (default) or e.g. ``"cuda"``.

    Example::

        model = LaFInModel()
        result = model.inpaint(image, mask)           # HxWx3 uint8
        full = model(image, mask)                     # InpaintResult with landmarks and timings
    """

    def __init__(self, weights: str | Path | Sequence[str | Path] | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.config: ModelConfig | None = None
        self.generator: torch.nn.Module | None = None
        self.landmark_predictor: torch.nn.Module | None = None
        if weights is None:
            weights = default_weights_path()
            if not weights.is_file():
                raise WeightsNotFoundError(
                    "this installation of lafin ships no default weights yet. Train them with "
                    "'lafin train' (see docs/TRAINING.md) and pass LaFInModel(weights=PATH), or "
                    "load the original LaFIn release with LaFInModel(weights=[GEN.pth, "
                    "landmark_detector.pth])")
        self.load_weights(weights)

    @classmethod
    def from_networks(cls, config: ModelConfig, generator: torch.nn.Module,
                      landmark_predictor: torch.nn.Module, device: str | torch.device = "cpu"
                      ) -> "LaFInModel":
        """Wrap networks built in memory (e.g. during training or in tests)."""
        model = cls.__new__(cls)
        model.device = torch.device(device)
        model.config = config
        model.generator = generator.to(model.device).eval()
        model.landmark_predictor = landmark_predictor.to(model.device).eval()
        return model

    def load_weights(self, weights: str | Path | Sequence[str | Path]) -> None:
        """Load weights (replacing the current networks); both networks must be present."""
        from lafin.checkpoint import build_from_weights, load_any

        loaded = load_any(weights)
        generator, predictor = build_from_weights(loaded, device=self.device)
        if generator is None or predictor is None:
            missing = "generator" if generator is None else "landmark predictor"
            raise InputError(f"{weights}: the file has no {missing}; inpainting needs both "
                             "(for the original release pass both .pth files)")
        self.config, self.generator, self.landmark_predictor = loaded.config, generator, predictor
        log.info("loaded %s weights (%s preset, %d px)", weights, loaded.config.name,
                 loaded.config.image_size)

    @property
    def image_size(self) -> int:
        assert self.config is not None
        return self.config.image_size

    # ------------------------------------------------------------------ input handling

    def check_inputs(self, image: ImageInput, mask: ImageInput,
                     landmarks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Load and validate; returns (HxWx3 uint8 image, HxW uint8 mask with 1 = hole)."""
        img = load_image(image)
        hole = load_mask(mask, shape=img.shape[:2])
        if hole.all():
            raise InputError("the mask covers the whole image: there is no face left to guide "
                             "the inpainting")
        if landmarks is not None:
            lm = np.asarray(landmarks, dtype=np.float32)
            if lm.shape != (NUM_POINTS, 2):
                raise InputError(f"landmarks must have shape (68, 2) (x, y pixels), got {lm.shape}")
            if not np.isfinite(lm).all():
                raise InputError("landmarks contain NaN or infinite values")
        return img, hole

    def _frame(self, shape: tuple[int, int]) -> _Frame:
        h, w = shape
        side = max(h, w)
        return _Frame((side - h) // 2, (side - w) // 2, side, self.image_size)

    def _to_model(self, image: np.ndarray, hole: np.ndarray, frame: _Frame
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = hole.shape
        pads = ((frame.pad_top, frame.side - h - frame.pad_top),
                (frame.pad_left, frame.side - w - frame.pad_left))
        square = np.pad(image, pads + ((0, 0),), mode="edge")
        square_hole = np.pad(hole, pads, mode="constant").astype(np.float32)
        s = self.image_size
        interp = cv2.INTER_AREA if frame.side > s else cv2.INTER_CUBIC
        small = cv2.resize(square, (s, s), interpolation=interp)
        # a model pixel is hole if any input pixel under it is: nothing of the hole leaks in
        small_hole = (cv2.resize(square_hole, (s, s), interpolation=interp if frame.side > s
                                 else cv2.INTER_LINEAR) > 0).astype(np.float32)
        img_t = torch.from_numpy(small).permute(2, 0, 1).float().div(255).unsqueeze(0)
        hole_t = torch.from_numpy(small_hole)[None, None]
        return img_t.to(self.device), hole_t.to(self.device)

    # ------------------------------------------------------------------ the stages

    @torch.inference_mode()
    def _predict(self, masked: torch.Tensor) -> np.ndarray:
        assert self.landmark_predictor is not None
        out = self.landmark_predictor(masked).view(-1, NUM_POINTS, 2) * self.image_size
        return out[0].float().cpu().numpy()

    @torch.inference_mode()
    def _generate(self, img_t: torch.Tensor, hole_t: torch.Tensor, points: np.ndarray) -> np.ndarray:
        assert self.generator is not None
        masked = img_t * (1 - hole_t) + hole_t
        lm_t = torch.from_numpy(points).float().unsqueeze(0).to(self.device)
        out = self.generator(masked, landmark_map(lm_t, self.image_size), hole_t)
        return out[0].permute(1, 2, 0).clamp(0, 1).float().cpu().numpy()  # S x S x 3 in [0, 1]

    def _paste(self, image: np.ndarray, hole: np.ndarray, generated: np.ndarray,
               frame: _Frame) -> np.ndarray:
        """Resize the generated square back and replace only the hole's pixels."""
        up = cv2.resize(generated, (frame.side, frame.side),
                        interpolation=cv2.INTER_CUBIC if frame.side > self.image_size else cv2.INTER_AREA)
        h, w = hole.shape
        up = up[frame.pad_top:frame.pad_top + h, frame.pad_left:frame.pad_left + w]
        out = image.copy()
        sel = hole.astype(bool)
        out[sel] = np.round(up[sel] * 255).clip(0, 255).astype(np.uint8)
        return out

    # ------------------------------------------------------------------ public API

    def predict_landmarks(self, image: ImageInput, mask: ImageInput | None = None) -> np.ndarray:
        """The 68 landmarks of the (masked) face, (68, 2) float32 x, y in the image's pixels."""
        img = load_image(image)
        hole = (np.zeros(img.shape[:2], np.uint8) if mask is None
                else load_mask(mask, shape=img.shape[:2]))
        frame = self._frame(img.shape[:2])
        img_t, hole_t = self._to_model(img, hole, frame)
        return frame.to_input(self._predict(img_t * (1 - hole_t) + hole_t)).astype(np.float32)

    def __call__(self, image: ImageInput, mask: ImageInput,
                 landmarks: np.ndarray | None = None) -> InpaintResult:
        """Inpaint and return the image, the landmarks used and per-stage timings."""
        timings: dict[str, float] = {}
        img, hole = self.check_inputs(image, mask, landmarks)
        if not hole.any():
            log.warning("the mask is empty (no hole): the image is returned unchanged")
            lm = (np.asarray(landmarks, np.float32) if landmarks is not None
                  else self.predict_landmarks(img))
            return InpaintResult(img.copy(), lm, hole, landmarks is not None, timings)
        frame = self._frame(img.shape[:2])
        t = time.perf_counter()
        img_t, hole_t = self._to_model(img, hole, frame)
        timings["preprocess"] = time.perf_counter() - t
        t = time.perf_counter()
        if landmarks is None:
            points = self._predict(img_t * (1 - hole_t) + hole_t)
            timings["landmarks"] = time.perf_counter() - t
        else:
            points = frame.to_model(np.asarray(landmarks, np.float32))
        t = time.perf_counter()
        generated = self._generate(img_t, hole_t, points)
        timings["generate"] = time.perf_counter() - t
        t = time.perf_counter()
        out = self._paste(img, hole, generated, frame)
        timings["composite"] = time.perf_counter() - t
        lm_out = (np.asarray(landmarks, np.float32) if landmarks is not None
                  else frame.to_input(points).astype(np.float32))
        return InpaintResult(out, lm_out, hole, landmarks is not None, timings)

    def inpaint(self, image: ImageInput, mask: ImageInput,
                landmarks: np.ndarray | None = None) -> np.ndarray:
        """Fill the hole; HxWx3 uint8 RGB in the input's size. Known pixels are unchanged.

        Args:
            image: path, PIL image or array (gray/RGB/RGBA, 8 or 16 bit).
            mask: HxW, same size as the image, nonzero/white = hole.
            landmarks: optional (68, 2) x, y in the image's pixels, to use instead of predicting.
        """
        return self(image, mask, landmarks).image
