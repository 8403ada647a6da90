"""Reading and checking user images, masks and landmarks: the one input layer every entry point
(API, CLI, web demo, evaluation, data preparation) goes through.

Rules (documented in the README):

* **Pixel budget.** An image or mask may have at most :func:`max_pixels` pixels (default 50
  megapixels; ``LAFIN_MAX_MEGAPIXELS`` in the environment, :func:`set_max_pixels`, or the
  ``max_pixels`` argument change it). For files the size is read from the header, before anything
  is decoded, so a small file that would decode to gigabytes is refused at once. A file Pillow
  itself flags as a decompression bomb is refused too.
* **Orientation.** Files and PIL images are turned upright by their EXIF orientation tag (image
  and mask alike), so the hole lands where it was drawn on the upright picture and the result
  comes back upright.
* **Values.** ``uint8`` is used as is; ``uint16`` (and PIL's 16-bit modes) is 16-bit, 0-65535;
  ``bool`` is 0/255; other integer types must hold 0-255; floats must be finite and in [0, 1].
  Anything else is refused: nothing is scaled by guessing from the values.
* **Errors.** Every refusal is an :class:`~lafin.errors.InputError` subclass (see
  :mod:`lafin.errors`) with a one-line message for the user.

Images become HxWx3 uint8 RGB (grayscale repeated, RGBA composited over white). Masks are HxW,
nonzero/white = hole (OpenCV and LaFIn convention); they become HxW uint8 with 1 = hole.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lafin.errors import (
    ImageFormatError,
    ImageReadError,
    ImageTooLargeError,
    InputError,
    LandmarksError,
    MaskError,
    OptionError,
)

__all__ = [
    "ImageInput",
    "InputError",
    "ImageFormatError",
    "ImageReadError",
    "ImageTooLargeError",
    "LandmarksError",
    "MaskError",
    "DEFAULT_MAX_PIXELS",
    "max_pixels",
    "set_max_pixels",
    "pixel_budget",
    "load_image",
    "load_mask",
    "check_landmarks",
]

log = logging.getLogger(__name__)

ImageInput = Union[str, Path, Image.Image, np.ndarray]

DEFAULT_MAX_PIXELS = 50_000_000  # a 48-megapixel phone photo fits; ~150 MB as uint8 RGB
MAX_PIXELS_ENV = "LAFIN_MAX_MEGAPIXELS"
MIN_SIDE = 8
_max_pixels_override: int | None = None


def set_max_pixels(pixels: int | None) -> None:
    """Set the process-wide pixel budget (None: back to the environment or the default)."""
    global _max_pixels_override
    if pixels is not None and (
        isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < MIN_SIDE * MIN_SIDE
    ):
        raise OptionError(f"the pixel budget must be an integer >= {MIN_SIDE * MIN_SIDE}, not {pixels!r}")
    _max_pixels_override = pixels


@contextmanager
def pixel_budget(pixels: int | None) -> Iterator[None]:
    """Within the block, :func:`set_max_pixels` ``pixels`` (None: leave it); restored after."""
    previous = _max_pixels_override
    if pixels is not None:
        set_max_pixels(pixels)
    try:
        yield
    finally:
        set_max_pixels(previous)


def max_pixels() -> int:
    """The largest image (width x height) accepted: :func:`set_max_pixels`, else
    ``LAFIN_MAX_MEGAPIXELS`` from the environment, else :data:`DEFAULT_MAX_PIXELS`."""
    if _max_pixels_override is not None:
        return _max_pixels_override
    env = os.environ.get(MAX_PIXELS_ENV)
    if env:
        try:
            value = float(env)
        except ValueError:
            value = float("nan")
        if not (value > 0 and np.isfinite(value)):
            raise OptionError(f"{MAX_PIXELS_ENV}={env!r} is not a positive number of megapixels")
        return max(MIN_SIDE * MIN_SIDE, int(value * 1e6))
    return DEFAULT_MAX_PIXELS


def _check_budget(width: int, height: int, what: str, budget: int | None) -> None:
    limit = max_pixels() if budget is None else budget
    if width * height > limit:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} = {width * height / 1e6:.1f} megapixels, over the limit "
            f"of {limit / 1e6:g} megapixels (raise it with {MAX_PIXELS_ENV} or --max-megapixels)"
        )


def _open(path: Path, what: str, budget: int | None) -> Image.Image:
    """Open, check the size from the header, then decode and turn upright (EXIF)."""
    if not path.exists():
        raise ImageReadError(f"{what} file not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"{what} path is a directory, not an image file: {path}")
    try:
        with warnings.catch_warnings():
            # our own budget decides; Pillow's warning would only repeat it on stderr
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{what} file refused as a decompression bomb: {path} ({exc})") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{what} file is not an image PIL can read: {path}") from None
    except PermissionError:
        raise ImageReadError(f"{what} file cannot be read (permission denied): {path}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{what} file cannot be read: {path} ({exc})") from None
    with img:
        _check_budget(img.size[0], img.size[1], f"{what} {path.name}", budget)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img.load()  # decode now: truncated files fail here, not later
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(f"{what} file refused as a decompression bomb: {path} ({exc})") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt data
            raise ImageReadError(f"{what} file is damaged or truncated: {path} ({exc})") from None
        return _upright(img, f"{what} {path.name}")


def _upright(img: Image.Image, what: str) -> Image.Image:
    """The image as it is shown: rotated/mirrored by its EXIF orientation tag, if any."""
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # malformed EXIF: show it as stored, like most viewers do
        log.warning("%s: unreadable EXIF data, orientation ignored", what)
        return img
    if orientation in (None, 1):
        return img
    try:
        return ImageOps.exif_transpose(img)
    except Exception as exc:  # a broken tag must not make a good image unusable
        log.warning("%s: EXIF orientation %r not applied (%s)", what, orientation, exc)
        return img


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> HxW(xC) array; 16-bit modes stay uint16 for :func:`_to_uint8`."""
    if img.mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)
    if img.mode == "I":  # 32-bit integer mode: Pillow's container for 16-bit grayscale
        arr = np.asarray(img)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageFormatError(
                f"32-bit integer image with values {arr.min()}..{arr.max()}: "
                "only 8- and 16-bit images are supported"
            )
        return arr.astype(np.uint16)
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        return np.asarray(img.convert("RGBA"))
    if img.mode in ("L", "1"):
        return np.asarray(img.convert("L"))
    return np.asarray(img.convert("RGB"))


