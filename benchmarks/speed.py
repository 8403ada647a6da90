"""Inference speed: latency of every stage, batch throughput, peak memory, PyTorch vs ONNX Runtime.

For each preset (``compact`` at 128 px and ``paper`` at 256 px by default) and each backend
(PyTorch, and ONNX Runtime when it is installed) it times, on the same machine in one run:

* ``crop``: an aligned face crop at the model's size (the built-in astronaut example, hole over
  the nose and mouth), end to end through ``LaFInModel.__call__`` in crop mode;
* ``photo``: a 1024x1024 photo with one face (the astronaut picture upscaled and padded, the same
  hole), end to end in photo mode, face detection included;
* ``batch 8``: 8 aligned crops through the landmark predictor and the generator together
  (images/s);
* ``peak RSS``: the resident-set high-water mark of a child process that runs ``lafin inpaint``
  on the photo (``resource`` / ``os.wait4``: interpreter, libraries and models included).

Per-stage times come from ``InpaintResult.timings``; the whole call is timed around it with
``time.perf_counter``. Warm-up calls are excluded; medians (min-max) of ``--repeats`` calls.
Without ``--weights`` the shipped weights are used for their preset when the package has them,
else random weights (speed does not depend on the values); the ``paper`` preset always runs with
random weights unless ``--weights`` is a paper-preset file: it is the original architecture, so
the ratio between the two is measured on one machine in one run.

    python benchmarks/speed.py [--weights W.safetensors] [--repeats 10] [--json speed.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

PHOTO_SIDE = 1024
STAGES = ("prepare", "background", "detect", "landmarks", "generate", "refine", "blend")


# ---------------------------------------------------------------------------------- inputs


def crop_case(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The built-in example face at ``size`` px and its hole over the nose and mouth."""
    from lafin.examples import example_face, example_mask

    return example_face(size), example_mask(size)


def photo_case(side: int = PHOTO_SIDE, hole: str = "nose and mouth") -> tuple[np.ndarray, np.ndarray]:
    """A ``side`` x ``side`` photo with one face: skimage's astronaut (512 px) upscaled to 7/8 of
    ``side`` and padded with its edge; a hole over the nose and mouth (as the example's: it hides
    enough of the face that dlib's HOG detector scores it below its threshold, and the weak box is
    confirmed by the CNN detector on a small crop) or on
    a cheek (the face stays visible to HOG)."""
    from skimage import data

    from lafin.examples import _ASTRONAUT_FACE

    inner = side * 7 // 8
    scale = inner / 512
    pad = (side - inner) // 2
    up = cv2.resize(data.astronaut(), (inner, inner), interpolation=cv2.INTER_CUBIC)
    photo = np.pad(up, ((pad, side - inner - pad), (pad, side - inner - pad), (0, 0)), mode="edge")
    x, y, s = (v * scale for v in _ASTRONAUT_FACE)
    x, y = x + pad, y + pad
    mask = np.zeros((side, side), np.uint8)
    if hole == "cheek":
        mask[round(y + 0.45 * s) : round(y + 0.65 * s), round(x + 0.12 * s) : round(x + 0.30 * s)] = 1
    else:
        mask[round(y + 0.45 * s) : round(y + 0.85 * s), round(x + 0.28 * s) : round(x + 0.72 * s)] = 1
    return photo, mask


# ---------------------------------------------------------------------------------- timing


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def time_calls(
    model: Any, image: np.ndarray, mask: np.ndarray, mode: str, repeats: int, warmup: int
) -> dict[str, Any]:
    """Per-stage and total latency (seconds) of ``model(image, mask, mode=mode)``."""
    for _ in range(warmup):
        model(image, mask, mode=mode)
    totals: list[float] = []
    stages: dict[str, list[float]] = {}
    faces = 0
    for _ in range(repeats):
        t = time.perf_counter()
        result = model(image, mask, mode=mode)
        totals.append(time.perf_counter() - t)
        for name, seconds in result.timings.items():
            stages.setdefault(name, []).append(seconds)
        faces = len(result.faces)
    out = {"total": _stats(totals), "stages": {k: _stats(v) for k, v in stages.items()}, "mode": result.mode}
    if mode == "photo":
        out["faces"] = faces
        out["face_paths"] = [f.path for f in result.faces]
    return out


