"""Group photos: does photo mode find and generate every face a hole hides?

Synthetic group photos are built from iBUG 300-W face crops (each pasted with a feathered
elliptical edge onto a smooth background, its human landmarks moved along), and holes are put over
some faces' mouths:

* ``three-faces``: a 1500x1000 photo with three faces (~200 px wide) side by side, the mouths of
  the two left ones hidden (their search regions merge);
* ``two-apart``: a 1500x600 photo with two faces far apart, both mouths hidden;
* ``fifteen-faces``: 15 faces (~70 px wide) in three rows, the web demo's default brush dab
  (an 84x69 ellipse) over the middle face's mouth.

Faces are taken in name order among those dlib's HOG detector finds unoccluded at the pasted scale
(a face the detector cannot see even whole is not what these cases test). Reported per case: the
faces photo mode reports (how each was found), whether every hidden face was generated (a reported
face box holding its landmark centre), the hole pixels left to OpenCV, the "no face" regions and
the time.

    python benchmarks/group_photos.py --faces ../shared/data/ibug300w/afw
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from lafin.landmarks import read_pts


def _background(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth, slightly textured backdrop (large-scale colour blobs plus fine noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(60, 200, (4, 6, 3)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return img.clip(0, 255).astype(np.uint8)


def _paste(
    canvas: np.ndarray, crop: np.ndarray, points: np.ndarray, side: int, centre: tuple[int, int]
) -> np.ndarray:
    """Paste ``crop`` resized to ``side`` px centred at ``centre`` with a feathered elliptical
    edge; returns its landmarks in canvas pixels."""
    scale = side / crop.shape[0]
    big = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    yy, xx = (np.mgrid[0:side, 0:side] + 0.5) / side - 0.5
    alpha = np.clip((0.5 - np.sqrt(xx**2 + yy**2)) / 0.08, 0, 1)[..., None]
    left, top = centre[0] - side // 2, centre[1] - side // 2
    view = canvas[top : top + side, left : left + side]
    view[:] = (alpha * big + (1 - alpha) * view).round().astype(np.uint8)
    return (points + 0.5) * scale - 0.5 + np.array([left, top], np.float64)


def _detectable(files: list[Path], side: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from lafin.face import detect_faces

    chosen = []
    for pts_file in files:
        crop = cv2.cvtColor(cv2.imread(str(pts_file.with_suffix(".jpg"))), cv2.COLOR_BGR2RGB)
        probe = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
        pad = side // 2  # the pasted face has the backdrop around it, not a tight border
        if detect_faces(
            np.pad(probe, ((pad, pad), (pad, pad), (0, 0)), mode="edge"), upsample=1 if side < 200 else 0
        ):
            chosen.append((crop, read_pts(pts_file) - 1.0))  # .pts coordinates are 1-based
        if len(chosen) == count:
            return chosen
    raise SystemExit(f"only {len(chosen)} faces detectable at {side} px; need {count}")


def _mouth(shape: tuple[int, int], points: np.ndarray, side: int) -> np.ndarray:
    """The mouth block of lafin.masks.part_mask (landmark box grown by 25%, at least 4% of the
    face crop's side) for a face pasted at ``side`` px."""
    pts = points[48:68]
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    mx, my = max(0.25 * (x1 - x0), 0.04 * side), max(0.25 * (y1 - y0), 0.04 * side)
    hole = np.zeros(shape, np.uint8)
    hole[int(np.floor(y0 - my)) : int(np.ceil(y1 + my)), int(np.floor(x0 - mx)) : int(np.ceil(x1 + mx))] = 1
    return hole


def _dab(shape: tuple[int, int], centre: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    hole = np.zeros(shape, np.uint8)
    cv2.ellipse(
        hole, (int(round(centre[0])), int(round(centre[1]))), (size[0] // 2, size[1] // 2), 0, 0, 360, 1, -1
    )
    return hole


def build_cases(folder: Path, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, list]]:
    """name -> (photo, hole, landmarks of the hidden faces)."""
    files = sorted(folder.glob("*.pts"))
    mouth = list(range(48, 68))
    cases = {}

    photo = _background(1000, 1500, seed)
    faces = _detectable(files, 400, 3)
    points = [_paste(photo, c, p, 400, (260 + 490 * i, 480)) for i, (c, p) in enumerate(faces)]
    hole = np.maximum(_mouth(photo.shape[:2], points[0], 400), _mouth(photo.shape[:2], points[1], 400))
    cases["three-faces"] = (photo, hole, points[:2])

    photo = _background(600, 1500, seed + 1)
    faces = _detectable(files[40:], 256, 2)
    points = [_paste(photo, c, p, 256, (200 + 1100 * i, 300)) for i, (c, p) in enumerate(faces)]
    hole = np.maximum(_mouth(photo.shape[:2], points[0], 256), _mouth(photo.shape[:2], points[1], 256))
    cases["two-apart"] = (photo, hole, points)

    photo = _background(560, 900, seed + 2)
    faces = _detectable(files[80:], 140, 15)
    points = [
        _paste(photo, c, p, 140, (130 + 160 * (i % 5), 100 + 180 * (i // 5)))
        for i, (c, p) in enumerate(faces)
    ]
    hidden = points[7]
    hole = _dab(photo.shape[:2], hidden[mouth].mean(axis=0), (84, 69))
    cases["fifteen-faces"] = (photo, hole, [hidden])
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", required=True, type=Path, help="folder of <name>.jpg + .pts")
    parser.add_argument("--weights", help="lafin weights (default: the shipped ones)")
    parser.add_argument("--save", type=Path, help="write each case's photo, hole and result here")
    parser.add_argument("--json", help="write the numbers here too")
    args = parser.parse_args(argv)

    from lafin.pipeline import LaFInModel

    model = LaFInModel(weights=args.weights)
    report = {}
    for name, (photo, hole, hidden) in build_cases(args.faces).items():
        t = time.perf_counter()
        result = model(photo, hole, mode="photo")
        seconds = time.perf_counter() - t
        generated = [
            any(
                f.box[0] <= p[:, 0].mean() <= f.box[2]
                and f.box[1] <= p[:, 1].mean() <= f.box[3]
                and f.hole_pixels > 0
                for f in result.faces
            )
            for p in hidden
        ]
        report[name] = {
            "photo": f"{photo.shape[1]}x{photo.shape[0]}",
            "hole_pixels": int(hole.sum()),
            "hidden_faces": len(hidden),
            "hidden_faces_generated": int(sum(generated)),
            "faces": [
                {"path": f.path, "box": [round(v) for v in f.box], "hole_pixels": f.hole_pixels}
                for f in result.faces
            ],
            "pixels_left_to_opencv": result.background_pixels,
            "no_face_regions": [{"box": list(r.box), "pixels": r.pixels} for r in result.background_regions],
            "seconds": round(seconds, 2),
        }
        print(
            f"{name}: {report[name]['photo']}, {len(hidden)} hidden, "
            f"{sum(generated)} generated; faces "
            + "; ".join(
                f"{f.path} at ({f.box[0]:.0f}, {f.box[1]:.0f}) {f.hole_pixels} px" for f in result.faces
            )
            + f"; {result.background_pixels} px to OpenCV; no-face regions "
            f"{report[name]['no_face_regions']}; {seconds:.1f} s"
        )
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            for kind, img in (("photo", photo), ("hole", hole * 255), ("result", result.image)):
                out = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
                cv2.imwrite(str(args.save / f"{name}-{kind}.png"), out)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
