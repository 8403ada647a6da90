"""Crop mode on loose crops against aligned ones: hole detail and landmark fidelity.

The shared iBUG AFW crops (256 px around the face: loose, often turned or tilted, hair and
background included) with a hole over the eyes, the nose or the mouth (in turn;
:func:`lafin.masks.part_mask` from the true landmarks). Each face is inpainted twice in crop mode:

- *loose*: the crop as it is (crop mode aligns it, generates, and warps the face back);
- *aligned*: the same face first aligned to the canonical frame at ``--size`` px by its true
  landmarks (:func:`lafin.alignment.align_face`), with the same part hole drawn there.

Per setting: the hole-detail ratio (median over the faces; :mod:`lafin.evaluation.realism`) and
landmark fidelity (the model's predictor on the unmasked truth is the judge: the NME of its points
on the output against its points on the truth, normalised by the eye-corner distance, so the two
framings are comparable). The loose/aligned quotients are what the realism bar reads ("within
10%": detail >= 0.9x, fidelity <= 1.1x).

    python benchmarks/loose_crops.py --afw ../shared/data/ibug300w/afw --faces 150
    python benchmarks/loose_crops.py --weights A.safetensors --afw ... --json loose.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lafin import LaFInModel
from lafin.alignment import align_face
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
    p.add_argument("--size", type=int, default=256, help="side of the aligned crops (256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the numbers here too (never overwrites a file)")
    return p.parse_args(argv)


def face_files(folder: Path, count: int, seed: int) -> list[Path]:
    files = sorted(p for p in folder.glob("*.jpg") if p.with_suffix(".pts").is_file())
    if not files:
        raise SystemExit(f"no NAME.jpg + NAME.pts pairs in {folder}")
    rng = np.random.default_rng(seed)
    return [files[i] for i in sorted(rng.choice(len(files), min(count, len(files)), replace=False))]


def measure(model: LaFInModel, image: np.ndarray, landmarks: np.ndarray, part: str) -> tuple[float, float]:
    """(detail ratio, fidelity NME) of crop-mode inpainting of ``part`` of one face."""
    mask = part_mask(image.shape[0], landmarks, part) * 255
    output = model(image, mask, mode="crop").image
    empty = np.zeros(image.shape[:2], np.uint8)
    judge = model.predict_landmarks(image, empty)  # its reading of the true face
    found = model.predict_landmarks(output, empty)
    return R.hole_detail_ratio(output, image, mask), float(nme(found, judge))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = LaFInModel(weights=args.weights) if args.weights else LaFInModel()
    files = face_files(Path(args.afw), args.faces, args.seed)
    rows: dict[str, dict[str, list[float]]] = {
        k: {"detail": [], "fidelity": []} for k in ("loose", "aligned")
    }
    for i, path in enumerate(tqdm(files, desc="faces", unit="face")):
        image = load_image(path)
        landmarks = read_pts(path.with_suffix(".pts"))
        part = PARTS[i % len(PARTS)]
        aligned, matrix = align_face(image, landmarks, args.size)
        aligned_points = landmarks @ matrix[:, :2].T + matrix[:, 2]
        for key, (img, pts) in (("loose", (image, landmarks)), ("aligned", (aligned, aligned_points))):
            detail, fidelity = measure(model, img, pts, part)
            rows[key]["detail"].append(detail)
            rows[key]["fidelity"].append(fidelity)
    summary = {
        key: {
            "detail_ratio": R.median_ratio(v["detail"]),
            "fidelity_nme_percent": 100 * float(np.mean(v["fidelity"])),
        }
        for key, v in rows.items()
    }
    summary["loose_over_aligned"] = {
        "detail_ratio": summary["loose"]["detail_ratio"] / summary["aligned"]["detail_ratio"],
        "fidelity": summary["loose"]["fidelity_nme_percent"] / summary["aligned"]["fidelity_nme_percent"],
    }
    print(f"{len(files)} AFW faces, holes over {', '.join(PARTS)} in turn, crop mode")
    print(f"{'':10s} {'detail ratio':>13s} {'fidelity NME %':>15s}")
    for key in ("loose", "aligned"):
        print(f"{key:10s} {summary[key]['detail_ratio']:13.3f} {summary[key]['fidelity_nme_percent']:15.2f}")
    q = summary["loose_over_aligned"]
    print(f"{'loose/al.':10s} {q['detail_ratio']:13.3f} {q['fidelity']:15.3f}")
    if args.json:
        out = Path(args.json)
        if out.exists():
            print(f"--json {out}: exists; not overwritten", file=sys.stderr)
            return 2
        out.write_text(json.dumps({"faces": len(files), **summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
