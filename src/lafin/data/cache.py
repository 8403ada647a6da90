"""Decode a folder of aligned face crops once into a memory-mapped uint8 cache with landmarks.

Decoding JPEGs every step would make the data loader, not the networks, the bottleneck on two
cores; a cache is read with one memory copy per batch. Layout of a cache directory::

    images.npy      (N, S, S, 3) uint8 RGB
    landmarks.npy   (N, 68, 2) float32, x/y pixels of the S x S crop
    meta.json       names, landmark source per image, size, provenance
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lafin.alignment import rescale_points
from lafin.atomic import atomic_write
from lafin.workers import process_pool

log = logging.getLogger(__name__)


@dataclass
class FaceCache:
    """A loaded cache: ``images[i]`` (S, S, 3) uint8 and ``landmarks[i]`` (68, 2) float32."""

    images: np.ndarray
    landmarks: np.ndarray
    names: list[str]
    sources: list[str]

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return len(self.names)


def load_cache(path: str | Path, mmap: bool = True) -> FaceCache:
    path = Path(path)
    if not (path / "meta.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a face cache (no meta.json); build one with "
            "'lafin prepare ... --aligned' or lafin.data.cache.build_cache"
        )
    meta = json.loads((path / "meta.json").read_text())
    images = np.load(path / "images.npy", mmap_mode="r" if mmap else None)
    landmarks = np.load(path / "landmarks.npy")
    return FaceCache(images, landmarks, meta["names"], meta["sources"])


def write_cache(
    path: str | Path,
    images: np.ndarray,
    landmarks: np.ndarray,
    names: list[str] | None = None,
    sources: list[str] | None = None,
) -> FaceCache:
    """Write arrays already in memory as a cache (used by tests and small tools)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, S, S, 3) uint8, got {images.shape} {images.dtype}")
    if landmarks.shape != (len(images), 68, 2):
        raise ValueError(f"landmarks must be (N, 68, 2), got {landmarks.shape}")
    names = names or [f"{i:06d}.png" for i in range(len(images))]
    sources = sources or ["given"] * len(images)
    np.save(path / "images.npy", images)
    np.save(path / "landmarks.npy", landmarks.astype(np.float32))
    (path / "meta.json").write_text(
        json.dumps({"size": int(images.shape[1]), "names": names, "sources": sources})
    )
    return load_cache(path)


def _load_and_label(
    args: tuple[str, int, tuple[float, float, float, float] | None, str | None],
) -> tuple[np.ndarray, np.ndarray, str]:
    from lafin.face import FaceBox, annotate_aligned
    from lafin.landmarks import read_pts

    image_path, size, prior, pts_path = args
    image = np.asarray(Image.open(image_path).convert("RGB"))
    scale = size / image.shape[0]
    if pts_path is not None:
        landmarks, source = read_pts(pts_path), "file"
    else:
        assert prior is not None
        landmarks, source = annotate_aligned(image, FaceBox(*prior, score=float("nan")))
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))
        landmarks = rescale_points(landmarks, scale)
    return image, landmarks.astype(np.float32), source


def build_cache(
    root: str | Path,
    names: list[str],
    out: str | Path,
    size: int,
    prior_box: tuple[float, float, float, float] | None = None,
    workers: int = 2,
) -> FaceCache:
    """Decode ``root/name`` for each name into a cache at ``out``, labelling landmarks.

    Landmarks come from ``root/<stem>.pts`` when that file exists (human labels), otherwise from
    dlib's annotator run on the aligned crop without re-cropping (``prior_box`` is the crop's
    typical face box in the crop's own pixels, used when detection fails).
    """
    root, out = Path(root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for name in names:
        pts = (root / name).with_suffix(".pts")
        jobs.append((str(root / name), size, prior_box, str(pts) if pts.is_file() else None))
    if prior_box is None and any(j[3] is None for j in jobs):
        raise ValueError("prior_box is required when some images have no .pts landmarks")
    landmarks = np.zeros((len(names), 68, 2), np.float32)
    sources: list[str] = []
    with atomic_write(out / "images.npy") as tmp, process_pool(workers) as pool:
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(names), size, size, 3))
        results = pool.map(_load_and_label, jobs, chunksize=64)
        for i, (image, lm, source) in enumerate(tqdm(results, total=len(jobs), desc="caching")):
            images[i] = image
            landmarks[i] = lm
            sources.append(source)
        images.flush()
        del images
    np.save(out / "landmarks.npy", landmarks)
    counts = {s: sources.count(s) for s in sorted(set(sources))}
    (out / "meta.json").write_text(
        json.dumps(
            {"root": str(root), "size": size, "names": names, "sources": sources, "source_counts": counts}
        )
    )
    log.info("cached %d images at %s (landmark sources: %s)", len(names), out, counts)
    return load_cache(out)


def _load_resized(args: tuple[str, int]) -> np.ndarray:
    path, size = args
    image = Image.open(path).convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image)


def build_cache_like(
    reference: str | Path, root: str | Path, out: str | Path, size: int, workers: int = 2
) -> FaceCache:
    """A cache of the same faces as ``reference`` at another size, decoded from ``root``.

    ``root`` holds the reference's images under the same file names (any image extension), at
    any square resolution (e.g. the 256-px originals of a 128-px cache); the reference's
    landmarks are rescaled to ``size``, so no face is labelled twice and both caches share one
    set of labels.
    """
    ref = load_cache(reference)
    root, out = Path(root), Path(out)
    by_stem = {
        p.stem: p
        for p in root.iterdir()
        if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
    }
    missing = [n for n in ref.names if Path(n).stem not in by_stem]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the reference's {len(ref)} images are not in {root} (e.g. {missing[0]})"
        )
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(by_stem[Path(n).stem]), size) for n in ref.names]
    with atomic_write(out / "images.npy") as tmp, process_pool(workers) as pool:
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(ref), size, size, 3))
        for i, image in enumerate(
            tqdm(pool.map(_load_resized, jobs, chunksize=64), total=len(jobs), desc="caching")
        ):
            images[i] = image
        images.flush()
        del images
    np.save(out / "landmarks.npy", rescale_points(ref.landmarks, size / ref.size).astype(np.float32))
    (out / "meta.json").write_text(
        json.dumps(
            {
                "root": str(root),
                "size": size,
                "names": ref.names,
                "sources": ref.sources,
                "landmarks_from": str(reference),
            }
        )
    )
    log.info("cached %d images at %s with the landmarks of %s", len(ref), out, reference)
    return load_cache(out)
