"""The training loop for the four stages, read top to bottom.

* ``landmarks``: the landmark predictor learns to place 68 points on masked faces.
* ``inpaint``: the generator learns to fill holes given ground-truth landmarks.
* ``joint``: the generator is fine-tuned on the (frozen) predictor's landmarks, as tested in the paper.
  Both generator stages can also be trained for realism rather than for PSNR: a hole-aware patch
  discriminator conditioned on a landmark heat map, Inception perceptual, a frozen landmark
  predictor that checks the face follows its landmarks, and edited expressions to follow.
* ``refine``: the texture refiner learns to turn the frozen generator's face, upsampled to the
  refiner's size, into a detailed one (adversarial, Inception perceptual and pooled-L1 terms).

Runs on one CPU/GPU or on many under ``torchrun`` (DistributedDataParallel; gloo on CPU). Rank 0
writes checkpoints (atomically), TensorBoard scalars, sample grids and the exported weights.
Every random draw comes from generators stored in the checkpoint, so ``--resume`` continues the
exact same run, also after ``kill -9``.

The parts, one module each: :mod:`~lafin.training.batch_source` (the batches),
:mod:`~lafin.training.stage_networks` (networks, optimisers, moving average),
:mod:`~lafin.training.landmark_stage`, :mod:`~lafin.training.generator_stage` and
:mod:`~lafin.training.refine_stage` (one step of each stage), with
:mod:`~lafin.training.generator_losses` and :mod:`~lafin.training.adversarial` (their terms),
:mod:`~lafin.training.validation`, :mod:`~lafin.training.checkpointing` and
:mod:`~lafin.training.progress`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from lafin.data.batches import Batch
from lafin.data.cache import FaceCache, load_cache
from lafin.devices import resolve_device
from lafin.training.adversarial import Adversary
from lafin.training.batch_source import BatchSource, CacheMix, build_mask_fn
from lafin.training.checkpointing import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, RUN_FILES, RunCheckpoint
from lafin.training.config import TrainConfig
from lafin.training.distributed import init_distributed, wrap_trainable
from lafin.training.generator_losses import GeneratorLosses
from lafin.training.generator_stage import GeneratorStage
from lafin.training.landmark_stage import LandmarkStage
from lafin.training.run_folder import check_run_folder
from lafin.training.progress import ProgressReport
from lafin.training.refine_stage import RefineStage
from lafin.training.stage_networks import StageNetworks, resolve_model_config
from lafin.training.validation import Validator

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "RUN_FILES",
    "CacheMix",
    "Trainer",
    "build_mask_fn",
    "learning_rate_factor",
    "resolve_model_config",
    "train",
]

log = logging.getLogger(__name__)


def learning_rate_factor(config: TrainConfig, step: int) -> float:
    """The schedule's multiplier of the base learning rates at ``step`` (a function of the step
    only, so a resumed run continues on it)."""
    if config.lr_schedule == "constant":
        return 1.0
    progress = min(1.0, step / max(1, config.max_steps))
    return config.lr_min_ratio + (1 - config.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    """Holds the networks, optimisers and random state of one run; ``run()`` trains it."""

    def __init__(
        self, config: TrainConfig, out_dir: str | Path, resume: bool = False, device: str = "cpu"
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.rank, self.world = init_distributed()
        self.device = resolve_device(device)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.model_config = resolve_model_config(config.model)
        # the landmark stage trains at the predictor's own input size (landmarks.input_size),
        # the refine stage at the refiner's
        self.size = {
            "landmarks": self.model_config.landmark_size,
            "refine": self.model_config.refiner.output_size,
        }.get(config.stage, self.model_config.image_size)
        torch.manual_seed(config.seed + self.rank)
        self.rng = np.random.default_rng([config.seed, self.rank])
        self.step = 0
        # channels_last: NHWC lets oneDNN's depthwise and 1x1 convolutions skip layout
        # reorders; measured ~20% faster per generator step on two CPU cores
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format

        self.batches = BatchSource(config, self.size, self.rng, self.device, self.memory_format)
        self.val: FaceCache | None = load_cache(config.data.val) if config.data.val else None
        self.networks = StageNetworks(config, self.model_config, self.device, self.memory_format)
        self.generator_losses = GeneratorLosses(config.loss, config.stage, self.device)
        adversary = Adversary(config, self.networks)
        refine = None
        if config.stage == "landmarks":
            self.stage = LandmarkStage(config, self.networks, self.size)
        elif config.stage == "refine":
            self.stage = refine = RefineStage(
                config, self.networks, self.generator_losses, adversary, self.size
            )
        else:
            self.stage = GeneratorStage(config, self.networks, self.generator_losses, adversary, self.size)
        self.validator = Validator(
            config, self.networks, self.size, self.batches.mask_fn, self.device, self.memory_format, refine
        )
        self.checkpoint = RunCheckpoint(
            config, self.model_config, self.networks, self.rng, self.rank, self.world, self.device
        )
        if resume and (self.out_dir / "checkpoint.pt").is_file():
            self.load_checkpoint(self.out_dir / "checkpoint.pt")
        elif resume:
            log.warning("--resume: no checkpoint in %s yet, starting from step 0", self.out_dir)
        if self.world > 1:
            wrap_trainable(self.networks.nets)

    # the parts' state, under the names of earlier versions
    nets = property(lambda self: self.networks.nets, doc="the stage's networks by name (DDP-wrapped)")
    optims = property(lambda self: self.networks.optims, doc="the optimisers by network name")
    ema = property(lambda self: self.networks.ema, doc="the moving average of the trained network")
    steps_before = property(lambda self: self.networks.steps_before, doc="earlier steps per network")
    data = property(lambda self: self.batches.data, doc="the training caches (a CacheMix)")
    mask_fn = property(lambda self: self.batches.mask_fn, doc="hole(rng, landmarks) of the mixture")
    geometry = property(lambda self: self.batches.geometry, doc="the geometry augmentation or None")

    # --------------------------------------------------------------------- the loop

    def run(self, max_steps: int | None = None) -> None:
        """Train up to ``max_steps`` (the config's by default) from the current step."""
        cfg = self.config
        max_steps = max_steps if max_steps is not None else cfg.max_steps
        progress = ProgressReport(
            self.out_dir, cfg.stage, cfg.log_every, self.rank, self.world, self.step, max_steps
        )
        while self.step < max_steps:
            self.set_learning_rates()
            batch = self.next_batch()
            logs = self.train_step(batch)
            self.step += 1
            progress.step_done(self.step, logs, batch.images.shape[0], cfg.lr * self.learning_rate_factor())
            if self.rank == 0 and cfg.sample_every and self.step % cfg.sample_every == 0:
                self.save_samples(batch)
            if self.val is not None and cfg.val_every and self.step % cfg.val_every == 0 and self.rank == 0:
                progress.validation(self.step, self.validate())
            if self.step % cfg.checkpoint_every == 0 or self.step == max_steps:
                self.save_checkpoint()
        progress.close()

    def next_batch(self) -> Batch:
        return self.batches.next_batch()

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimisation step of this run's stage on ``batch`` at the current ``step`` (the
        loop advances ``step``); returns the step's losses by log name."""
        return self.stage.train_step(batch, self.step)

    # the stage-named entry points of earlier versions
    landmark_step = inpaint_step = refine_step = train_step

    def learning_rate_factor(self) -> float:
        """The schedule's multiplier of the base learning rates at the current step."""
        return learning_rate_factor(self.config, self.step)

    def set_learning_rates(self) -> None:
        self.networks.set_learning_rates(self.learning_rate_factor())

    def predict_points(self, masked: torch.Tensor) -> torch.Tensor:
        """The frozen predictor's points (B, 68, 2) in pixels of the stage's crop."""
        return self.networks.predict_points(masked, self.size)

    # --------------------------------------------------------------------- judging and saving

    def validate(self) -> dict[str, float]:
        """Metrics of the moving average on fixed validation faces (see Validator.validate)."""
        assert self.val is not None
        return self.validator.validate(self.val)

    def save_samples(self, batch: Batch) -> None:
        self.validator.save_samples(batch, self.out_dir / "samples" / f"{self.step:07d}.png")

    def state_dict(self) -> dict:
        return self.checkpoint.state_dict(self.step)

    def load_checkpoint(self, path: Path) -> None:
        """Restore a checkpoint of this run; a damaged or foreign file is a RunFolderError."""
        self.step = self.checkpoint.load(path)

    def save_checkpoint(self) -> None:
        self.checkpoint.save(self.out_dir, self.step)

    def export_weights(self, path: Path) -> None:
        self.checkpoint.export_weights(path, self.step)


def train(
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    device: str = "cpu",
    max_steps: int | None = None,
    overwrite: bool = False,
) -> Trainer:
    """Train (or resume) a run into ``out_dir``; returns the trainer for inspection.

    A folder that already holds a run (a checkpoint or weights) is refused unless ``resume``
    (continue it) or ``overwrite`` (start afresh; its files are replaced as the new run writes
    them) is given: a run is never replaced by accident.
    """
    resolve_device(device)
    out = Path(out_dir)
    check_run_folder(out, RUN_FILES, resume, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(config, out, resume=resume, device=device)
    if trainer.rank == 0:
        import yaml

        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    trainer.run(max_steps)
    return trainer
