"""Holes in real photos at an ordinary face size: hole detail, the fill's colour, PSNR.

The shared iBUG AFW crops (in-the-wild photos, loose, often turned), each scaled so that its
outer eye corners are ``--eye-distance`` px apart (90 by default: a face about 200-250 px wide,
as in an ordinary photo), with a block over the eyes, the nose or the mouth in turn
(:func:`lafin.masks.part_mask` from the human landmarks), inpainted in photo mode (the face is
found, aligned, generated and pasted back). Grey photos are skipped: their fill's colour is the
photo's by construction.

Per weights file (``PATH`` or ``PATH:NAME=VALUE,...`` to change inference options, as in
``benchmarks/realism.py``): the hole-detail ratio (median; 1 = as detailed as the photo), the
hole's colour error (CIELAB ΔE between the mean colours of fill and photo in the hole, mean over
the faces), the PSNR inside the hole (mean), the edge step (the mean absolute step between
neighbouring pixels across the hole's edge, output's over the photo's: above 1 a seam), all
from :mod:`lafin.evaluation`, and the fill's
landmark fidelity: NME of the first file's predictor on the output against its points on the
photo (how closely the generated eyes, nose and mouth sit where the photo's are; the human
labels are not the reference, so the judge's own error largely cancels). ``--names`` picks the
faces from a list (e.g. held-out HELEN faces, to choose settings on). ``--soften F`` makes each
photo a soft scan (resampled to 1/F of its side and back; that is then the truth; ``--blur
SIGMA`` blurs it instead or as well): a fill as sharp as a sharp photo's is then too sharp for
it, and its detail ratio shows how much (1: as detailed as the photo around it).

    python benchmarks/photo_holes.py --afw ../shared/data/ibug300w/afw --faces 120 \\
        --weights src/lafin/weights/lafin-compact.safetensors \\
        src/lafin/weights/lafin-compact.safetensors:edge_colour_match=false
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from lafin import LaFInModel
from lafin.blend import resample_soften
from lafin.evaluation import metrics as M
from lafin.evaluation import realism as R
from lafin.io import load_image
from lafin.landmarks import OUTER_EYE_CORNERS, read_pts
from lafin.masks import part_mask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loose_crops import PARTS, face_files  # noqa: E402
from realism import weights_spec  # noqa: E402

log = logging.getLogger("photo_holes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--afw", default="../shared/data/ibug300w/afw", help="folder of iBUG crops (NAME.jpg + NAME.pts)"
    )
    p.add_argument(
        "--weights", nargs="+", help="weights files, PATH[:NAME=VALUE,...] (default: the shipped one)"
    )
    p.add_argument("--faces", type=int, default=120, help="faces, a seeded sample")
    p.add_argument("--names", help="a file of face names (stems) to draw the sample from")
    p.add_argument("--eye-distance", type=float, default=90.0, help="outer eye corners apart, px")
    p.add_argument(
        "--soften",
        type=float,
        default=1.0,
        help="resample each scaled photo to 1/SOFTEN of its side and back (a small original "
        "enlarged: a soft scan); its softened self is the truth (default 1: as it is)",
    )
    p.add_argument(
        "--blur",
        type=float,
        default=0.0,
        help="then a Gaussian blur of this sigma (px): an out-of-focus or blurred scan (default 0)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the numbers here too (never overwrites a file)")
    return p.parse_args(argv)


def scaled_face(path: Path, eye_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo and its landmarks scaled so the outer eye corners are ``eye_distance`` apart."""
    image = load_image(path)
    points = read_pts(path.with_suffix(".pts"))
    a, b = OUTER_EYE_CORNERS
    scale = eye_distance / float(np.linalg.norm(points[a] - points[b]))
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    return resized, points * np.array([size[0] / w, size[1] / h], np.float32)


