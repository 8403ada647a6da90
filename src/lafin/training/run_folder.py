"""A training run's folder, the same for every trainer: ``--out``, ``--resume`` and
``--overwrite``, and the refusal to start a new run over an existing one by accident."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from lafin.errors import RunFolderError


def add_run_folder_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    """``--out`` (required), ``--resume`` and ``--overwrite``."""
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in an --out folder that holds one (its files are replaced); "
        "without it or --resume such a folder is refused",
    )


def check_run_folder(out: Path, run_files: Sequence[str], resume: bool, overwrite: bool) -> None:
    """Refuse (:class:`~lafin.errors.RunFolderError`) both ``resume`` and ``overwrite``, an
    ``out`` that is a file, and a folder holding any of ``run_files`` without one of them."""
    if resume and overwrite:
        raise RunFolderError("--resume continues the run in --out, --overwrite replaces it: give one of them")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out}: is a file, not a run folder")
    existing = [name for name in run_files if (out / name).exists()]
    if existing and not (resume or overwrite):
        raise RunFolderError(
            f"--out {out} holds a run ({', '.join(existing)}): add --resume to continue it, "
            "--overwrite to start again in it, or choose another folder"
        )
