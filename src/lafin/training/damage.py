"""Train the damage detector on clean photos with procedurally drawn damage.

    lafin train-damage --config configs/damage-detector.yaml --out runs/damage \\
        --images /path/to/helen_crops --names configs/splits/helen-train.txt \\
        --images /path/to/celeba256 --names /path/to/celeba/train.txt \\
        --val-images /path/to/celeba256 --val-names /path/to/celeba/val.txt

(also ``python -m lafin.training.damage ...``; ``--init WEIGHTS`` fine-tunes a detector file
instead of starting from random weights; ``--set KEY=VALUE`` overrides a setting of the config,
as the modern-photo fine-tune in ``configs/damage-detector.yaml``'s header does). Each step
draws random crops of randomly rescaled photos, turns them old and damaged with
:func:`lafin.damage.make_damaged` (the ``training`` preset, ``modern_share`` of the photos left
modern) and fits per-pixel logits to the drawn mask (binary cross-entropy with a positive-class
weight plus a soft-Dice term). Validation: the 2-px-tolerant F1 at threshold 0.5 on fixed
damaged validation photos, and the share of pixels flagged on the clean validation photos as
they are (``modern_flagged``: false alarms on modern photos); the best step is written to
``best.safetensors``, the last to ``last.safetensors``, and ``state.pt`` lets ``--resume``
continue the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml

from lafin.atomic import atomic_write
from lafin.damage import TRAINING, DamageConfig, make_damaged
from lafin.errors import InputError, RunFolderError
from lafin.evaluation.damage_metrics import MaskCounts, mask_counts
from lafin.networks.damage_detector import (
    DamageDetector,
    DamageDetectorConfig,
    load_damage_detector,
    save_damage_detector,
)
from lafin.training.run_folder import add_run_folder_arguments, check_run_folder

log = logging.getLogger(__name__)

# files that make a folder a damage detector run (refused as --out without --resume/--overwrite)
DAMAGE_RUN_FILES = ("state.pt", "best.safetensors", "last.safetensors")


@dataclass
class DamageTrainConfig:
    """Hyper-parameters (the data paths are command-line arguments)."""

    widths: tuple[int, int, int, int] = (8, 16, 24, 32)
    crop: int = 160
    batch: int = 12
    steps: int = 4000
    lr: float = 3e-3
    weight_decay: float = 1e-4
    scale: tuple[float, float] = (0.7, 1.6)  # photo rescale before cropping
    pos_weight: float = 3.0
    dice: float = 0.5
    val_images: int = 48
    val_every: int = 250
    seed: int = 0
    max_minutes: float = 55.0
    # share of the photos kept modern (no old look, no scan): lafin.damage.DamageConfig
    modern_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.modern_share <= 1:
            raise ValueError(f"modern_share must be in [0, 1], not {self.modern_share}")

    @property
    def damage(self) -> DamageConfig:
        """The generator's settings: the ``training`` preset with this run's modern share."""
        return dataclasses.replace(TRAINING, modern_share=self.modern_share)

    @classmethod
    def from_yaml(cls, path: str | Path | None, overrides: Iterable[str] = ()) -> "DamageTrainConfig":
        """Load ``path`` (None: the defaults), with ``KEY=VALUE`` ``overrides``
        (``lafin train-damage --set``) applied first (:func:`lafin.config.apply_overrides`)."""
        from lafin.config import apply_overrides, from_mapping

        data = (yaml.safe_load(Path(path).read_text()) or {}) if path else {}
        return from_mapping(cls, apply_overrides(cls, data, overrides), str(path or "config"))


def _read_list(images: Path, names: Path | None) -> list[Path]:
    """The photos of ``images`` (those ``names`` lists, or all .jpg/.png); an
    :class:`~lafin.errors.InputError` when the folder, the list or a listed photo is missing, or
    no photo is found."""
    if not images.is_dir():
        raise InputError(f"{images}: not a folder of photos")
    if names is None:
        paths = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    else:
        if not names.is_file():
            raise InputError(f"{names}: no such list of names")
        wanted = [n.strip() for n in names.read_text().split() if n.strip()]
        paths = [images / n for n in wanted]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise InputError(f"{len(missing)} images listed in {names} are missing, e.g. {missing[0]}")
    if not paths:
        raise InputError(f"no photos in {images}" + (f" listed by {names}" if names else ""))
    return paths


def _load(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot read {path}")
    return np.ascontiguousarray(img[..., ::-1])


def sample_batch(
    sources: list[list[Path]], config: DamageTrainConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, C, C) damaged crops in [0, 1] and (B, 1, C, C) masks; sources drawn equally."""
    images, masks = [], []
    c = config.crop
    for _ in range(config.batch):
        source = sources[rng.integers(len(sources))]
        img = _load(source[rng.integers(len(source))])
        if rng.random() < 0.5:
            img = img[:, ::-1]
        f = rng.uniform(*config.scale)
        h, w = img.shape[:2]
        nh, nw = max(c, int(round(h * f))), max(c, int(round(w * f)))
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
        y, x = rng.integers(nh - c + 1), rng.integers(nw - c + 1)
        crop = np.ascontiguousarray(img[y : y + c, x : x + c])
        sample = make_damaged(crop, rng, config.damage, scale=nh / 256)
        images.append(sample.damaged)
        masks.append(sample.mask)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255)
    y = torch.from_numpy(np.stack(masks)[:, None] > 0).float()
    return x, y


