"""Crop mode on loose crops against aligned ones: hole detail and landmark fidelity.

The shared iBUG AFW crops (256 px around the face: loose, often turned or tilted, hair and
background included) with a hole over the eyes, the nose or the mouth (in turn;
:func:`lafin.masks.part_mask` from the true landmarks). Each face is inpainted twice in crop mode:

- *loose*: the crop as it is (crop mode aligns it, generates, and warps the face back);
- *aligned*: the same face first aligned to the canonical frame by its true landmarks
  (:func:`lafin.alignment.align_face`), with the loose crop's hole warped with it. The aligned
  crop's side is chosen per face so that the face keeps its size in pixels (about 170 px for
  these crops): the detail ratio depends on resolution, and a face enlarged by the warp has a
  softer truth to compare with. ``--size N`` fixes the side instead.

Per setting: the hole-detail ratio (median over the faces; :mod:`lafin.evaluation.realism`) and
landmark fidelity (the model's predictor on the unmasked truth is the judge: the NME of its points
on the output against its points on the truth, normalised by the eye-corner distance, so the two
framings are comparable). The loose/aligned quotients are what the realism bar reads ("within
10%": detail >= 0.9x, fidelity <= 1.1x).

The judge reads a loose crop less surely than an aligned one (a smaller, often turned face, and
its own alignment pass moves with every pixel), so fidelity is also given *judged aligned*: the
loose crop's output warped into the aligned frame (the same warp as the aligned setting), judged
there against the aligned truth. It compares the two fills under one judge framing. Last, the
landmarks that guided the generator are compared with the true ones (NME), the loose crop's
first pass beside them.

    python benchmarks/loose_crops.py --afw ../shared/data/ibug300w/afw --faces 150
    python benchmarks/loose_crops.py --weights A.safetensors --afw ... --json loose.json
    python benchmarks/loose_crops.py --afw ../shared/data/ibug300w/helen_trainset_partial \
        --names configs/splits/helen-val.txt     # held-out HELEN faces: for choosing, not AFW
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from lafin import LaFInModel
from lafin.alignment import align_face, warp_to_crop
from lafin.crop_frame import CropFrame, face_side
from lafin.evaluation import realism as R
from lafin.io import load_image
from lafin.landmarks import nme, read_pts
from lafin.masks import part_mask

log = logging.getLogger("loose_crops")
PARTS = ("eyes", "nose", "mouth")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--afw", default="../shared/data/ibug300w/afw", help="folder of iBUG crops (NAME.jpg + NAME.pts)"
    )
    p.add_argument("--weights", help="weights file (default: the shipped one)")
    p.add_argument("--faces", type=int, default=150, help="faces, a seeded sample")
    p.add_argument(
        "--names", help="a text file of the crops to sample from (e.g. configs/splits/helen-val.txt)"
    )
    p.add_argument(
        "--size", type=int, default=0, help="side of the aligned crops (default 0: the face's own scale)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the numbers here too (never overwrites a file)")
    return p.parse_args(argv)


def face_files(folder: Path, count: int, seed: int, names: Path | None = None) -> list[Path]:
    files = sorted(p for p in folder.glob("*.jpg") if p.with_suffix(".pts").is_file())
    if names is not None:
        wanted = {Path(n).stem for n in names.read_text().split()}
        files = [p for p in files if p.stem in wanted]
    if not files:
        raise SystemExit(f"no NAME.jpg + NAME.pts pairs in {folder}")
    rng = np.random.default_rng(seed)
    return [files[i] for i in sorted(rng.choice(len(files), min(count, len(files)), replace=False))]


def native_side(landmarks: np.ndarray) -> int:
    """The side of the aligned crop in which the face keeps its size in pixels (warp scale 1)."""
    side = face_side(landmarks)
    if side is None:
        raise ValueError("these landmarks make no face")
    return int(round(side))


def measure(
    model: LaFInModel, image: np.ndarray, mask: np.ndarray
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(detail ratio, fidelity NME, output, landmarks it was generated with) of crop-mode
    inpainting of one face's hole (1 = hole)."""
    result = model(image, mask * 255, mode="crop")
    detail = R.hole_detail_ratio(result.image, image, mask * 255)
    return detail, fidelity(model, result.image, image), result.image, result.landmarks


