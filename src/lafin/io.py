"""Reading and checking user images and masks.

Images arrive as a path, a PIL image or a numpy array; grayscale, RGBA, palette and 16-bit
inputs are converted to HxWx3 uint8 RGB. Masks are HxW, nonzero/white = hole (OpenCV and LaFIn
convention). Problems raise :class:`InputError` with a message fit for an end user.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

ImageInput = Union[str, Path, Image.Image, np.ndarray]


class InputError(ValueError):
    """A user input (image, mask, landmarks) that cannot be used, with the reason."""


def _open(path: Path, what: str) -> Image.Image:
    if not path.exists():
        raise InputError(f"{what} file not found: {path}")
    if path.is_dir():
        raise InputError(f"{what} path is a directory, not an image file: {path}")
    try:
        img = Image.open(path)
        img.load()  # decode now: truncated files fail here, not later
    except UnidentifiedImageError:
        raise InputError(f"{what} file is not an image PIL can read: {path}") from None
    except (OSError, SyntaxError) as exc:  # truncated or corrupt data
        raise InputError(f"{what} file is damaged or truncated: {path} ({exc})") from None
    return img


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> HxWxC array, keeping 16-bit depth for the caller to scale."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(img, dtype=np.uint32 if img.mode == "I" else np.uint16)
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"))
        return rgba
    if img.mode in ("L", "1"):
        return np.asarray(img.convert("L"))
    return np.asarray(img.convert("RGB"))


def _to_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype in (np.uint16, np.uint32, np.int32, np.int64) and arr.size:
        top = 65535 if arr.max() > 255 else 255
        return np.round(arr.astype(np.float64) * (255 / top)).clip(0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError(f"{what} contains NaN or infinite values")
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
        return np.round(arr * scale).clip(0, 255).astype(np.uint8)
    raise InputError(f"{what} has unsupported dtype {arr.dtype}")


def load_image(image: ImageInput) -> np.ndarray:
    """Return the image as an HxWx3 uint8 RGB array (a new array; the input is not modified).

    Accepts a path, a PIL image, or a numpy array (HxW gray, HxWx1, HxWx3 RGB, HxWx4 RGBA;
    uint8, uint16 or float in [0, 1]). RGBA is composited over white; 16-bit is scaled to 8 bits.
    """
    if isinstance(image, (str, Path)):
        arr = _pil_to_array(_open(Path(image), "image"))
    elif isinstance(image, Image.Image):
        arr = _pil_to_array(image)
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise InputError(f"image must be a path, PIL image or numpy array, not {type(image).__name__}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputError(f"image must be HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    if min(arr.shape[:2]) < 8:
        raise InputError(f"image is too small ({arr.shape[1]}x{arr.shape[0]} pixels)")
    arr = _to_uint8(np.asarray(arr), "image")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255
        arr = np.round(arr[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(arr)


def load_mask(mask: ImageInput, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Return the hole mask as HxW uint8 with 1 = hole, 0 = known.

    Nonzero/white means hole. Colour masks are read by their brightness. A mask that is not
    binary (e.g. saved as JPEG) is thresholded at 50% with a logged warning.

    Args:
        mask: path, PIL image or array.
        shape: (H, W) of the image it belongs to; a different size is an error.
    """
    if isinstance(mask, (str, Path)):
        img = _open(Path(mask), "mask")
        arr = _pil_to_array(img)
    elif isinstance(mask, Image.Image):
        arr = _pil_to_array(mask)
    elif isinstance(mask, np.ndarray):
        arr = mask
    else:
        raise InputError(f"mask must be a path, PIL image or numpy array, not {type(mask).__name__}")
    arr = np.asarray(arr)
    if arr.ndim == 3:
        if arr.shape[2] == 4:  # RGBA: a painted layer; use alpha when the colours are flat
            arr = arr[..., 3] if arr[..., :3].std() < 1 else arr[..., :3].max(axis=2)
        elif arr.shape[2] in (1, 3):
            arr = arr.max(axis=2)
        else:
            raise InputError(f"mask must be HxW (or HxWx3), got shape {arr.shape}")
    if arr.ndim != 2:
        raise InputError(f"mask must be HxW, got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise InputError(f"mask size {arr.shape[1]}x{arr.shape[0]} differs from image size "
                         f"{shape[1]}x{shape[0]}; draw the mask at the image's resolution")
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    values = np.unique(arr)
    if values.size <= 2 and (values.size == 1 or values[0] == 0):
        return (arr > 0).astype(np.uint8)
    top = 1.0 if np.issubdtype(arr.dtype, np.floating) and arr.max() <= 1.0 else float(
        np.iinfo(arr.dtype).max if np.issubdtype(arr.dtype, np.integer) else 255)
    log.warning("mask is not binary (%d distinct values, e.g. a JPEG): thresholded at 50%%",
                values.size)
    return (arr.astype(np.float64) >= top / 2).astype(np.uint8)
