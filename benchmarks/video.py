"""Video speed and stability: ``lafin inpaint-video`` on a synthetic 640x480 clip with one face.

The clip: one iBUG 300-W face crop (feathered elliptical edge) moving over a smooth backdrop along
a slow figure-eight and growing and shrinking by 10%; a hole over its mouth (the landmarks'
mouth box grown by 25%) follows it in a mask video. Both are written losslessly to a temporary
folder (nothing is kept); the face data is only read from the folder given.

The call is :func:`lafin.video.inpaint_video` with the CLI's defaults (batch 8, key frames every
30, smoothing 0.5, H.264 at crf 17; ``--lossless`` for the lossless output) and the shipped
weights (``LaFInModel()``), loaded and warmed up before the clock starts. Reported per setting
(``--settings``, ``batch:key_interval``; ``1:1`` runs the detectors on every frame, one frame
at a time), the median of ``--repeats`` runs:

* ``frames/s``: frames over the wall-clock time of the whole call (decoding, encoding and the
  audio check included);
* ``CPU ms a frame``: CPU time (user + system) of this process per frame, and that of the
  ffmpeg processes that decode and encode (they run beside it); on a busy machine the wall
  clock mostly measures the other load, the CPU time much less so;
* per stage, ms a frame, wall clock and CPU time of the thread that ran it: ``decode`` (reading
  frames from ffmpeg), ``mask``, ``detect/track`` (the tracker; the detectors on key frames),
  ``fill`` (OpenCV's fill, when no single face holds the hole), ``landmarks`` (predictor and
  smoothing), ``generate``, ``refine``, ``blend`` (warping back and pasting) and ``encode``
  (handing frames to ffmpeg). The networks of one batch run in a second thread while the first
  prepares the next, so the stages add up to more than the call's wall-clock time;
* ``key frames``: frames on which the face detectors ran;
* ``NME``: the reported landmarks against the pasted face's human landmarks (outer-eye
  distance), mean over frames; ``jitter``: how much the landmarks' error moves from one frame to
  the next, mean over points and frame pairs, in % of the outer-eye distance (0 = the landmarks
  follow the face exactly);
* ``hole flicker``: the output frames mapped back onto the face image (the clip's own, exact
  motion undone), the mean absolute change from one frame to the next inside the hole (grey
  levels, 0-255; the hole of both frames, 2 px in from its edge). For reference the same for
  the true frames (what moving and resampling alone change) and for the output's known pixels
  in a ring around the hole (the same plus the codec). A face that is generated anew, unlike
  its previous frame, each time flickers by far more than these.

Done-when check of issue 27 (>= 8 frames/s on the 2-core machine), one command::

    python benchmarks/video.py --faces /work/shared/data/ibug300w/afw

Options: ``--frames 75 --repeats 3 --settings 8:30 1:1 --lossless --smoothing 0.5
--no-landmark-flip --backend onnx --json out.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from lafin.landmarks import read_pts
from lafin.video import write_video


def _backdrop(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    coarse = rng.uniform(60, 200, (3, 4, 3)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return (img + rng.normal(0, 3, img.shape)).clip(0, 255).astype(np.uint8)


def make_clip(
    face: np.ndarray, points: np.ndarray, n: int, size=(640, 480)
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(frames, holes, true landmarks, face -> frame matrices) of the moving face."""
    w, h = size
    backdrop = _backdrop(h, w)
    yy, xx = np.mgrid[0 : face.shape[0], 0 : face.shape[1]] / face.shape[0] - 0.5
    feather = np.clip((0.5 - np.sqrt(xx**2 + yy**2)) / 0.08, 0, 1).astype(np.float32)
    frames, holes, truths, matrices = [], [], [], []
    for i in range(n):
        t = 2 * np.pi * i / 100  # a figure-eight every 4 s at 25 frames/s
        side = int(round(220 * (1 + 0.1 * np.sin(t))))  # 198-242 px
        cx, cy = w / 2 + 90 * np.sin(t), h / 2 + 40 * np.sin(2 * t)
        scale = side / face.shape[0]
        matrix = np.array([[scale, 0, cx - side / 2], [0, scale, cy - side / 2]])
        warped = cv2.warpAffine(face, matrix, (w, h), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(feather, matrix, (w, h), flags=cv2.INTER_LINEAR)[..., None]
        frames.append((alpha * warped + (1 - alpha) * backdrop).round().astype(np.uint8))
        truth = points @ matrix[:, :2].T + matrix[:, 2]
        truths.append(truth)
        matrices.append(matrix)
        mouth = truth[48:68]
        (x0, y0), (x1, y1) = mouth.min(axis=0), mouth.max(axis=0)
        mx, my = 0.25 * (x1 - x0) + 4, 0.25 * (y1 - y0) + 4
        hole = np.zeros((h, w), np.uint8)
        hole[int(y0 - my) : int(y1 + my), int(x0 - mx) : int(x1 + mx)] = 1
        holes.append(hole)
    return frames, holes, truths, matrices


def hole_flicker(
    frames: list[np.ndarray],
    holes: list[np.ndarray],
    matrices: list[np.ndarray],
    face_shape: tuple[int, int],
    ring: bool = False,
) -> float:
    """Mean absolute change (grey levels) between consecutive ``frames`` mapped back onto the
    face image by the inverse of each frame's face -> frame matrix, inside both frames' hole
    (2 px in from its edge), or with ``ring`` in a band of known pixels 3-10 px outside it."""
    fh, fw = face_shape
    kernel = np.ones((5, 5), np.uint8)
    changes, previous = [], None
    for frame, hole, matrix in zip(frames, holes, matrices):
        inverse = cv2.invertAffineTransform(matrix)
        face = cv2.warpAffine(frame, inverse, (fw, fh), flags=cv2.INTER_LINEAR).astype(np.float32)
        region = cv2.warpAffine(hole, inverse, (fw, fh), flags=cv2.INTER_NEAREST)
        if ring:
            outer = cv2.dilate(region, np.ones((21, 21), np.uint8))
            region = outer & (1 - cv2.dilate(region, np.ones((7, 7), np.uint8)))
        else:
            region = cv2.erode(region, kernel)
        if previous is not None:
            both = (region > 0) & (previous[1] > 0)
            if both.any():
                changes.append(float(np.abs(face - previous[0])[both].mean()))
        previous = (face, region)
    return float(np.mean(changes)) if changes else float("nan")


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) used so far by this process and by its finished children
    (ffmpeg's readers and writers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _read(path: Path) -> list[np.ndarray]:
    import imageio_ffmpeg as ff

    reader = ff.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(raw, np.uint8).reshape(h, w, 3) for raw in reader]


