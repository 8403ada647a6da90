"""Make the README's before/after picture from the built-in example (no dataset images).

    python docs/make_figure.py [--weights W] [-o docs/images/example.png]

Panels: the face with the hole | the predicted landmarks | lafin's result | the original.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from lafin.examples import example_face, example_mask
from lafin.landmarks import draw_landmarks
from lafin.pipeline import LaFInModel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights")
    parser.add_argument("-o", "--output", default=str(Path(__file__).parent / "images" / "example.png"))
    parser.add_argument("--scale", type=int, default=2, help="enlarge panels for display")
    args = parser.parse_args(argv)

    model = LaFInModel(weights=args.weights)
    face, hole = example_face(), example_mask()
    result = model(face, hole, mode="crop")
    masked = np.where(hole[..., None] > 0, 255, face).astype(np.uint8)
    panels = [masked, draw_landmarks(masked, result.landmarks), result.image, face]
    s = args.scale
    panels = [cv2.resize(p, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST) for p in panels]
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    row = np.concatenate([x for p in panels for x in (p, gap)][:-1], axis=1)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
