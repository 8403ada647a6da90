"""The edge colour match (``lafin.blend.match_edge_colour``) with its wide smoothing on a coarse
grid (``lafin.blend._smooth_masked_mean``, what the pipeline runs) against the same smoothing at
full size.

Faces: the built-in example at 256 px (the refiner's size) with generated holes (irregular and
blocks, seeded) and a fill carrying a colour cast and noise, as a network's fill can. Reported:
the mean and largest difference between the two results inside the hole (grey levels, 0-255),
the mean correction itself for scale, and the CPU time of one call (median of ``--repeats``).

    python benchmarks/edge_colour.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from refine_window import _cpu  # the median CPU time of a call after one warm-up

from lafin import blend
from lafin.examples import example_face
from lafin.masks import block_mask, irregular_mask


def _full_size(image: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    return blend.masked_mean(image, weight, sigma)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--holes", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    face = example_face(args.size).astype(np.float32)
    scale = args.size / 256
    cases = []
    for k in range(args.holes):
        hole = irregular_mask(args.size, rng, (0.1, 0.6)) if k % 2 else block_mask(args.size, rng, (0.1, 0.4))
        cast = rng.uniform(-30, 30, 3)
        filled = np.clip(face + rng.normal(0, 20, face.shape) + cast, 0, 255).astype(np.float32)
        cases.append((hole, filled))

    mean_diff, max_diff, correction = [], [], []
    for hole, filled in cases:
        coarse = blend.match_edge_colour(face, filled, hole, scale)
        with mock.patch.object(blend, "_smooth_masked_mean", _full_size):
            full = blend.match_edge_colour(face, filled, hole, scale)
        sel = hole > 0
        mean_diff.append(np.abs(coarse - full)[sel].mean())
        max_diff.append(np.abs(coarse - full).max())
        correction.append(np.abs(full - filled)[sel].mean())

    hole, filled = cases[0]
    coarse_ms = 1000 * _cpu(lambda: blend.match_edge_colour(face, filled, hole, scale), args.repeats)
    with mock.patch.object(blend, "_smooth_masked_mean", _full_size):
        full_ms = 1000 * _cpu(lambda: blend.match_edge_colour(face, filled, hole, scale), args.repeats)

    print(f"{args.holes} holes on the example face at {args.size} px")
    print(
        f"coarse grid against full size, inside the hole: mean {np.mean(mean_diff):.3f}, "
        f"largest {np.max(max_diff):.2f} grey levels (the correction itself: mean {np.mean(correction):.2f})"
    )
    print(
        f"CPU time a call (median of {args.repeats}): coarse grid {coarse_ms:.1f} ms, "
        f"full size {full_ms:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
