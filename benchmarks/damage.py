"""Old-photo restoration benchmark: damage masks, restored photos, false alarms, speed.

Held-out faces (e.g. CelebA's test split at 256 px) are turned old and damaged with the generator's
``held-out`` preset (other parameter ranges than training's) and a seed training never used.
Reported:

* **masks**: pixel precision, recall and F1 of the detected damage against the drawn mask with a
  2-px tolerance (lafin.evaluation.damage_metrics), summed over the faces;
* **restoration**: PSNR and SSIM against the clean old photo (the same photo without damage) of
  the damaged input, of ``LaFInModel.restore`` and of OpenCV's Navier-Stokes fill given the same
  (grown) detected mask; and lafin given the true mask (grown alike) for reference;
* **false alarms**: the share of pixels flagged on clean modern faces (as they are) and on clean
  old ones (the held-out look and scan, hard negatives, no damage);
* ``--sweep T1,T2,...``: only the mask scores and the clean photos' flagged shares per
  threshold (on validation faces: how the default threshold was chosen).

Speed and memory: ``benchmarks/restore_speed.py``.

    python benchmarks/damage.py --images /path/to/celeba256 --names /path/to/celeba/test.txt \\
        --limit 200 --json damage.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from lafin.damage import CLEAN_OLD, HELD_OUT, make_damaged
from lafin.evaluation.damage_metrics import MaskCounts, mask_counts
from lafin.evaluation.metrics import psnr, ssim

SEED = 20261206  # never used by training (seed 0) or validation (seed 1)


def _load(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read {path}")
    return np.ascontiguousarray(img[..., ::-1])


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def synthetic(model, paths: list[Path], threshold: float, dilate: int) -> dict:
    from lafin.restore import grow_mask

    rng = np.random.default_rng(SEED)
    counts = MaskCounts()
    rows: dict[str, list[float]] = {
        k: []
        for k in (
            "psnr_damaged",
            "ssim_damaged",
            "psnr_lafin",
            "ssim_lafin",
            "psnr_ns",
            "ssim_ns",
            "psnr_lafin_true_mask",
            "ssim_lafin_true_mask",
            "damage_share",
        )
    }
    for path in tqdm(paths, desc="held-out faces"):
        sample = make_damaged(_load(path), rng, HELD_OUT)
        result = model.restore(sample.damaged, threshold=threshold, dilate=dilate)
        counts += mask_counts(result.damage, sample.mask, tolerance=2)
        hole = (result.mask > 0).astype(np.uint8)
        ns = cv2.inpaint(sample.damaged, hole, 3, cv2.INPAINT_NS) if hole.any() else sample.damaged
        true_hole = grow_mask(sample.mask, dilate)
        with_true = model.inpaint(sample.damaged, true_hole)
        for name, image in (
            ("damaged", sample.damaged),
            ("lafin", result.image),
            ("ns", ns),
            ("lafin_true_mask", with_true),
        ):
            rows[f"psnr_{name}"].append(psnr(image, sample.clean))
            rows[f"ssim_{name}"].append(ssim(image, sample.clean))
        rows["damage_share"].append(float((sample.mask > 0).mean()))
    out = {k: _mean(v) for k, v in rows.items()}
    out.update(precision=counts.precision, recall=counts.recall, f1=counts.f1, faces=len(paths))
    return out


def false_alarms(model, paths: list[Path], threshold: float) -> dict:
    rng = np.random.default_rng(SEED + 1)
    modern, old = [], []
    for path in tqdm(paths, desc="clean photos"):
        img = _load(path)
        modern.append(float((model.detect_damage(img, threshold) > 0).mean()))
        aged = make_damaged(img, rng, CLEAN_OLD).damaged
        old.append(float((model.detect_damage(aged, threshold) > 0).mean()))
    return {
        "clean_modern_flagged": _mean(modern),
        "clean_old_flagged": _mean(old),
        "clean_modern_max": float(np.max(modern)),
        "clean_old_max": float(np.max(old)),
        "photos": len(paths),
    }


def sweep(model, paths: list[Path], thresholds: list[float], preset: str) -> dict:
    """Mask F1 (2-px tolerance) and the clean old and modern photos' flagged shares for each
    threshold, on
    ``preset`` damage: for choosing the default threshold on validation faces."""
    from lafin.damage import TRAINING
    from lafin.restore import damage_detector_for, damage_probability

    config = {"training": TRAINING, "held-out": HELD_OUT}[preset]
    rng = np.random.default_rng(SEED + 3)
    detector = damage_detector_for(model)
    counts = {t: MaskCounts() for t in thresholds}
    flagged: dict[float, list[float]] = {t: [] for t in thresholds}
    modern: dict[float, list[float]] = {t: [] for t in thresholds}
    for path in tqdm(paths, desc="threshold sweep"):
        img = _load(path)
        sample = make_damaged(img, rng, config)
        clean = make_damaged(img, rng, CLEAN_OLD).damaged
        with model.cpu_settings():
            prob = damage_probability(detector, sample.damaged)
            prob_clean = damage_probability(detector, clean)
            prob_modern = damage_probability(detector, img)
        for t in thresholds:
            modern[t].append(float((prob_modern > t).mean()))
            counts[t] += mask_counts(prob > t, sample.mask, tolerance=2)
            flagged[t].append(float((prob_clean > t).mean()))
    return {
        str(t): {
            "precision": counts[t].precision,
            "recall": counts[t].recall,
            "f1": counts[t].f1,
            "clean_old_flagged": _mean(flagged[t]),
            "clean_modern_flagged": _mean(modern[t]),
        }
        for t in thresholds
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="folder of held-out faces (256 px)")
    parser.add_argument("--names", help="file of names to use (e.g. CelebA's test.txt)")
    parser.add_argument("--limit", type=int, default=200, help="first N names (default 200)")
    parser.add_argument(
        "--clean-limit", type=int, default=0, help="faces for the false-alarm rows (default: --limit)"
    )
    parser.add_argument("--weights", help="inpainting weights (default: the shipped ones)")
    parser.add_argument("--damage-weights", help="detector weights (default: the shipped ones)")
    parser.add_argument("--threshold", type=float, help="default: lafin.restore's")
    parser.add_argument("--dilate", type=int, help="default: lafin.restore's")
    parser.add_argument(
        "--sweep",
        help="only sweep these thresholds (comma-separated): mask F1 "
        "and clean old photos' flagged share (for choosing on validation faces)",
    )
    parser.add_argument(
        "--preset",
        choices=["training", "held-out"],
        default="training",
        help="the damage preset of --sweep (default training)",
    )
    parser.add_argument("--json", help="write the numbers here too")
    args = parser.parse_args(argv)

    from lafin.pipeline import LaFInModel
    from lafin.restore import DEFAULT_DILATE, DEFAULT_THRESHOLD, damage_detector_for

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    dilate = DEFAULT_DILATE if args.dilate is None else args.dilate
    model = LaFInModel(weights=args.weights)
    if args.damage_weights:  # the model's methods use the cached detector
        from lafin import restore as restore_module

        restore_module.default_damage_weights_path = lambda: Path(args.damage_weights)
    damage_detector_for(model)
    folder = Path(args.images)
    names = Path(args.names).read_text().split() if args.names else sorted(p.name for p in folder.iterdir())
    paths = [folder / n for n in names[: args.limit]]
    report: dict = {"threshold": threshold, "dilate": dilate, "seed": SEED}
    if args.sweep:
        report = {
            "sweep": sweep(model, paths, [float(t) for t in args.sweep.split(",")], args.preset),
            "preset": args.preset,
        }
    else:
        report["held_out"] = synthetic(model, paths, threshold, dilate)
        report["clean"] = false_alarms(model, paths[: args.clean_limit or args.limit], threshold)
    json.dump(report, sys.stdout, indent=1)
    print()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