def detector_loss(logits: torch.Tensor, target: torch.Tensor, config: DamageTrainConfig) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(
        logits, target, pos_weight=torch.tensor(config.pos_weight, device=logits.device)
    )
    if not config.dice:
        return bce
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    dice = 1 - (2 * inter + 1) / (p.sum() + target.sum() + 1)
    return bce + config.dice * dice


def make_validation(
    paths: list[Path], count: int, seed: int, damage: DamageConfig = TRAINING
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Fixed validation photos: (damaged, its mask, the clean photo as it is) each."""
    rng = np.random.default_rng(seed)
    chosen = [paths[i] for i in rng.choice(len(paths), min(count, len(paths)), replace=False)]
    out = []
    for path in chosen:
        photo = _load(path)
        out.append((*make_damaged(photo, rng, damage)[1:], photo))
    return out


@torch.no_grad()
def validate(model: DamageDetector, val: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    model.eval()

    def predict(image: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255)
        return torch.sigmoid(model(x))[0, 0].numpy() > 0.5

    counts = MaskCounts()
    flagged, modern = [], []
    for damaged, mask, photo in val:
        pred = predict(damaged)
        counts += mask_counts(pred, mask, tolerance=2)
        flagged.append(pred.mean())
        modern.append(predict(photo).mean())
    model.train()
    return {
        "precision": counts.precision,
        "recall": counts.recall,
        "f1": counts.f1,
        "flagged": float(np.mean(flagged)),
        "modern_flagged": float(np.mean(modern)),
    }


def train(
    config: DamageTrainConfig,
    sources: list[list[Path]],
    val_paths: list[Path],
    out: Path,
    resume: bool = False,
    init: Path | None = None,
    overwrite: bool = False,
) -> dict[str, float]:
    """Train (or, from ``init``, a detector weights file, fine-tune) the detector into ``out``.

    A folder that holds a run is refused (:class:`~lafin.errors.RunFolderError`) unless
    ``resume`` (continue it) or ``overwrite`` (start afresh in it); a damaged state to resume is
    refused the same way."""
    check_run_folder(out, DAMAGE_RUN_FILES, resume, overwrite)
    torch.manual_seed(config.seed)
    state_path = out / "state.pt"
    state = None
    if resume and state_path.is_file():
        try:
            state = torch.load(state_path, weights_only=False)
            if not isinstance(state, dict) or not {"model", "opt", "step"} <= set(state):
                raise ValueError("not a damage detector run's state")
        except Exception as exc:  # any unpickling failure: a truncated or foreign file
            raise RunFolderError(
                f"{state_path}: cannot be resumed, the state is damaged or not a damage "
                f"detector run's ({type(exc).__name__})"
            ) from None
    out.mkdir(parents=True, exist_ok=True)
    started_from = state.get("init") if state else None  # a fine-tune being resumed
    if started_from:  # its state holds the folded network (the --init file is not read again)
        model = DamageDetector(DamageDetectorConfig(config.widths)).fuse().train()
    elif init is not None:
        # a shipped file has its batch norms folded in: the fine-tune trains the folded network
        model, meta = load_damage_detector(init)
        if model.config.widths != tuple(config.widths):
            raise RunFolderError(
                f"{init}: widths {model.config.widths} differ from the config's {tuple(config.widths)}"
            )
        model.train()
        started_from = {"name": Path(init).name, "step": str(meta.get("step", "?"))}
        log.info("fine-tuning %s (step %s)", init, started_from["step"])
    else:
        model = DamageDetector(DamageDetectorConfig(config.widths))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step, best, spent = 0, {"f1": -1.0}, 0.0
    if state is not None:
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise RunFolderError(
                f"{state_path} does not fit this network (a run from scratch "
                f"resumed with --init, or other widths?): {exc}"
            ) from exc
        opt.load_state_dict(state["opt"])
        step, best, spent = state["step"], state["best"], state["minutes"]
        log.info("resumed at step %d", step)
    rng = np.random.default_rng([config.seed, step])
    val = make_validation(val_paths, config.val_images, config.seed + 1, config.damage)
    (out / "config.yaml").write_text(
        yaml.safe_dump(
            {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
        )
    )
    history = out / "history.jsonl"
    if state is None:  # a new run (also one started again with overwrite): a new history
        history.unlink(missing_ok=True)
    start = time.time()
    model.train()
    losses = []
    while step < config.steps:
        minutes = spent + (time.time() - start) / 60
        # the schedule follows steps or wall time, whichever is further along: on a shared CPU
        # the time limit may come first, and the run still ends at a low learning rate
        progress = min(1.0, max(step / config.steps, minutes / config.max_minutes))
        warm = min(1.0, (step + 1) / 100)
        for group in opt.param_groups:
            group["lr"] = config.lr * warm * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * progress)))
        x, y = sample_batch(sources, config, rng)
        loss = detector_loss(model(x), y, config)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(float(loss.detach()))
        minutes = spent + (time.time() - start) / 60
        out_of_time = minutes > config.max_minutes
        if step % config.val_every == 0 or step == config.steps or out_of_time:
            scores = validate(model, val)
            scores.update(
                step=step, loss=float(np.mean(losses)), minutes=minutes, lr=opt.param_groups[0]["lr"]
            )
            losses = []
            log.info("step %d: %s", step, json.dumps(scores))
            with history.open("a") as f:
                f.write(json.dumps(scores) + "\n")
            meta = {"step": step, "val_f1": f"{scores['f1']:.4f}"}
            if started_from:
                meta.update(init=started_from["name"], init_step=started_from["step"])
            save_damage_detector(out / "last.safetensors", model, meta)
            if scores["f1"] > best["f1"]:
                best = scores
                save_damage_detector(out / "best.safetensors", model, meta)
            with atomic_write(state_path) as tmp:
                torch.save(
                    {
                        "model": model.state_dict(),
                        "opt": opt.state_dict(),
                        "step": step,
                        "best": best,
                        "minutes": minutes,
                        "init": started_from,
                    },
                    tmp,
                )
        if out_of_time:
            log.info("stopping at step %d: max_minutes reached", step)
            break
    return best


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lafin train-damage", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML hyper-parameters (configs/damage-detector.yaml)")
    p.add_argument(
        "--images",
        action="append",
        required=True,
        help="a folder of clean photos (repeat for several sources, drawn equally)",
    )
    p.add_argument(
        "--names", action="append", help="a file of names to use from the matching --images (repeat in order)"
    )
    p.add_argument("--val-images", required=True, help="folder of validation photos")
    p.add_argument("--val-names", help="names to use from --val-images")
    add_run_folder_arguments(p, "run folder (weights, state, history)")
    p.add_argument("--steps", type=int, help="override the config's steps")
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of --config (e.g. --set lr=0.0005 modern_share=0.35); "
        "an unknown key or a value of the wrong type is refused",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument(
        "--init",
        help="fine-tune this detector weights file (e.g. a copy of the "
        "shipped lafin/weights/damage-detector.safetensors)",
    )


def config_from_args(args: argparse.Namespace) -> DamageTrainConfig:
    """The run's hyper-parameters: ``--config`` with ``--set`` applied, then ``--steps``; a bad
    file, key or value is a ``ValueError``."""
    config = DamageTrainConfig.from_yaml(args.config, args.set)
    return dataclasses.replace(config, steps=args.steps) if args.steps else config


def run_photos(args: argparse.Namespace) -> tuple[list[list[Path]], list[Path]]:
    """The training photos per ``--images`` source and the validation photos; an
    :class:`~lafin.errors.InputError` for a missing folder, list or photo, or mismatched
    ``--names``."""
    names = args.names or []
    if names and len(names) != len(args.images):
        raise InputError(
            f"give one --names per --images (or none): {len(names)} --names for {len(args.images)} --images"
        )
    sources = [
        _read_list(Path(d), Path(n) if names else None)
        for d, n in zip(args.images, names or [None] * len(args.images))
    ]
    val_paths = _read_list(Path(args.val_images), Path(args.val_names) if args.val_names else None)
    return sources, val_paths


def run(args: argparse.Namespace, config: DamageTrainConfig | None = None) -> int:
    config = config_from_args(args) if config is None else config
    check_run_folder(Path(args.out), DAMAGE_RUN_FILES, args.resume, args.overwrite)  # before the photos
    sources, val_paths = run_photos(args)
    torch.set_num_threads(args.threads)
    log.info("sources: %s images; %d validation photos", [len(s) for s in sources], len(val_paths))
    best = train(
        config,
        sources,
        val_paths,
        Path(args.out),
        resume=args.resume,
        init=Path(args.init) if args.init else None,
        overwrite=args.overwrite,
    )
    log.info("best: %s", json.dumps(best))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args, config_from_args(args))
    except (InputError, yaml.YAMLError) as exc:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(exc).split())}\n")


if __name__ == "__main__":
    raise SystemExit(main())
