"""The inference entry point, ``LaFInModel().inpaint(image, mask)``: loads the networks and runs
the steps of a call through the parts that do them.

Structure first, appearance second: the landmark locator (:mod:`lafin.landmark_locator`) places
the 68 points on the masked face, the generator runner (:mod:`lafin.generator_runner`) fills the
hole guided by them and refines its texture, and the crop frame (:mod:`lafin.crop_frame`) puts
the result back so that every known pixel stays exactly the user's. Whole photos go through the
photo inpainter (:mod:`lafin.photo_inpainter`), which aligns each face the hole touches.

The input of crop mode is a face crop (the face roughly centred and filling the frame, as in
CelebA-style aligned data) of any size: it is padded to a square, resized to the model's
resolution for the networks, and only the hole is replaced at the input's own resolution. A
loose, off-centre or strongly tilted crop (judged by its landmarks) is aligned to the canonical
frame first, as photo mode aligns each face, and warped back. Crop mode fills any image, but
says so when it does not look like a face (:mod:`lafin.face_check`).
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from lafin.config import ModelConfig
from lafin.crop_frame import CropFrame, is_loose
from lafin.errors import NoFaceError, OptionError
from lafin.face_check import locate_crop_face
from lafin.generator_runner import GeneratorRunner
from lafin.io import ImageInput, InputError, load_image, load_inputs, load_mask
from lafin.landmark_locator import LandmarkLocator
from lafin.options import InferenceOptions, refuse_former_switch
from lafin.photo_inpainter import FramedPhoto, PhotoInpainter
from lafin.results import MODES, STAGE_LABELS, BackgroundRegion, FaceReport, InpaintResult, Stages
from lafin.runtime import Runtime, cpu_call

__all__ = [
    "BACKENDS",
    "DEFAULT_WEIGHTS_NAME",
    "STAGE_LABELS",
    "BackgroundRegion",
    "FaceReport",
    "FramedPhoto",
    "InferenceOptions",
    "InpaintResult",
    "LaFInModel",
    "MODES",
    "Stages",
    "WeightsNotFoundError",
    "default_weights_path",
]

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS_NAME = "lafin-compact.safetensors"
BACKENDS = ("torch", "onnx")


class WeightsNotFoundError(FileNotFoundError):
    """No weights were given and none ship with the installed package."""


def default_weights_path() -> Path:
    """Path of the weights shipped inside the package (may not exist in a development build)."""
    return Path(str(resources.files("lafin") / "weights" / DEFAULT_WEIGHTS_NAME))


def load_networks(
    weights: str | Path | Sequence[str | Path], backend: str, runtime: Runtime
) -> tuple[ModelConfig, torch.nn.Module, torch.nn.Module, torch.nn.Module | None, dict[str, bool]]:
    """(config, generator, landmark predictor, refiner or None, channels-last per network) of
    ``weights`` for ``backend`` on the runtime's device; both networks must be present."""
    if backend == "onnx":
        from lafin.onnx_backend import load_onnx_folder, load_onnx_refiner, onnx_folder

        folder = onnx_folder(weights)
        config, generator, predictor = load_onnx_folder(folder, threads=runtime.threads)
        log.info("loaded %s as ONNX (%s preset, %d px)", weights, config.name, config.image_size)
        return config, generator, predictor, load_onnx_refiner(folder, threads=runtime.threads), {}
    from lafin.checkpoint import build_from_weights, build_refiner_from_weights, load_any
    from lafin.networks.folding import fold_batch_norms

    loaded = load_any(weights)
    generator, predictor = build_from_weights(loaded, device=runtime.device)
    if generator is None or predictor is None:
        missing = "generator" if generator is None else "landmark predictor"
        raise InputError(
            f"{weights}: the file has no {missing}; inpainting needs both "
            "(for the original release pass both .pth files)"
        )
    refiner = build_refiner_from_weights(loaded, device=runtime.device)
    # inference only from here: the predictor's batch norms cost a sixth of its time unfolded
    predictor = fold_batch_norms(predictor.eval())
    channels_last = {
        name: runtime.use_channels_last(net)
        for name, net in (("generator", generator), ("landmarks", predictor), ("refiner", refiner))
    }
    log.info("loaded %s weights (%s preset, %d px)", weights, loaded.config.name, loaded.config.image_size)
    return loaded.config, generator, predictor, refiner, channels_last


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
            is kept); torch's global thread count is restored after each call (docs/SPEED.md).
        options: the inference switches (:class:`lafin.options.InferenceOptions`); see also
            :meth:`with_options`.

    Parts (public, rebuilt when weights are loaded): ``locator`` (a LandmarkLocator),
    ``generation`` (a GeneratorRunner), ``photos`` (a PhotoInpainter), ``runtime`` (a Runtime).

    Example::

        model = LaFInModel()
        result = model.inpaint(image, mask)           # HxWx3 uint8
        full = model(image, mask)                     # InpaintResult with landmarks and timings
        bare = model.with_options(landmark_flip_average=False)
    """

    def __init__(
        self,
        weights: str | Path | Sequence[str | Path] | None = None,
        device: str | torch.device = "cpu",
        backend: str = "torch",
        threads: int | None = None,
        options: InferenceOptions | None = None,
    ) -> None:
        self._setup(device, backend, threads, options)
        if weights is None:
            weights = default_weights_path()
            if not weights.is_file():
                raise WeightsNotFoundError(
                    "this installation of lafin ships no default weights yet. Train them with "
                    "'lafin train' (see docs/TRAINING.md) and pass LaFInModel(weights=PATH), or "
                    "load the original LaFIn release with LaFInModel(weights=[GEN.pth, "
                    "landmark_detector.pth])"
                )
        self.load_weights(weights)

    def _setup(
        self, device: str | torch.device, backend: str, threads: int | None, options: InferenceOptions | None
    ) -> None:
        if backend not in BACKENDS:
            raise OptionError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        self._requested = InferenceOptions.check(options)
        self.runtime = Runtime(device, threads)
        if backend == "onnx" and self.runtime.device.type != "cpu":
            raise InputError(
                f"the onnx backend runs on the CPU (ONNX Runtime), not on "
                f"{self.runtime.device}; use backend='torch' for {self.runtime.device}"
            )
        self.backend = backend
        self.config: ModelConfig | None = None
        self.generator: torch.nn.Module | None = None
        self.landmark_predictor: torch.nn.Module | None = None
        # the texture refiner (lafin.networks.refiner), when the weights have one: the
        # generator's face is refined at the refiner's size
        self.refiner: torch.nn.Module | None = None
        self._damage_detector: tuple[str | None, torch.nn.Module] | None = None

    def __setattr__(self, name: str, value: object) -> None:
        refuse_former_switch(name)  # the old attribute switches are options now
        super().__setattr__(name, value)

    @classmethod
    def from_networks(
        cls,
        config: ModelConfig,
        generator: torch.nn.Module | None,
        landmark_predictor: torch.nn.Module,
        device: str | torch.device = "cpu",
        threads: int | None = None,
        refiner: torch.nn.Module | None = None,
        options: InferenceOptions | None = None,
    ) -> "LaFInModel":
        """Wrap networks built in memory (e.g. during training or in tests).

        The networks are put in eval mode on ``device``; their memory format is left as it is
        (they belong to the caller). Without a generator only :meth:`predict_landmarks` works.
        """
        model = cls.__new__(cls)
        model._setup(device, "torch", threads, options)
        model._attach(
            config,
            None if generator is None else generator.to(model.device).eval(),
            landmark_predictor.to(model.device).eval(),
            None if refiner is None else refiner.to(model.device).eval(),
        )
        return model

    def load_weights(self, weights: str | Path | Sequence[str | Path]) -> None:
        """Load weights (replacing the current networks); both networks must be present."""
        self._attach(*load_networks(weights, self.backend, self.runtime))

    def _attach(
        self, config: ModelConfig, generator, predictor, refiner, channels_last: dict[str, bool] | None = None
    ) -> None:
        """Hold these networks and build the parts that run them under the options."""
        self.config, self.generator, self.landmark_predictor = config, generator, predictor
        self.refiner = refiner
        self._channels_last = dict.fromkeys(("generator", "landmarks", "refiner"), False)
        self._channels_last.update(channels_last or {})
        # a refiner learnt on the bare generator's faces (or on their mirror average): by
        # default no diffusion mix and the generator's faces as it learnt on them
        self._options = opts = self._requested.resolved(
            refiner is not None, config.refiner.coarse_mirror_average
        )
        self.locator = LandmarkLocator.for_config(
            predictor, config, self.runtime, opts, self._channels_last["landmarks"]
        )
        self.generation = GeneratorRunner.for_config(
            generator, refiner, config, self.runtime, opts, self._channels_last
        )
        self.photos = PhotoInpainter(self.locator, self.generation, opts.landmark_refine)

    def with_options(self, options: InferenceOptions | None = None, **changes) -> "LaFInModel":
        """A model sharing these networks, with ``options`` or the current requested options
        changed by ``changes`` (names of :class:`~lafin.options.InferenceOptions`)."""
        model = type(self).__new__(type(self))
        model.__dict__.update(self.__dict__)
        requested = self._requested if options is None else InferenceOptions.check(options)
        model.__dict__["_requested"] = requested.changed(**changes)
        model._attach(self.config, self.generator, self.landmark_predictor, self.refiner, self._channels_last)
        return model

    # ------------------------------------------------------------------ what it is

    @property
    def options(self) -> InferenceOptions:
        """The options in force (automatic choices made for these weights)."""
        return self._options

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def threads(self) -> int | None:
        return self.runtime.threads

    def cpu_settings(self):
        """Context manager: this model's CPU threads and denormal flushing (re-entrant)."""
        return self.runtime.cpu_settings()

    @property
    def image_size(self) -> int:
        """Side of the generator's face crop."""
        assert self.config is not None
        return self.config.image_size

    @property
    def landmark_size(self) -> int:
        """Side of the landmark predictor's input crop (the config's ``landmark_size``)."""
        assert self.config is not None
        return self.config.landmark_size

    @property
    def output_size(self) -> int:
        """Side of the face crops the model returns: the refiner's size, else ``image_size``."""
        return self.generation.output_size

    # ------------------------------------------------------------------ input handling

    def check_inputs(
        self, image: ImageInput, mask: ImageInput, landmarks: np.ndarray | str | Path | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(HxWx3 uint8 image, HxW uint8 mask, 1 = hole), checked (landmarks too, if given)."""
        return load_inputs(image, mask, landmarks)[:2]

    def checked_inputs(
        self, image: ImageInput, mask: ImageInput, landmarks: np.ndarray | str | Path | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(image, mask, landmarks) through the input layer (:mod:`lafin.io`): the landmarks as
        a new (68, 2) float32 array (loaded from a file if a path is given) or None."""
        return load_inputs(image, mask, landmarks)

    # ------------------------------------------------------------------ public API

    @cpu_call
    def predict_landmarks(
        self, image: ImageInput, mask: ImageInput | None = None, mode: str = "crop"
    ) -> np.ndarray:
        """The 68 landmarks of the (masked) face, (68, 2) float32 x, y in the image's pixels:
        those the mode's generation would use.

        Args:
            image, mask: as for :meth:`inpaint`; no mask: nothing hidden.
            mode: ``crop`` (default): the image is one face crop. ``photo``: the largest face
                the hole touches, as photo mode generates it, or with no hole the largest face
                found in the photo; :class:`lafin.errors.NoFaceError` when there is none.
                ``auto``: as :meth:`__call__` picks.
        """
        img = load_image(image)
        hole = np.zeros(img.shape[:2], np.uint8) if mask is None else load_mask(mask, shape=img.shape[:2])
        if self.resolved_mode(img.shape, mode) == "crop":
            return self.locator.locate_in_input(img, hole)
        faces = self.photos.locate_faces(img, hole)
        if not faces:
            where = "near the hole" if hole.any() else "in the photo"
            raise NoFaceError(f"no face found {where}")
        from lafin.photo import box_area

        return max(faces, key=lambda face: box_area(face[0].box))[1]

    def resolved_mode(self, shape: tuple[int, ...], mode: str = "auto") -> str:
        """``crop`` or ``photo``: what ``mode`` means for an image of ``shape`` (H, W): ``auto``
        is crop mode for images up to twice the model's size, else photo mode."""
        if mode not in MODES:
            raise OptionError(f"mode must be 'auto', 'crop' or 'photo', not {mode!r}")
        if mode != "auto":
            return mode
        return "crop" if max(shape[:2]) <= 2 * self.image_size else "photo"

    @cpu_call
    def __call__(
        self,
        image: ImageInput,
        mask: ImageInput,
        landmarks: np.ndarray | None = None,
        mode: str = "auto",
        progress: Callable[[str], None] | None = None,
    ) -> InpaintResult:
        """Inpaint and return the image, the landmarks used and per-stage timings.

        Args:
            image, mask, landmarks: as for :meth:`inpaint`.
            mode: ``crop`` treats the image as one face crop; ``photo`` finds the faces the
                hole touches, aligns each, and pastes the results back; ``auto`` (default)
                picks ``crop`` for images up to twice the model's size, else ``photo``.
            progress: called with a stage name (keys of ``STAGE_LABELS``) as each stage starts.
        """
        # 1. the inputs checked, the mode chosen
        img, hole, landmarks = self.checked_inputs(image, mask, landmarks)
        mode = self.resolved_mode(img.shape[:2], mode)
        given = landmarks is not None
        if not hole.any():
            log.warning("the mask is empty (no hole): the image is returned unchanged")
            lm = landmarks if given or mode == "photo" else self.predict_landmarks(img)
            return InpaintResult.unchanged(img, hole, lm, given, mode)
        stages = Stages(progress)
        # 2. a whole photo: every face the hole touches, by the photo inpainter
        if mode == "photo":
            return self.photos.inpaint(img, hole, landmarks, stages)
        # 3. a face crop: framed as the generator's square
        frame = CropFrame.around(img.shape[:2], self.image_size)
        stages.start("prepare")
        img_t, hole_t = frame.tensors(img, hole, self.device)
        # 4. its landmarks, predicted (and the crop checked for a face) or the caller's
        warnings: list[str] = []
        if given:
            points = frame.to_model(np.asarray(landmarks, np.float32))
        else:
            stages.start("landmarks")
            limit = self.options.face_check_limit
            points, warnings = locate_crop_face(self.locator, img, hole, frame, img_t, hole_t, limit)
        if given:
            predicted = frame.to_input(points).astype(np.float32)
        else:  # a small face's predicted again on the face aligned by these
            predicted = self.locator.crop_points_in_input(img, hole, frame, points)
        # 5. a loose, off-centre or tilted crop: aligned on these landmarks, generated the photo way
        if is_loose(points, self.image_size):
            return self.photos.inpaint_loose_crop(img, hole, predicted, landmarks, stages, warnings)
        # 6-8. the structure guided by the landmarks, the texture at the refiner's size, the hole
        #      pasted back at the input's size with the photo's tone kept
        out, tone = self.generation.fill_crop(img, hole, frame, img_t, hole_t, points, stages)
        lm = np.asarray(landmarks, np.float32) if given else predicted
        return InpaintResult(out, lm, hole, given, stages.stop(), "crop", tone=tone, warnings=warnings)

    def inpaint(
        self, image: ImageInput, mask: ImageInput, landmarks: np.ndarray | None = None, mode: str = "auto"
    ) -> np.ndarray:
        """Fill the hole; HxWx3 uint8 RGB in the input's size. Known pixels are unchanged.

        Args:
            image: path, PIL image or array (gray/RGB/RGBA, 8 or 16 bit).
            mask: HxW, same size as the image, nonzero/white = hole.
            landmarks: optional (68, 2) x, y in the image's pixels, to use instead of predicting.
            mode: ``auto``, ``crop`` or ``photo`` (see :meth:`__call__`).
        """
        return self(image, mask, landmarks, mode=mode).image

    # ------------------------------------------------------------------ photo faces (lafin.video)

    def render_faces(self, *args, **kwargs) -> list[FaceReport]:
        """:meth:`lafin.photo_inpainter.PhotoInpainter.render_faces`."""
        return self.photos.render_faces(*args, **kwargs)

    def render_photos(self, *args, **kwargs) -> list[list[FaceReport]]:
        """:meth:`lafin.photo_inpainter.PhotoInpainter.render_photos`."""
        return self.photos.render_photos(*args, **kwargs)

    def predict_face_landmarks(self, img: np.ndarray, hole: np.ndarray, frames: list) -> np.ndarray:
        """:meth:`lafin.photo_inpainter.PhotoInpainter.predict_face_landmarks`."""
        return self.photos.predict_face_landmarks(img, hole, frames)

    # ------------------------------------------------------------------ old photos (lafin.restore)

    def damage_detector(self, weights: str | Path | None = None) -> torch.nn.Module:
        """The old-photo damage detector (default: the shipped one), loaded on this model's
        device once and kept (:func:`lafin.restore.load_damage_detector_on`)."""
        from lafin.restore import load_damage_detector_on

        key = None if weights is None else str(weights)
        if self._damage_detector is None or self._damage_detector[0] != key:
            self._damage_detector = (key, load_damage_detector_on(self.device, weights))
        return self._damage_detector[1]

    def detect_damage(self, image: ImageInput, threshold: float | None = None) -> np.ndarray:
        """HxW uint8 mask of scratches, cracks, dust and tears, 255 = damage (lafin.restore)."""
        from lafin.restore import DEFAULT_THRESHOLD, detect_damage

        return detect_damage(self, image, DEFAULT_THRESHOLD if threshold is None else threshold)

    def restore(self, image: ImageInput, **options):
        """Detect the damage, grow it, inpaint it, keep a grey or sepia photo's tone: a
        :class:`lafin.restore.RestoreResult` (options: see :func:`lafin.restore.restore`)."""
        from lafin.restore import restore

        return restore(self, image, **options)
