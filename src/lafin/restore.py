"""Old-photo restoration: find the damage, grow its mask a little, inpaint it.

    model = LaFInModel()
    mask = model.detect_damage(photo)            # HxW uint8, 255 = scratch/crack/dust/tear
    result = model.restore(photo)                # RestoreResult: image, mask, faces, timings

The damage detector (:mod:`lafin.networks.damage_detector`, weights shipped in
``lafin/weights/damage-detector.safetensors``) gives each pixel a damage probability; it runs on
the whole photo at its own resolution, in overlapping tiles above :data:`TILE` pixels a side, so
memory stays bounded on large scans. The mask, grown by ``dilate`` pixels, goes through the
face-aware pipeline (:meth:`lafin.pipeline.LaFInModel.__call__`: faces through the generator,
the rest through OpenCV's fill). Known pixels stay bit-identical. A grey photo (all channels
equal) gets a grey fill; a tinted monochrome photo (sepia, cyanotype: every channel a linear
function of the luminance) gets its fill's luminance re-tinted with the photo's own tint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np
import torch

from lafin.blend import keep_tone, photo_tone  # noqa: F401 - keep_tone: the restore API's own
from lafin.io import ImageInput, InputError, load_image
from lafin.results import MODES

if TYPE_CHECKING:
    from lafin.pipeline import FaceReport, LaFInModel

log = logging.getLogger(__name__)

DAMAGE_WEIGHTS_NAME = "damage-detector.safetensors"
# probability above which a pixel is damage: the best mask F1 on 100 CelebA validation faces
# (benchmarks/damage.py --sweep, training preset; 0.5-0.8 within 0.005), where clean old photos
# get 0.40% flagged (docs/MODEL_CARD.md)
DEFAULT_THRESHOLD = 0.7
# pixels the mask grows by before inpainting: the detector's edge and a scratch's soft rim
DEFAULT_DILATE = 2
# photos up to TILE x TILE go through the detector in one pass; larger ones in tiles of that
# size overlapping by TILE_OVERLAP (each tile's border pixels, which see less context, dropped)
TILE = 1024
TILE_OVERLAP = 32

RESTORE_STAGE_LABELS = {"damage": "Detecting damage"}


@dataclass
class RestoreResult:
    """What :meth:`LaFInModel.restore` returns.

    Attributes:
        image: HxWx3 uint8, the restored photo (known pixels are the input's).
        mask: HxW uint8, 255 = the pixels that were filled (the detected damage, grown).
        damage: HxW uint8, 255 = the detected damage before growing.
        faces: per-face reports of the inpainting (photo mode).
        timings: seconds per stage (``damage``, the inpainting's stages, ``tone``).
        tone: ``grey``, ``tinted`` or ``colour``: how the fill's colour was kept.
        mode: the inpainting's mode (``crop``/``photo``), ``none`` when nothing was found.
    """

    image: np.ndarray
    mask: np.ndarray
    damage: np.ndarray
    faces: list["FaceReport"] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    tone: str = "colour"
    mode: str = "none"


def default_damage_weights_path() -> Path:
    return Path(str(resources.files("lafin") / "weights" / DAMAGE_WEIGHTS_NAME))


def damage_detector_for(model: "LaFInModel", weights: str | Path | None = None):
    """The damage detector of ``model`` (loaded once on the model's device, then kept)."""
    return model.damage_detector(weights)


def load_damage_detector_on(device: torch.device, weights: str | Path | None = None):
    """The damage detector of ``weights`` (default: the shipped file) on ``device``, ready for
    inference."""
    from lafin.networks.damage_detector import DamageWeightsError, inference_detector, load_damage_detector

    path = Path(weights) if weights is not None else default_damage_weights_path()
    if not path.is_file():
        raise InputError(f"damage detector weights not found: {path}")
    try:
        detector, meta = load_damage_detector(path, device=device)
    except DamageWeightsError as exc:
        raise InputError(str(exc)) from exc
    detector = inference_detector(detector)
    if device.type == "cpu":
        detector.to(memory_format=torch.channels_last)  # measured faster on the CPU
    log.info("loaded the damage detector %s (step %s)", path, meta.get("step", "?"))
    return detector


@torch.inference_mode()
def damage_probability(
    detector: torch.nn.Module, image: np.ndarray, tile: int = TILE, overlap: int = TILE_OVERLAP
) -> np.ndarray:
    """HxW float32 damage probability of an HxWx3 uint8 image, in tiles above ``tile`` px."""
    if tile <= 2 * overlap:
        raise InputError(f"tile ({tile}) must exceed twice the overlap ({overlap})")
    device = next(detector.parameters()).device
    channels_last = device.type == "cpu"

    def run(part: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(part)).to(device).permute(2, 0, 1)[None]
        x = x.float().div(255)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return torch.sigmoid(detector(x))[0, 0].float().cpu().numpy()

    h, w = image.shape[:2]
    if h <= tile and w <= tile:
        return run(image)
    out = np.zeros((h, w), np.float32)
    step = tile - 2 * overlap
    for top in range(0, h, step):
        for left in range(0, w, step):
            # the tile around this cell, with ``overlap`` of context on each side where there is any
            y0, x0 = max(0, top - overlap), max(0, left - overlap)
            y1, x1 = min(h, top + step + overlap), min(w, left + step + overlap)
            prob = run(image[y0:y1, x0:x1])
            cy1, cx1 = min(h, top + step), min(w, left + step)
            out[top:cy1, left:cx1] = prob[top - y0 : cy1 - y0, left - x0 : cx1 - x0]
    return out


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise InputError(f"threshold must be a number between 0 and 1, not {threshold!r}")
    return float(threshold)


def detect_damage(
    model: "LaFInModel",
    image: ImageInput,
    threshold: float = DEFAULT_THRESHOLD,
    weights: str | Path | None = None,
) -> np.ndarray:
    """HxW uint8 mask, 255 where the detector's probability of damage exceeds ``threshold``."""
    threshold = _check_threshold(threshold)
    img = load_image(image)
    detector = damage_detector_for(model, weights)
    with model.cpu_settings():
        prob = damage_probability(detector, img)
    return ((prob > threshold) * 255).astype(np.uint8)


def grow_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` (nonzero = on) grown by ``pixels`` (a disc); HxW uint8 0/255."""
    if isinstance(pixels, bool) or not isinstance(pixels, (int, np.integer)) or pixels < 0:
        raise InputError(f"dilate must be a whole number of pixels >= 0, not {pixels!r}")
    on = (mask > 0).astype(np.uint8)
    if pixels:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
        on = cv2.dilate(on, kernel)
    return on * 255


def restore(
    model: "LaFInModel",
    image: ImageInput,
    threshold: float = DEFAULT_THRESHOLD,
    dilate: int = DEFAULT_DILATE,
    mode: str = "auto",
    progress: Callable[[str], None] | None = None,
    weights: str | Path | None = None,
) -> RestoreResult:
    """Detect the damage of ``image``, grow it by ``dilate`` px, inpaint it, keep the tone.

    ``progress`` is called with each stage's name as it starts (``damage``, then the
    inpainting's stages, whose blending keeps the photo's tone; labels in
    :data:`RESTORE_STAGE_LABELS` and
    :data:`lafin.pipeline.STAGE_LABELS`).
    """
    import time

    threshold = _check_threshold(threshold)
    img = load_image(image)
    grow_mask(np.zeros((1, 1), np.uint8), dilate)  # a bad ``dilate`` fails before the work
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if progress:
        progress("damage")
    t = time.perf_counter()
    detector = damage_detector_for(model, weights)
    with model.cpu_settings():
        prob = damage_probability(detector, img)
    damage = ((prob > threshold) * 255).astype(np.uint8)
    timings = {"damage": time.perf_counter() - t}
    grown = grow_mask(damage, dilate)
    if not grown.any():
        log.info("no damage found: the photo is returned unchanged")
        return RestoreResult(img.copy(), grown, damage, [], timings, photo_tone(img)[0], "none")
    if grown.all():
        raise InputError(
            "the whole photo was taken for damage: nothing is left to restore from (try a higher --threshold)"
        )
    # the inpainting keeps a grey or tinted photo's tone in the fill (lafin.blend.keep_tone)
    result = model(img, grown, mode=mode, progress=progress)
    timings.update(result.timings)
    return RestoreResult(result.image, grown, damage, result.faces, timings, result.tone, result.mode)
