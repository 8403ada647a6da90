"""Video speed and stability: ``lafin.video.inpaint_video`` on a synthetic 640x480 clip.

The clip: one iBUG 300-W face crop (feathered elliptical edge) moving over a smooth backdrop along
a slow figure-eight and growing and shrinking by 20%; a hole over its mouth (the landmarks'
mouth box grown by 25%) follows it in a mask video. Both are written losslessly to a temporary
folder (nothing is kept).

Reported per setting (``--settings``, ``batch:key_interval``; ``1:1`` runs the detectors on every
frame, one frame at a time):

* ``frames/s``: frames over the wall-clock time of the whole call (decoding, encoding and the
  audio check included; the model loaded and warmed up before);
* ``CPU ms a frame``: CPU time (user + system) of this process per frame, and that of the
  ffmpeg processes that decode and encode (they run beside it, on the other core); on a busy
  machine the wall clock mostly measures the other load, the CPU time much less so;
* ``key frames``: frames on which the face detectors ran;
* ``NME``: the reported landmarks against the pasted face's human landmarks (outer-eye
  distance), mean over frames;
* ``jitter``: how much the landmarks' error moves from one frame to the next, mean over points
  and frame pairs, in % of the outer-eye distance (0 = the landmarks follow the face exactly).

    python benchmarks/video.py --faces ../shared/data/ibug300w/afw [--frames 75]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from lafin.landmarks import read_pts


def _backdrop(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    coarse = rng.uniform(60, 200, (3, 4, 3)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return (img + rng.normal(0, 3, img.shape)).clip(0, 255).astype(np.uint8)


def make_clip(face: np.ndarray, points: np.ndarray, n: int, size=(640, 480)
              ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(frames, holes, true landmarks) of the moving face."""
    w, h = size
    backdrop = _backdrop(h, w)
    frames, holes, truths = [], [], []
    for i in range(n):
        t = 2 * np.pi * i / 100  # a figure-eight every 4 s at 25 frames/s
        side = int(round(220 * (1 + 0.1 * np.sin(t))))  # 198-242 px
        cx, cy = w / 2 + 90 * np.sin(t), h / 2 + 40 * np.sin(2 * t)
        scale = side / face.shape[0]
        matrix = np.array([[scale, 0, cx - side / 2], [0, scale, cy - side / 2]])
        warped = cv2.warpAffine(face, matrix, (w, h), flags=cv2.INTER_LINEAR)
        yy, xx = np.mgrid[0:face.shape[0], 0:face.shape[1]] / face.shape[0] - 0.5
        alpha = np.clip((0.5 - np.sqrt(xx ** 2 + yy ** 2)) / 0.08, 0, 1).astype(np.float32)
        alpha = cv2.warpAffine(alpha, matrix, (w, h), flags=cv2.INTER_LINEAR)[..., None]
        frames.append((alpha * warped + (1 - alpha) * backdrop).round().astype(np.uint8))
        truth = points @ matrix[:, :2].T + matrix[:, 2]
        truths.append(truth)
        mouth = truth[48:68]
        (x0, y0), (x1, y1) = mouth.min(axis=0), mouth.max(axis=0)
        mx, my = 0.25 * (x1 - x0) + 4, 0.25 * (y1 - y0) + 4
        hole = np.zeros((h, w), np.uint8)
        hole[int(y0 - my):int(y1 + my), int(x0 - mx):int(x1 + mx)] = 1
        holes.append(hole)
    return frames, holes, truths


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) used so far by this process and by its finished children
    (ffmpeg's readers and writers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _write(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> None:
    import imageio_ffmpeg as ff

    h, w = frames[0].shape[:2]
    writer = ff.write_frames(str(path), (w, h), fps=fps, codec="libx264rgb", pix_fmt_out="rgb24",
                             output_params=["-qp", "0"], macro_block_size=1, quality=None)
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", required=True, type=Path, help="folder of <name>.jpg + .pts")
    parser.add_argument("--face", default="1051618982_1", help="the face crop to move")
    parser.add_argument("--frames", type=int, default=75)
    parser.add_argument("--settings", nargs="+", default=["8:30", "1:1"],
                        help="batch:key_interval pairs to time")
    parser.add_argument("--weights", help="lafin weights (default: the shipped ones)")
    parser.add_argument("--no-landmark-flip", action="store_true",
                        help="predict landmarks on the crop only, not also on its mirror image")
    parser.add_argument("--no-generator-flip", action="store_true",
                        help="generate on the crop only, not also on its mirror image")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--json", help="write the numbers here too")
    args = parser.parse_args(argv)

    from lafin.pipeline import LaFInModel
    from lafin.video import inpaint_video

    face = cv2.cvtColor(cv2.imread(str(args.faces / f"{args.face}.jpg")), cv2.COLOR_BGR2RGB)
    points = read_pts(args.faces / f"{args.face}.pts") - 1.0  # .pts is 1-based
    frames, holes, truths = make_clip(face, points, args.frames)
    model = LaFInModel(weights=args.weights, backend=args.backend).with_options(
        landmark_flip_average=not args.no_landmark_flip,
        generator_flip_average=not args.no_generator_flip)
    model(frames[0], holes[0], mode="photo")  # warm-up: models loaded, first calls done
    load = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip, mask = Path(tmp) / "clip.mp4", Path(tmp) / "mask.mp4"
        _write(clip, frames)
        _write(mask, [np.repeat(hm[..., None] * 255, 3, axis=2) for hm in holes])
        for setting in args.settings:
            batch, key = (int(v) for v in setting.split(":"))
            t, cpu = time.perf_counter(), _cpu_seconds()
            report = inpaint_video(model, clip, mask, Path(tmp) / f"out-{batch}-{key}.mp4",
                                   lossless=True, progress=False, batch=batch, key_interval=key)
            seconds = time.perf_counter() - t
            own, ffmpeg = (now - then for now, then in zip(_cpu_seconds(), cpu))
            found = [lm[0] if lm else None for lm in report.landmarks]
            eyes = [np.linalg.norm(tr[36] - tr[45]) for tr in truths]
            errors = [None if f is None else (f - tr) / e for f, tr, e in zip(found, truths, eyes)]
            nme = [float(np.linalg.norm(e, axis=1).mean()) for e in errors if e is not None]
            jitter = [float(np.linalg.norm(b - a, axis=1).mean())
                      for a, b in zip(errors, errors[1:]) if a is not None and b is not None]
            results[setting] = {
                "frames": report.frames, "seconds": round(seconds, 2),
                "frames_per_s": round(report.frames / seconds, 2),
                "cpu_ms_per_frame": round(1000 * own / report.frames, 1),
                "ffmpeg_cpu_ms_per_frame": round(1000 * ffmpeg / report.frames, 1),
                "key_frames": report.key_frames,
                "frames_with_a_face": sum(1 for n in report.faces_per_frame if n),
                "nme_percent": round(100 * float(np.mean(nme)), 2) if nme else None,
                "jitter_percent": round(100 * float(np.mean(jitter)), 2) if jitter else None,
            }
            r = results[setting]
            print(f"batch {batch}, key frames every {key}: {r['frames']} frames in {r['seconds']} s "
                  f"= {r['frames_per_s']} frames/s (CPU {r['cpu_ms_per_frame']} ms a frame, ffmpeg's "
                  f"{r['ffmpeg_cpu_ms_per_frame']} ms); detectors on {r['key_frames']} frames; face in "
                  f"{r['frames_with_a_face']}; NME {r['nme_percent']}%, jitter {r['jitter_percent']}%")
    print(f"machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"load average before the runs {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"load": load, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
