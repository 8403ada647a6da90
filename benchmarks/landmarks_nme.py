"""Landmark accuracy under occlusion: NME on iBUG 300-W faces, lafin's predictor against dlib's.

The dlib baseline is dlib's 68-point predictor on a 256-px crop, in the face box its detector
finds on the unoccluded crop. Faces are cropped loosely (the ground-truth landmark box grown by
30% per side, made square; ``--grow`` for another share), resized to the landmark predictor's
input size (``--crop-size`` to choose another), and hidden by: nothing; irregular holes of
30-40% (NVIDIA mask files 6000-7999; ``--hole-bin`` for another bin); a block over both eyes,
the nose or the mouth. NME is the mean point error over the
distance between the ground-truth outer eye corners (points 37 and 46, counted from 1);
failure rate is the share of faces above 8%.

lafin's points are those of ``LaFInModel.predict_landmarks`` (what the pipeline uses in crop
mode): one mirror-averaged pass; ``--raw`` is the predictor alone (one pass, no mirror).
``--bias`` also reports each method's mean *signed* error (x along the ground truth's eye line,
y across it) and, where the faces folder's parent holds the iBUG ``manifest.csv``, that shift in
the source photo's pixels: a shift that is constant there, whatever the face's size, comes from
the annotations' or crops' pixel convention, not from the predictor (which never sees the source).

    python benchmarks/landmarks_nme.py --faces ../shared/data/ibug300w/afw \
        --masks ../shared/data/masks/irregular-256 [--weights runs/landmarks-v7/weights.safetensors]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from lafin.checkpoint import build_from_weights, load_any
from lafin.evaluation.runner import RATIO_LABELS
from lafin.landmarks import nme, read_pts
from lafin.masks import MaskFolder, part_mask
from lafin.options import InferenceOptions
from lafin.pipeline import LaFInModel, default_weights_path


DLIB_SIZE = 256


def loose_crop(
    image: np.ndarray, points: np.ndarray, size: int, grow: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Square crop around the landmark box grown by ``grow`` of its size on each side."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    side = float((hi - lo).max()) * (1 + 2 * grow)
    centre = (lo + hi) / 2
    scale = size / side
    matrix = np.array([[scale, 0, size / 2 - centre[0] * scale], [0, scale, size / 2 - centre[1] * scale]])
    crop = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT_101
    )
    return crop, points @ matrix[:, :2].T + matrix[:, 2]


def loose_scale(points: np.ndarray, size: int, grow: float = 0.3) -> float:
    """Pixels of ``loose_crop(image, points, size, grow)`` per pixel of ``image``."""
    return size / (float((points.max(axis=0) - points.min(axis=0)).max()) * (1 + 2 * grow))


def face_frame_errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Signed error of each point of one face, (68, 2): along the ground truth's outer-eye line
    (x, towards point 46) and across it (y, towards the chin), in outer-eye distances."""
    axis = truth[45] - truth[36]
    eyes = float(np.linalg.norm(axis))
    x = axis / eyes
    frame = np.array([x, [-x[1], x[0]]])
    return (pred - truth) @ frame.T / eyes