def _to_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    """The one dtype/range rule (module docstring): no scaling guessed from the values."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return np.round(arr.astype(np.float32) / 257).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 255:
            raise ImageFormatError(
                f"{what} is {arr.dtype} with values {lo}..{hi}: integer arrays must hold 0-255 "
                "(or be uint16 for 16-bit data)"
            )
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageFormatError(f"{what} contains NaN or infinite values")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < 0 or hi > 1:
            raise ImageFormatError(
                f"{what} is {arr.dtype} with values {lo:.4g}..{hi:.4g}: float arrays must be in "
                "[0, 1] (clip with np.clip(a, 0, 1), or pass 0-255 values as uint8)"
            )
        return np.round(arr.astype(np.float64) * 255).astype(np.uint8)
    raise ImageFormatError(
        f"{what} has unsupported dtype {arr.dtype}; use uint8, uint16, bool or float in [0, 1]"
    )


def _as_array(source: ImageInput, what: str, budget: int | None) -> np.ndarray:
    if isinstance(source, (str, os.PathLike)):
        return _pil_to_array(_open(Path(source), what, budget))
    if isinstance(source, Image.Image):
        _check_budget(source.size[0], source.size[1], what, budget)
        try:
            return _pil_to_array(_upright(source, what))
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            if isinstance(exc, InputError):
                raise
            raise ImageReadError(f"{what} (PIL image) cannot be decoded: {exc}") from None
    if isinstance(source, np.ndarray):
        if source.ndim >= 2:
            _check_budget(source.shape[1], source.shape[0], what, budget)
        return source
    raise InputError(f"{what} must be a path, PIL image or numpy array, not {type(source).__name__}")


def load_image(image: ImageInput, max_pixels: int | None = None) -> np.ndarray:
    """Return the image as an HxWx3 uint8 RGB array (a new array; the input is not modified).

    Accepts a path, a PIL image, or a numpy array (HxW gray, HxWx1, HxWx3 RGB, HxWx4 RGBA) under
    the module's value rules; RGBA is composited over white. ``max_pixels`` overrides the pixel
    budget for this call. Raises an :class:`InputError` subclass when the image cannot be used.
    """
    arr = _as_array(image, "image", max_pixels)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageFormatError(f"image must be HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    if min(arr.shape[:2]) < MIN_SIDE:
        raise ImageFormatError(
            f"image is too small ({arr.shape[1]}x{arr.shape[0]} pixels; at least {MIN_SIDE}x{MIN_SIDE})"
        )
    arr = _to_uint8(np.asarray(arr), "image")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255
        arr = np.round(arr[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    out = np.ascontiguousarray(arr)
    if isinstance(image, np.ndarray) and np.shares_memory(out, image):
        out = out.copy()  # the caller's array is never handed back to be written into
    return out


def _mask_threshold(arr: np.ndarray) -> float:
    """Half the value range of a mask array's dtype (after the value rule's checks)."""
    if np.issubdtype(arr.dtype, np.floating):
        return 0.5
    if arr.dtype == np.uint16:
        return 65535 / 2
    return 255 / 2


def load_mask(
    mask: ImageInput, shape: tuple[int, int] | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """Return the hole mask as HxW uint8 with 1 = hole, 0 = known.

    Nonzero/white means hole. Colour masks are read by their brightness. A mask that is not
    binary (e.g. saved as JPEG) is thresholded at half its value range with a logged warning.
    Values follow the module's rules (floats in [0, 1], other integers 0-255 unless uint16).

    Args:
        mask: path, PIL image or array.
        shape: (H, W) of the image it belongs to; a different size is an error.
        max_pixels: the pixel budget for this call (default :func:`max_pixels`).
    """
    arr = np.asarray(_as_array(mask, "mask", max_pixels))
    if arr.ndim == 3:
        if arr.shape[2] == 4:  # RGBA: a painted layer; use alpha when the colours are flat
            flat = arr[..., :3].astype(np.float64).std() < 1
            arr = arr[..., 3] if flat else arr[..., :3].max(axis=2)
        elif arr.shape[2] in (1, 3):
            arr = arr.max(axis=2)
        else:
            raise ImageFormatError(f"mask must be HxW (or HxWx3), got shape {arr.shape}")
    if arr.ndim != 2:
        raise ImageFormatError(f"mask must be HxW, got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise MaskError(
            f"mask size {arr.shape[1]}x{arr.shape[0]} differs from image size "
            f"{shape[1]}x{shape[0]}; draw the mask at the image's resolution"
        )
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ImageFormatError(f"mask has unsupported dtype {arr.dtype}; use uint8, bool or float in [0, 1]")
    if arr.dtype not in (np.uint8, np.uint16):
        _to_uint8(arr, "mask")  # the same value rule as images: refuses what it would guess
    if arr.size == 0:
        raise ImageFormatError(f"mask is empty (shape {arr.shape})")
    values = np.unique(arr)
    if values.size <= 2 and (values.size == 1 or values[0] == 0):
        return (arr != 0).astype(np.uint8)
    log.warning("mask is not binary (%d distinct values, e.g. a JPEG): thresholded at 50%%", values.size)
    return (arr.astype(np.float64) >= _mask_threshold(arr)).astype(np.uint8)


def check_landmarks(landmarks, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Return landmarks as a new (68, 2) float32 array of x, y pixels, or raise LandmarksError.

    ``landmarks`` is an array-like or a ``.pts``/``.json``/``.npy`` file. With the image's
    ``shape`` (H, W) every point must lie within one image size of the image (a face may run
    off the edge of a photo, not to 1e30).
    """
    from lafin.landmarks import NUM_POINTS, load_landmarks

    if isinstance(landmarks, (str, os.PathLike)):
        lm = load_landmarks(landmarks)
    else:
        try:
            lm = np.array(landmarks, dtype=np.float32)
        except (TypeError, ValueError, OverflowError) as exc:
            raise LandmarksError(f"landmarks must be numbers, (68, 2) x, y pixels ({exc})") from None
    if lm.shape != (NUM_POINTS, 2):
        raise LandmarksError(f"landmarks must have shape (68, 2) (x, y pixels), got {lm.shape}")
    if not np.isfinite(lm).all():
        raise LandmarksError("landmarks contain NaN or infinite values")
    if shape is not None:
        h, w = shape
        reach = max(h, w)
        if (
            (lm[:, 0] < -reach).any()
            or (lm[:, 0] > w + reach).any()
            or (lm[:, 1] < -reach).any()
            or (lm[:, 1] > h + reach).any()
        ):
            raise LandmarksError(
                f"landmarks lie far outside the {w}x{h} image (x {lm[:, 0].min():.4g}.."
                f"{lm[:, 0].max():.4g}, y {lm[:, 1].min():.4g}..{lm[:, 1].max():.4g}); they are "
                "x, y pixel coordinates of this image"
            )
    return lm


def load_inputs(
    image: ImageInput, mask: ImageInput, landmarks: np.ndarray | str | Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """An inpainting call's inputs, checked: (HxWx3 uint8 image, HxW uint8 mask with 1 = hole,
    (68, 2) float32 landmarks (loaded if a path is given) or None). A mask that covers the
    whole image is refused: no face is left to guide the inpainting."""
    img = load_image(image)
    hole = load_mask(mask, shape=img.shape[:2])
    if hole.all():
        raise MaskError("the mask covers the whole image: there is no face left to guide the inpainting")
    return img, hole, None if landmarks is None else check_landmarks(landmarks, img.shape[:2])
