"""Training throughput of each stage (images/s) and where a step's time goes.

Runs real training steps of the chosen preset on a face cache (or on synthetic faces when none is
given) and times: drawing a batch (faces, flips, holes), the generator's forward pass, forward +
backward with the reconstruction losses only, and full steps of each stage (with the
discriminator, adversarial and feature-matching terms for the inpainting stages).

    python benchmarks/training_speed.py --preset compact --batch 8 --steps 20 [--data CACHE] \
        [--channels-last]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _synthetic_cache(path: Path, size: int, n: int = 64) -> Path:
    from lafin.alignment import canonical_landmarks
    from lafin.data.cache import write_cache

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    base = canonical_landmarks(size)
    landmarks = np.stack([base + rng.normal(0, 1, base.shape) for _ in range(n)]).astype(np.float32)
    write_cache(path, images, landmarks)
    return path


def _time(fn, steps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="compact")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--data", help="a face cache (default: synthetic faces)")
    parser.add_argument(
        "--channels-last", action="store_true", help="train NHWC (the config's channels_last: true)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from lafin import losses
    from lafin.config import get_preset
    from lafin.landmarks import landmark_map
    from lafin.training.config import TrainConfig
    from lafin.training.train import Trainer

    size = get_preset(args.preset).image_size
    tmp = Path(tempfile.mkdtemp())
    data = args.data or str(_synthetic_cache(tmp / "faces", size))
    rows = []

    def trainer(stage: str) -> Trainer:
        config = TrainConfig.from_dict(
            {
                "stage": stage,
                "model": args.preset,
                "batch_size": args.batch,
                "data": {"train": [data], "geometry": stage == "landmarks"},
                "warmup_adversarial_steps": 0,
                "sample_every": 0,
                "val_every": 0,
                "checkpoint_every": 10**9,
                "threads": args.threads,
                "channels_last": args.channels_last,
            }
        )
        return Trainer(config, tmp / stage)

    t = trainer("inpaint")
    batch = t.next_batch()
    gen = t.nets["generator"]
    lmap = landmark_map(batch.landmarks, size).contiguous(memory_format=t.memory_format)
    rows.append(("draw a batch (faces, flips, holes)", _time(t.next_batch, args.steps)))

    def forward() -> None:
        with torch.no_grad():
            gen(batch.masked, lmap, batch.masks)

    rows.append(("generator forward (no grad)", _time(forward, args.steps)))

    def l1_step() -> None:
        out = gen(batch.masked, lmap, batch.masks)
        loss = losses.masked_l1(out, batch.images, batch.masks)
        t.optims["generator"].zero_grad()
        loss.backward()
        t.optims["generator"].step()

    rows.append(("generator forward + backward + Adam, L1 only", _time(l1_step, args.steps)))
    rows.append(
        (
            "inpaint stage, full step (G + D, all losses, EMA)",
            _time(lambda: t.inpaint_step(t.next_batch()), args.steps),
        )
    )
    lt = trainer("landmarks")
    rows.append(
        (
            "landmarks stage, full step (with geometry augmentation)",
            _time(lambda: lt.landmark_step(lt.next_batch()), args.steps),
        )
    )

    layout = "NHWC (channels_last)" if args.channels_last else "NCHW"
    print(
        f"\n{args.preset} preset, {size} px, batch {args.batch}, {layout}, torch threads "
        f"{torch.get_num_threads()}, median of {args.steps} steps\n"
    )
    print("| what | ms per batch | images/s |")
    print("|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {1000 * seconds:.1f} | {args.batch / seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