def _per_frame(runs: list, key: str, n: int) -> dict[str, float]:
    """Each stage's median (over ``runs``) ms a frame of the report's ``key`` times."""
    return {
        s: round(1000 * statistics.median(getattr(r[4], key, {}).get(s, 0.0) for r in runs) / n, 1)
        for s in STAGES
    }


STAGES = ("decode", "mask", "detect/track", "fill", "landmarks", "generate", "refine", "blend", "encode")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", required=True, type=Path, help="folder of <name>.jpg + .pts")
    parser.add_argument("--face", default="1051618982_1", help="the face crop to move")
    parser.add_argument("--frames", type=int, default=75)
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting (median)")
    parser.add_argument(
        "--settings",
        nargs="+",
        default=["8:30"],
        help="batch:key_interval pairs to time (default: the CLI's, 8:30)",
    )
    parser.add_argument("--lossless", action="store_true", help="lossless output (CLI --lossless)")
    parser.add_argument(
        "--smoothing",
        type=float,
        default=0.5,
        help="landmark smoothing, the weight of each new frame (CLI --smoothing)",
    )
    parser.add_argument("--weights", help="lafin weights (default: the shipped ones)")
    parser.add_argument(
        "--no-landmark-flip",
        action="store_true",
        help="predict landmarks on the crop only, not also on its mirror image (the CLI's --fast)",
    )
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--json", help="write the numbers here too")
    args = parser.parse_args(argv)
    if args.frames < 2 or args.repeats < 1:
        parser.error("--frames must be at least 2 and --repeats at least 1")

    from lafin.pipeline import LaFInModel
    from lafin.video import inpaint_video

    face = cv2.cvtColor(cv2.imread(str(args.faces / f"{args.face}.jpg")), cv2.COLOR_BGR2RGB)
    points = read_pts(args.faces / f"{args.face}.pts") - 1.0  # .pts is 1-based
    frames, holes, truths, matrices = make_clip(face, points, args.frames)
    model = LaFInModel(weights=args.weights, backend=args.backend)
    if args.no_landmark_flip:
        model = model.with_options(landmark_flip_average=False)
    model(frames[0], holes[0], mode="photo")  # warm-up: models loaded, first calls done
    load = os.getloadavg()
    truth_flicker = hole_flicker(frames, holes, matrices, face.shape[:2])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip, mask = Path(tmp) / "clip.mp4", Path(tmp) / "mask.mp4"
        write_video(clip, frames)
        write_video(mask, [np.repeat(hm[..., None] * 255, 3, axis=2) for hm in holes])
        for setting in args.settings:
            batch, key = (int(v) for v in setting.split(":"))
            runs = []
            for _ in range(args.repeats):
                out = Path(tmp) / f"out-{batch}-{key}.mp4"
                t, cpu = time.perf_counter(), _cpu_seconds()
                report = inpaint_video(
                    model,
                    clip,
                    mask,
                    out,
                    lossless=args.lossless,
                    progress=False,
                    batch=batch,
                    key_interval=key,
                    smoothing=args.smoothing,
                )
                seconds = time.perf_counter() - t
                own, ffmpeg = (now - then for now, then in zip(_cpu_seconds(), cpu))
                runs.append((report.frames / seconds, seconds, own, ffmpeg, report))
            n = report.frames
            found = [lm[0] if lm else None for lm in report.landmarks]
            eyes = [np.linalg.norm(tr[36] - tr[45]) for tr in truths]
            errors = [None if f is None else (f - tr) / e for f, tr, e in zip(found, truths, eyes)]
            nme = [float(np.linalg.norm(e, axis=1).mean()) for e in errors if e is not None]
            jitter = [
                float(np.linalg.norm(b - a, axis=1).mean())
                for a, b in itertools.pairwise(errors)
                if a is not None and b is not None
            ]
            written = _read(out)
            med = statistics.median

            results[setting] = {
                "frames": n,
                "repeats": len(runs),
                "frames_per_s": round(med(r[0] for r in runs), 2),
                "frames_per_s_runs": [round(r[0], 2) for r in runs],
                "seconds": round(med(r[1] for r in runs), 2),
                "cpu_ms_per_frame": round(1000 * med(r[2] for r in runs) / n, 1),
                "ffmpeg_cpu_ms_per_frame": round(1000 * med(r[3] for r in runs) / n, 1),
                "stage_ms_per_frame": _per_frame(runs, "stage_seconds", n),
                "stage_cpu_ms_per_frame": _per_frame(runs, "stage_cpu_seconds", n),
                "key_frames": report.key_frames,
                "opencv_fills": getattr(report, "opencv_fills", None),
                "frames_with_a_face": sum(1 for k in report.faces_per_frame if k),
                "nme_percent": round(100 * float(np.mean(nme)), 2) if nme else None,
                "jitter_percent": round(100 * float(np.mean(jitter)), 2) if jitter else None,
                "hole_flicker": round(hole_flicker(written, holes, matrices, face.shape[:2]), 2),
                "true_hole_flicker": round(truth_flicker, 2),
                "known_ring_flicker": round(
                    hole_flicker(written, holes, matrices, face.shape[:2], ring=True), 2
                ),
            }
            r = results[setting]
            print(
                f"batch {batch}, key frames every {key}: {r['frames']} frames, median of "
                f"{r['repeats']}: {r['frames_per_s']} frames/s (runs {r['frames_per_s_runs']}); "
                f"CPU {r['cpu_ms_per_frame']} ms a frame, ffmpeg's {r['ffmpeg_cpu_ms_per_frame']}"
                f" ms; detectors on {r['key_frames']} frames; OpenCV fill on "
                f"{r['opencv_fills']}; face in {r['frames_with_a_face']}"
            )
            print(
                "  stage ms a frame (wall / CPU): "
                + ", ".join(
                    f"{s} {r['stage_ms_per_frame'][s]} / {r['stage_cpu_ms_per_frame'][s]}" for s in STAGES
                )
            )
            print(
                f"  landmarks: NME {r['nme_percent']}%, jitter {r['jitter_percent']}%; hole "
                f"flicker {r['hole_flicker']} grey levels (true frames {r['true_hole_flicker']},"
                f" known ring of the output {r['known_ring_flicker']})"
            )
    print(
        f"machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"load average before the runs {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; backend "
        f"{args.backend}, landmark mirror averaging {'off' if args.no_landmark_flip else 'on'}, "
        f"smoothing {args.smoothing}, {'lossless' if args.lossless else 'crf 17'} output"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"load": load, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
