"""The ``lafin`` command line.

Each subcommand lives in the module that does the work; this file only parses and dispatches, and
turns expected failures (bad input, bad weights) into a one-line error and a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from lafin import __version__
from lafin.results import MODES
from lafin.training.run_folder import add_run_folder_arguments

# the networks a weights file can hold: lafin.checkpoint.NETWORKS, which this module does not
# import at start (it loads torch)
NETWORK_NAMES = ("generator", "landmarks", "discriminator", "refiner")

EXAMPLES = """\
examples:
  lafin inpaint face.png hole.png -o restored.png
  lafin inpaint face.jpg mask.png -o out.png --landmarks-out out.pts --overlay landmarks.png
  lafin inpaint --example -o example.png          # the built-in example face and hole
  lafin inpaint photo.jpg scratches.png -o fixed.png --mode photo
  lafin inpaint face.png hole.png -o smiling.png --expression smile
  lafin inpaint photos/ masks/ -o restored/        # folders, matched by file name
  lafin inpaint-video clip.mp4 mask.png -o restored.mp4
  lafin restore old-photo.jpg -o restored.png --damage-out damage.png
  lafin prepare photos/ data/faces --size 128
  lafin train --stage inpaint --config configs/compact-inpaint.yaml --out runs/inpaint
  lafin convert InpaintingModel_gen.pth landmark_detector.pth -o lafin-paper.safetensors
"""


class _Stage:
    """Prints 'Doing X... done (0.12 s)' lines for the CLI's own progress report."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, text: str):
        stage = self

        class _Ctx:
            def __enter__(self_inner):
                self_inner.t = time.perf_counter()
                if not stage.quiet:
                    print(f"{text}...", end=" ", flush=True)

            def __exit__(self_inner, exc_type, exc, tb):
                if not stage.quiet and exc_type is None:
                    print(f"done ({time.perf_counter() - self_inner.t:.2f} s)", flush=True)
                elif not stage.quiet:
                    print("failed", flush=True)
                return False

        return _Ctx()


class _StageReporter:
    """``progress(stage)`` for the pipeline: prints each stage's label as it starts and its time
    when the next one starts (or at ``finish()``)."""

    def __init__(self, say, labels: dict[str, str]) -> None:
        self.say, self.labels, self.started = say, labels, 0.0

    def __call__(self, stage: str) -> None:
        self.finish()
        self.say(f"{self.labels.get(stage, stage)}...", end=" ", flush=True)
        self.started = time.perf_counter()

    def finish(self) -> None:
        if self.started:
            self.say(f"done ({time.perf_counter() - self.started:.2f} s)")
            self.started = 0.0


def _cmd_inpaint(args: argparse.Namespace) -> int:
    from lafin.io import pixel_budget

    budget = None if args.max_megapixels is None else max(64, int(args.max_megapixels * 1e6))
    with pixel_budget(budget):
        return _inpaint(args)


def _inpaint(args: argparse.Namespace) -> int:
    if args.expression:
        from lafin.landmarks import EXPRESSION_NAMES

        if args.expression.replace("-", " ") not in EXPRESSION_NAMES:
            raise _UsageError(
                f"--expression: unknown {args.expression!r}; choose one of "
                + ", ".join(n.replace(" ", "-") for n in EXPRESSION_NAMES)
            )
    if args.example:
        from lafin.examples import example_face, example_mask

        if args.image or args.mask:
            raise _UsageError("--example takes no IMAGE or MASK")
        _check_file_outputs(args, inputs=[args.landmarks])
        return _inpaint_one(args, example_face(), example_mask(), Path(args.output), "example")
    if args.image is None or args.mask is None:
        raise _UsageError("inpaint needs IMAGE and MASK (files, or folders matched by name), or --example")
    image, mask = Path(args.image), Path(args.mask)
    if image.is_dir() or mask.is_dir():
        return _inpaint_folder(args, image, mask, Path(args.output))
    _check_file_outputs(args, inputs=[image, mask, args.landmarks])
    return _inpaint_one(args, image, mask, Path(args.output), image.name)


def _check_file_outputs(args: argparse.Namespace, inputs: list) -> None:
    """Every output path of a one-image run, checked before anything is loaded or computed."""
    from lafin.outputs import LANDMARK_SUFFIXES, Output, check_outputs

    outputs = [Output("-o", args.output)]
    if args.overlay:
        outputs.append(Output("--overlay", args.overlay))
    if args.landmarks_out:
        outputs.append(Output("--landmarks-out", args.landmarks_out, LANDMARK_SUFFIXES))
    check_outputs(outputs, inputs)


