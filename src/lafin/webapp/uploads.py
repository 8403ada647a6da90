"""Reading what users upload: photos and masks, checked from the file's header against the
pixel budget before they are decoded, with a message that names the file for every refusal."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from lafin.io import InputError, load_image, load_mask
from lafin.webapp.errors import page_error

DEFAULT_MAX_UPLOAD_PIXELS = 40_000_000


class UploadReader:
    """Opens uploaded photos and masks; every refusal is a ``gr.Error`` for the page.

    Args:
        max_upload_pixels: largest photo or mask accepted (width x height).
    """

    def __init__(self, max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS) -> None:
        if max_upload_pixels < 64:
            raise ValueError(f"max_upload_pixels must be >= 64, not {max_upload_pixels}")
        self.max_upload_pixels = int(max_upload_pixels)

    def _limit_text(self) -> str:
        return f"{self.max_upload_pixels / 1e6:g} megapixels"

    def probe(self, path: str, what: str = "photo") -> None:
        """Refuse a file that is not an image or is over the pixel budget, from its header."""
        name = Path(path).name
        try:
            size = Path(path).stat().st_size
        except OSError:
            raise page_error(
                f"The {what} {name} could not be read (it is gone from the server; open it again)."
            ) from None
        if size == 0:
            raise page_error(f"The {what} {name} is an empty file.")
        try:
            with Image.open(path) as probe:  # reads the header only
                width, height = probe.size
        except Image.DecompressionBombError:
            raise page_error(
                f"The {what} {name} is too large; this demo accepts at most {self._limit_text()}."
            ) from None
        except (OSError, SyntaxError, ValueError):
            raise page_error(
                f"{name} is not an image this demo can read (use a JPEG, PNG, WebP, BMP or TIFF photo)."
            ) from None
        if width * height > self.max_upload_pixels:
            raise page_error(
                f"The {what} {name} is too large: {width}x{height} = "
                f"{width * height / 1e6:.1f} megapixels; this demo accepts at most "
                f"{self._limit_text()}. Scale it down or crop around the face."
            )

    def read_photo(self, path: str) -> np.ndarray:
        """An uploaded photo, HxWx3 uint8 RGB, turned upright by its EXIF orientation; checked
        against the pixel budget before it is decoded."""
        self.probe(path)
        name = Path(path).name
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    img.load()  # a truncated file fails here
                    upright = ImageOps.exif_transpose(img)
                    return load_image(upright)
        except InputError as exc:
            raise page_error(f"The photo {name} cannot be used: {exc}") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise page_error(f"The photo {name} is damaged or truncated ({exc}).") from None

    def read_mask(self, path: str, shape: tuple[int, int]) -> np.ndarray:
        """An uploaded mask for a photo of ``shape`` (h, w): HxW uint8, 1 = hole."""
        name = Path(path).name
        self.probe(path, "mask")
        try:
            return load_mask(path, shape=shape)
        except InputError as exc:
            raise page_error(f"Mask {name}: {str(exc).replace(path, name)}") from None
