"""Make the README's and the model card's before/after pictures (no dataset images are needed for
the README's).

    python docs/make_figure.py [--weights W] [-o docs/images/example.png]
    python docs/make_figure.py --weights NEW --before OLD --pairs IMG:MASK IMG:MASK ... \\
        -o docs/images/lafin-examples.png

The first: the built-in example face at the model's output size. Panels: the face with the
hole | the predicted landmarks | lafin's result | the original. The second: one row per image
and mask given (e.g. the original LaFIn release's ``examples/``, images with their masks, white
= hole), crop mode. Panels: the input with the hole | ``--before``'s result | ``--weights``'
result | the original. A mask of another size than its image is resized to it (nearest).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from lafin.examples import example_face, example_mask
from lafin.io import load_image, load_mask
from lafin.landmarks import draw_landmarks
from lafin.pipeline import LaFInModel


def _row(panels: list[np.ndarray], scale: float) -> np.ndarray:
    panels = [
        cv2.resize(
            p, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA
        )
        for p in panels
    ]
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([x for p in panels for x in (p, gap)][:-1], axis=1)


def _masked(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    return np.where(hole[..., None] > 0, 255, image).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights")
    parser.add_argument("--before", help="weights whose results go beside --weights' (pairs)")
    parser.add_argument(
        "--pairs", nargs="+", metavar="IMAGE:MASK", help="images and their masks, one row each"
    )
    parser.add_argument("-o", "--output", default=str(Path(__file__).parent / "images" / "example.png"))
    parser.add_argument(
        "--scale", type=float, default=None, help="panel scale (default: 2 for the example, 1 for pairs)"
    )
    args = parser.parse_args(argv)

    model = LaFInModel(weights=args.weights)
    if args.pairs:
        before = LaFInModel(weights=args.before) if args.before else None
        rows = []
        for pair in args.pairs:
            image_path, mask_path = pair.split(":")
            image = load_image(image_path)
            # the original release's masks are 512 px for 256-px images: resized, as it does
            hole = load_mask(mask_path)
            if hole.shape != image.shape[:2]:
                hole = cv2.resize(hole, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
            panels = [_masked(image, hole)]
            if before is not None:
                panels.append(before.inpaint(image, hole, mode="crop"))
            panels += [model.inpaint(image, hole, mode="crop"), image]
            rows.append(_row(panels, args.scale or 1))
        gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
        figure = np.concatenate([x for r in rows for x in (r, gap)][:-1], axis=0)
    else:
        size = model.output_size
        face, hole = example_face(size), example_mask(size)
        result = model(face, hole, mode="crop")
        masked = _masked(face, hole)
        figure = _row(
            [masked, draw_landmarks(masked, result.landmarks), result.image, face],
            args.scale or max(1, 256 // size),
        )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(figure).save(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
