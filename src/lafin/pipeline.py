"""The inference pipeline: ``LaFInModel().inpaint(image, mask)``.

Structure first, appearance second: the landmark predictor places the 68 points on the masked
face, the generator fills the hole guided by them, and the result is composited so that every
known pixel stays exactly the user's.

The input is treated as a face crop (the face roughly centred and filling the frame, as in
CelebA-style aligned data). It may have any size: it is padded to a square, resized to the
model's resolution for the networks, and only the hole is replaced at the input's own resolution.
A loose, off-centre or strongly tilted crop (a face far from that framing, by its landmarks) is
aligned to the canonical frame first, as photo mode aligns each face, and warped back.

Speed on CPUs (measured with ``benchmarks/speed.py``, see docs/SPEED.md): the networks are built
once per model; each call runs them under ``torch.inference_mode`` with one intra-op thread by
default and with denormal numbers flushed to zero, both restored when the call returns (see
:class:`LaFInModel`); the landmark predictor and the compact generator use the channels-last
memory format, which measures faster for them (the original generator's does not); the faces of
one photo go through both networks as one batch. ``backend="onnx"`` runs both networks with
ONNX Runtime instead (:mod:`lafin.onnx_backend`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator, Sequence

import functools

import cv2
import numpy as np
import torch

from lafin.alignment import (canonical_landmarks, invert_affine, rescale_points,
                             scale_crop_matrix, similarity_transform, transform_points,
                             warp_to_crop)
from lafin.blend import DIFFUSION_MIX, diffusion_mix, edge_blend, harmonize, keep_tone
from lafin.config import ModelConfig
from lafin.devices import resolve_device
from lafin.errors import MaskError, OptionError
from lafin.io import ImageInput, InputError, check_landmarks, load_image, load_mask
from lafin.landmarks import FLIP_PERMUTATION, NUM_POINTS, landmark_map

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS_NAME = "lafin-compact.safetensors"
BACKENDS = ("torch", "onnx")
# Hole pixels are harmonised inside the hole's bounding box grown by this margin (px): wider than
# harmonize()'s ring plus its Telea radius, so the result is the same as over the whole face.
_HARMONIZE_MARGIN = 16
# The refiner runs on each face's hole grown by this margin (px at its size), not on the whole
# crop: further out the crop hardly changes the hole's pixels. benchmarks/refine_window.py (the
# shipped refiner, the mouth holes of benchmarks/video.py's clip, torch 2.13, one thread, a busy
# machine): at most 0.08 of a grey level from the whole crop's (48 px: 0.02), 23.5 ms of CPU a
# face against 85 ms for whole crops in batches of 8 (the cache thrashes) and 45 ms one at a time.
_REFINE_MARGIN = 40
# Environment variables by which a user sets the CPU threads of torch (then lafin keeps them).
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


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
    """

    image: np.ndarray
    landmarks: np.ndarray | None
    mask: np.ndarray
    landmarks_given: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    mode: str = "crop"
    faces: list["FaceReport"] = field(default_factory=list)
    background_pixels: int = 0
    background_regions: list["BackgroundRegion"] = field(default_factory=list)
    tone: str = "colour"


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
    """

    path: str
    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    hole_pixels: int
    notes: list[str] = field(default_factory=list)


@dataclass
class FramedPhoto:
    """A photo and the frames of its faces, for :meth:`LaFInModel.render_photos`.

    Attributes:
        image: HxWx3 uint8 photo; hole: HxW uint8 (1 = hole).
        content: HxWx3 uint8, updated in place inside the hole (pre-filled by OpenCV).
        frames: :class:`lafin.photo.FaceFrame` list.
        covered: HxW bool, if given: set (in place) where a face's generated crop filled the hole.
    """

    image: np.ndarray
    hole: np.ndarray
    content: np.ndarray
    frames: list
    covered: np.ndarray | None = None


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
        return rescale_points(shifted, self.scale)

    def to_input(self, points: np.ndarray) -> np.ndarray:
        shifted = rescale_points(points, 1 / self.scale)
        return shifted - np.array([self.pad_left, self.pad_top], dtype=np.float32)


def _flush_denormal_enabled() -> bool:
    """Whether this thread flushes denormal floats to zero (probed: 1e-39 is denormal in fp32)."""
    return bool((torch.full((1,), 1e-39) * 1.0001).item() == 0.0)


def _cpu_call(method: Callable) -> Callable:
    """Run a LaFInModel method under the model's CPU settings (threads, denormal flushing)."""
    @functools.wraps(method)
    def wrapper(self: "LaFInModel", *args, **kwargs):
        with self._cpu_settings():
            return method(self, *args, **kwargs)
    return wrapper


STAGE_LABELS = {"prepare": "Preparing", "background": "Filling background",
                "detect": "Detecting faces", "landmarks": "Predicting landmarks",
                "generate": "Generating face", "refine": "Refining detail", "blend": "Blending"}


class _Stages:
    """Times consecutive stages and tells an optional ``progress(stage)`` callback as each starts."""

    def __init__(self, progress: Callable[[str], None] | None) -> None:
        self.timings: dict[str, float] = {}
        self.progress = progress
        self._name: str | None = None
        self._t = 0.0

    def start(self, name: str) -> None:
        self.stop()
        self._name, self._t = name, time.perf_counter()
        if self.progress is not None:
            self.progress(name)

    def stop(self) -> dict[str, float]:
        if self._name is not None:
            self.timings[self._name] = self.timings.get(self._name, 0.0) + time.perf_counter() - self._t
            self._name = None
        return self.timings


