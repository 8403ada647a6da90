"""How wide the edge blend's band should be: whole-image PSNR/SSIM against OpenCV NS by hole bin.

The model's output without the blend (``LaFInModel.edge_blend = False``) is mixed with the
Navier-Stokes fill by :func:`lafin.blend.edge_blend` at each ``--widths`` value (0 = the generator
alone); the same faces and masks as ``inpainting_bar.py`` (CelebA ``test.txt``, NVIDIA masks,
seed 0). Printed: each width's gain over NS, PSNR dB / SSIM.

    python benchmarks/edge_blend.py --data ../shared/data/celeba \
        --masks ../shared/data/masks/irregular-256 --faces 60
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from inpainting_bar import BINS, psnr, ssim
from lafin.blend import edge_blend
from lafin.masks import MaskFolder, center_block_mask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--masks", required=True)
    parser.add_argument("--weights")
    parser.add_argument("--faces", type=int, default=60)
    parser.add_argument("--widths", default="0,1,2,3,4", help="band widths in model pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from lafin.pipeline import LaFInModel

    model = LaFInModel(weights=args.weights)
    model.edge_blend = False
    size = model.image_size
    widths = [float(w) for w in args.widths.split(",")]
    names = Path(args.data, "test.txt").read_text().split()[: args.faces]
    folders = {i: MaskFolder(args.masks, size=size, bins=[i]) for i in range(6)}
    rng = np.random.default_rng(args.seed)
    gains = {row: {w: [] for w in widths} for row in BINS}
    for name in tqdm(names, desc="faces"):
        image = np.asarray(Image.open(Path(args.data, "128", name)).convert("RGB"))
        if image.shape[0] != size:
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        for i, row in enumerate(BINS):
            hole = (center_block_mask(size) if row == "centre block"
                    else folders[i][int(rng.integers(len(folders[i])))])
            ns = cv2.inpaint(image, hole, 5, cv2.INPAINT_NS)
            generated = model.inpaint(image, hole, mode="crop").astype(np.float32)
            for w in widths:
                mixed = edge_blend(image, generated, hole, width=w)
                out = np.where(hole[..., None] > 0, np.clip(np.round(mixed), 0, 255), image)
                out = out.astype(np.uint8)
                gains[row][w].append((psnr(out, image) - psnr(ns, image),
                                      ssim(out, image) - ssim(ns, image)))
    print(f"\ngain over NS (PSNR dB / SSIM), {len(names)} faces, by band width (model px)\n")
    print("| holes | " + " | ".join(f"{w:g}" for w in widths) + " |")
    print("|---|" + "---|" * len(widths))
    for row in BINS:
        cells = [f"{np.mean([g[0] for g in gains[row][w]]):+.2f} / "
                 f"{np.mean([g[1] for g in gains[row][w]]):+.3f}" for w in widths]
        print(f"| {row} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
