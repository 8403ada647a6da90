"""Make the README's old-photo picture: a held-out face turned old with *synthetic* damage.

    python docs/make_restore_figure.py /path/to/celeba256/12408.jpg [-o docs/images/restore.png]

(docs/images/restore.png: CelebA test face 12408.jpg, line 1000 of the test split, seed 3.)

No real scanned old photos were available: the face (from a test split, never trained on) is
given a sepia look and damage drawn with the benchmark's held-out settings (lafin.damage.HELD_OUT,
a fixed seed). Panels: the synthetic old photo | the damage lafin detects (red) | ``lafin
restore``'s result | the photo before the damage was drawn.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from lafin.damage import HELD_OUT, make_damaged
from lafin.pipeline import LaFInModel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", help="a held-out face photo")
    parser.add_argument("-o", "--output", default=str(Path(__file__).parent / "images" / "restore.png"))
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--scale", type=int, default=2, help="enlarge panels for display")
    args = parser.parse_args(argv)

    img = np.asarray(Image.open(args.image).convert("RGB"))
    sepia = replace(HELD_OUT, grey_share=0.0, sepia_share=1.0, jpeg_quality=(90, 95))
    sample = make_damaged(img, np.random.default_rng(args.seed), sepia)
    result = LaFInModel().restore(sample.damaged)
    shown = sample.damaged.copy()
    shown[result.damage > 0] = (230, 30, 30)
    panels = [sample.damaged, shown, result.image, sample.clean]
    s = args.scale
    row = np.concatenate(
        [cv2.resize(p, (p.shape[1] * s, p.shape[0] * s), interpolation=cv2.INTER_NEAREST) for p in panels],
        axis=1,
    )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(args.output, optimize=True)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
