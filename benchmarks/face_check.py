"""Crop mode's non-face warning: how often it fires on faces (false alarms) and on non-faces.

Every sample goes through crop mode's own check (:mod:`lafin.face_check`): the signs in the
known pixels (noise, a smooth gradient, sky above vegetation); the landmarks predicted on the
masked crop and on its mirror image, their disagreement, judged where the hole leaves the crop's
middle visible; over the limit, the disagreement on the face re-aligned by those landmarks; and
the HOG face detector on the known pixels, asked when a sign or the landmarks point to a non-face.
Samples, each with one hole of 10-60% (an NVIDIA irregular test mask of that range, or a random
block, in turn), and each again with a block over the crop's middle (25-60% of the image; the
middle is then hidden, where the landmarks cannot tell):

- faces: CelebA val crops (tight, aligned), iBUG AFW and HELEN crops (256 px, loose: the face is
  half the side, turned and tilted as photographed);
- non-faces: random square crops of scikit-image's sample pictures that show no person
  (textures such as grass and brick, objects, animals, text, microscopy, astronomy), uniform noise
  and smooth gradients;
- landscapes: synthetic (a sky gradient above hills and green ground), a separate set.

Printed: the disagreement's percentiles per set; the share of each set over each candidate limit
after each step of the landmark check (the signal alone, the middle visible, the re-aligned view,
the detector); how often each known-pixel sign fires; the warning per set (random holes, holes
over the middle) and per hole-size bin at ``--limit``; the non-faces it missed; and what the check
costs (medians, ms; the rerun on a quiet machine is the same command).

    python benchmarks/face_check.py --celeba ../shared/data/celeba/128 \\
        --afw ../shared/data/ibug300w/afw --helen ../shared/data/ibug300w/helen_trainset_partial \\
        --masks ../shared/data/masks/irregular-256 --faces 300 --crops 6 --json face_check.json

Tune on CelebA's val split only (``--split .../val.txt``, the default), never on test.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from lafin import LaFInModel
from lafin.crop_frame import CropFrame
from lafin.face_check import (
    CENTRE_HIDDEN_LIMIT,
    MIRROR_DISAGREEMENT_LIMIT,
    centre_hidden,
    detector_sees_face,
    known_pixel_sign,
    locate_crop_face,
)
from lafin.io import load_image, load_mask

log = logging.getLogger("face_check")
# scikit-image pictures without a person in them (astronaut, camera and lfw_subset have faces)
NON_FACE_PICTURES = (
    "brick", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee", "coins", "colorwheel",
    "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
    "microaneurysms", "moon", "page", "retina", "rocket", "shepp_logan_phantom", "text",
)  # fmt: skip
LIMITS = (0.07, 0.08, 0.09, 0.10, 0.11, 0.12, 0.14)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--celeba", help="CelebA crop folder (with --split)")
    p.add_argument("--split", help="file of the CelebA split's names (default: val.txt beside the folder)")
    p.add_argument("--afw", help="folder of iBUG crops (NAME.jpg + NAME.pts)")
    p.add_argument("--helen", help="folder of iBUG HELEN crops (NAME.jpg + NAME.pts)")
    p.add_argument("--masks", help="NVIDIA irregular masks (files 2000-11999 hold 10-60%% holes)")
    p.add_argument("--faces", type=int, default=300, help="faces per face set, a seeded sample")
    p.add_argument("--crops", type=int, default=4, help="random crops per non-face picture")
    p.add_argument("--weights", help="weights file (default: the shipped one)")
    p.add_argument("--limit", type=float, default=MIRROR_DISAGREEMENT_LIMIT, help="limit to report")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the per-sample numbers here too (never overwrites a file)")
    return p.parse_args(argv)


def hole_for(shape: tuple[int, int], i: int, rng: np.random.Generator, masks: list[Path]) -> np.ndarray:
    """A hole of 10-60% for an image of ``shape``: an irregular test mask (even ``i``, when
    given) or a random block."""
    h, w = shape
    if masks and i % 2 == 0:
        mask = load_mask(masks[rng.integers(len(masks))])
        return (cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST) > 0).astype(np.uint8)
    area = rng.uniform(0.1, 0.6) * h * w
    aspect = rng.uniform(0.5, 2.0)
    bh = int(min(h - 2, np.sqrt(area / aspect)))
    bw = int(min(w - 2, area / max(bh, 1)))
    top, left = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
    hole = np.zeros(shape, np.uint8)
    hole[top : top + bh, left : left + bw] = 1
    return hole


def middle_hole(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A block of 25-60% of the image over its middle (it hides the crop's middle)."""
    h, w = shape
    area = rng.uniform(0.25, 0.6) * h * w
    aspect = rng.uniform(0.7, 1.4)
    bh = int(min(h - 2, np.sqrt(area / aspect)))
    bw = int(min(w - 2, area / max(bh, 1)))
    hole = np.zeros(shape, np.uint8)
    hole[(h - bh) // 2 : (h - bh) // 2 + bh, (w - bw) // 2 : (w - bw) // 2 + bw] = 1
    return hole


def landscape(size: int, rng: np.random.Generator, textured: bool) -> np.ndarray:
    """A synthetic landscape, size x size: a sky gradient above far hills and green ground (with
    a grass-like texture when ``textured``)."""
    yy = np.mgrid[0:size, 0:size][0] / size
    t = np.linspace(0, 1, size)
    top, bottom = rng.uniform([60, 110, 190], [120, 170, 240]), rng.uniform([170, 200, 225], [220, 235, 250])
    img = top + yy[..., None] * (bottom - top)
    waves = sum(rng.uniform(-0.08, 0.08) * np.sin(2 * np.pi * (k * t + rng.uniform())) for k in (1, 2, 3, 5))
    ridge = rng.uniform(0.35, 0.6) + waves
    img[yy > ridge] = rng.uniform([70, 90, 60], [110, 130, 100])
    ground = yy > ridge + rng.uniform(0.08, 0.2) + 0.03 * np.sin(2 * np.pi * (3 * t + rng.uniform()))
    img[ground] = rng.uniform([50, 110, 30], [110, 170, 70]) * (0.8 + 0.4 * yy[ground][:, None])
    if textured:
        grass = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 1.5) * 25
        img[ground] += grass[ground][:, None]
    img += rng.normal(0, 2, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def face_images(
    args: argparse.Namespace, rng: np.random.Generator
) -> dict[str, list[tuple[str, np.ndarray]]]:
    sets: dict[str, list[tuple[str, np.ndarray]]] = {}
    if args.celeba:
        folder = Path(args.celeba)
        names = Path(args.split or folder.parent / "val.txt").read_text().split()
        pick = rng.choice(len(names), min(args.faces, len(names)), replace=False)
        sets["celeba-val"] = [(names[i], load_image(folder / names[i])) for i in sorted(pick)]
    for key in ("afw", "helen"):
        folder = getattr(args, key)
        if folder:
            files = sorted(p for p in Path(folder).glob("*.jpg") if p.with_suffix(".pts").is_file())
            pick = rng.choice(len(files), min(args.faces, len(files)), replace=False)
            sets[key] = [(files[i].name, load_image(files[i])) for i in sorted(pick)]
    return sets


def non_face_images(crops: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    from skimage import data

    out = []
    for name in NON_FACE_PICTURES:
        try:
            im = np.asarray(getattr(data, name)())
        except Exception as exc:  # a picture scikit-image must download: skipped
            log.info("skipping %s: %s", name, exc)
            continue
        if im.dtype != np.uint8:
            im = (255 * (im.astype(np.float64) / max(1e-9, float(im.max())))).clip(0, 255).astype(np.uint8)
        if im.ndim == 2:
            im = np.stack([im] * 3, -1)
        im = np.ascontiguousarray(im[..., :3])
        short = min(im.shape[:2])
        for k in range(crops):
            side = int(rng.uniform(0.5, 1.0) * short)
            top, left = rng.integers(0, im.shape[0] - side + 1), rng.integers(0, im.shape[1] - side + 1)
            size = (128, 256)[k % 2]
            crop = cv2.resize(
                im[top : top + side, left : left + side], (size, size), interpolation=cv2.INTER_AREA
            )
            out.append((f"{name}-{k}", crop))
    for k in range(2 * crops):
        size = (128, 256)[k % 2]
        out.append((f"noise-{k}", rng.integers(0, 256, (size, size, 3), dtype=np.uint8)))
        yy, xx = np.mgrid[0:size, 0:size] / size
        colours = rng.uniform(0, 255, (3, 3))
        ramp = (
            colours[0] + xx[..., None] * (colours[1] - colours[0]) + yy[..., None] * (colours[2] - colours[0])
        )
        out.append((f"gradient-{k}", ramp.clip(0, 255).astype(np.uint8)))
    return out


def measure(model: LaFInModel, img: np.ndarray, hole: np.ndarray, limit: float) -> dict:
    """Crop mode's check on one sample (each step's verdict, whether crop mode would have asked
    it or not), and the time it adds to the landmark step."""
    locator = model.locator
    frame = CropFrame.around(img.shape[:2], model.image_size)
    img_t, hole_t = frame.tensors(img, hole, model.device)
    t0 = time.perf_counter()
    locator.locate(img, hole, frame, img_t, hole_t)
    t1 = time.perf_counter()
    points, warnings = locate_crop_face(locator, img, hole, frame, img_t, hole_t, limit)
    t2 = time.perf_counter()
    _, disagreement = locator.locate_with_mirror_check(img, hole, frame, img_t, hole_t)
    t3 = time.perf_counter()
    aligned = locator.aligned_mirror_check(img, hole, frame.to_input(points))
    t4 = time.perf_counter()
    seen = detector_sees_face(img, hole)
    t5 = time.perf_counter()
    sign = known_pixel_sign(img, hole)
    t6 = time.perf_counter()
    middle = centre_hidden(hole)
    return {
        "disagreement": disagreement,
        "aligned_disagreement": aligned,
        "centre_hidden": middle,
        "detector_face": seen,
        "warned": bool(warnings),
        "hole": float(hole.mean()),
        "locate_ms": 1000 * (t1 - t0),
        "checked_ms": 1000 * (t2 - t1),  # crop mode's landmark step with the whole check
        "mirror_ms": 1000 * (t3 - t2),
        "sign": sign,
        "pixels_ms": 1000 * (t6 - t5),
        "second_asked": bool(sign is None and disagreement > limit and middle < CENTRE_HIDDEN_LIMIT),
        "detector_asked": bool(sign is not None or (disagreement > limit and middle < CENTRE_HIDDEN_LIMIT)),
        "aligned_ms": 1000 * (t4 - t3),
        "detector_ms": 1000 * (t5 - t4),
    }


def report(
    rows: dict[str, list[dict]], middle: dict[str, list[dict]], faces: list[str], limit: float
) -> None:
    """Print the tables of the module docstring (``rows``: random holes, ``middle``: holes over
    the middle, per set)."""
    print("mirror disagreement (NME) percentiles 1/10/50/90/99/max (random holes):")
    for key, r in rows.items():
        d = np.array([x["disagreement"] for x in r])
        print(
            f"  {key:11s} n={len(d):4d}  "
            + " ".join(f"{v:.3f}" for v in np.percentile(d, [1, 10, 50, 90, 99, 100]))
        )
    judged = {k: np.array([x["centre_hidden"] < CENTRE_HIDDEN_LIMIT for x in r]) for k, r in rows.items()}
    print(
        f"the landmark check alone (random holes), share over the limit: the signal alone / where "
        f"the hole leaves the middle visible (< {CENTRE_HIDDEN_LIMIT:.0%} hidden) / and on the "
        f"re-aligned face too / and the face detector finds none"
    )
    for lim in sorted({*LIMITS, limit}):
        cells = []
        for key, r in rows.items():
            over = np.array([x["disagreement"] > lim for x in r]) & judged[key]
            aligned = over & np.array([x["aligned_disagreement"] > lim for x in r])
            warn = aligned & ~np.array([x["detector_face"] for x in r])
            shares = [np.mean([x["disagreement"] > lim for x in r]), over.mean(), aligned.mean(), warn.mean()]
            cells.append(f"{key} " + "/".join(f"{v:.1%}" for v in shares))
        print(f"  limit {lim:.2f}: " + "  ".join(cells))
    print("known-pixel signs (random holes | holes over the middle), and how many the detector silences:")
    for key in rows:
        cells = []
        for r in (rows[key], middle[key]):
            signs = [x for x in r if x["sign"]]
            kinds = {k: sum(x["sign"] == k for x in signs) for k in sorted({x["sign"] for x in signs})}
            silenced = sum(x["detector_face"] for x in signs)
            named = ", ".join(f"{v} {k}" for k, v in kinds.items())
            cells.append(f"{len(signs)}/{len(r)}" + (f" ({named}; {silenced} silenced)" if signs else ""))
        print(f"  {key:11s} " + " | ".join(cells))
    print(f"the warning at limit {limit:.2f} (as crop mode gives it): random holes | holes over the middle")
    for key in rows:
        warned = np.array([x["warned"] for x in rows[key]])
        mid = np.array([x["warned"] for x in middle[key]])
        print(
            f"  {key:11s} {warned.sum():4d}/{len(warned)} ({warned.mean():.1%}; of those whose middle "
            f"the hole leaves visible, {judged[key].mean():.0%} of the set: "
            f"{warned[judged[key]].mean() if judged[key].any() else 0:.1%}) | "
            f"{mid.sum():4d}/{len(mid)} ({mid.mean():.1%})"
        )
    print(f"false alarms at limit {limit:.2f} per hole-size bin (all face sets, both hole kinds):")
    all_faces = [x for k in faces for x in rows[k] + middle[k]]
    for lo in (0.1, 0.2, 0.3, 0.4, 0.5):
        inbin = [x for x in all_faces if lo <= x["hole"] < lo + 0.1]
        print(f"  hole {lo:.0%}-{lo + 0.1:.0%}: {sum(x['warned'] for x in inbin)}/{len(inbin)}")
    for name, r in (("random holes", rows["non-faces"]), ("holes over the middle", middle["non-faces"])):
        missed = [x["name"] for x in r if not x["warned"]]
        print(f"non-faces not warned, {name} ({len(missed)}): {', '.join(missed) or 'none'}")
    every = [x for r in [*rows.values(), *middle.values()] for x in r]
    asked = [x for x in every if x["second_asked"]]
    detected = [x for x in every if x["detector_asked"]]
    quiet = [x["checked_ms"] - x["locate_ms"] for x in every if not x["detector_asked"]]
    print(
        f"landmark step median {np.median([x['locate_ms'] for x in every]):.1f} ms; with the check, "
        f"when no second opinion is asked: median difference {np.median(quiet):+.2f} ms (the same "
        f"network passes and the known-pixel signs, median "
        f"{np.median([x['pixels_ms'] for x in every]):.2f} ms); "
        f"re-aligned view asked {len(asked)} of {len(every)} times, median "
        f"{np.median([x['aligned_ms'] for x in asked]) if asked else float('nan'):.1f} ms; face detector "
        f"asked {len(detected)} times, median "
        f"{np.median([x['detector_ms'] for x in detected]) if detected else float('nan'):.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("lafin.face_check").setLevel(logging.ERROR)  # the warnings are counted
    detector_sees_face(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))  # loaded once
    torch.set_num_threads(1)
    if args.json and Path(args.json).exists():
        raise SystemExit(f"{args.json} exists; not overwriting it")
    rng = np.random.default_rng(args.seed)
    masks = (
        [p for p in sorted(Path(args.masks).glob("*.png")) if 2000 <= int(p.stem) < 12000]
        if args.masks
        else []
    )
    model = LaFInModel(weights=args.weights)
    sets = face_images(args, rng)
    sets["non-faces"] = non_face_images(args.crops, rng)
    extra = np.random.default_rng(args.seed + 1)  # the samples above stay those of earlier runs
    sets["landscapes"] = [
        (f"landscape-{k}", landscape((128, 256)[k % 2], extra, textured=k % 4 < 2)) for k in range(40)
    ]
    rows: dict[str, list[dict]] = {}
    middle: dict[str, list[dict]] = {}
    for key, images in sets.items():
        rows[key], middle[key] = [], []
        for i, (name, img) in enumerate(tqdm(images, desc=key)):
            row = measure(model, img, hole_for(img.shape[:2], i, rng, masks), args.limit)
            rows[key].append({"name": name, **row})
            row = measure(model, img, middle_hole(img.shape[:2], extra), args.limit)
            middle[key].append({"name": name, **row})
    faces = [k for k in rows if k not in ("non-faces", "landscapes")]
    print(f"weights: {args.weights or 'shipped'}; holes 10-60% and over the middle 25-60%; threads 1")
    report(rows, middle, faces, args.limit)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "middle": middle}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