def face_frame_error(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean signed error of one face, (2,), in the frame of :func:`face_frame_errors`."""
    return face_frame_errors(pred, truth).mean(axis=0)


def read_scales(faces: Path) -> dict[str, float]:
    """Crop pixels per source-photo pixel of each face, from the iBUG ``manifest.csv`` beside
    the faces folder (``{}`` if there is none)."""
    manifest = faces.parent / "manifest.csv"
    if not manifest.exists():
        return {}
    import csv

    with manifest.open() as f:
        return {row["name"]: float(row["scale"]) for row in csv.DictReader(f) if row["split"] == faces.name}


def dlib_points(masked: np.ndarray, unmasked: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """dlib's 68 points on the masked crop, in the box its detector finds on the *unmasked*
    crop (a favour to dlib: its detector often fails or misfires on masked faces)."""
    from lafin.face import annotate, box_from_landmarks, detect_faces

    boxes = detect_faces(unmasked, upsample=0)
    return annotate(masked, boxes[0] if boxes else box_from_landmarks(truth))


def fused_points(
    ours: np.ndarray,
    masked: np.ndarray,
    hole: np.ndarray,
    weight: float = 0.7,
    agree: float = 0.08,
    max_covered: float = 0.02,
) -> np.ndarray:
    """lafin's points averaged with dlib's where the hole leaves the face alone (an experiment,
    not part of the pipeline: dlib's model was trained on 300-W, AFW and HELEN included).

    dlib runs on the *masked* 256-px crop, in its detector's box or else the box from lafin's
    points. Its points count (``weight``) only when the hole covers at most ``max_covered`` of
    the 13-px discs around lafin's points on average, and then only at uncovered points, and only
    when the two agree there (mean distance at most ``agree`` outer-eye distances).
    """
    from lafin.face import annotate, box_from_landmarks, detect_faces

    boxes = detect_faces(masked, upsample=0)
    theirs = annotate(masked, boxes[0] if boxes else box_from_landmarks(ours))
    covered_map = cv2.blur((hole > 0).astype(np.float32), (13, 13))
    xy = np.clip(np.round(ours).astype(int), 0, np.array(hole.shape[::-1]) - 1)
    covered = covered_map[xy[:, 1], xy[:, 0]]
    visible = covered <= 0
    if covered.mean() > max_covered or visible.sum() < 20:
        return ours
    eyes = float(np.linalg.norm(ours[36] - ours[45]))
    if np.linalg.norm(theirs - ours, axis=1)[visible].mean() > agree * eyes:
        return ours
    w = (weight * visible)[:, None]
    return ours * (1 - w) + theirs * w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", required=True, help="folder of <name>.jpg + <name>.pts")
    parser.add_argument("--masks", required=True, help="NVIDIA irregular masks folder")
    parser.add_argument("--weights", help="weights with a landmark predictor (default: shipped)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N faces")
    parser.add_argument("--names", help="file listing the faces to use (default: all)")
    parser.add_argument("--no-dlib", action="store_true", help="skip the dlib baseline")
    parser.add_argument("--raw", action="store_true", help="the predictor alone: one pass, no mirror average")
    parser.add_argument(
        "--crop-size",
        type=int,
        default=0,
        help="side of the loose crop given to lafin (default: its predictor's input size)",
    )
    parser.add_argument(
        "--fuse-dlib", action="store_true", help="also report lafin's points fused with dlib's (fused_points)"
    )
    parser.add_argument(
        "--bias", action="store_true", help="also report the mean signed error (face frame; source pixels)"
    )
    parser.add_argument(
        "--hole-bin",
        choices=RATIO_LABELS,
        default="30-40%",
        help="the irregular masks' bin (default 30-40%%: files 6000-7999)",
    )
    parser.add_argument(
        "--grow",
        type=float,
        default=0.3,
        help="crop looseness: the landmark box grown by this share of its side on each side "
        "(default 0.3; 0.6 frames the face like CelebA-HQ's loose crops)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)

    loaded = load_any(args.weights or default_weights_path())
    generator, predictor = build_from_weights(loaded)
    if predictor is None:
        sys.exit(f"{args.weights}: no landmark predictor in this file")
    model = LaFInModel.from_networks(
        loaded.config, generator, predictor, options=InferenceOptions(landmark_flip_average=not args.raw)
    )
    size = loaded.config.image_size
    # lafin's crop at its predictor's own input size (landmarks.input_size; the generator's
    # size when that is 0): the pipeline gives the predictor the input's pixels at that size
    crop_size = args.crop_size or loaded.config.landmark_size
    torch.set_num_threads(max(1, torch.get_num_threads()))
    holes = MaskFolder(args.masks, size=size, bins=[RATIO_LABELS.index(args.hole_bin)])
    irregular_row = f"irregular {args.hole_bin}"
    files = sorted(Path(args.faces).glob("*.pts"))
    if args.names:  # e.g. configs/splits/helen-val.txt: the held-out HELEN faces
        wanted = {Path(n).stem for n in Path(args.names).read_text().split()}
        files = [f for f in files if f.stem in wanted]
    if args.limit:
        files = files[: args.limit]
    rng = np.random.default_rng(args.seed)
    conditions = ["none", irregular_row, "block: eyes", "block: nose", "block: mouth"]
    errors: dict[str, dict[str, list[float]]] = {
        c: {"lafin": [], "dlib": [], "fused": []} for c in conditions
    }
    # signed errors for --bias: (face-frame x, y in eye distances, image x, y in source pixels)
    shifts: dict[str, dict[str, list[np.ndarray]]] = {
        c: {"lafin": [], "dlib": [], "fused": []} for c in conditions
    }
    scales = read_scales(Path(args.faces))
    to_sources: list[float] = []
    unoccluded: list[np.ndarray] = []  # lafin's (68, 2) errors in face-frame eye distances
    for pts_file in tqdm(files, desc="faces"):
        image = cv2.cvtColor(cv2.imread(str(pts_file.with_suffix(".jpg"))), cv2.COLOR_BGR2RGB)
        # dlib works on a 256-px crop (it is not limited to the model's input size)
        points_in_file = read_pts(pts_file)
        big, truth_big = loose_crop(image, points_in_file, DLIB_SIZE, args.grow)
        # source-photo pixels per model-crop pixel: the loose crop, then the dataset's own resize
        to_source = (DLIB_SIZE / size) / (
            loose_scale(points_in_file, DLIB_SIZE, args.grow) * scales.get(pts_file.stem, np.nan)
        )
        to_sources.append(to_source)
        crop = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
        truth = (truth_big + 0.5) * size / DLIB_SIZE - 0.5
        irregular = holes[int(rng.integers(len(holes)))]
        masks = {
            "none": np.zeros((size, size), np.uint8),
            irregular_row: irregular,
            "block: eyes": part_mask(size, truth, "eyes"),
            "block: nose": part_mask(size, truth, "nose"),
            "block: mouth": part_mask(size, truth, "mouth"),
        }
        given = (
            big
            if crop_size == DLIB_SIZE
            else cv2.resize(big, (crop_size, crop_size), interpolation=cv2.INTER_AREA)
        )
        for cond, hole in masks.items():
            big_hole = cv2.resize(hole, (DLIB_SIZE, DLIB_SIZE), interpolation=cv2.INTER_NEAREST)
            if crop_size == size:
                pred = model.predict_landmarks(crop, hole)
            else:  # the hole drawn at the model's size, given at the crop's (nearest: same shape)
                given_hole = cv2.resize(hole, (crop_size, crop_size), interpolation=cv2.INTER_NEAREST)
                pred = (model.predict_landmarks(given, given_hole) + 0.5) * size / crop_size - 0.5
            errors[cond]["lafin"].append(float(nme(pred, truth)))
            if cond == "none":
                unoccluded.append(face_frame_errors(pred, truth))
            shifts[cond]["lafin"].append(
                np.concatenate([face_frame_error(pred, truth), (pred - truth).mean(axis=0) * to_source])
            )
            big_masked = np.where(big_hole[..., None] > 0, 255, big).astype(np.uint8)
            if args.fuse_dlib:
                ours_big = (pred + 0.5) * DLIB_SIZE / size - 0.5
                fused = fused_points(ours_big, big_masked, big_hole)
                errors[cond]["fused"].append(float(nme(fused, truth_big)))
            if not args.no_dlib:
                points = dlib_points(big_masked, big, truth_big)
                errors[cond]["dlib"].append(float(nme(points, truth_big)))
                shifts[cond]["dlib"].append(
                    np.concatenate(
                        [
                            face_frame_error(points, truth_big),
                            (points - truth_big).mean(axis=0) * to_source * size / DLIB_SIZE,
                        ]
                    )
                )

    methods = ["lafin"] + ([] if args.no_dlib else ["dlib"]) + (["fused"] if args.fuse_dlib else [])
    print(
        f"\nNME (% of outer-eye distance) on {len(files)} faces of {args.faces}, "
        f"{crop_size}-px loose crops for lafin, {DLIB_SIZE}-px for dlib\n"
    )
    print("| occlusion | " + " | ".join(f"{m} NME | {m} fail@8%" for m in methods) + " |")
    print("|---|" + "---|---|" * len(methods))
    summary = {}
    for cond in conditions:
        row = []
        for m in methods:
            e = np.array(errors[cond][m])
            summary[f"{cond}/{m}"] = {"nme": float(e.mean()), "failure_rate": float((e > 0.08).mean())}
            row += [f"{100 * e.mean():.2f}", f"{100 * (e > 0.08).mean():.1f}%"]
        print(f"| {cond} | " + " | ".join(row) + " |")
    blocks = {m: np.mean([errors[c][m] for c in conditions if c.startswith("block")]) for m in methods}
    print(
        "\nblocks (eyes, nose, mouth together): "
        + ", ".join(f"{m} {100 * v:.2f}%" for m, v in blocks.items())
    )
    if args.bias:
        print(
            "\nmean signed error: face frame (% of outer-eye distance, x towards point 46, y "
            "towards the chin); source photo pixels (x, y)\n"
        )
        print("| occlusion | method | face x | face y | source px x | source px y |")
        print("|---|---|---|---|---|---|")
        for cond in conditions:
            for m in methods:
                if not shifts[cond][m]:
                    continue
                mean = np.nanmean(np.array(shifts[cond][m]), axis=0)
                summary[f"{cond}/{m}"]["shift"] = [float(v) for v in mean]
                print(
                    f"| {cond} | {m} | {100 * mean[0]:.2f} | {100 * mean[1]:.2f} | "
                    f"{mean[2]:.2f} | {mean[3]:.2f} |"
                )
        each = np.array(unoccluded)
        distance = np.linalg.norm(each, axis=2)
        residual = np.linalg.norm(each - each.mean(axis=0), axis=2)
        print(
            f"\nunoccluded lafin NME: jaw (points 1-17) {100 * distance[:, :17].mean():.2f}%, "
            f"the other 51 points {100 * distance[:, 17:].mean():.2f}%; with each point's mean "
            f"offset over these faces removed (an oracle) {100 * residual.mean():.2f}%"
        )
        # the same shift by how much the source was shrunk: constant in source pixels across
        # these thirds means an annotation/crop convention; constant in the crop, the predictor's
        sources = np.array(to_sources)
        if np.isfinite(sources).all():
            print("\nunoccluded, by source pixels per model-crop pixel (thirds of the faces):\n")
            print(
                "| source px per crop px | faces | lafin source px x | lafin source px y "
                "| lafin crop px x | lafin crop px y |"
            )
            print("|---|---|---|---|---|---|")
            lafin = np.array(shifts["none"]["lafin"])[:, 2:]
            for part in np.array_split(np.argsort(sources), 3):
                sx, sy = lafin[part].mean(axis=0)
                cx, cy = (lafin[part] / sources[part, None]).mean(axis=0)
                print(
                    f"| {sources[part].min():.2f}-{sources[part].max():.2f} | {len(part)} | "
                    f"{sx:.2f} | {sy:.2f} | {cx:.2f} | {cy:.2f} |"
                )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"faces": len(files), "size": size, "results": summary}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