def _hole_windows(holes: torch.Tensor, margin: int, step: int = 8
                  ) -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right) of each (B, 1, R, R) crop's hole grown by ``margin``, on the
    ``step`` grid (the refiner's 1/8 scale: a window then sees the same grid as the whole crop)
    and within the crop; an empty window where a crop has no hole."""
    size_y, size_x = holes.shape[-2:]
    windows = []
    for hole in holes[:, 0] > 0.5:
        rows, cols = torch.nonzero(hole.any(dim=1)), torch.nonzero(hole.any(dim=0))
        if not len(rows):
            windows.append((0, 0, 0, 0))
            continue
        top, bottom = int(rows[0]) - margin, int(rows[-1]) + 1 + margin
        left, right = int(cols[0]) - margin, int(cols[-1]) + 1 + margin
        windows.append((max(0, top // step * step), min(size_y, -(-bottom // step) * step),
                        max(0, left // step * step), min(size_x, -(-right // step) * step)))
    return windows


def _hole_points(hole: np.ndarray) -> np.ndarray:
    """(N, 2) float64 x, y of the hole's pixels."""
    ys, xs = np.nonzero(hole)
    return np.stack([xs, ys], 1).astype(np.float64)


def _inside_crop(points: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """(N,) bool: which photo points (N, 2) the ``size`` crop of ``matrix`` contains."""
    q = points @ np.asarray(matrix, np.float64)[:, :2].T + np.asarray(matrix, np.float64)[:, 2]
    return ((q >= 0) & (q <= size - 1)).all(axis=1)


def _keeps_hole(hole_xy: np.ndarray, old: np.ndarray, new: np.ndarray, size: int) -> bool:
    """Does the crop of ``new`` hold 99% of the hole pixels (N, 2) the crop of ``old`` held?
    (A re-framed face must not move away from the hole it is there to fill.)"""
    held = _inside_crop(hole_xy, old, size)
    return bool((_inside_crop(hole_xy, new, size) & held).sum() >= 0.99 * held.sum())


def _per_view(value: np.ndarray | Sequence[np.ndarray], matrices: Sequence) -> list[np.ndarray]:
    """One photo (or its hole) per view: ``value`` itself for every view, or the given list."""
    if isinstance(value, np.ndarray):
        return [value] * len(matrices)
    if len(value) != len(matrices):
        raise ValueError(f"{len(value)} photos for {len(matrices)} views")
    return list(value)


def _background_regions(rest: np.ndarray) -> list[BackgroundRegion]:
    """The parts of the HxW bool ``rest`` (hole pixels no face took), nearby pieces together
    (the slivers one brush stroke leaves around a face are one part), largest first."""
    from lafin.photo import hole_regions

    regions = []
    for left, top, right, bottom in hole_regions(rest.astype(np.uint8), grow=0.25, min_side=8):
        x, y, w, h = cv2.boundingRect(rest[top:bottom, left:right].astype(np.uint8))
        if w and h:  # the pieces' own box, not the grown one they were grouped by
            regions.append(BackgroundRegion((left + x, top + y, left + x + w, top + y + h),
                                            int(rest[top:bottom, left:right].sum())))
    return sorted(regions, key=lambda r: -r.pixels)


def _is_loose(points: np.ndarray, size: int) -> bool:
    """Is the face of these (68, 2) landmarks (pixels of a ``size`` crop) far from the canonical
    frame the generator was trained on? On 150 CelebA validation crops under 30-60% holes the
    predicted landmarks put the face within 0.89-1.24 of its scale, 14 degrees and 9% of the side
    (the extremes); a face at under 0.75 or over 1.4 times that scale, turned by over 18 degrees
    or off-centre by over 15% of the side is loose. (Aligning a crop that is not loose costs:
    the parts of the hole outside the aligned face get OpenCV's fill.)"""
    matrix = similarity_transform(np.asarray(points, np.float64), canonical_landmarks(size))
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    angle = abs(float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))))
    centre = np.full(2, (size - 1) / 2)
    shift = float(np.hypot(*(matrix[:, :2] @ centre + matrix[:, 2] - centre)))
    return not (0.75 <= scale <= 1.4) or angle > 18 or shift > 0.15 * size