def time_batch(model: Any, size: int, batch: int, repeats: int, warmup: int) -> dict[str, Any]:
    """Seconds for ``batch`` aligned crops through the landmark predictor and the generator."""
    image, mask = crop_case(size)
    img_t = torch.from_numpy(np.stack([image] * batch)).permute(0, 3, 1, 2).float().div(255)
    hole_t = torch.from_numpy(np.stack([mask] * batch)[:, None].astype(np.float32))
    img_t = img_t.contiguous()
    # the predictor's own crops, at its input size (as the pipeline cuts them from the input)
    side = model.landmark_size
    lm_image, lm_mask = crop_case(side)
    lm_t = torch.from_numpy(np.stack([lm_image] * batch)).permute(0, 3, 1, 2).float().div(255)
    lm_hole = torch.from_numpy(np.stack([lm_mask] * batch)[:, None].astype(np.float32))
    lm_masked = (lm_t * (1 - lm_hole) + lm_hole).contiguous()

    def run() -> None:
        points = model.locator.predict(lm_masked)
        model.generation.generate(img_t, hole_t, (points + 0.5) * (size / side) - 0.5)

    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    stats = _stats(times)
    return {"seconds": stats, "batch": batch, "images_per_s": batch / stats["median"]}


# Run in the child after the work: its own high-water mark. (ru_maxrss of a waited-for child is
# not usable on Linux: exec keeps the RSS the process had when it was forked, i.e. the parent's.)
_CHILD_TAIL = """
def _hwm():
    try:
        with open('/proc/self/status') as f:
            return next(int(l.split()[1]) for l in f if l.startswith('VmHWM:'))
    except (OSError, StopIteration, ValueError):
        return -1
sys.stderr.write('LAFIN_VMHWM_KB %d\\n' % _hwm())
"""


