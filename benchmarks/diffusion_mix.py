"""How much of OpenCV's Navier-Stokes fill to mix into the generated hole
(``lafin.blend.DIFFUSION_MIX``, the ``diffusion_mix`` option of weights without a refiner).

The model's output without the mix (``InferenceOptions(diffusion_mix=0)``) is mixed with the
fill at every ``--mixes`` share (:func:`lafin.blend.diffusion_mix`). Printed: the gain of each
share over NS by hole bin, PSNR dB / SSIM, whole image, known pixels kept.

By default the choice is made where it may be made, on held-out *validation* data: faces from
CelebA ``val.txt`` (a fixed random 150) with lafin's own hole shapes (brush strokes and ragged
blobs alternating, drawn to each bin's hole ratio; the centre block). ``--split test`` runs the
bar's faces and NVIDIA masks instead (``inpainting_bar.py``'s, seed 0), for reporting only.

    python benchmarks/diffusion_mix.py --data ../shared/data/celeba \\
        [--split test --masks ../shared/data/masks/irregular-256]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from inpainting_bar import BINS
from lafin.evaluation.metrics import psnr, ssim
from lafin.blend import diffusion_mix
from lafin.masks import MaskFolder, blob_mask, center_block_mask, irregular_mask


def _holes(split: str, masks: str | None, size: int, seed: int):
    """A function (face index, bin index) -> hole mask, for the split's protocol."""
    rng = np.random.default_rng(seed)
    if split == "test":
        folders = {i: MaskFolder(masks, size=size, bins=[i]) for i in range(6)}
        return lambda k, i: folders[i][int(rng.integers(len(folders[i])))]

    def own(k: int, i: int) -> np.ndarray:
        draw = irregular_mask if k % 2 else blob_mask
        return draw(size, rng, hole_ratio=(0.1 * i + 0.01, 0.1 * i + 0.1))

    return own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CelebA folder with 128/, val.txt, test.txt")
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument("--masks", help="NVIDIA irregular masks folder (--split test)")
    parser.add_argument("--weights")
    parser.add_argument("--faces", type=int, default=150)
    parser.add_argument("--mixes", default="0,0.1,0.15,0.2,0.3", help="shares of the fill")
    parser.add_argument(
        "--seed", type=int, default=None, help="default: 1 for val (face choice and holes), 0 for test"
    )
    args = parser.parse_args(argv)
    if args.split == "test" and not args.masks:
        parser.error("--split test needs --masks")

    from lafin.options import InferenceOptions
    from lafin.pipeline import LaFInModel

    model = LaFInModel(weights=args.weights, options=InferenceOptions(diffusion_mix=0.0))
    size = model.image_size
    mixes = [float(m) for m in args.mixes.split(",")]
    names = Path(args.data, f"{args.split}.txt").read_text().split()
    seed = args.seed if args.seed is not None else (1 if args.split == "val" else 0)
    if args.split == "val":  # val.txt is ordered like the files (by head pose): sample it
        order = np.random.default_rng(seed).permutation(len(names))
        names = [names[i] for i in order]
    names = names[: args.faces]
    hole_for = _holes(args.split, args.masks, size, seed)
    gains = {row: {m: [] for m in mixes} for row in BINS}
    for k, name in enumerate(tqdm(names, desc="faces")):
        image = np.asarray(Image.open(Path(args.data, "128", name)).convert("RGB"))
        if image.shape[0] != size:
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        for i, row in enumerate(BINS):
            hole = center_block_mask(size) if row == "centre block" else hole_for(k, i)
            masked = np.where(hole[..., None] > 0, 255, image).astype(np.uint8)
            ns = cv2.inpaint(masked, hole, 5, cv2.INPAINT_NS)
            p_ns, s_ns = psnr(ns, image), ssim(ns, image)
            generated = model.inpaint(masked, hole, mode="crop").astype(np.float32)
            for m in mixes:
                mixed = diffusion_mix(masked, generated, hole, m)
                out = np.where(hole[..., None] > 0, np.clip(np.round(mixed), 0, 255), image)
                out = out.astype(np.uint8)
                # a perfect fill of a tiny hole would give +inf: cap both sides at 60 dB
                gains[row][m].append((min(psnr(out, image), 60) - min(p_ns, 60), ssim(out, image) - s_ns))
    print(f"\ngain over NS (PSNR dB / SSIM), {len(names)} {args.split} faces, by diffusion mix\n")
    print("| mix | " + " | ".join(BINS) + " |")
    print("|---|" + "---|" * len(BINS))
    for m in mixes:
        cells = [
            f"{np.mean([g[0] for g in gains[row][m]]):+.2f} / {np.mean([g[1] for g in gains[row][m]]):+.3f}"
            for row in BINS
        ]
        print(f"| {m:g} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