class LaFInModel:
    """Landmark-guided face inpainting.

    Args:
        weights: a weights file (ours, ``.safetensors``) or the original LaFIn release's
            ``.pth`` files (a list: generator and landmark detector). None uses the weights that
            ship with the package. With ``backend="onnx"`` also a folder written by
            :func:`lafin.onnx_backend.export_onnx` (``lafin export --format onnx``); a weights
            file is then exported once into a cache folder.
        device: torch device, ``"cpu"`` (default) or e.g. ``"cuda"`` (torch backend only).
        backend: ``"torch"`` (default) or ``"onnx"`` (ONNX Runtime on the CPU; needs the
            ``onnx`` extra: ``pip install 'lafin[onnx]'``).
        threads: CPU threads for the networks during a call. None (default): one thread, unless
            the environment sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` (then torch's setting
            is kept). One thread is the measured best for these small networks on a shared CPU:
            with two OpenMP threads on two busy cores a 128-px face took 3 s instead of 30 ms
            (threads spin-wait for each other), and flushing denormals reaches torch's worker
            threads unreliably. torch's global thread count is restored after each call.

    Example::

        model = LaFInModel()
        result = model.inpaint(image, mask)           # HxWx3 uint8
        full = model(image, mask)                     # InpaintResult with landmarks and timings
    """

    def __init__(self, weights: str | Path | Sequence[str | Path] | None = None,
                 device: str | torch.device = "cpu", backend: str = "torch",
                 threads: int | None = None) -> None:
        self._setup(device, backend, threads)
        if weights is None:
            weights = default_weights_path()
            if not weights.is_file():
                raise WeightsNotFoundError(
                    "this installation of lafin ships no default weights yet. Train them with "
                    "'lafin train' (see docs/TRAINING.md) and pass LaFInModel(weights=PATH), or "
                    "load the original LaFIn release with LaFInModel(weights=[GEN.pth, "
                    "landmark_detector.pth])")
        self.load_weights(weights)

    def _setup(self, device: str | torch.device, backend: str, threads: int | None) -> None:
        if backend not in BACKENDS:
            raise OptionError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise OptionError(f"threads must be a positive integer or None, not {threads!r}")
        self.device = resolve_device(device)
        if backend == "onnx" and self.device.type != "cpu":
            raise InputError(f"the onnx backend runs on the CPU (ONNX Runtime), not on "
                             f"{self.device}; use backend='torch' for {self.device}")
        self.backend = backend
        self.threads = threads
        # average the landmarks predicted on the crop and on its mirror image (see _predict)
        self.flip_average = True
        # photo mode: each face re-aligned (to the canonical frame the predictor knows best) on a
        # first landmark pass instead of dlib's points, then a second pass, and the generator
        # works on that crop too (see _refine_frames)
        self.landmark_refine = True
        # the same second pass in crop mode (_locate): off, because on AFW's loose 128-px crops
        # it lost under holes (irregular 30-40%: 6.43% -> 6.89% NME) and moved no inpainting row,
        # and on held-out HELEN faces it won only unoccluded (docs/MODEL_CARD.md)
        self.crop_landmark_refine = False
        # mix OpenCV's Navier-Stokes fill into the pixel ring next to the known region (lafin.blend.
        # edge_blend, band EDGE_BLEND_PX). Off: with the diffusion mix below it gained nothing
        # measurable (benchmarks/edge_blend.py on CelebA val: within 0.01 dB in every bin) and
        # costs a second fill (~3-5 ms per face)
        self.edge_blend = False
        # the share of OpenCV's Navier-Stokes fill mixed into the generated hole content, at the
        # model's resolution: the two err differently (lafin.blend.diffusion_mix); 0 turns it off
        self.diffusion_mix: float = DIFFUSION_MIX
        # run the generator on the crop and on its mirror image and average the two (flipped
        # back): a cheap two-member ensemble (see docs/MODEL_CARD.md for what it measured)
        self.generator_flip_average = True
        self.config: ModelConfig | None = None
        self.generator: torch.nn.Module | None = None
        self.landmark_predictor: torch.nn.Module | None = None
        # the texture refiner (lafin.networks.refiner), when the weights have one: the generator's
        # face is refined at the refiner's size; the refiner seeds its noise from ``seed``
        self.refiner: torch.nn.Module | None = None
        self.seed = 0
        self._channels_last = {"generator": False, "landmarks": False, "refiner": False}
        self._local = threading.local()

    @classmethod
    def from_networks(cls, config: ModelConfig, generator: torch.nn.Module | None,
                      landmark_predictor: torch.nn.Module, device: str | torch.device = "cpu",
                      threads: int | None = None,
                      refiner: torch.nn.Module | None = None) -> "LaFInModel":
        """Wrap networks built in memory (e.g. during training or in tests).

        The networks are put in eval mode on ``device``; their memory format is left as it is
        (they belong to the caller). Without a generator only :meth:`predict_landmarks` works.
        A ``refiner`` turns the mirror averaging and the diffusion mix off, as loading does.
        """
        model = cls.__new__(cls)
        model._setup(device, "torch", threads)
        model.config = config
        model.generator = None if generator is None else generator.to(model.device).eval()
        model.landmark_predictor = landmark_predictor.to(model.device).eval()
        if refiner is not None:
            model.refiner = refiner.to(model.device).eval()
            model.generator_flip_average = False
            model.diffusion_mix = 0.0
        return model

    def load_weights(self, weights: str | Path | Sequence[str | Path]) -> None:
        """Load weights (replacing the current networks); both networks must be present."""
        if self.backend == "onnx":
            from lafin.onnx_backend import load_onnx_folder, load_onnx_refiner, onnx_folder

            folder = onnx_folder(weights)
            self.config, self.generator, self.landmark_predictor = load_onnx_folder(
                folder, threads=self.threads)
            self.refiner = load_onnx_refiner(folder, threads=self.threads)
            if self.refiner is not None:  # as for the torch networks (below)
                self.generator_flip_average = False
                self.diffusion_mix = 0.0
            log.info("loaded %s as ONNX (%s preset, %d px)", weights, self.config.name,
                     self.config.image_size)
            return
        from lafin.checkpoint import build_from_weights, build_refiner_from_weights, load_any

        loaded = load_any(weights)
        generator, predictor = build_from_weights(loaded, device=self.device)
        if generator is None or predictor is None:
            missing = "generator" if generator is None else "landmark predictor"
            raise InputError(f"{weights}: the file has no {missing}; inpainting needs both "
                             "(for the original release pass both .pth files)")
        self.config, self.generator, self.landmark_predictor = loaded.config, generator, predictor
        self.refiner = build_refiner_from_weights(loaded, device=self.device)
        if self.refiner is not None:
            # the refiner learnt on the bare generator's faces: averaging the generator with its
            # mirror pass and mixing in a diffusion fill would hand it smoother faces than that
            self.generator_flip_average = False
            self.diffusion_mix = 0.0
        self._choose_memory_format()
        log.info("loaded %s weights (%s preset, %d px)", weights, loaded.config.name,
                 loaded.config.image_size)

    def _choose_memory_format(self) -> None:
        """Channels-last where it measured faster on the CPU (benchmarks/speed.py, torch 2.13):
        the MobileNetV2 landmark predictor (8 -> 6 ms at 128 px) and the compact generator
        (19 -> 12 ms); not the original generator (1.1 -> 1.5 s at 256 px)."""
        from lafin.networks import CompactGenerator, LandmarkPredictor, Refiner

        self._channels_last = {"generator": False, "landmarks": False, "refiner": False}
        if self.device.type != "cpu":
            return
        for name, net, kind in (("generator", self.generator, CompactGenerator),
                                ("landmarks", self.landmark_predictor, LandmarkPredictor),
                                ("refiner", self.refiner, Refiner)):
            if isinstance(net, kind):
                net.to(memory_format=torch.channels_last)
                self._channels_last[name] = True

    @contextmanager
    def _cpu_settings(self) -> Iterator[None]:
        """Threads and denormal flushing for one call (re-entrant); restored afterwards.

        Denormals (|x| < 1.2e-38) appear in the attention's softmax over many positions and make
        CPU matrix products up to ~10x slower (the paper generator: 9 s -> 1 s per face).
        """
        depth = getattr(self._local, "depth", 0)
        if depth or self.device.type != "cpu":
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        previous = torch.get_num_threads()
        wanted = self.threads if self.threads is not None else (
            None if any(os.environ.get(k) for k in _THREAD_ENV) else 1)
        flushing = _flush_denormal_enabled()
        self._local.depth = 1
        try:
            if wanted is not None and wanted != previous:
                torch.set_num_threads(wanted)
            if not flushing:
                torch.set_flush_denormal(True)
            yield
        finally:
            self._local.depth = 0
            if not flushing:
                torch.set_flush_denormal(False)
            if torch.get_num_threads() != previous:
                torch.set_num_threads(previous)

    @property
    def image_size(self) -> int:
        assert self.config is not None
        return self.config.image_size

    # ------------------------------------------------------------------ input handling

    def check_inputs(self, image: ImageInput, mask: ImageInput,
                     landmarks: np.ndarray | str | Path | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Load and validate; returns (HxWx3 uint8 image, HxW uint8 mask with 1 = hole).

        ``landmarks`` (an array or a landmarks file) is checked too: use
        :meth:`checked_inputs` to get the checked copy back.
        """
        img, hole, _ = self.checked_inputs(image, mask, landmarks)
        return img, hole

    def checked_inputs(self, image: ImageInput, mask: ImageInput,
                       landmarks: np.ndarray | str | Path | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(image, mask, landmarks) through the input layer (:mod:`lafin.io`): the landmarks as
        a new (68, 2) float32 array (loaded from a file if a path is given) or None."""
        img = load_image(image)
        hole = load_mask(mask, shape=img.shape[:2])
        if hole.all():
            raise MaskError("the mask covers the whole image: there is no face left to guide "
                            "the inpainting")
        lm = None if landmarks is None else check_landmarks(landmarks, img.shape[:2])
        return img, hole, lm

    @property
    def landmark_size(self) -> int:
        """Side of the landmark predictor's input crop (the config's ``landmark_size``)."""
        assert self.config is not None
        return self.config.landmark_size

    def _frame(self, shape: tuple[int, int], size: int | None = None) -> _Frame:
        """The input's square frame at ``size`` (default: the generator's ``image_size``)."""
        h, w = shape
        side = max(h, w)
        return _Frame((side - h) // 2, (side - w) // 2, side, size or self.image_size)

    def _to_model(self, image: np.ndarray, hole: np.ndarray, frame: _Frame
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = hole.shape
        pads = ((frame.pad_top, frame.side - h - frame.pad_top),
                (frame.pad_left, frame.side - w - frame.pad_left))
        square = np.pad(image, pads + ((0, 0),), mode="edge")
        square_hole = np.pad(hole, pads, mode="constant").astype(np.float32)
        s = frame.size
        interp = cv2.INTER_AREA if frame.side > s else cv2.INTER_CUBIC
        small = cv2.resize(square, (s, s), interpolation=interp)
        # a model pixel is hole if any input pixel under it is: nothing of the hole leaks in
        small_hole = (cv2.resize(square_hole, (s, s), interpolation=interp if frame.side > s
                                 else cv2.INTER_LINEAR) > 0).astype(np.float32)
        img_t = torch.from_numpy(small).permute(2, 0, 1).float().div(255).unsqueeze(0)
        hole_t = torch.from_numpy(small_hole)[None, None]
        return img_t.to(self.device), hole_t.to(self.device)

    # ------------------------------------------------------------------ the stages

    @_cpu_call
    @torch.inference_mode()
    def _predict(self, masked: torch.Tensor, flip: bool | None = None) -> np.ndarray:
        """(B, 3, L, L) masked crops at the predictor's ``landmark_size`` L -> (B, 68, 2) float32
        landmarks in crop pixels. ``flip`` (default: ``flip_average``) averages with the mirror
        image's prediction. Callers build their crops at L from the input's own pixels
        (:meth:`_locate`, :meth:`_predict_in`).
        """
        assert self.landmark_predictor is not None
        size = self.landmark_size
        if masked.shape[-2:] != (size, size):
            raise ValueError(f"the landmark predictor takes {size}x{size} crops, "
                             f"not {tuple(masked.shape[-2:])}")
        if self._channels_last["landmarks"]:
            masked = masked.contiguous(memory_format=torch.channels_last)
        if not (self.flip_average if flip is None else flip):
            out = self.landmark_predictor(masked).reshape(-1, NUM_POINTS, 2) * size
            return out.float().cpu().numpy()
        # the mean of the crop's and its mirror image's prediction (mirrored back): the result
        # is exactly mirror-symmetric and cancels the predictor's left/right bias (shipped weights,
        # AFW NME unoccluded 5.70% -> 5.32%: benchmarks/landmarks_nme.py --raw)
        n = masked.shape[0]
        both = torch.cat([masked, masked.flip(3)])
        out = self.landmark_predictor(both).reshape(2, n, NUM_POINTS, 2).float() * size
        mirrored = out[1][:, FLIP_PERMUTATION].clone()
        mirrored[..., 0] = size - 1 - mirrored[..., 0]
        return ((out[0] + mirrored) / 2).cpu().numpy()

    def _predict_in(self, img: np.ndarray | Sequence[np.ndarray],
                    hole: np.ndarray | Sequence[np.ndarray], matrices: list[np.ndarray],
                    flip: bool | None = None, aligned: Sequence[bool] | None = None
                    ) -> np.ndarray:
        """Landmarks of the faces framed by ``matrices`` (photo pixels -> ``image_size`` crop),
        (B, 68, 2) float32 in those crops' pixels, predicted on crops resampled from the photo
        at the predictor's own ``landmark_size`` (``img``, ``hole``: one photo, or one per matrix).

        ``aligned`` (default: all) marks the frames that put a face on the canonical layout
        (found or given faces). The others are guesses around a hole where no face was found
        ("hole-surroundings": 1.6 times the hole, a nose-sized crop for a hole over the nose):
        the predictor first looks at twice that area, and the face is re-aligned on what it
        finds before the pass that gives the points: on the 41 of HELEN's 798 training photos
        that reach this path with one facial part hidden (benchmarks/real_photos.py --names
        configs/splits/helen-train.txt) the NME fell from 11.39% to 5.17%. (A view three times
        the guess did worse in a trial: the face gets too small for the predictor.)
        """
        s = self.image_size
        frames = [np.asarray(m, np.float64) for m in matrices]
        centred = [True] * len(frames) if aligned is None else [bool(a) for a in aligned]
        guessed = [i for i, a in enumerate(centred) if not a]
        if guessed:
            imgs, holes = _per_view(img, matrices), _per_view(hole, matrices)
            c = (s - 1) / 2  # twice the area around the crop's centre: p -> p / 2 + c / 2
            wide = [np.concatenate([frames[i][:, :2] / 2, frames[i][:, 2:] / 2 + c / 2], axis=1)
                    for i in guessed]
            rough = self._predict_views([imgs[i] for i in guessed], [holes[i] for i in guessed],
                                        wide, flip=False)
            for i, view, points in zip(guessed, wide, rough):
                hole_xy = _hole_points(holes[i])
                found = transform_points(points, invert_affine(view)).astype(np.float64)
                # kept if its landmark box spans 10%-400% of the guessed crop and it keeps the
                # hole (not a neighbour's face caught by the wide view)
                side = s / np.sqrt(abs(np.linalg.det(frames[i][:, :2])))  # in photo pixels
                face = similarity_transform(found, canonical_landmarks(s))
                if (0.1 * side <= float((found.max(axis=0) - found.min(axis=0)).max()) <= 4 * side
                        and _keeps_hole(hole_xy, frames[i], face, s)):
                    frames[i], centred[i] = face, True
        points = self._predict_views(img, hole, frames, flip=flip, centred=centred)
        for i in guessed:  # back into the guessed crop's pixels
            photo = transform_points(points[i], invert_affine(frames[i]))
            points[i] = transform_points(photo, np.asarray(matrices[i], np.float64))
        return points

    def _predict_views(self, img: np.ndarray | Sequence[np.ndarray],
                       hole: np.ndarray | Sequence[np.ndarray], matrices: list[np.ndarray],
                       flip: bool | None = None, centred: Sequence[bool] | None = None
                       ) -> np.ndarray:
        """The predictor on the views of ``matrices`` (photo -> ``image_size`` crop) at its own
        ``landmark_size``; (B, 68, 2) float32 points in the crops' pixels.

        ``centred`` (default: none) marks aligned crops, whose view is moved so the canonical
        landmark box is at its centre: an aligned crop sits the face 8% of a side low (chin 7 px
        from the bottom of 128), the edge of the shifts the predictor trained on
        (``GeometryAugment``: box centred +-8%). Photo mode NME on 70 held-out HELEN faces
        (benchmarks/real_photos.py --names configs/splits/helen-val.txt): 4.27% -> 4.12%.
        """
        s = self.image_size
        r = self.landmark_size / s
        box = canonical_landmarks(s)
        shifts = np.zeros((len(matrices), 2))
        if centred is not None:
            shifts[np.asarray(centred, bool)] = (s - 1) / 2 - (box.min(axis=0) + box.max(axis=0)) / 2
        views = []  # crop pixel p -> predictor-view pixel (p + shift + 0.5) * r - 0.5
        for matrix, shift in zip(matrices, shifts):
            view = np.asarray(matrix, np.float64) * r
            view[:, 2] += r * shift + 0.5 * (r - 1)
            views.append(view)
        points = self._predict(self._landmark_view(img, hole, views), flip=flip)
        return (rescale_points(points, 1 / r) - shifts[:, None]).astype(np.float32)

    def _locate(self, img: np.ndarray, hole: np.ndarray, frame: _Frame, img_t: torch.Tensor,
                hole_t: torch.Tensor) -> np.ndarray:
        """The face's 68 landmarks, (68, 2) float32 in model-crop pixels.

        With ``crop_landmark_refine`` (off by default) the first pass (no mirror average) only
        frames the face: the input is re-aligned to the canonical crop by those points, from its own
        pixels (hole painted white first, so nothing under the hole is read), and the second
        pass (mirror-averaged) gives the points. Session-8 weights (predictor v7), 128-px loose crops
        (benchmarks/landmarks_nme.py --refine): 70 held-out HELEN faces 3.90% -> 3.75% unoccluded
        but 5.12% -> 5.16% under irregular holes; AFW 4.81% -> 4.83% and 6.43% -> 6.89%.
        """
        if self.landmark_size == self.image_size:
            points = self._predict(img_t * (1 - hole_t) + hole_t,
                                   flip=False if self.crop_landmark_refine else None)[0]
        else:  # the predictor's own crop of the input, at its size (not the generator's upscaled)
            big = self._frame(img.shape[:2], self.landmark_size)
            big_img, big_hole = self._to_model(img, hole, big)
            big_points = self._predict(big_img * (1 - big_hole) + big_hole,
                                       flip=False if self.crop_landmark_refine else None)[0]
            points = frame.to_model(big.to_input(big_points))
        if not self.crop_landmark_refine:
            return points.astype(np.float32)
        first = frame.to_input(points)
        matrix = similarity_transform(first.astype(np.float64), canonical_landmarks(self.image_size))
        second = self._predict_in(img, hole, [matrix])[0]
        return frame.to_model(transform_points(second, invert_affine(matrix))).astype(np.float32)

    def _landmark_view(self, img: np.ndarray | Sequence[np.ndarray],
                       hole: np.ndarray | Sequence[np.ndarray], matrices: list[np.ndarray]
                       ) -> torch.Tensor:
        """(B, 3, L, L) masked crops of ``img`` by each photo -> crop matrix (L: the predictor's
        ``landmark_size``), for the predictor. ``img`` and ``hole`` may also be one per matrix
        (faces of several photos, e.g. video frames, in one batch).

        The hole is painted white before resampling, so nothing under it is read. A crop pixel
        is hole where the hole covers most of it (its white share is in the colour already):
        the "any" rule of the generator's crops grows thin holes at every resampling, and the
        predictor then loses points it could see.
        """
        s = self.landmark_size
        sources: dict[int, np.ndarray] = {}
        crops = []
        for im, ho, matrix in zip(_per_view(img, matrices), _per_view(hole, matrices), matrices):
            if id(im) not in sources:
                sources[id(im)] = np.where(ho[..., None] > 0, np.uint8(255), im)
            crop = warp_to_crop(sources[id(im)], matrix, s)
            crop[warp_to_crop(ho.astype(np.float32), matrix, s,
                              border=cv2.BORDER_CONSTANT) > 0.5] = 255
            crops.append(crop)
        return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255).to(self.device)

    def _face_view(self, img: np.ndarray, hole: np.ndarray, matrix: np.ndarray,
                   size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The generator's view of a photo face: (S, S, 3) uint8 crop and (S, S) bool hole, a
        crop pixel being hole if the hole touches it at all (nothing under the hole leaks in).
        ``size`` (default: the generator's) is S, for a ``matrix`` that maps to an S crop."""
        s = size or self.image_size
        # the hole painted white first: the cubic kernel reaches past the pixels the hole touches
        source = np.where(hole[..., None] > 0, np.uint8(255), img)
        crop = warp_to_crop(source, matrix, s, interpolation=cv2.INTER_CUBIC)
        # area-reduced first (warp_to_crop), so a thin hole in a large photo is not skipped
        crop_hole = warp_to_crop(hole.astype(np.float32), matrix, s,
                                 border=cv2.BORDER_CONSTANT) > 0
        return crop, crop_hole

    def _refine_frames(self, img: np.ndarray, hole: np.ndarray, frames: list, first: np.ndarray
                       ) -> tuple[list, np.ndarray]:
        """Photo mode's second landmark pass: each face re-aligned by the first pass's points
        (B, 68, 2 crop pixels) instead of dlib's, which the hole can pull astray. A face keeps
        its frame when no detector found it, or when the new frame is implausible: scaled by
        more than 1/0.8, turned by more than 20 degrees, or losing more than 1% of the hole
        pixels the old crop held (a confused first pass must not move the face away).
        Returns the frames and the second pass's (B, 68, 2) points in their crops."""
        from dataclasses import replace

        s = self.image_size
        canonical = canonical_landmarks(s)
        hole_xy = _hole_points(hole)
        refined = []
        for f, points in zip(frames, first):
            if f.path != "hole-surroundings":
                matrix = similarity_transform(
                    transform_points(points, invert_affine(f.matrix)).astype(np.float64), canonical)
                change = matrix[:, :2] @ np.linalg.inv(f.matrix[:, :2])  # old crop -> new crop
                scale = float(np.sqrt(abs(np.linalg.det(change))))
                angle = float(np.degrees(np.arctan2(change[1, 0], change[0, 0])))
                if (0.8 <= scale <= 1 / 0.8 and abs(angle) <= 20
                        and _keeps_hole(hole_xy, f.matrix, matrix, s)):
                    f = replace(f, matrix=matrix)
            refined.append(f)
        return refined, self._predict_in(img, hole, [f.matrix for f in refined],
                                         aligned=[f.path != "hole-surroundings" for f in refined])

    @_cpu_call
    @torch.inference_mode()
    def _generate(self, img_t: torch.Tensor, hole_t: torch.Tensor, points: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) crops, (B, 1, S, S) holes, (B, 68, 2) landmarks -> (B, S, S, 3) in [0, 1]."""
        assert self.generator is not None
        masked = img_t * (1 - hole_t) + hole_t
        lm_t = torch.from_numpy(np.asarray(points, np.float32)).to(self.device)
        inputs = [masked, landmark_map(lm_t, self.image_size), hole_t]
        n = masked.shape[0]
        if self.generator_flip_average:
            # the mirror image too (its landmark map is the mirrored map), flipped back, averaged
            inputs = [torch.cat([t, t.flip(3)]) for t in inputs]
        if self._channels_last["generator"]:
            inputs = [t.contiguous(memory_format=torch.channels_last) for t in inputs]
        out = self.generator(*inputs)
        if self.generator_flip_average:
            out = (out[:n] + out[n:].flip(3)) / 2
        return out.permute(0, 2, 3, 1).clamp(0, 1).float().cpu().numpy()

    def _mix_diffusion(self, img_t: torch.Tensor, hole_t: torch.Tensor,
                       generated: np.ndarray) -> np.ndarray:
        """Mix ``diffusion_mix`` of the Navier-Stokes fill into (B, S, S, 3) ``generated``."""
        weight = self.diffusion_mix
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
            raise OptionError(f"diffusion_mix must be a number in [0, 1], not {weight!r}")
        if weight == 0:
            return generated
        # the masked crops (white hole, as the generator sees them): OpenCV's fill reads a little
        # of what lies under the hole, and nothing of it may reach the result
        masked = img_t * (1 - hole_t) + hole_t
        crops = (masked.permute(0, 2, 3, 1).float().cpu().numpy() * 255).round().astype(np.uint8)
        holes = hole_t[:, 0].float().cpu().numpy() > 0.5
        return np.stack([diffusion_mix(c, g * 255.0, h, float(weight)) / 255.0
                         for c, g, h in zip(crops, generated, holes)]).astype(np.float32)

    @property
    def output_size(self) -> int:
        """Side of the face crops the model returns: the refiner's size, else ``image_size``."""
        assert self.config is not None
        return self.config.refiner.output_size if self.refiner is not None else self.image_size

    @_cpu_call
    @torch.inference_mode()
    def _refine(self, crops: torch.Tensor, holes: torch.Tensor, generated: np.ndarray,
                points: np.ndarray, faces: Sequence[int] | None = None) -> np.ndarray:
        """The refiner on (B, 3, R, R) crops and (B, 1, R, R) holes at its size R, given the
        generator's (B, S, S, 3) faces in [0, 1] and the (B, 68, 2) landmarks they were
        generated with (pixels of the S crops); returns (B, R, R, 3) in [0, 1].

        ``faces`` (default 0, 1, ...): which slice of the seeded noise each face gets (a video
        frame's face gets its place in the frame, so its texture stays from frame to frame).
        A PyTorch refiner runs on each face's hole and ``_REFINE_MARGIN`` around it only (the
        rest of the crop is returned as the coarse face: nothing outside the hole is pasted)."""
        from lafin.networks.refiner import landmark_heatmap

        assert self.refiner is not None
        size = self.output_size
        points_r = torch.from_numpy(
            rescale_points(np.asarray(points, np.float32), size / self.image_size)).to(self.device)
        coarse = torch.from_numpy(np.ascontiguousarray(generated)).permute(0, 3, 1, 2).to(self.device)
        coarse = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic",
                                                 align_corners=False).clamp(0, 1)
        coarse = coarse * holes + crops * (1 - holes)
        # the same noise for the same input: a result can be reproduced
        faces = list(range(holes.shape[0])) if faces is None else [int(i) for i in faces]
        noise = torch.randn((max(faces) + 1, 1, size, size),
                            generator=torch.Generator().manual_seed(self.seed))[faces]
        noise = noise.to(self.device)
        channels_last = self._channels_last["refiner"]
        if not isinstance(self.refiner, torch.nn.Module):  # ONNX: the exported size, in one go
            inputs = [coarse, holes, landmark_heatmap(points_r, size), noise]
            return self.refiner(*inputs).permute(0, 2, 3, 1).float().cpu().numpy()
        out = coarse.clone()
        for i, (top, bottom, left, right) in enumerate(_hole_windows(holes, _REFINE_MARGIN)):
            if bottom <= top:
                continue  # no hole in this crop: nothing to refine
            view = (slice(i, i + 1), slice(None), slice(top, bottom), slice(left, right))
            inputs = [coarse[view], holes[view],
                      landmark_heatmap(points_r[i:i + 1], (bottom - top, right - left),
                                       origin=(left, top)), noise[view]]
            if channels_last:
                inputs = [t.contiguous(memory_format=torch.channels_last) for t in inputs]
            out[view] = self.refiner(*inputs)
        return out.permute(0, 2, 3, 1).float().cpu().numpy()

    def _paste(self, image: np.ndarray, hole: np.ndarray, generated: np.ndarray,
               frame: _Frame) -> np.ndarray:
        """Resize the generated square back and replace only the hole's pixels."""
        up = cv2.resize(generated, (frame.side, frame.side),
                        interpolation=cv2.INTER_CUBIC if frame.side > frame.size else cv2.INTER_AREA)
        h, w = hole.shape
        up = up[frame.pad_top:frame.pad_top + h, frame.pad_left:frame.pad_left + w] * 255.0
        if self.edge_blend:
            up = edge_blend(image, up, hole, scale=frame.side / frame.size)
        out = image.copy()
        sel = hole.astype(bool)
        out[sel] = np.round(up[sel]).clip(0, 255).astype(np.uint8)
        return out

    # ------------------------------------------------------------------ public API

    @_cpu_call
    def predict_landmarks(self, image: ImageInput, mask: ImageInput | None = None) -> np.ndarray:
        """The 68 landmarks of the (masked) face, (68, 2) float32 x, y in the image's pixels."""
        img = load_image(image)
        hole = (np.zeros(img.shape[:2], np.uint8) if mask is None
                else load_mask(mask, shape=img.shape[:2]))
        frame = self._frame(img.shape[:2])
        img_t, hole_t = self._to_model(img, hole, frame)
        return frame.to_input(self._locate(img, hole, frame, img_t, hole_t)).astype(np.float32)

    @_cpu_call
    def __call__(self, image: ImageInput, mask: ImageInput, landmarks: np.ndarray | None = None,
                 mode: str = "auto", progress: Callable[[str], None] | None = None) -> InpaintResult:
        """Inpaint and return the image, the landmarks used and per-stage timings.

        Args:
            image, mask, landmarks: as for :meth:`inpaint`.
            mode: ``crop`` treats the image as one face crop; ``photo`` finds the faces the
                hole touches, aligns each, and pastes the results back; ``auto`` (default)
                picks ``crop`` for images up to twice the model's size, else ``photo``.
            progress: called with a stage name (keys of ``STAGE_LABELS``) as each stage starts.
        """
        if mode not in ("auto", "crop", "photo"):
            raise OptionError(f"mode must be 'auto', 'crop' or 'photo', not {mode!r}")
        img, hole, landmarks = self.checked_inputs(image, mask, landmarks)
        if mode == "auto":
            mode = "crop" if max(img.shape[:2]) <= 2 * self.image_size else "photo"
        if not hole.any():
            log.warning("the mask is empty (no hole): the image is returned unchanged")
            lm = (np.asarray(landmarks, np.float32) if landmarks is not None
                  else self.predict_landmarks(img) if mode == "crop" else None)
            return InpaintResult(img.copy(), lm, hole, landmarks is not None, {}, mode)
        stages = _Stages(progress)
        if mode == "photo":
            return self._inpaint_photo(img, hole, landmarks, stages)
        frame = self._frame(img.shape[:2])
        stages.start("prepare")
        img_t, hole_t = self._to_model(img, hole, frame)
        if landmarks is None:
            stages.start("landmarks")
            points = self._locate(img, hole, frame, img_t, hole_t)
        else:
            points = frame.to_model(np.asarray(landmarks, np.float32))
        if _is_loose(points, self.image_size):
            # a loose, off-centre or tilted crop: the face is aligned to the canonical frame the
            # generator knows on these landmarks, generated there and warped back (photo mode's
            # path with the landmarks given); hole parts outside that face get OpenCV's fill
            lm = frame.to_input(points).astype(np.float32)
            result = self._inpaint_photo(img, hole, lm, stages)
            result.mode, result.landmarks_given = "crop", landmarks is not None
            result.landmarks = lm if landmarks is None else np.asarray(landmarks, np.float32)
            return result
        stages.start("generate")
        generated = self._generate(img_t, hole_t, points[None])
        generated = self._mix_diffusion(img_t, hole_t, generated)
        if self.refiner is not None:
            stages.start("refine")
            frame = self._frame(img.shape[:2], self.output_size)
            generated = self._refine(*self._to_model(img, hole, frame), generated, points[None])
        stages.start("blend")
        out, tone = keep_tone(img, self._paste(img, hole, generated[0], frame), hole)
        timings = stages.stop()
        lm_out = (np.asarray(landmarks, np.float32) if landmarks is not None
                  else frame.to_input(points).astype(np.float32))
        return InpaintResult(out, lm_out, hole, landmarks is not None, timings, "crop", tone=tone)

    def _inpaint_photo(self, img: np.ndarray, hole: np.ndarray, landmarks: np.ndarray | None,
                       stages: _Stages) -> InpaintResult:
        """Photo mode: find/align every face the hole touches, generate them as one batch,
        warp back, harmonise at the hole's edge; other hole pixels are filled by OpenCV."""
        from lafin.photo import FaceFrame, fill_regions, find_faces, robust_alignment

        s = self.image_size
        stages.start("background")
        # the output: the hole pre-filled by OpenCV (what background pixels keep); faces overwrite
        content = fill_regions(img, hole)
        stages.start("detect")
        if landmarks is not None:
            lm = np.asarray(landmarks, np.float32)
            xy = np.clip(np.round(lm).astype(int), 0, [img.shape[1] - 1, img.shape[0] - 1])
            visible = hole[xy[:, 1], xy[:, 0]] == 0
            lo, hi = lm.min(axis=0), lm.max(axis=0)
            frames = [FaceFrame(robust_alignment(lm, visible, s), s, "given-landmarks",
                                (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])), lm)]
        else:
            frames = find_faces(img, hole, s, filled=content)
        covered = np.zeros(hole.shape, bool)
        reports = self.render_faces(img, hole, content, frames, stages,
                                    given=landmarks is not None, covered=covered)
        unfound = sum(r.path == "hole-surroundings" for r in reports)
        if unfound:
            # a landscape or a texture gets a face-like fill: say so rather than pass it off
            log.warning("no face found near %d part(s) of the hole: filled from the surroundings "
                        "by the face generator anyway (lafin is made for faces; the result may "
                        "look wrong on other images)", unfound)
        stages.start("blend")  # the photo's tone (grey, sepia) kept in the fill
        out, tone = keep_tone(img, content, hole)  # outside the hole: the input, bit for bit
        timings = stages.stop()
        regions = _background_regions(hole.astype(bool) & ~covered)
        background = sum(r.pixels for r in regions)
        if background:
            log.info("%d hole pixels lie outside every face: filled by OpenCV (Telea): %s",
                     background, ", ".join(f"{r.pixels} px at {r.box[:2]}" for r in regions))
        main = max(reports, key=lambda r: (r.box[2] - r.box[0]) * (r.box[3] - r.box[1]), default=None)
        return InpaintResult(out, None if main is None else main.landmarks, hole,
                             landmarks is not None, timings, "photo", reports, background, regions,
                             tone)

    @_cpu_call
    def render_faces(self, img: np.ndarray, hole: np.ndarray, content: np.ndarray,
                     frames: list, stages: _Stages | None = None, given: bool = False,
                     point_filter: Callable[[int, np.ndarray], np.ndarray] | None = None,
                     refine: bool | None = None, covered: np.ndarray | None = None
                     ) -> list[FaceReport]:
        """Generate the faces of ``frames`` as one batch and write them into ``content``.

        Args:
            img: HxWx3 uint8 photo; hole: HxW uint8 (1 = hole).
            content: HxWx3 uint8, updated in place inside the hole (pre-filled by OpenCV).
            frames: :class:`lafin.photo.FaceFrame` list (alignment of each face).
            given: use each frame's ``landmarks`` for generation instead of predicting them.
            point_filter: ``f(index_in_frames, landmarks_in_photo_pixels) -> landmarks``, applied
                to predicted landmarks before generation.
            refine: re-align each face on a first landmark pass (default: ``landmark_refine``).
            covered: HxW bool, if given: set (in place) where a face's generated crop filled
                the hole.

        Returns:
            One report per face whose crop contains part of the hole; overlapping faces do not
            count a hole pixel twice.
        """
        flt = None if point_filter is None else (lambda _, i, points: point_filter(i, points))
        return self.render_photos([FramedPhoto(img, hole, content, frames, covered)], stages,
                                  given, flt, refine)[0]

    @_cpu_call
    def predict_face_landmarks(self, img: np.ndarray, hole: np.ndarray, frames: list
                               ) -> np.ndarray:
        """(B, 68, 2) float32 landmarks, in photo pixels, of the faces of ``frames`` (photo mode's
        first pass: no re-alignment); e.g. to smooth them over a video's frames before
        :meth:`render_photos` with ``given=True``."""
        if not frames:
            return np.zeros((0, NUM_POINTS, 2), np.float32)
        points = self._predict_in(img, hole, [f.matrix for f in frames],
                                  aligned=[f.path != "hole-surroundings" for f in frames])
        return np.stack([transform_points(p, invert_affine(f.matrix))
                         for p, f in zip(points, frames)]).astype(np.float32)

    @_cpu_call
    def render_photos(self, photos: Sequence["FramedPhoto"], stages: _Stages | None = None,
                      given: bool = False,
                      point_filter: Callable[[int, int, np.ndarray], np.ndarray] | None = None,
                      refine: bool | None = None) -> list[list[FaceReport]]:
        """:meth:`render_faces` for several photos (e.g. video frames): all their faces go through
        the networks as one batch. ``point_filter(photo_index, face_index, landmarks)`` is called
        in photo order, then face order (video smooths landmarks over time with it). Returns
        each photo's reports."""
        stages = stages or _Stages(None)
        s = self.image_size
        crops, holes, used, owner, index = [], [], [], [], []
        for p, photo in enumerate(photos):
            for i, f in enumerate(photo.frames):
                crop, crop_hole = self._face_view(photo.image, photo.hole, f.matrix)
                if crop_hole.any():
                    crops.append(crop)
                    holes.append(crop_hole)
                    used.append(f)
                    owner.append(p)
                    index.append(i)
        if not used:
            return [[] for _ in photos]
        img_t = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255).to(self.device)
        hole_t = torch.from_numpy(np.stack(holes)[:, None].astype(np.float32)).to(self.device)
        stages.start("landmarks")
        if given:
            points = np.stack([transform_points(f.landmarks, f.matrix) for f in used])
        else:
            refine = self.landmark_refine if refine is None else refine
            flip = False if refine else None
            points = (self._predict(img_t * (1 - hole_t) + hole_t, flip=flip)
                      if self.landmark_size == s  # the generator's crops serve the predictor too
                      else self._predict_in([photos[p].image for p in owner],
                                            [photos[p].hole for p in owner],
                                            [f.matrix for f in used], flip=flip,
                                            aligned=[f.path != "hole-surroundings" for f in used]))
            if refine:
                moved = list(used)
                for p in sorted(set(owner)):  # each photo's faces re-aligned on that photo
                    mine = [j for j, o in enumerate(owner) if o == p]
                    refined, second = self._refine_frames(photos[p].image, photos[p].hole,
                                                          [used[j] for j in mine], points[mine])
                    for j, f, q in zip(mine, refined, second):
                        used[j], points[j] = f, q
                for j, (f, before) in enumerate(zip(used, moved)):
                    if f is not before:  # the generator sees the re-aligned crop too
                        crop, crop_hole = self._face_view(photos[owner[j]].image,
                                                          photos[owner[j]].hole, f.matrix)
                        img_t[j] = torch.from_numpy(crop).permute(2, 0, 1).float().div(255)
                        hole_t[j, 0] = torch.from_numpy(crop_hole.astype(np.float32))
            if point_filter is not None:
                points = np.stack([
                    transform_points(point_filter(p, i, transform_points(q, invert_affine(f.matrix))),
                                     f.matrix) for p, i, f, q in zip(owner, index, used, points)])
        points = points.astype(np.float32)
        stages.start("generate")
        generated = self._mix_diffusion(img_t, hole_t, self._generate(img_t, hole_t, points))
        matrices = [f.matrix for f in used]
        if self.refiner is not None:
            stages.start("refine")
            size = self.output_size
            matrices = [scale_crop_matrix(m, size / s) for m in matrices]
            views = [self._face_view(photos[p].image, photos[p].hole, m, size)
                     for p, m in zip(owner, matrices)]
            crops_r = torch.from_numpy(np.stack([v[0] for v in views])).permute(0, 3, 1, 2)
            holes_r = torch.from_numpy(np.stack([v[1] for v in views])[:, None].astype(np.float32))
            generated = self._refine(crops_r.float().div(255).to(self.device),
                                     holes_r.to(self.device), generated, points, faces=index)
        stages.start("blend")
        covered = [np.zeros(ph.hole.shape, bool) if ph.covered is None else ph.covered
                   for ph in photos]
        reports: list[list[FaceReport]] = [[] for _ in photos]
        for p, f, matrix, gen, pts in zip(owner, used, matrices, generated, points):
            ph = photos[p]
            face_hole = self._warp_back(ph.image, ph.hole, ph.content, f, gen * 255.0, harmonize,
                                        invert_affine, matrix) & ~covered[p]
            covered[p] |= face_hole
            reports[p].append(FaceReport(f.path, f.box,
                                         transform_points(pts, invert_affine(f.matrix)).astype(np.float32),
                                         int(face_hole.sum()), list(f.notes)))
        return reports

    def _warp_back(self, img, hole, content, frame, generated, harmonize, invert_affine,
                   matrix: np.ndarray | None = None) -> np.ndarray:
        """Warp one generated crop back into ``content`` (in place) over the face's footprint;
        returns the hole pixels it covered. ``matrix`` (default: the frame's) maps the photo to
        the generated crop, whatever its size."""
        s = generated.shape[0]
        matrix = frame.matrix if matrix is None else matrix
        inv = invert_affine(matrix)
        corners = np.array([[0, 0], [s - 1, 0], [0, s - 1], [s - 1, s - 1]], np.float64) @ inv[:, :2].T + inv[:, 2]
        h, w = hole.shape
        left, top = max(0, int(np.floor(corners[:, 0].min()))), max(0, int(np.floor(corners[:, 1].min())))
        right, bottom = min(w, int(np.ceil(corners[:, 0].max())) + 1), min(h, int(np.ceil(corners[:, 1].max())) + 1)
        if right <= left or bottom <= top:
            return np.zeros(hole.shape, bool)
        # work only around the hole's part inside the footprint: warping and harmonising the
        # whole face cost ~100 ms on a 1024-px photo, the hole's surroundings a few ms
        x, y, bw, bh = cv2.boundingRect(hole[top:bottom, left:right].astype(np.uint8))
        if bw == 0 or bh == 0:
            return np.zeros(hole.shape, bool)
        m = _HARMONIZE_MARGIN
        left, top, right, bottom = (max(left, left + x - m), max(top, top + y - m),
                                    min(right, left + x + bw + m), min(bottom, top + y + bh + m))
        shifted = inv.copy()
        shifted[:, 2] -= (left, top)
        size = (right - left, bottom - top)
        back = cv2.warpAffine(generated.astype(np.float32), shifted, size, flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_REPLICATE)
        inside = cv2.warpAffine(np.ones((s, s), np.float32), shifted, size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0.999
        region_hole = hole[top:bottom, left:right].astype(bool) & inside
        if region_hole.any():
            # against ``content``, not the photo: where the hole runs on past this face's crop,
            # the ring holds OpenCV's fill, never what lies under the hole
            fixed = harmonize(content[top:bottom, left:right], back, region_hole.astype(np.uint8))
            if self.edge_blend:
                    # distances from the known pixels of the whole hole, not the footprint's edge
                fixed = edge_blend(img[top:bottom, left:right], fixed,
                                   hole[top:bottom, left:right],
                                   scale=1.0 / float(np.hypot(*matrix[0, :2])))
            view = content[top:bottom, left:right]
            view[region_hole] = np.clip(np.round(fixed[region_hole]), 0, 255).astype(np.uint8)
        face_hole = np.zeros(hole.shape, bool)
        face_hole[top:bottom, left:right] = region_hole
        return face_hole

    def inpaint(self, image: ImageInput, mask: ImageInput,
                landmarks: np.ndarray | None = None, mode: str = "auto") -> np.ndarray:
        """Fill the hole; HxWx3 uint8 RGB in the input's size. Known pixels are unchanged.

        Args:
            image: path, PIL image or array (gray/RGB/RGBA, 8 or 16 bit).
            mask: HxW, same size as the image, nonzero/white = hole.
            landmarks: optional (68, 2) x, y in the image's pixels, to use instead of predicting.
            mode: ``auto``, ``crop`` or ``photo`` (see :meth:`__call__`).
        """
        return self(image, mask, landmarks, mode=mode).image

    # ------------------------------------------------------------------ old photos (lafin.restore)

    def detect_damage(self, image: ImageInput, threshold: float | None = None) -> np.ndarray:
        """HxW uint8 mask of scratches, cracks, dust and tears, 255 = damage (lafin.restore)."""
        from lafin.restore import DEFAULT_THRESHOLD, detect_damage

        return detect_damage(self, image, DEFAULT_THRESHOLD if threshold is None else threshold)

    def restore(self, image: ImageInput, **options):
        """Detect the damage, grow it, inpaint it, keep a grey or sepia photo's tone: a
        :class:`lafin.restore.RestoreResult` (options: see :func:`lafin.restore.restore`)."""
        from lafin.restore import restore

        return restore(self, image, **options)