def soften(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` (uint8) with the detail of a photo ``factor`` times smaller, enlarged
    (:func:`lafin.blend.resample_soften`, rounded); ``factor`` 1 returns it as it is."""
    if factor < 1:
        raise ValueError(f"--soften must be at least 1, got {factor:g}")
    if factor == 1:
        return image
    return np.clip(np.round(resample_soften(image, factor)), 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.soften < 1:
        sys.exit(f"photo_holes.py: error: --soften must be at least 1, got {args.soften:g}")
    if args.blur < 0:
        sys.exit(f"photo_holes.py: error: --blur must be at least 0, got {args.blur:g}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.json and Path(args.json).exists():
        sys.exit(f"photo_holes.py: error: {args.json} exists; not overwriting it")
    from lafin.pipeline import default_weights_path

    specs = [weights_spec(w) for w in (args.weights or [str(default_weights_path())])]
    names = [w.stem + "".join(f":{k}={v}" for k, v in o.items()) for w, o in specs]
    if len(set(names)) != len(names):
        names = [f"{i + 1}:{n}" for i, n in enumerate(names)]
    try:
        models = {n: LaFInModel(weights=w).with_options(**o) for n, (w, o) in zip(names, specs)}
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f"photo_holes.py: error: {exc}")
    torch.set_num_threads(1)
    files = face_files(Path(args.afw), args.faces, args.seed, Path(args.names) if args.names else None)
    rows = {
        n: {"detail": [], "colour": [], "psnr": [], "fidelity": [], "step": [], "truth_step": []}
        for n in names
    }
    judge = next(iter(models.values()))
    used = 0
    for i, path in enumerate(tqdm(files, desc="faces", unit="face")):
        image, points = scaled_face(path, args.eye_distance)
        image = soften(image, args.soften)
        if args.blur > 0:
            image = cv2.GaussianBlur(image, (0, 0), args.blur)
        if np.abs(image.astype(np.int16) - image.mean(axis=2, keepdims=True)).mean() < 1.0:
            continue  # a grey photo
        if image.shape[0] != image.shape[1]:
            continue  # part_mask draws on square crops
        used += 1
        mask = part_mask(image.shape[0], points, PARTS[i % len(PARTS)]) * 255
        empty = np.zeros(image.shape[:2], np.uint8)
        judged_truth = judge.predict_landmarks(image, empty)
        for n, model in models.items():
            output = model(image, mask, mode="photo").image
            rows[n]["detail"].append(R.hole_detail_ratio(output, image, mask))
            rows[n]["colour"].append(R.hole_colour_error(output, image, mask))
            hole = mask > 0
            rows[n]["psnr"].append(M.psnr(output[hole][None], image[hole][None]))
            step, truth_step = R.edge_steps(output, image, mask)
            rows[n]["step"].append(step)
            rows[n]["truth_step"].append(truth_step)
            rows[n]["fidelity"].append(float(M.nme(judge.predict_landmarks(output, empty), judged_truth)))
    summary = {
        n: {
            "detail_ratio": R.median_ratio(v["detail"]),
            "colour_error": float(np.nanmean(v["colour"])),
            "hole_psnr": float(np.mean(v["psnr"])),
            "fidelity_nme_percent": 100 * float(np.mean(v["fidelity"])),
            "edge_step_ratio": float(np.nanmean(v["step"]) / np.nanmean(v["truth_step"])),
        }
        for n, v in rows.items()
    }
    print(
        f"{used} colour photos of {Path(args.afw).name} (of {len(files)}), "
        f"eyes {args.eye_distance:g} px apart, "
        + (f"softened {args.soften:g}x, " if args.soften != 1 else "")
        + (f"blurred (sigma {args.blur:g} px), " if args.blur > 0 else "")
        + f"holes over {', '.join(PARTS)} in turn, photo mode"
    )
    print("| weights | detail ratio | colour ΔE | hole PSNR (dB) | fidelity NME (%) | edge step |")
    print("|---|---:|---:|---:|---:|---:|")
    for n, s in summary.items():
        print(
            f"| {n} | {s['detail_ratio']:.3f} | {s['colour_error']:.2f} | {s['hole_psnr']:.2f} "
            f"| {s['fidelity_nme_percent']:.2f} | {s['edge_step_ratio']:.2f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"faces": used, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