def _load_model(args: argparse.Namespace):
    from lafin.pipeline import LaFInModel

    with _Stage(args.quiet)("Loading model"):
        model = LaFInModel(weights=args.weights, device=args.device, threads=getattr(args, "threads", None))
    if getattr(args, "refiner_noise", None) is not None:
        model = model.with_options(refiner_noise=args.refiner_noise)
    if getattr(args, "match_softness", True) is False:
        model = model.with_options(match_softness=False)
    return model


def _add_threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=_int_in(1),
        help="CPU threads per network call (default 1: the fastest while other programs use the "
        "cores; on an idle machine 2 or more are faster, docs/SPEED.md)",
    )


def _add_fill_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--refiner-noise",
        type=_float_in(0, 2),
        help="scale of the refiner's skin-texture noise (default 1; 0.5 or 0: smoother skin, "
        "no stubble-like grain)",
    )
    p.add_argument(
        "--no-match-softness",
        dest="match_softness",
        action="store_false",
        help="leave the fill as sharp as the model paints it, also in a soft photo (by default a "
        "soft photo's fill is softened to match the photo around the hole)",
    )


def _inpaint_one(args: argparse.Namespace, image, mask, out: Path, name: str, model=None) -> int:

    from lafin.io import check_landmarks, load_image, load_mask
    from lafin.landmarks import draw_landmarks, save_landmarks
    from lafin.pipeline import STAGE_LABELS

    img = load_image(image)
    hole = load_mask(mask, shape=img.shape[:2])
    given = check_landmarks(args.landmarks, img.shape[:2]) if args.landmarks else None
    model = model or _load_model(args)
    say = (lambda *a, **k: None) if args.quiet else print
    if args.expression:
        hole, given = _with_expression(args, model, img, hole, given, say)
    if not hole.any():
        say("The mask is empty (no hole): writing the image unchanged.")
    else:
        say(f"Hole: {100 * hole.mean():.1f}% of {img.shape[1]}x{img.shape[0]} pixels")
    progress = _StageReporter(say, STAGE_LABELS)
    with _result_warnings_printed(not args.quiet):
        result = model(img, hole, landmarks=given, mode=args.mode, progress=progress)
    progress.finish()
    for warning in result.warnings:
        say(f"  Warning: {warning}")
    if result.mode == "photo":
        for face in result.faces:
            say(
                f"  face at ({face.box[0]:.0f}, {face.box[1]:.0f})-({face.box[2]:.0f}, "
                f"{face.box[3]:.0f}): {face.path}, {face.hole_pixels} hole pixels"
            )
        for part in result.background_regions:
            say(
                f"  no face at ({part.box[0]}, {part.box[1]})-({part.box[2]}, {part.box[3]}): "
                f"{part.pixels} hole pixels filled by OpenCV"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_image(result.image, out)
    written = [str(out)]
    if args.landmarks_out and result.landmarks is None:
        say(f"  Warning: no face was generated, so there are no landmarks to write to {args.landmarks_out}")
    elif args.landmarks_out:
        Path(args.landmarks_out).parent.mkdir(parents=True, exist_ok=True)
        save_landmarks(args.landmarks_out, result.landmarks)
        written.append(args.landmarks_out)
    if args.overlay:
        overlay = result.image
        for face in result.faces or []:
            overlay = draw_landmarks(overlay, face.landmarks)
        if not result.faces and result.landmarks is not None:
            overlay = draw_landmarks(overlay, result.landmarks)
        Path(args.overlay).parent.mkdir(parents=True, exist_ok=True)
        _save_image(overlay, Path(args.overlay))
        written.append(args.overlay)
    say(f"Done! Wrote {', '.join(written)}")
    return 0


def _with_expression(args: argparse.Namespace, model, img, hole, given, say):
    """``--expression``: the face's landmarks (given, or those the mode generates from, by
    :meth:`~lafin.pipeline.LaFInModel.predict_landmarks`) edited, and
    the hole grown over the points the edit moved (known pixels stay, so an edit outside the
    hole could not show). Returns (hole, landmarks to generate from)."""
    from lafin.edit_hole import hole_over_edit
    from lafin.errors import NoFaceError
    from lafin.landmarks import edit_expression

    name = args.expression.replace("-", " ")
    if given is None:  # the points the mode would generate from, without generating
        with _Stage(args.quiet)("Finding the face's landmarks"):
            try:
                given = model.predict_landmarks(img, hole, mode=args.mode)
            except NoFaceError:
                if not hole.any():
                    raise
                # a hole that touches no face (a scratch in the background): the photo's face
                given = model.predict_landmarks(img, None, mode=args.mode)
    try:
        edited = edit_expression(given, name, args.expression_strength)
    except ValueError as exc:
        raise _UsageError(f"--expression {args.expression}: {exc}") from None
    grown = hole_over_edit(hole, given, edited)
    added = int(grown.sum()) - int((hole > 0).sum())
    say(f"Expression: {name} (strength {args.expression_strength:g}); the hole grows by {added} px")
    return grown, edited


@contextmanager
def _result_warnings_printed(printed: bool):
    """While the CLI prints a result's warnings itself (``printed``), their log lines are
    dropped: each is read once."""
    from lafin.results import RESULT_WARNING

    def drop(record: logging.LogRecord) -> bool:
        return not any(getattr(record, key, False) for key in RESULT_WARNING)

    handlers = list(logging.getLogger().handlers) if printed else []
    for handler in handlers:
        handler.addFilter(drop)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(drop)


def _save_image(image, path: Path) -> None:
    """Write an RGB result all at once: a failed write leaves no partial file behind."""
    from PIL import Image

    from lafin.atomic import atomic_write

    with atomic_write(path) as tmp:
        Image.fromarray(image).save(tmp, format=Image.registered_extensions()[path.suffix.lower()])


def _inpaint_folder(args: argparse.Namespace, images: Path, masks: Path, out: Path) -> int:
    """Images and masks matched by file name (stem); bad pairs are reported, not fatal."""
    from tqdm import tqdm

    from lafin.data.prepare import IMAGE_SUFFIXES
    from lafin.io import InputError, load_image, load_mask

    if not (images.is_dir() and masks.is_dir()):
        raise _UsageError("for folders, give both IMAGE and MASK as folders")
    from lafin.outputs import Output, check_outputs

    for option in ("overlay", "landmarks_out", "landmarks", "expression"):
        if getattr(args, option):
            raise _UsageError(f"--{option.replace('_', '-')} works with one image, not folders")
    check_outputs([Output("-o", out, folder=True)], [images, masks])
    mask_files: dict[str, list[Path]] = {}
    for p in sorted(masks.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            mask_files.setdefault(p.stem, []).append(p)
    image_files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not image_files:
        raise _UsageError(f"no images in {images}")
    by_stem: dict[str, list[Path]] = {}
    for p in image_files:
        by_stem.setdefault(p.stem, []).append(p)
    model = _load_model(args)
    out.mkdir(parents=True, exist_ok=True)
    problems: list[tuple[str, str]] = []
    warned: list[tuple[str, str]] = []
    done = 0
    for path in tqdm(image_files, desc="inpainting", disable=args.quiet):
        # outputs are <stem>.png and masks are matched by stem: a shared stem is ambiguous
        if len(by_stem[path.stem]) > 1:
            others = ", ".join(p.name for p in by_stem[path.stem])
            problems.append(
                (
                    path.name,
                    f"several images named {path.stem!r} ({others}); rename "
                    "them: outputs and masks are matched by name",
                )
            )
            continue
        if path.stem not in mask_files:
            problems.append((path.name, "no mask with this name"))
            continue
        if len(mask_files[path.stem]) > 1:
            problems.append(
                (
                    path.name,
                    "several masks with this name (" + ", ".join(p.name for p in mask_files[path.stem]) + ")",
                )
            )
            continue
        try:
            img = load_image(path)
            hole = load_mask(mask_files[path.stem][0], shape=img.shape[:2])
            with _result_warnings_printed(not args.quiet):
                result = model(img, hole, mode=args.mode)
        except InputError as exc:
            problems.append((path.name, str(exc)))
            continue
        warned.extend((path.name, warning) for warning in result.warnings)
        _save_image(result.image, out / f"{path.stem}.png")
        done += 1
    for name in sorted(set(mask_files) - set(by_stem)):
        problems.append((mask_files[name][0].name, "mask without an image"))
    if not args.quiet:
        print(f"Done! Inpainted {done} of {len(image_files)} images into {out}")
        for name, why in problems:
            print(f"  skipped {name}: {why}")
        for name, warning in warned:
            print(f"  warning for {name}: {warning}")
    return 0 if done or not image_files else 1


def _cmd_inpaint_video(args: argparse.Namespace) -> int:
    from lafin.outputs import Output, check_outputs
    from lafin.video import inpaint_video

    check_outputs([Output("-o", args.output, suffixes=None)], [args.video, args.mask])
    model = _load_model(args)
    if args.fast:
        model = model.with_options(landmark_flip_average=False, generator_flip_average=False)
    report = inpaint_video(
        model,
        args.video,
        args.mask,
        args.output,
        smoothing=args.smoothing,
        lossless=args.lossless,
        progress=not args.quiet,
        batch=args.batch,
        key_interval=args.key_interval,
    )
    if not args.quiet:
        with_faces = sum(1 for n in report.faces_per_frame if n)
        print(
            f"Done! Wrote {report.output}: {report.frames} frames at {report.fps:g} fps, "
            f"faces inpainted in {with_faces} (detected on {report.key_frames} key frames), "
            f"audio {'kept' if report.audio else 'none'}"
        )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from lafin.training.checkpointing import RUN_FILES
    from lafin.training.run_folder import check_run_folder
    from lafin.training.train import train

    config = train_config_from_args(args)
    check_run_folder(Path(args.out), RUN_FILES, args.resume, args.overwrite)
    if args.resume:
        _warn_of_changed_settings(config, Path(args.out) / "config.yaml")
    train(config, args.out, resume=args.resume, device=args.device, overwrite=args.overwrite)
    return 0


def _warn_of_changed_settings(config, saved: Path) -> None:
    """A resumed run takes the settings of this command; say which differ from those the run
    wrote last (a forgotten ``--set`` or ``--init-from`` changes the run, an edited ``lr`` or
    ``max_steps`` is meant to)."""
    import yaml

    from lafin.training.config import TrainConfig

    try:
        before = TrainConfig.from_yaml(saved).to_dict()
    except (OSError, ValueError, TypeError, yaml.YAMLError):  # no run yet, or an older format
        return

    def flat(mapping: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in mapping.items():
            if isinstance(value, dict) and key != "mask_mix":
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[prefix + key] = value
        return out

    old, new = flat(before), flat(config.to_dict())
    changed = [
        f"{k} {old.get(k)!r} -> {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    if changed:
        logging.getLogger("lafin.train").warning(
            "--resume with settings other than %s: %s", saved, "; ".join(changed)
        )


def train_config_from_args(args: argparse.Namespace):
    """``lafin train``'s config: ``--config`` with ``--set`` applied, then the other options; a
    bad file, key or value (the model's included) is one line and exit code 2."""
    import yaml

    from lafin.config import ModelConfig, apply_overrides, get_preset
    from lafin.training.config import TrainConfig

    try:
        if args.config:
            config = TrainConfig.from_yaml(args.config, args.set)
        else:  # the defaults
            config = TrainConfig.from_dict(apply_overrides(TrainConfig, {}, args.set))
        # the model is checked here, not hours later when the trainer builds it
        get_preset(config.model) if isinstance(config.model, str) else ModelConfig.from_dict(config.model)
    except (ValueError, TypeError, yaml.YAMLError) as exc:
        raise _UsageError(str(exc)) from None
    if args.stage:
        config.stage = args.stage
    if args.data:
        config.data.train = list(args.data)
    if args.val:
        config.data.val = args.val
    if args.max_steps is not None:
        config.max_steps = args.max_steps
    if args.init_from:
        config.init_from = args.init_from
    return config


def _cmd_prepare(args: argparse.Namespace) -> int:
    from lafin.data.prepare import PrepareOptions, prepare

    if args.landmarks_from:
        from lafin.data.cache import build_cache_like

        cache = build_cache_like(args.landmarks_from, args.src, args.out, args.size, workers=args.workers)
        print(f"Cached {len(cache)} faces of {args.landmarks_from} at {args.size} px into {args.out}")
        return 0
    options = PrepareOptions(
        size=args.size, aligned=args.aligned, min_face=args.min_face, upsample=args.upsample
    )
    names = Path(args.names).read_text().split() if args.names else None
    report = prepare(args.src, args.out, options, workers=args.workers, names=names)
    print(
        f"Prepared {report.written} faces into {report.out_dir} "
        f"({report.already_done} already done, {len(report.skipped)} skipped; see report.csv)"
    )
    for name, reason in report.skipped[:20]:
        print(f"  skipped {name}: {reason}")
    if len(report.skipped) > 20:
        print(f"  ... and {len(report.skipped) - 20} more")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from lafin.original_release import convert_original

    convert_original(args.inputs, args.output)
    print(f"Wrote {args.output}")
    return 0


def _cmd_export_weights(args: argparse.Namespace) -> int:
    from lafin.weights_merge import merge_weights

    steps_before = {}
    for item in args.steps_before:
        network, eq, steps = item.partition("=")
        if not eq or network not in NETWORK_NAMES or not steps.isdigit():
            raise _UsageError(
                f"--steps-before {item}: give NETWORK=STEPS ({', '.join(NETWORK_NAMES)}, STEPS >= 0)"
            )
        steps_before[network] = int(steps)
    merge_weights(args.inputs, args.output, half=args.half, without=args.without, steps_before=steps_before)
    print(f"Wrote {args.output}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from lafin.onnx_backend import export_onnx
    from lafin.pipeline import WeightsNotFoundError, default_weights_path

    weights = args.weights or default_weights_path()
    if not args.weights and not weights.is_file():
        raise WeightsNotFoundError(
            "no --weights given and this installation ships no default weights; pass --weights W.safetensors"
        )
    written = export_onnx(
        weights[0] if isinstance(weights, list) and len(weights) == 1 else weights, args.out_dir
    )
    print(f"Wrote {', '.join(str(p) for p in written)}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import importlib.util

    # only look for Gradio here: it must be imported after the app sets its temporary folder
    if importlib.util.find_spec("gradio") is None:
        raise _UsageError("the web demo needs Gradio: pip install 'lafin[web]'")
    from lafin.webapp import serve

    _check_port_free(args.host, args.port)
    model = _load_model(args)
    print(f"Web demo on http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    serve(
        host=args.host,
        port=args.port,
        model=model,
        max_upload_pixels=int(args.max_megapixels * 1e6),
        max_file_size=f"{args.max_upload_mb}mb",
        session_ttl=args.session_ttl,
    )
    return 0


def _check_port_free(host: str, port: int) -> None:
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise _UsageError(f"--host {host}: unknown address ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise _UsageError(
                f"cannot listen on {host}:{port} ({exc.strerror}); is another "
                "server using it? Choose another --port"
            ) from None


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (and exit code 2), like lafin's own refusals."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_in(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {span}")
        return value

    parse.__name__ = "integer"
    return parse


def _float_in(low: float, high: float | None = None, low_open: bool = False):
    """An argparse type: a finite number in [low, high] ((low, high] with ``low_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if (
            not math.isfinite(value)
            or value < low
            or (low_open and value == low)
            or (high is not None and value > high)
        ):
            span = f"{'above' if low_open else 'from'} {low:g}" + (
                f" to {high:g}" if high is not None else ""
            )
            raise argparse.ArgumentTypeError(f"{text} is out of range: use a number {span}")
        return value

    parse.__name__ = "number"
    return parse


def _device(text: str) -> str:
    """An argparse type: a torch device that exists here (checked before any work)."""
    if text != "cpu":
        from lafin.devices import resolve_device
        from lafin.errors import DeviceError

        try:
            resolve_device(text)
        except DeviceError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lafin",
        description="Landmark-guided face inpainting (LaFIn).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lafin {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "inpaint",
        help="fill the hole in a face image",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", nargs="?", help="face image or photo (any format PIL reads), or a folder")
    p.add_argument(
        "mask",
        nargs="?",
        help="hole mask, same size, white/nonzero = hole (or a folder of masks named like the images)",
    )
    p.add_argument("-o", "--output", required=True, help="result file (or folder, for folders)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="crop: the image is one aligned face; photo: find and align the faces the "
        "hole touches; auto (default): crop for small images, photo for large ones",
    )
    p.add_argument("--example", action="store_true", help="use the built-in example face and hole")
    p.add_argument("--landmarks", help="use these landmarks (.pts, .json, .npy) instead of predicting")
    p.add_argument("--landmarks-out", help="write the landmarks used (.pts, .json or .npy)")
    p.add_argument("--overlay", help="write the result with the landmarks drawn")
    p.add_argument(
        "--expression",
        metavar="NAME",
        help="change the face's expression (open-mouth, close-mouth, smile, raise-eyebrows, "
        "frown, close-eyes, widen-eyes): its landmarks (--landmarks, or predicted) are edited "
        "and the hole grows over the points that move",
    )
    p.add_argument(
        "--expression-strength",
        type=_float_in(0, 2, low_open=True),
        default=1.0,
        help="how far --expression moves the points (default 1)",
    )
    p.add_argument("--weights", help="weights file (default: the shipped model)")
    p.add_argument("--device", default="cpu", type=_device, help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument(
        "--max-megapixels",
        type=_float_in(0, low_open=True),
        help="largest image accepted (default 50, or LAFIN_MAX_MEGAPIXELS)",
    )
    _add_fill_arguments(p)
    _add_threads_argument(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_cmd_inpaint)

    p = sub.add_parser("inpaint-video", help="inpaint the faces of a video, frame by frame")
    p.add_argument("video", help="input video (any format ffmpeg reads)")
    p.add_argument("mask", help="a mask image (same hole in every frame) or a mask video")
    p.add_argument("-o", "--output", required=True, help="output video (.mp4, .mkv, ...)")
    p.add_argument(
        "--smoothing",
        type=_float_in(0, 1, low_open=True),
        default=0.5,
        help="weight of each new frame's landmarks (1 = no smoothing; default 0.5)",
    )
    p.add_argument(
        "--lossless",
        action="store_true",
        help="lossless H.264 (known pixels stay bit-identical; large files)",
    )
    p.add_argument("--batch", type=int, default=8, help="frames the generator takes at once (default 8)")
    p.add_argument(
        "--key-interval",
        type=int,
        default=30,
        help="run the face detectors again after this many frames (default 30; they "
        "also run when a face is lost or the hole moves beyond the faces followed)",
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="no mirror-image averaging in the landmark predictor and the generator "
        "(the shipped weights average only the predictor's: about 10%% less CPU a "
        "frame, slightly less exact landmarks)",
    )
    p.add_argument("--weights", help="weights file (default: the shipped model)")
    p.add_argument("--device", default="cpu", type=_device)
    _add_fill_arguments(p)
    _add_threads_argument(p)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_inpaint_video)

    p = sub.add_parser("train", help="train one stage (landmarks, inpaint, joint, refine)")
    p.add_argument("--stage", choices=["landmarks", "inpaint", "joint", "refine"])
    p.add_argument("--config", help="YAML training config (see configs/)")
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of --config, a dotted key and a YAML value (e.g. --set "
        "loss.inception_size=256 'loss.inception_layers=[conv_2, conv_4]'); an unknown key or "
        "a value of the wrong type is refused",
    )
    p.add_argument("--data", nargs="+", help="face cache directories (override the config)")
    p.add_argument("--val", help="validation face cache (overrides the config)")
    add_run_folder_arguments(p, "run directory (checkpoints, logs, samples)")
    p.add_argument("--max-steps", type=_int_in(0))
    p.add_argument(
        "--init-from",
        help="weights to start from, fresh optimiser and step counter "
        "(overrides the config's init_from: one config serves every cycle)",
    )
    p.add_argument("--device", default="cpu", type=_device)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("prepare", help="detect, annotate and align face photos into a training set")
    p.add_argument("src", help="folder of photos (sub-folders included; .pts beside a photo is used)")
    p.add_argument("out", help="output folder (crops, landmarks, report.csv, training cache)")
    p.add_argument(
        "--size", type=_int_in(16, 4096), default=128, help="side of the square crops, 16-4096 (default 128)"
    )
    p.add_argument(
        "--aligned",
        action="store_true",
        help="the photos are already aligned square crops: resize only, never re-crop",
    )
    p.add_argument("--min-face", type=_int_in(1), default=48, help="skip faces narrower than this (px)")
    p.add_argument(
        "--upsample", type=_int_in(0, 4), default=1, help="detector upsampling, 0-4 (finds small faces)"
    )
    p.add_argument("--workers", type=_int_in(1, 256), default=2, help="processes (default 2)")
    p.add_argument("--names", help="a text file of image file names to use (e.g. a split list)")
    p.add_argument(
        "--landmarks-from",
        metavar="CACHE",
        help="the faces of this cache, decoded from SRC (same file names, any square "
        "size) at --size, with its landmarks rescaled: no detection, no labelling",
    )
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("convert", help="convert the original LaFIn .pth files to lafin weights")
    p.add_argument("inputs", nargs="+", help="InpaintingModel_gen.pth, landmark_detector.pth, ...")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "export-weights", help="combine weights files (e.g. a landmark run and an inpaint run) into one"
    )
    p.add_argument("inputs", nargs="+", help="weights.safetensors files; later ones win")
    p.add_argument("-o", "--output", required=True)
    p.add_argument(
        "--half", action="store_true", help="store float16 (half the size; loaded back as float32)"
    )
    p.add_argument(
        "--without",
        nargs="+",
        default=[],
        choices=NETWORK_NAMES,
        metavar="NETWORK",
        help="leave these networks out (e.g. refiner: the bare generator, to judge it alone)",
    )
    p.add_argument(
        "--steps-before",
        nargs="+",
        default=[],
        metavar="NETWORK=STEPS",
        help="correct a network's recorded training steps before its last run "
        "(metadata NETWORK.steps_before), e.g. refiner=6500",
    )
    p.set_defaults(func=_cmd_export_weights)

    p = sub.add_parser("export", help="export the networks for other runtimes (ONNX)")
    p.add_argument(
        "out_dir",
        metavar="OUT_DIR",
        help="folder for landmarks.onnx, generator.onnx "
        "and lafin-onnx.json (load with LaFInModel(weights=OUT_DIR, backend='onnx'))",
    )
    p.add_argument("--format", choices=["onnx"], default="onnx", help="only onnx for now")
    p.add_argument("--weights", nargs="+", help="weights file (default: the shipped weights)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "serve",
        help="the web demo: paint a hole, edit landmarks, get the face",
        description="Serve the web demo (Gradio, offline). Needs the 'web' extra: pip install 'lafin[web]'.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_int_in(1, 65535), default=7860)
    p.add_argument("--weights", help="weights file(s) (default: the shipped ones)")
    p.add_argument("--device", default="cpu", type=_device)
    _add_threads_argument(p)
    p.add_argument(
        "--max-megapixels",
        type=_float_in(0, low_open=True),
        default=40.0,
        help="largest photo accepted (default 40)",
    )
    p.add_argument("--max-upload-mb", type=_int_in(1), default=50, help="largest upload (default 50 MB)")
    p.add_argument(
        "--session-ttl",
        type=_float_in(0, low_open=True),
        default=7200.0,
        help="seconds a browser session's work is kept after its last change "
        "(default 7200; a closed tab's is freed at once)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print less")
    p.set_defaults(func=_cmd_serve)

    _add_optional_commands(sub)
    _add_restore_commands(sub)
    return parser


def _add_optional_commands(sub: argparse._SubParsersAction) -> None:
    """Subcommands that own their options; main() forwards their arguments whole."""
    sub.add_parser(
        "evaluate",
        help="metrics by hole-ratio bin against baselines, with a report (lafin evaluate --help)",
        add_help=False,
    )


# ---------------------------------------------------------------------- old photos (lafin.restore)


def _add_restore_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "restore",
        help="find scratches, cracks, dust and tears in old photos and inpaint them",
        description="Detect the damage of old photos, grow the "
        "mask, inpaint it with the face-aware pipeline; grey and sepia photos stay "
        "grey and sepia.",
    )
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="photos or folders of photos")
    p.add_argument(
        "-o", "--output", required=True, help="result file (one photo) or folder (several photos, or folders)"
    )
    p.add_argument(
        "--damage-out",
        metavar="MASK",
        help="write the filled mask (white = damage) here: a file for one photo, a folder for several",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="damage probability above which a pixel is damage (default: the detector's tuned value)",
    )
    p.add_argument(
        "--dilate",
        type=int,
        default=None,
        metavar="PX",
        help="grow the detected mask by this many pixels before inpainting",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="as for inpaint (auto: crop for small face crops, photo otherwise)",
    )
    p.add_argument("--weights", help="inpainting weights file (default: the shipped model)")
    p.add_argument("--damage-weights", help="damage detector weights (default: the shipped ones)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    _add_fill_arguments(p)
    _add_threads_argument(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_cmd_restore)

    p = sub.add_parser(
        "train-damage",
        help="train the damage detector (lafin.training.damage)",
        description="Train the damage detector on clean photos with procedurally drawn damage.",
    )
    from lafin.training.damage import add_arguments

    add_arguments(p)
    p.set_defaults(func=_cmd_train_damage)


def _cmd_train_damage(args: argparse.Namespace) -> int:
    import yaml

    from lafin.training.damage import config_from_args, run

    try:
        config = config_from_args(args)
    except (ValueError, yaml.YAMLError) as exc:
        raise _UsageError(str(exc)) from None
    logging.getLogger().setLevel(logging.INFO)
    return run(args, config)


def _restore_jobs(args: argparse.Namespace) -> tuple[list[tuple[Path, Path, Path | None]], bool]:
    """(photo, output, mask output) triples, and whether the output is a folder."""
    from lafin.data.prepare import IMAGE_SUFFIXES
    from lafin.outputs import same_file

    inputs = [Path(p) for p in args.photos]
    for path in inputs:
        if not path.exists():
            raise _UsageError(f"no such photo or folder: {path}")
    photos: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise _UsageError(f"no photos in {path}")
            photos.extend(found)
        else:
            photos.append(path)
    out = Path(args.output)
    single = len(inputs) == 1 and not inputs[0].is_dir() and not out.is_dir()
    damage_out = Path(args.damage_out) if args.damage_out else None
    if single:
        jobs = [(photos[0], out, damage_out)]
    else:
        if out.exists() and not out.is_dir():
            raise _UsageError(f"with several photos or folders, -o must be a folder: {out}")
        if damage_out is not None and damage_out.exists() and not damage_out.is_dir():
            raise _UsageError(f"with several photos, --damage-out must be a folder: {damage_out}")
        folders = {p.resolve() for p in inputs if p.is_dir()} | {p.resolve().parent for p in photos}
        for target in (out, damage_out):
            if target is not None and target.resolve() in folders:
                raise _UsageError(f"refusing to write into an input folder: {target}")
        stems = [p.stem for p in photos]
        if len(set(stems)) != len(stems):
            raise _UsageError("two photos share a file name; restore them into separate folders")
        jobs = [
            (p, out / f"{p.stem}.png", None if damage_out is None else damage_out / f"{p.stem}.png")
            for p in photos
        ]
    for _, result, mask in jobs:
        for target in (result, mask):
            if target is not None and any(same_file(target, p) for p in photos):
                raise _UsageError(f"refusing to overwrite an input file: {target}")
    if damage_out is not None and single and same_file(damage_out, out):
        raise _UsageError("--damage-out and -o name the same file")
    return jobs, not single


def _cmd_restore(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from lafin.io import InputError, load_image
    from lafin.pipeline import STAGE_LABELS
    from lafin.restore import (
        DEFAULT_DILATE,
        DEFAULT_THRESHOLD,
        RESTORE_STAGE_LABELS,
        damage_detector_for,
        grow_mask,
        restore,
    )

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    dilate = DEFAULT_DILATE if args.dilate is None else args.dilate
    if not 0 < threshold < 1:
        raise _UsageError(f"--threshold must be between 0 and 1, not {threshold}")
    grow_mask(np.zeros((1, 1), np.uint8), dilate)  # a bad --dilate: one line, before the work
    jobs, batch = _restore_jobs(args)
    model = _load_model(args)
    with _Stage(args.quiet)("Loading damage detector"):
        damage_detector_for(model, args.damage_weights)
    say = (lambda *a, **k: None) if args.quiet or batch else print
    labels = {**STAGE_LABELS, **RESTORE_STAGE_LABELS}
    problems: list[tuple[str, str]] = []
    warned: list[tuple[str, str]] = []
    done = 0
    for photo, out, mask_out in tqdm(jobs, desc="restoring", disable=args.quiet or not batch):
        progress = _StageReporter(say, labels)
        try:
            img = load_image(photo)
            result = restore(
                model,
                img,
                threshold=threshold,
                dilate=dilate,
                mode=args.mode,
                progress=progress,
                weights=args.damage_weights,
            )
        except InputError as exc:
            if not batch:
                raise
            problems.append((photo.name, str(exc)))
            continue
        progress.finish()
        share = 100 * float((result.mask > 0).mean())
        say(
            f"Damage: {share:.2f}% of {img.shape[1]}x{img.shape[0]} pixels"
            + (f" ({result.tone} photo)" if result.tone != "colour" else "")
        )
        for face in result.faces:
            say(
                f"  face at ({face.box[0]:.0f}, {face.box[1]:.0f})-({face.box[2]:.0f}, "
                f"{face.box[3]:.0f}): {face.path}, {face.hole_pixels} damaged pixels"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(result.image).save(out)
        written = [str(out)]
        if mask_out is not None:
            mask_out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(result.mask).save(mask_out)
            written.append(str(mask_out))
        say(f"Done! Wrote {', '.join(written)}")
        done += 1
    if batch and not args.quiet:
        print(f"Done! Restored {done} of {len(jobs)} photos into {args.output}")
        for name, why in problems:
            print(f"  skipped {name}: {why}")
        for name, warning in warned:
            print(f"  warning for {name}: {warning}")
    return 0 if done else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parser = build_parser()
    if argv and argv[0] == "evaluate":  # forwarded whole: it owns its options
        from lafin.evaluation.runner import main as evaluate_main

        return _guard(lambda: evaluate_main(argv[1:]))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in ("train", "prepare", "convert", "export-weights", "export"):
        _stop_on_sigterm()
    return _guard(lambda: args.func(args))


def _guard(fn) -> int:
    from lafin.io import InputError

    try:
        from lafin.checkpoint import WeightsError
    except ImportError:  # pragma: no cover
        WeightsError = InputError  # type: ignore[misc,assignment]
    from lafin.pipeline import WeightsNotFoundError

    try:
        return int(fn() or 0)
    except (InputError, WeightsError, WeightsNotFoundError, _UsageError) as exc:
        print(f"lafin: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the user named that cannot be read or written, a full disk
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"lafin: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lafin: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _stop_on_sigterm() -> None:
    """SIGTERM (kill, a job scheduler) stops the work like Ctrl+C: cleanup code runs (temporary
    files removed, worker processes ended) instead of the process vanishing mid-write."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (main() called from a test's thread)
        pass


if __name__ == "__main__":
    sys.exit(main())