def first_pass(model: LaFInModel, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Crop mode's first landmark pass on the whole crop (image pixels): what aligns a loose
    crop's face before a small face's landmarks are predicted again on it."""
    frame = CropFrame.around(image.shape[:2], model.image_size)
    return frame.to_input(model.locator.locate(image, mask, frame))


def fidelity(model: LaFInModel, output: np.ndarray, truth: np.ndarray) -> float:
    """NME of the judge's points on ``output`` against its points on ``truth``."""
    empty = np.zeros(truth.shape[:2], np.uint8)
    judge = model.predict_landmarks(truth, empty)  # its reading of the true face
    return float(nme(model.predict_landmarks(output, empty), judge))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = LaFInModel(weights=args.weights) if args.weights else LaFInModel()
    files = face_files(Path(args.afw), args.faces, args.seed, Path(args.names) if args.names else None)
    rows: dict[str, dict[str, list[float]]] = {
        k: {"detail": [], "fidelity": []} for k in ("loose", "aligned")
    }
    judged_aligned: list[float] = []
    # the landmarks that guided the generator, against the true ones (and the loose crop's first pass)
    guide: dict[str, list[float]] = {"loose first pass": [], "loose": [], "aligned": []}
    for i, path in enumerate(tqdm(files, desc="faces", unit="face")):
        image = load_image(path)
        landmarks = read_pts(path.with_suffix(".pts"))
        part = PARTS[i % len(PARTS)]
        size = args.size or native_side(landmarks)
        aligned, matrix = align_face(image, landmarks, size)
        # one hole, drawn on the loose crop and warped with the face: the same share of the face
        # in both settings (drawn in each frame, the part mask's minimum margin of 4% of the image
        # side would hide more of the loose crop's smaller face)
        hole = part_mask(image.shape[0], landmarks, part)
        aligned_hole = cv2.warpAffine(hole, matrix, (size, size), flags=cv2.INTER_NEAREST)
        for key, (img, mask) in (("loose", (image, hole)), ("aligned", (aligned, aligned_hole))):
            detail, nme_value, output, used = measure(model, img, mask)
            rows[key]["detail"].append(detail)
            rows[key]["fidelity"].append(nme_value)
            truth = landmarks if key == "loose" else landmarks @ matrix[:, :2].T + matrix[:, 2]
            guide[key].append(float(nme(used, truth)))
            if key == "loose":
                guide["loose first pass"].append(float(nme(first_pass(model, img, mask), truth)))
                # warped as the aligned truth was
                warped = warp_to_crop(output, matrix, size, interpolation=cv2.INTER_CUBIC)
                judged_aligned.append(fidelity(model, warped, aligned))
    summary = {
        key: {
            "detail_ratio": R.median_ratio(v["detail"]),
            "fidelity_nme_percent": 100 * float(np.mean(v["fidelity"])),
        }
        for key, v in rows.items()
    }
    summary["loose_judged_aligned"] = {"fidelity_nme_percent": 100 * float(np.mean(judged_aligned))}
    summary["guiding_landmarks_nme_percent"] = {k: 100 * float(np.mean(v)) for k, v in guide.items()}
    summary["loose_over_aligned"] = {
        "detail_ratio": summary["loose"]["detail_ratio"] / summary["aligned"]["detail_ratio"],
        "fidelity": summary["loose"]["fidelity_nme_percent"] / summary["aligned"]["fidelity_nme_percent"],
        "fidelity_judged_aligned": summary["loose_judged_aligned"]["fidelity_nme_percent"]
        / summary["aligned"]["fidelity_nme_percent"],
    }
    print(f"{len(files)} {Path(args.afw).name} faces, holes over {', '.join(PARTS)} in turn, crop mode")
    print(f"{'':10s} {'detail ratio':>13s} {'fidelity NME %':>15s}")
    for key in ("loose", "aligned"):
        print(f"{key:10s} {summary[key]['detail_ratio']:13.3f} {summary[key]['fidelity_nme_percent']:15.2f}")
    q = summary["loose_over_aligned"]
    print(f"{'loose/al.':10s} {q['detail_ratio']:13.3f} {q['fidelity']:15.3f}")
    judged = summary["loose_judged_aligned"]["fidelity_nme_percent"]
    share = q["fidelity_judged_aligned"]
    print(f"loose output judged in the aligned frame: fidelity {judged:.2f}% ({share:.3f} of aligned)")
    print(
        "guiding landmarks against the true ones (NME %): "
        + ", ".join(f"{k} {v:.2f}" for k, v in summary["guiding_landmarks_nme_percent"].items())
    )
    if args.json:
        out = Path(args.json)
        if out.exists():
            print(f"--json {out}: exists; not overwritten", file=sys.stderr)
            return 2
        out.write_text(json.dumps({"faces": len(files), **summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
