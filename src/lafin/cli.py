"""The ``lafin`` command line.

Each subcommand lives in the module that does the work; this file only parses and dispatches, and
turns expected failures (bad input, bad weights) into a one-line error and a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from lafin import __version__

EXAMPLES = """\
examples:
  lafin inpaint face.png hole.png -o restored.png
  lafin inpaint face.jpg mask.png -o out.png --landmarks-out out.pts --overlay landmarks.png
  lafin inpaint --example -o example.png          # the built-in example face and hole
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


def _cmd_inpaint(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from lafin.landmarks import draw_landmarks, load_landmarks, save_landmarks

    stage = _Stage(args.quiet)
    if args.example:
        from lafin.examples import example_face, example_mask

        image, mask = example_face(), example_mask()
    else:
        if args.image is None or args.mask is None:
            raise _UsageError("inpaint needs IMAGE and MASK (or --example)")
        image, mask = Path(args.image), Path(args.mask)
    out = Path(args.output)
    if not args.example and out.resolve() in (Path(args.image).resolve(), Path(args.mask).resolve()):
        raise _UsageError(f"refusing to overwrite an input file: {out}")

    from lafin.io import load_image, load_mask

    img = load_image(image)
    hole = load_mask(mask, shape=img.shape[:2])
    landmarks = load_landmarks(args.landmarks) if args.landmarks else None

    with stage("Loading model"):
        from lafin.pipeline import LaFInModel

        model = LaFInModel(weights=args.weights, device=args.device)
    if not hole.any():
        print("The mask is empty (no hole): writing the image unchanged.")
    if hole.mean() > 0 and not args.quiet:
        print(f"Hole: {100 * hole.mean():.1f}% of {img.shape[1]}x{img.shape[0]} pixels")
    if landmarks is None:
        with stage("Predicting landmarks"):
            landmarks = model.predict_landmarks(img, hole)
    with stage("Generating face"):
        result = model(img, hole, landmarks=landmarks)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(result.image).save(out)
    if args.landmarks_out:
        save_landmarks(args.landmarks_out, result.landmarks)
    if args.overlay:
        Image.fromarray(draw_landmarks(result.image, result.landmarks)).save(args.overlay)
    if not args.quiet:
        extra = "".join(f", {p}" for p in (args.landmarks_out, args.overlay) if p)
        print(f"Done! Wrote {out}{extra}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from lafin.training.config import TrainConfig
    from lafin.training.train import train

    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    if args.stage:
        config.stage = args.stage
    if args.data:
        config.data.train = list(args.data)
    if args.val:
        config.data.val = args.val
    if args.max_steps is not None:
        config.max_steps = args.max_steps
    train(config, args.out, resume=args.resume, device=args.device)
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from lafin.data.prepare import PrepareOptions, prepare

    options = PrepareOptions(size=args.size, aligned=args.aligned, min_face=args.min_face,
                             upsample=args.upsample)
    report = prepare(args.src, args.out, options, workers=args.workers)
    print(f"Prepared {report.written} faces into {report.out_dir} "
          f"({report.already_done} already done, {len(report.skipped)} skipped; see report.csv)")
    for name, reason in report.skipped[:20]:
        print(f"  skipped {name}: {reason}")
    if len(report.skipped) > 20:
        print(f"  ... and {len(report.skipped) - 20} more")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from lafin.checkpoint import convert_original

    convert_original(args.inputs, args.output)
    print(f"Wrote {args.output}")
    return 0


def _cmd_export_weights(args: argparse.Namespace) -> int:
    from lafin.checkpoint import merge_weights

    merge_weights(args.inputs, args.output)
    print(f"Wrote {args.output}")
    return 0


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lafin", description="Landmark-guided face inpainting (LaFIn).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"lafin {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("inpaint", help="fill the hole in a face image",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", nargs="?", help="face image (any format PIL reads)")
    p.add_argument("mask", nargs="?", help="hole mask, same size, white/nonzero = hole")
    p.add_argument("-o", "--output", required=True, help="where to write the result")
    p.add_argument("--example", action="store_true", help="use the built-in example face and hole")
    p.add_argument("--landmarks", help="use these landmarks (.pts, .json, .npy) instead of predicting")
    p.add_argument("--landmarks-out", help="write the landmarks used (.pts, .json or .npy)")
    p.add_argument("--overlay", help="write the result with the landmarks drawn")
    p.add_argument("--weights", help="weights file (default: the shipped model)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_cmd_inpaint)

    p = sub.add_parser("train", help="train one stage (landmarks, inpaint, joint)")
    p.add_argument("--stage", choices=["landmarks", "inpaint", "joint"])
    p.add_argument("--config", help="YAML training config (see configs/)")
    p.add_argument("--data", nargs="+", help="face cache directories (override the config)")
    p.add_argument("--val", help="validation face cache (overrides the config)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, samples)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("prepare", help="detect, annotate and align face photos into a training set")
    p.add_argument("src", help="folder of photos (sub-folders included; .pts beside a photo is used)")
    p.add_argument("out", help="output folder (crops, landmarks, report.csv, training cache)")
    p.add_argument("--size", type=int, default=128, help="side of the square crops (default 128)")
    p.add_argument("--aligned", action="store_true",
                   help="the photos are already aligned square crops: resize only, never re-crop")
    p.add_argument("--min-face", type=int, default=48, help="skip faces narrower than this (px)")
    p.add_argument("--upsample", type=int, default=1, help="detector upsampling (finds small faces)")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("convert", help="convert the original LaFIn .pth files to lafin weights")
    p.add_argument("inputs", nargs="+", help="InpaintingModel_gen.pth, landmark_detector.pth, ...")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("export-weights",
                       help="combine weights files (e.g. a landmark run and an inpaint run) into one")
    p.add_argument("inputs", nargs="+", help="weights.safetensors files; later ones win")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_cmd_export_weights)

    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub: argparse._SubParsersAction) -> None:
    """Subcommands that own their options; main() forwards their arguments whole."""
    sub.add_parser("evaluate", help="metrics by hole-ratio bin against baselines, with a report "
                   "(lafin evaluate --help)", add_help=False)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parser = build_parser()
    if argv and argv[0] == "evaluate":  # forwarded whole: it owns its options
        from lafin.evaluation.runner import main as evaluate_main

        return _guard(lambda: evaluate_main(argv[1:]))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
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
    except (InputError, WeightsError, WeightsNotFoundError, _UsageError, FileNotFoundError) as exc:
        print(f"lafin: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lafin: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
