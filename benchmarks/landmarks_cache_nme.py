"""Landmark agreement with a training cache's own labels (e.g. dlib's on CelebA ``val.txt``).

Not a test of accuracy (the labels are a detector's, not a human's) but of agreement with the
labels the generator was trained on: a predictor that drifts from them feeds the generator
landmarks of another convention. NME over the outer-eye distance, unoccluded and under one
NVIDIA irregular 30-40% mask per face (seed 0), for each weights file given.

    python benchmarks/landmarks_cache_nme.py --cache ../cache/celeba128-val \
        --masks ../shared/data/masks/irregular-256 --faces 300 \
        --weights src/lafin/weights/lafin-compact.safetensors runs/candidate.safetensors
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from lafin.checkpoint import build_from_weights, load_any
from lafin.data.cache import load_cache
from lafin.landmarks import nme
from lafin.masks import MaskFolder
from lafin.pipeline import LaFInModel, default_weights_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", required=True, help="a face cache written by 'lafin prepare'")
    parser.add_argument("--masks", required=True, help="NVIDIA irregular masks folder")
    parser.add_argument("--weights", nargs="+", help="weights files (default: the shipped one)")
    parser.add_argument("--faces", type=int, default=300, help="first N faces of the cache")
    args = parser.parse_args(argv)

    cache = load_cache(args.cache)
    holes = MaskFolder(args.masks, size=cache.size, bins=[3])  # 30-40%
    n = min(args.faces, len(cache))
    print(f"| weights | NME unoccluded | NME irregular 30-40% |  ({n} faces of {args.cache})")
    print("|---|---|---|")
    for path in args.weights or [str(default_weights_path())]:
        loaded = load_any(path)
        _, predictor = build_from_weights(loaded)
        model = LaFInModel.from_networks(loaded.config, None, predictor)
        rng = np.random.default_rng(0)
        plain, masked = [], []
        for i in range(n):
            image, truth = np.asarray(cache.images[i]), cache.landmarks[i]
            hole = holes[int(rng.integers(len(holes)))]
            plain.append(nme(model.predict_landmarks(image), truth))
            masked.append(nme(model.predict_landmarks(image, hole), truth))
        print(f"| {path} | {100 * np.mean(plain):.2f}% | {100 * np.mean(masked):.2f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
