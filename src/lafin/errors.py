"""The errors lafin raises for things a user gave it, one class per kind of failure.

Every class derives from :class:`InputError` (a ``ValueError``), so ``except InputError`` catches
them all; the message is one line fit for an end user. The ``lafin`` CLI prints it and exits with
code 2; the web demo shows it.
"""

from __future__ import annotations


class InputError(ValueError):
    """A user input (image, mask, landmarks, option, path) that cannot be used, with the reason."""


class ImageReadError(InputError):
    """An image or mask file that is missing, not an image, or damaged."""


class ImageTooLargeError(InputError):
    """An image over the pixel budget (see :func:`lafin.io.max_pixels`), or a decompression bomb."""


class ImageFormatError(InputError):
    """An image or mask array of an unusable shape, dtype or value range."""


class MaskError(InputError):
    """A mask that does not fit its image (size) or leaves nothing to inpaint from."""


class LandmarksError(InputError):
    """A landmarks file or array that is malformed or out of range."""


class NoFaceError(InputError):
    """An image in which lafin finds no face where it needs one (a photo's landmarks)."""


class OutputPathError(InputError):
    """An output path that would overwrite an input, cannot be written, or has a bad extension."""


class OptionError(InputError):
    """An option value out of its range (``--size 0``, ``--port 99999``, ...)."""


class DeviceError(InputError):
    """A torch device that does not exist on this machine (``cuda`` without a GPU, ``bogus``)."""


class RunFolderError(InputError):
    """A training run folder that holds a run and was given without ``--resume``/``--overwrite``,
    or a checkpoint that cannot be resumed."""
