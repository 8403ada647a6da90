"""Real, unaligned photos: photo mode (detect + align) against cropping without alignment.

iBUG 300-W faces (in-the-wild photos, 256-px crops around the face, any head pose) get a hole over
one facial part (both eyes, the nose or the mouth; chosen per face with a fixed seed, boxes from
the human landmarks). Each is inpainted twice:

* ``photo mode``: lafin finds the face, aligns it on its visible landmarks, generates, pastes back;
* ``no alignment``: the whole picture is given to the networks as if it were an aligned crop.

Reported: landmark NME of the predicted points (mapped back to the photo) against the human
labels (outer-eye normalisation), and PSNR inside the hole against the original photo.

    python benchmarks/real_photos.py --faces ../shared/data/ibug300w/afw --weights W.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from lafin.landmarks import nme, read_pts
from lafin.masks import part_mask


def hole_psnr(a: np.ndarray, b: np.ndarray, hole: np.ndarray) -> float:
    sel = hole > 0
    mse = np.mean((a[sel].astype(np.float64) - b[sel].astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", nargs="+", required=True, help="folders of <name>.jpg + .pts")
    parser.add_argument("--weights", help="lafin weights (default: the shipped ones)")
    parser.add_argument("--limit", type=int, default=0, help="first N faces per folder")
    parser.add_argument("--names", help="file listing the faces to use (default: all)")
    parser.add_argument(
        "--no-refine", action="store_true", help="photo mode without its second, re-aligned landmark pass"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the numbers here too")
    args = parser.parse_args(argv)

    from lafin.pipeline import LaFInModel

    from lafin.options import InferenceOptions

    model = LaFInModel(weights=args.weights, options=InferenceOptions(landmark_refine=not args.no_refine))
    rng = np.random.default_rng(args.seed)
    files = []
    for folder in args.faces:
        found = sorted(Path(folder).glob("*.pts"))
        if args.names:  # e.g. configs/splits/helen-val.txt: the held-out HELEN faces
            wanted = {Path(n).stem for n in Path(args.names).read_text().split()}
            found = [f for f in found if f.stem in wanted]
        files += found[: args.limit] if args.limit else found
    results = {m: {"nme": [], "psnr": [], "seconds": []} for m in ("photo mode", "no alignment")}
    paths: dict[str, int] = {}
    by_path: dict[str, list[float]] = {}
    for pts_file in tqdm(files, desc="photos"):
        image = cv2.cvtColor(cv2.imread(str(pts_file.with_suffix(".jpg"))), cv2.COLOR_BGR2RGB)
        truth = read_pts(pts_file)
        part = ("eyes", "nose", "mouth")[int(rng.integers(3))]
        side = max(image.shape[:2])
        hole = part_mask(side, truth, part)[: image.shape[0], : image.shape[1]]
        for method, mode in (("photo mode", "photo"), ("no alignment", "crop")):
            t = time.perf_counter()
            result = model(image, hole, mode=mode)
            results[method]["seconds"].append(time.perf_counter() - t)
            if mode == "photo":
                for face in result.faces:
                    paths[face.path] = paths.get(face.path, 0) + 1
            if result.landmarks is not None:
                results[method]["nme"].append(float(nme(result.landmarks, truth)))
                # the face the result's landmarks belong to
                main = [f for f in result.faces if f.landmarks is result.landmarks]
                if main:
                    by_path.setdefault(main[0].path, []).append(results[method]["nme"][-1])
            results[method]["psnr"].append(hole_psnr(result.image, image, hole))

    print(f"\n{len(files)} photos from {', '.join(args.faces)}; one facial part hidden each\n")
    print("| method | landmark NME (%) | failure @8% | PSNR in the hole (dB) | s / photo |")
    print("|---|---|---|---|---|")
    summary = {}
    for method, r in results.items():
        e = np.array(r["nme"])
        summary[method] = {
            "nme": float(e.mean()),
            "failure_rate": float((e > 0.08).mean()),
            "faces_with_landmarks": len(e),
            "psnr_hole": float(np.mean(r["psnr"])),
            "seconds": float(np.median(r["seconds"])),
        }
        print(
            f"| {method} | {100 * e.mean():.2f} | {100 * (e > 0.08).mean():.1f}% | "
            f"{np.mean(r['psnr']):.2f} | {np.median(r['seconds']):.3f} |"
        )
    print(f"\nhow photo mode found the faces: {paths}")
    print("\nphoto mode's landmark NME by how it found the face:\n")
    print("| path | photos | NME (%) | median (%) | failure @8% |")
    print("|---|---|---|---|---|")
    for path, e in sorted(by_path.items(), key=lambda kv: -len(kv[1])):
        e = np.array(e)
        print(
            f"| {path} | {len(e)} | {100 * e.mean():.2f} | {100 * np.median(e):.2f} | "
            f"{100 * (e > 0.08).mean():.1f}% |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "photos": len(files),
                    "results": summary,
                    "paths": paths,
                    "nme_by_path": {k: float(np.mean(v)) for k, v in by_path.items()},
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
