"""The refiner on a window around each face's hole against the whole crop
(``lafin.generator_runner.REFINE_MARGIN``).

The faces: the refiner's inputs of ``benchmarks/video.py``'s clip (one AFW face moving, its mouth
hidden), captured from :func:`lafin.video.inpaint_video` with the shipped weights. For each
margin: the largest and the mean difference from the whole crop's result inside the hole (grey
levels, 0-255), the window's share of the crop, and the refiner's CPU time a face (the median of
``--repeats``), beside the whole crops in batches as the video passes them and one at a time.

    python benchmarks/refine_window.py --faces /work/shared/data/ibug300w/afw
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from video import make_clip

from lafin.landmarks import read_pts


def _cpu(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.process_time()
        run()
        times.append(time.process_time() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", required=True, type=Path, help="folder of <name>.jpg + .pts")
    parser.add_argument("--face", default="1051618982_1")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--margins", type=int, nargs="+", default=[32, 40, 48, 56])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from lafin import generator_runner
    from lafin.pipeline import LaFInModel
    from lafin.video import inpaint_video, write_video

    face = cv2.cvtColor(cv2.imread(str(args.faces / f"{args.face}.jpg")), cv2.COLOR_BGR2RGB)
    points = read_pts(args.faces / f"{args.face}.pts") - 1.0
    frames, holes, _, _ = make_clip(face, points, args.frames)
    model = LaFInModel()
    captured = []
    runner = model.generation
    refine = runner.refine
    runner.refine = lambda *a, **k: captured.append((a, k)) or refine(*a, **k)
    with tempfile.TemporaryDirectory() as tmp:
        write_video(Path(tmp) / "clip.mp4", frames)
        write_video(Path(tmp) / "mask.mp4", [np.repeat(h[..., None] * 255, 3, axis=2) for h in holes])
        inpaint_video(
            model, Path(tmp) / "clip.mp4", Path(tmp) / "mask.mp4", Path(tmp) / "out.mp4", progress=False
        )
    runner.refine = refine
    faces = sum(a[1].shape[0] for a, _ in captured)
    inside = [a[1][:, 0].numpy() > 0 for a, _ in captured]

    def run_all():
        return [refine(*a, **k) for a, k in captured]

    torch.set_num_threads(1)
    generator_runner.REFINE_MARGIN = 10_000  # every window the whole crop: one face at a time
    whole = run_all()
    one_at_a_time = _cpu(run_all, args.repeats) / faces
    refiner = runner.refiner
    # not a torch module to refine: the whole crops of a batch in one call (as before windows)
    runner.refiner = lambda *inputs: refiner(
        *[t.contiguous(memory_format=torch.channels_last) for t in inputs]
    )
    batched = _cpu(run_all, args.repeats) / faces
    runner.refiner = refiner
    print(
        f"{faces} faces ({len(captured)} batches); refiner CPU a face: whole crops batched "
        f"{1000 * batched:.1f} ms, whole crops one at a time {1000 * one_at_a_time:.1f} ms"
    )
    for margin in args.margins:
        generator_runner.REFINE_MARGIN = margin
        out = run_all()
        diff = np.concatenate([np.abs(o - w)[m].ravel() * 255 for o, w, m in zip(out, whole, inside)])
        area = np.mean(
            [
                (b - t) * (r - l) / (a[1].shape[-1] * a[1].shape[-2])
                for a, _ in captured
                for t, b, l, r in generator_runner.hole_windows(a[1], margin)
            ]
        )
        seconds = _cpu(run_all, args.repeats) / faces
        print(
            f"margin {margin}: inside the hole max {diff.max():.3f}, mean {diff.mean():.4f} grey "
            f"levels from the whole crop; window {100 * area:.0f}% of the crop; "
            f"{1000 * seconds:.1f} ms a face"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