def peak_rss_mb(weights: Path, image: Path, mask: Path, out: Path, backend: str) -> float | None:
    """Resident-set high-water mark (MiB) of a child process inpainting the photo.

    PyTorch: ``lafin inpaint`` (``lafin.cli.main``) with the weights file. ONNX: the same call
    through the Python API with ``backend="onnx"`` on an exported folder (the CLI has no backend
    option). The child reports its own ``VmHWM`` (Linux); elsewhere ``ru_maxrss`` from
    ``os.wait4`` is used, which may include the parent's size at fork. None if the child failed.
    """
    if backend == "torch":
        code = (
            "import sys; from lafin.cli import main; "
            "rc = main(['inpaint', sys.argv[2], sys.argv[3], '-o', sys.argv[4], '--weights', "
            "sys.argv[1], '--mode', 'photo', '-q'])\n"
        )
    else:
        code = (
            "import sys; from lafin.pipeline import LaFInModel; from PIL import Image; "
            "m = LaFInModel(weights=sys.argv[1], backend='onnx'); "
            "Image.fromarray(m.inpaint(sys.argv[2], sys.argv[3], mode='photo')).save(sys.argv[4]); "
            "rc = 0\n"
        )
    code += _CHILD_TAIL + "sys.exit(rc)\n"
    cmd = [sys.executable, "-c", code, str(weights), str(image), str(mask), str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")  # to EOF first: a full pipe would block
    proc.stderr.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        logging.warning("peak-memory child failed (%s): %s", backend, err.strip()[-500:])
        return None
    for line in err.splitlines():
        if line.startswith("LAFIN_VMHWM_KB ") and int(line.split()[1]) > 0:
            return int(line.split()[1]) / 1024
    # ru_maxrss is in KiB on Linux, bytes on macOS
    return usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


# ---------------------------------------------------------------------------------- models


def weights_for(preset: str, given: Path | None, tmp: Path) -> tuple[Path, str]:
    """A weights file for ``preset`` and where it came from (given, shipped or random)."""
    from lafin.checkpoint import load_any, save_weights
    from lafin.config import get_preset
    from lafin.networks import build_generator, build_landmark_predictor
    from lafin.pipeline import default_weights_path

    candidates = [(given, "given")] if given else []
    candidates.append((default_weights_path(), "shipped"))
    for path, source in candidates:
        if path is not None and Path(path).is_file():
            try:
                # a grown variant of the preset (e.g. compact-wide, lafin.training.widen) counts
                name = load_any(path).config.name
                if name == preset or name.startswith(preset + "-"):
                    return Path(path), source
            except Exception as exc:  # noqa: BLE001 - a bad file is reported, random used
                logging.warning("%s: %s", path, exc)
    config = get_preset(preset)
    torch.manual_seed(0)
    path = tmp / f"random-{preset}.safetensors"
    save_weights(
        path, config, generator=build_generator(config), landmark_predictor=build_landmark_predictor(config)
    )
    return path, "random"


def load_model(weights: Path, backend: str, cache: Path, threads: int | None = None) -> Any:
    from lafin.pipeline import LaFInModel

    if backend == "torch":
        return LaFInModel(weights=weights, threads=threads)
    from lafin.onnx_backend import export_onnx

    folder = cache / f"onnx-{weights.stem}"
    if not (folder / "generator.onnx").is_file():
        export_onnx(weights, folder)
    return LaFInModel(weights=folder, backend="onnx", threads=threads)


def onnx_available() -> str | None:
    """None when the ONNX backend can run here, else the reason it cannot."""
    try:
        import onnxruntime  # noqa: F401

        import lafin.onnx_backend  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------------------------- report


def _ms(stats: dict[str, float] | None) -> str:
    if not stats:
        return "-"
    return f"{1000 * stats['median']:.1f} ({1000 * stats['min']:.0f}-{1000 * stats['max']:.0f})"


def markdown(report: dict[str, Any]) -> str:
    lines = []
    env = report["environment"]
    lines.append(
        f"lafin speed: {env['cpu']}, {env['cores']} cores, torch {env['torch']} "
        f"({env['call_threads']} thread{'s' if env['call_threads'] > 1 else ''} per call), "
        f"onnxruntime {env['onnxruntime'] or 'not installed'}; "
        f"median (min-max) of {report['repeats']} calls after {report['warmup']} warm-up, ms"
    )
    if report.get("load_note"):
        lines.append("")
        lines.append(f"> {report['load_note']}")
    lines.append("")
    lines.append(
        "| preset | weights | backend | input | prepare / fill | detect | landmarks | "
        "generate | refine | blend | **total** |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in report["latency"]:
        st = row["stages"]
        prep = st.get("prepare") or st.get("background")
        lines.append(
            f"| {row['preset']} {row['size']} px | {row['weights']} | {row['backend']} | "
            f"{row['input']} | {_ms(prep)} | {_ms(st.get('detect'))} | "
            f"{_ms(st.get('landmarks'))} | {_ms(st.get('generate'))} | "
            f"{_ms(st.get('refine'))} | {_ms(st.get('blend'))} | **{_ms(row['total'])}** |"
        )
    if report["batch"]:
        lines.append("")
        lines.append("| preset | backend | batch of 8 aligned crops, landmarks + generator (ms) | images/s |")
        lines.append("|---|---|---|---|")
        for row in report["batch"]:
            lines.append(
                f"| {row['preset']} {row['size']} px | {row['backend']} | "
                f"{_ms(row['seconds'])} | {row['images_per_s']:.1f} |"
            )
    if report["memory"]:
        lines.append("")
        lines.append("| preset | backend | peak RSS of one `lafin inpaint` of the 1024-px photo (MiB) |")
        lines.append("|---|---|---|")
        for row in report["memory"]:
            value = "failed" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:.0f}"
            lines.append(f"| {row['preset']} {row['size']} px | {row['backend']} | {value} |")
    for note in report["notes"]:
        lines.append("")
        lines.append(f"- {note}")
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_note(cores: int) -> str | None:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return None
    if max(one, five) > 0.5 * cores:
        return (
            f"The machine was busy (load average {one:.2f} over 1 min, {five:.2f} over 5 min "
            f"on {cores} cores): other processes shared the CPU, so these numbers are slower "
            "than on an idle machine."
        )
    return None


# ---------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--weights", type=Path, help="weights file (default: the shipped weights if present, else random)"
    )
    parser.add_argument(
        "--presets", default="compact,paper", help="comma-separated presets (default compact,paper)"
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    parser.add_argument("--batch", type=int, default=8, help="crops per batch (default 8)")
    parser.add_argument("--batch-repeats", type=int, default=3, help="timed batches")
    parser.add_argument(
        "--backends",
        default="torch,onnx",
        help="torch, onnx or both (onnx is skipped when onnxruntime is missing)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS children")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads per call, LaFInModel(threads=N), both backends (0: lafin's default, one)",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    notes: list[str] = []
    why_not = onnx_available() if "onnx" in backends else None
    if "onnx" in backends and why_not:
        backends.remove("onnx")
        notes.append(f"ONNX Runtime rows skipped: {why_not} (pip install 'lafin[onnx]').")
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    note_before = load_note(cores)
    tmp = Path(tempfile.mkdtemp(prefix="lafin-speed-"))
    photo, photo_mask = photo_case()
    cv2.imwrite(str(tmp / "photo.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp / "photo-mask.png"), photo_mask * 255)

    latency, batch, memory = [], [], []
    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        weights, source = weights_for(preset, args.weights, tmp)
        if source == "random":
            notes.append(
                f"{preset}: random weights (no {preset}-preset weights given or shipped); "
                "speed does not depend on the values."
            )
        for backend in backends:
            model = load_model(weights, backend, tmp, args.threads or None)
            size = model.image_size
            info = {"preset": model.config.name, "size": size, "weights": source, "backend": backend}
            print(f"timing {preset} / {backend} ...", file=sys.stderr, flush=True)
            # a crop at the generator's size, and at the refiner's when the model has one
            for side in sorted({size, model.output_size}):
                crop, crop_mask = crop_case(side)
                latency.append(
                    {
                        **info,
                        "input": f"aligned crop {side}x{side}",
                        **time_calls(model, crop, crop_mask, "crop", args.repeats, args.warmup),
                    }
                )
            row = time_calls(model, photo, photo_mask, "photo", args.repeats, args.warmup)
            if not row.get("faces"):
                notes.append(f"{preset}/{backend}: no face was found in the photo")
            latency.append(
                {**info, "input": f"photo {PHOTO_SIDE}x{PHOTO_SIDE}, 1 face, hole over nose and mouth", **row}
            )
            cheek, cheek_mask = photo_case(hole="cheek")
            latency.append(
                {
                    **info,
                    "input": f"photo {PHOTO_SIDE}x{PHOTO_SIDE}, 1 face, hole on a cheek",
                    **time_calls(model, cheek, cheek_mask, "photo", args.repeats, args.warmup),
                }
            )
            batch.append(
                {**info, **time_batch(model, size, args.batch, args.batch_repeats, min(args.warmup, 1))}
            )
            del model
            if not args.no_memory:
                # the ONNX child loads the folder exported above: an export on the fly would
                # count the exporter's memory and write into the user's cache
                child_weights = weights if backend == "torch" else tmp / f"onnx-{weights.stem}"
                mb = peak_rss_mb(
                    child_weights, tmp / "photo.png", tmp / "photo-mask.png", tmp / "out.png", backend
                )
                memory.append({**info, "peak_rss_mb": mb})

    note_after = load_note(cores)
    report = {
        "environment": {
            "cpu": _cpu_name(),
            "cores": cores,
            "torch": torch.__version__,
            "call_threads": args.threads or 1,
            "onnxruntime": ort_version,
            "python": platform.python_version(),
            "loadavg_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "repeats": args.repeats,
        "warmup": args.warmup,
        "load_note": note_after or note_before,
        "latency": latency,
        "batch": batch,
        "memory": memory,
        "notes": notes,
    }
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
