"""How KID answers to controlled changes of real faces: which artefacts the realism benchmark sees.

Two disjoint seeded samples of aligned faces: a reference set and a test set. The test set is
scored against the reference as it is (the sampling floor), and after each change, applied to
the whole face: a Gaussian blur (``blur:SIGMA``), a 2-px checkerboard added on top of that blur
(``grid:SIGMA:AMPLITUDE``: grey noise of standard deviation AMPLITUDE, 0..255 levels, made at
half the side and enlarged by nearest-neighbour copies into 2x2 blocks, the pattern of a
decoder that enlarges its features so), or the same noise pixel by pixel on that blur
(``noise:SIGMA:AMPLITUDE``). If KID scores the blurred faces with a grid as more real than
the blurred ones, a generator's checkerboard passes for detail in the benchmark, and gridless
outputs must be judged by eye as well.

    python benchmarks/kid_sensitivity.py --images ../shared/data/celeba/128 \\
        --names ../shared/data/celeba/val.txt --faces 200 \\
        --changes blur:0.8 grid:0.8:4 noise:0.8:4
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from lafin.evaluation.inception import INSTALLED_INCEPTION, load_inception
from lafin.evaluation.realism import kid

log = logging.getLogger("kid_sensitivity")


def changed(images: np.ndarray, change: str, seed: int) -> np.ndarray:
    """``images`` (N, H, W, 3) uint8 after ``change`` (see the module docstring)."""
    kind, *values = change.split(":")
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        raise ValueError(f"{change!r}: the values after the kind must be numbers") from None
    expected = {"none": 0, "blur": 1, "grid": 2, "noise": 2}
    if kind not in expected or len(numbers) != expected[kind]:
        raise ValueError(f"{change!r}: expected none, blur:SIGMA, grid:SIGMA:AMP or noise:SIGMA:AMP")
    out = images.astype(np.float64)
    if kind == "none":
        return images
    sigma = numbers[0]
    if sigma > 0:
        out = np.stack([cv2.GaussianBlur(im, (0, 0), sigma) for im in out])
    if kind in ("grid", "noise"):
        amplitude = numbers[1]
        h, w = images.shape[1:3]
        rng = np.random.default_rng(seed)
        if kind == "grid":  # noise made at half the side and enlarged by copies: 2x2 blocks
            half = rng.normal(0.0, amplitude, (len(out), (h + 1) // 2, (w + 1) // 2, 1))
            pattern = half.repeat(2, axis=1).repeat(2, axis=2)[:, :h, :w]
        else:  # the same standard deviation, pixel by pixel: no 2-px structure
            pattern = rng.normal(0.0, amplitude, (len(out), h, w, 1))
        out = out + pattern
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="aligned face crops")
    parser.add_argument("--names", required=True, help="names to draw both samples from")
    parser.add_argument("--faces", type=int, default=200, help="faces in each sample")
    parser.add_argument("--changes", nargs="+", default=["blur:0.8", "grid:0.8:4", "noise:0.8:4"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fid-weights", default=INSTALLED_INCEPTION, help="Inception file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        names = [n.strip() for n in Path(args.names).read_text().splitlines() if n.strip()]
        if len(names) < 2 * args.faces:
            raise ValueError(f"{args.names} has {len(names)} names, fewer than 2 x --faces")
        order = np.random.default_rng(args.seed).permutation(len(names))
        picked = [names[i] for i in order[: 2 * args.faces]]
        faces = np.stack([np.asarray(Image.open(Path(args.images) / n).convert("RGB")) for n in picked])
        for change in args.changes:
            changed(faces[:1], change, args.seed)  # a bad change fails before any feature is made
        inception = load_inception(args.fid_weights)
    except (OSError, ValueError) as exc:
        print(f"kid_sensitivity: {exc}", file=sys.stderr)
        return 2
    reference, test = faces[: args.faces], faces[args.faces :]
    ref_features = inception(reference)
    print(
        f"{args.faces} test faces against {args.faces} reference faces of {args.images} "
        f"at {faces.shape[1]} px, seed {args.seed}; KID x10^3 (mean ± std over subsets)"
    )
    print("| test set | KID x10³ |\n|---|---:|")
    for change in ["none", *args.changes]:
        mean, std = kid(
            inception(changed(test, change, args.seed)), ref_features, subset_size=max(2, args.faces // 2)
        )
        print(f"| {change} | {mean * 1e3:.2f} ± {std * 1e3:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
