"""``lafin prepare``: turn a folder of face photos into a training set.

For each photo: find the face (dlib HOG), place its 68 landmarks (dlib's predictor, or the
photo's own iBUG ``.pts`` file when there is one), warp it to the canonical crop, and write
``images/<name>.png`` with ``images/<name>.pts``. Photos that cannot be used are skipped and
listed in ``report.csv`` with the reason; nothing aborts the run. A re-run skips finished photos.
At the end the crops are packed into a memory-mapped cache (``images.npy``, ``landmarks.npy``,
``meta.json``) that training reads directly.

``--aligned`` is for folders that are already aligned crops (e.g. CelebA's): the images are only
resized, never re-cropped, so image and landmarks stay in the same frame.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lafin.errors import InputError
from lafin.workers import process_pool

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# Typical dlib box of an aligned CelebA-style crop, as fractions of the side (measured on CelebA).
DEFAULT_ALIGNED_BOX = (0.11, 0.055, 0.905, 0.85)


@dataclass(frozen=True)
class PrepareOptions:
    size: int = 128
    aligned: bool = False
    min_face: int = 48
    upsample: int = 1
    min_score: float = 0.0
    prior_box: tuple[float, float, float, float] = DEFAULT_ALIGNED_BOX


@dataclass
class PrepareReport:
    written: int
    skipped: list[tuple[str, str]]
    already_done: int
    out_dir: Path


def _list_images(src: Path) -> list[Path]:
    if not src.is_dir():
        raise InputError(f"source folder not found: {src}")
    return sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def process_photo(args: tuple[str, str, PrepareOptions]) -> tuple[str, str, str, int]:
    """Prepare one photo. Returns (name, status, detail, faces found); status is ok or skip."""
    from lafin.alignment import align_face, rescale_points, transform_points
    from lafin.face import FaceBox, annotate, annotate_aligned, detect_faces
    from lafin.io import InputError, load_image
    from lafin.landmarks import read_pts, write_pts

    path_s, out_s, opt = args
    path, out_dir = Path(path_s), Path(out_s)
    name = path.stem
    try:
        image = load_image(path)
    except InputError as exc:
        return name, "skip", f"unreadable: {exc}", 0
    pts_file = path.with_suffix(".pts")
    try:
        human = read_pts(pts_file) if pts_file.is_file() else None
    except ValueError as exc:
        return name, "skip", f"bad landmark file: {exc}", 0
    faces, detail = 1, ""
    if opt.aligned:
        h, w = image.shape[:2]
        if h != w:
            return name, "skip", f"--aligned expects square crops, got {w}x{h}", 0
        scale = opt.size / w
        if human is None:
            px = tuple(v * w for v in opt.prior_box)
            landmarks, source = annotate_aligned(image, FaceBox(*px, score=float("nan")))
            detail = f"landmarks: dlib ({source} box)"
        else:
            landmarks, detail = human, "landmarks: file"
        crop = np.asarray(Image.fromarray(image).resize((opt.size, opt.size), Image.Resampling.LANCZOS))
        crop_points = rescale_points(landmarks, scale)
    else:
        if human is None:
            boxes = detect_faces(image, upsample=opt.upsample, min_score=opt.min_score)
            faces = len(boxes)
            if not boxes:
                return name, "skip", "no face found", 0
            if boxes[0].width < opt.min_face:
                return name, "skip", f"face too small ({boxes[0].width:.0f} px < {opt.min_face})", faces
            landmarks = annotate(image, boxes[0])
            detail = "landmarks: dlib" + (f"; {faces} faces, kept the largest" if faces > 1 else "")
        else:
            landmarks, detail = human, "landmarks: file"
        crop, matrix = align_face(image, landmarks, opt.size)
        crop_points = transform_points(landmarks, matrix)
    Image.fromarray(crop).save(out_dir / f"{name}.png")
    write_pts(out_dir / f"{name}.pts", crop_points)
    return name, "ok", detail, faces


def prepare(
    src: str | Path,
    out: str | Path,
    options: PrepareOptions = PrepareOptions(),
    workers: int = 2,
    names: list[str] | None = None,
) -> PrepareReport:
    """Prepare every image under ``src`` (or only the file ``names`` given, e.g. a split list)
    into ``out`` (see the module docstring)."""
    from lafin.data.cache import build_cache

    src, out = Path(src), Path(out)
    if src.is_dir() and (out.resolve() == src.resolve() or src.resolve() in out.resolve().parents):
        raise InputError(
            f"the output folder {out} is inside the photo folder {src}: the crops "
            "would be read back as photos; choose a folder outside it"
        )
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    files = _list_images(src)
    if names is not None:
        wanted = set(names)
        files = [p for p in files if p.name in wanted or p.stem in wanted]
        missing = len(wanted) - len(files)
        if missing > 0:
            log.warning("%d of the %d listed names are not in %s", missing, len(wanted), src)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {src}")
    stems = [p.stem for p in files]
    if len(set(stems)) != len(stems):
        raise InputError(
            f"{src}: several images share a file name (e.g. in sub-folders); names must be unique"
        )
    report_path = out / "report.csv"
    reported = _reported_names(report_path)
    todo = [p for p in files if p.stem not in reported and not (images_dir / f"{p.stem}.pts").is_file()]
    done = len(files) - len(todo)
    if done:
        log.info("%d of %d images already prepared, skipping them", done, len(files))
    rows: list[tuple[str, str, str, int]] = []
    jobs = [(str(p), str(images_dir), options) for p in todo]
    with _Report(report_path, ["name", "status", "detail", "faces"]) as report:
        # crops an interrupted run wrote before it could report them
        report.add(
            [
                (p.stem, "ok", "prepared by an earlier run", "")
                for p in files
                if p.stem not in reported and (images_dir / f"{p.stem}.pts").is_file()
            ]
        )
        # each row is on disk as soon as its photo is done: an interrupted run loses none
        if workers > 1 and len(jobs) > 1:
            pool = process_pool(workers)
            try:
                for row in tqdm(
                    pool.map(process_photo, jobs, chunksize=8), total=len(jobs), desc="preparing"
                ):
                    report.add([row])
                    rows.append(row)
            finally:  # on Ctrl+C/SIGTERM: drop the queued photos instead of finishing them all
                pool.shutdown(wait=True, cancel_futures=True)
        else:
            for job in tqdm(jobs, desc="preparing"):
                row = process_photo(job)
                report.add([row])
                rows.append(row)
    skipped = [(r[0], r[2]) for r in rows if r[1] == "skip"]
    for name, reason in skipped:
        log.warning("skipped %s: %s", name, reason)
    ready = sorted(p.name for p in images_dir.glob("*.png") if p.with_suffix(".pts").is_file())
    if ready:
        build_cache(images_dir, ready, out, options.size, workers=workers)
    return PrepareReport(
        written=sum(r[1] == "ok" for r in rows), skipped=skipped, already_done=done, out_dir=out
    )


def _reported_names(path: Path) -> set[str]:
    """Names a previous run already handled (written or skipped): a re-run does not redo them."""
    if not path.is_file():
        return set()
    with path.open(newline="") as f:
        return {row["name"] for row in csv.DictReader(f)}


class _Report:
    """report.csv, appended to row by row (flushed), never rewritten: rows of earlier runs stay."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path, self.header = path, header

    def __enter__(self) -> "_Report":
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self.file = self.path.open("a", newline="")
        if not new:
            with self.path.open("rb") as f:  # a run killed mid-row left no line end
                f.seek(-1, 2)
                if f.read(1) not in (b"\n", b"\r"):
                    self.file.write("\r\n")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(self.header)
        self.file.flush()
        return self

    def add(self, rows: list[tuple]) -> None:
        if rows:
            self.writer.writerows(rows)
            self.file.flush()

    def __exit__(self, *exc) -> None:
        self.file.close()
