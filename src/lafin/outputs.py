"""Checking output paths before any work is done: nothing a user gave as input is ever written,
two outputs never share a file, and a path that cannot be written is refused up front."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from lafin.errors import OutputPathError

# formats the results are written in (RGB, 8 bits); other extensions are refused before any work
IMAGE_OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
LANDMARK_SUFFIXES = (".pts", ".json", ".npy")


@dataclass(frozen=True)
class Output:
    """One output the command will write: ``option`` names it in messages (``-o``,
    ``--overlay``), ``suffixes`` are the extensions it may have (None: any extension);
    ``folder`` for an output folder."""

    option: str
    path: Path | str  # as given: a trailing "/" says "a folder"
    suffixes: Sequence[str] | None = IMAGE_OUTPUT_SUFFIXES
    folder: bool = False


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file: the same path, a symbolic or a hard link."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return Path(os.path.abspath(a)).resolve() == Path(os.path.abspath(b)).resolve()


def _nearest_existing(path: Path) -> Path:
    probe = Path(os.path.abspath(path))
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_writable_folder(folder: Path, option: str) -> None:
    """``folder`` exists as a writable folder, or can be created inside one."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise OutputPathError(f"{option} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{option} {folder}: cannot write into {existing} (permission denied)")


def check_outputs(outputs: Iterable[Output], inputs: Iterable[Path | str | None] = ()) -> None:
    """Refuse, before any work, outputs that would overwrite an input (also through a hard or
    symbolic link), share a file with each other, have no or a wrong extension, name an existing
    folder (for file outputs) or a file (for folder outputs), or cannot be written."""
    outputs = [o for o in outputs if o.path is not None]
    given = [Path(p) for p in inputs if p is not None]
    for out in outputs:
        raw = os.fspath(out.path)
        path = Path(raw)
        if not out.folder:
            if raw.endswith(("/", os.sep)) or path.is_dir():
                example = "result" + (out.suffixes[0] if out.suffixes else ".mp4")
                raise OutputPathError(
                    f"{out.option} {raw}: is a folder; give a file name such as {path / example}"
                )
            suffix = path.suffix.lower()
            if not suffix:
                raise OutputPathError(
                    f"{out.option} {raw}: no file extension; use one of "
                    f"{', '.join(out.suffixes or ['.mp4', '.mkv', '...'])}"
                )
            if out.suffixes is not None and suffix not in out.suffixes:
                raise OutputPathError(
                    f"{out.option} {raw}: cannot write {suffix!r} files; use one of {', '.join(out.suffixes)}"
                )
            if path.exists() and not os.access(path, os.W_OK):
                raise OutputPathError(f"{out.option} {raw}: the file exists and is read-only")
            check_writable_folder(path.parent, out.option)
        else:
            if path.exists() and not path.is_dir():
                raise OutputPathError(f"{out.option} {raw}: is a file; give a folder")
            check_writable_folder(path, out.option)
        for source in given:
            if same_file(path, source):
                raise OutputPathError(f"{out.option} {raw}: refusing to overwrite an input ({source})")
    for i, a in enumerate(outputs):
        for b in outputs[i + 1 :]:
            if same_file(a.path, b.path):
                raise OutputPathError(
                    f"{a.option} and {b.option} name the same file ({a.path}); give each output its own path"
                )
