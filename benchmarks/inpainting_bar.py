"""The shipped model's quality bar: PSNR and SSIM against OpenCV's Telea and Navier-Stokes.

CelebA test faces (``test.txt``) at the model's resolution, NVIDIA irregular masks by hole-ratio
bin (file n belongs to bin n // 2000: 0-10%, ..., 50-60%) and the centre block (the middle half
of width and height). Every method's output is composited (known pixels are the input's) and
scored on the whole RGB image: PSNR with a peak of 255, SSIM as Wang et al. 2004 (Gaussian window
sigma 1.5, data range 255, computed per channel and averaged; scikit-image). Each face gets one
mask per bin, drawn with a fixed seed, the same for every method. The faces are a seeded sample
of ``test.txt`` (as ``lafin evaluate`` and ``benchmarks/realism.py`` draw them): CelebA's files
are ordered by head pose, so its first names are nearly all profiles.

    python benchmarks/inpainting_bar.py --data ../shared/data/celeba --masks \
        ../shared/data/masks/irregular-256 --weights lafin-compact.safetensors --faces 500
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from lafin.evaluation.metrics import psnr, ssim
from lafin.errors import InputError
from lafin.evaluation.runner import list_images
from lafin.masks import MaskFolder, center_block_mask

BINS = ["0-10%", "10-20%", "20-30%", "30-40%", "40-50%", "50-60%", "centre block"]
# The bar of issue 4: minimum gain over NS in PSNR (dB) and SSIM for these rows.
BAR = {"30-40%": (1.5, 0.03), "50-60%": (1.5, 0.03), "centre block": (2.0, None)}
# pipeline steps that --ablate can switch off: the InferenceOptions change per name
ABLATIONS = {
    "diffusion-mix": {"diffusion_mix": 0.0},
    "generator-flip": {"generator_flip_average": False},
    "landmark-flip": {"landmark_flip_average": False},
}


def opencv(method: int):
    def run(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        return cv2.inpaint(image, hole, 5, method)

    return run


def _without(model, changes: dict):
    """lafin's crop mode with one pipeline step switched off."""
    other = model.with_options(**changes)

    def run(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        return other.inpaint(image, hole, mode="crop")

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CelebA folder with 128/ and test.txt")
    parser.add_argument("--masks", required=True, help="NVIDIA irregular masks folder")
    parser.add_argument("--weights", help="lafin weights (default: the shipped ones)")
    parser.add_argument(
        "--faces", type=int, default=500, help="test faces to use (a sample of N drawn with --seed)"
    )
    parser.add_argument("--bins", default=",".join(BINS), help="comma-separated rows to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the numbers here too")
    parser.add_argument(
        "--ablate",
        action="append",
        default=[],
        choices=sorted(ABLATIONS),
        help="also run lafin without this step (a column 'lafin -STEP', same faces and holes); repeatable",
    )
    args = parser.parse_args(argv)

    from lafin.pipeline import LaFInModel

    model = LaFInModel(weights=args.weights)
    size = model.image_size
    try:
        files = list_images(Path(args.data, "128"), str(Path(args.data, "test.txt")), args.faces, args.seed)
    except InputError as exc:
        sys.exit(f"inpainting_bar.py: error: {exc}")
    methods = {
        "telea": opencv(cv2.INPAINT_TELEA),
        "ns": opencv(cv2.INPAINT_NS),
        "lafin": lambda img, hole: model.inpaint(img, hole, mode="crop"),
    }
    for step in args.ablate:
        methods[f"lafin -{step}"] = _without(model, ABLATIONS[step])
    rows = [b for b in BINS if b in args.bins.split(",")]
    folders = {i: MaskFolder(args.masks, size=size, bins=[i]) for i in range(6)}
    rng = np.random.default_rng(args.seed)
    scores = {r: {m: {"psnr": [], "ssim": []} for m in methods} for r in rows}
    seconds = {m: 0.0 for m in methods}
    for path in tqdm(files, desc="faces"):
        image = np.asarray(Image.open(path).convert("RGB"))
        if image.shape[0] != size:
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        for row in rows:
            if row == "centre block":
                hole = center_block_mask(size)
            else:
                folder = folders[BINS.index(row)]
                hole = folder[int(rng.integers(len(folder)))]
            if not hole.any():
                continue
            for m, fn in methods.items():
                t = time.perf_counter()
                out = fn(image, hole)
                seconds[m] += time.perf_counter() - t
                out = np.where(hole[..., None] > 0, out, image)  # composite: known pixels kept
                scores[row][m]["psnr"].append(psnr(out, image))
                scores[row][m]["ssim"].append(ssim(out, image))

    print(f"\n{len(files)} CelebA test faces at {size} px; whole-image RGB PSNR (dB) / SSIM\n")
    print("| holes | " + " | ".join(methods) + " | lafin - ns | bar |")
    print("|---|" + "---|" * (len(methods) + 2))
    summary: dict = {}
    passed = True
    for row in rows:
        means = {m: (np.mean(v["psnr"]), np.mean(v["ssim"])) for m, v in scores[row].items()}
        dp, ds = means["lafin"][0] - means["ns"][0], means["lafin"][1] - means["ns"][1]
        bar = BAR.get(row)
        verdict = ""
        if bar:
            ok = dp >= bar[0] and (bar[1] is None or ds >= bar[1])
            passed &= ok
            verdict = f"+{bar[0]} dB" + (f", +{bar[1]}" if bar[1] else "") + (": met" if ok else ": not met")
        cells = [f"{p:.2f} / {s:.3f}" for p, s in means.values()]
        print(f"| {row} | " + " | ".join(cells) + f" | {dp:+.2f} dB / {ds:+.3f} | {verdict} |")
        summary[row] = {
            m: {"psnr": float(p), "ssim": float(s), "n": len(scores[row][m]["psnr"])}
            for m, (p, s) in means.items()
        }
    per_image = {
        m: 1000 * t / max(1, sum(len(scores[r][m]["psnr"]) for r in rows)) for m, t in seconds.items()
    }
    print("\nmean time per image (ms): " + ", ".join(f"{m} {v:.1f}" for m, v in per_image.items()))
    print(f"bar {'met' if passed else 'NOT met'} on the rows run")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "faces": len(files),
                    "size": size,
                    "seed": args.seed,
                    "results": summary,
                    "ms_per_image": per_image,
                    "bar_met": bool(passed),
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
