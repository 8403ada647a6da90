"""Saves and restores a run: the resumable checkpoint (networks, averages, optimisers and every
process's random state, written atomically) and the exported inference weights with the
training history of each network in their metadata."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lafin.atomic import atomic_write
from lafin.config import ModelConfig
from lafin.errors import RunFolderError
from lafin.training.config import TrainConfig
from lafin.training.distributed import gather_from_ranks, unwrap
from lafin.training.stage_networks import StageNetworks

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "lafin-train-checkpoint"
CHECKPOINT_VERSION = 1
# the files that make a folder a run: train() refuses to start a new run over them
RUN_FILES = ("checkpoint.pt", "weights.safetensors")


def save_atomic(obj: Any, path: Path) -> None:
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


class RunCheckpoint:
    """The checkpoint and exported weights of one process of a run (rank 0 writes them)."""

    def __init__(
        self,
        config: TrainConfig,
        model_config: ModelConfig,
        networks: StageNetworks,
        rng: np.random.Generator,
        rank: int,
        world: int,
        device: torch.device,
    ) -> None:
        self.config = config
        self.model_config = model_config
        self.networks = networks
        self.rng = rng
        self.rank = rank
        self.world = world
        self.device = device

    def state_dict(self, step: int) -> dict[str, Any]:
        """The checkpoint's contents (a collective call under DDP: every rank must make it)."""
        rng_states = gather_from_ranks(self.rng.bit_generator.state, self.world)
        torch_states = gather_from_ranks(torch.get_rng_state(), self.world)
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": step,
            "train_config": self.config.to_dict(),
            "model_config": self.model_config.to_dict(),
            "nets": {k: unwrap(v).state_dict() for k, v in self.networks.nets.items()},
            "ema": self.networks.ema.state_dict(),
            "optims": {k: v.state_dict() for k, v in self.networks.optims.items()},
            "numpy_rng": rng_states,
            "torch_rng": torch_states,
        }

    def load(self, path: Path) -> int:
        """Restore a checkpoint of this run and return its step; a damaged or foreign file is a
        RunFolderError."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # truncated, not a torch file, unpickling refused
            raise RunFolderError(
                f"{path}: cannot be resumed, the checkpoint is damaged or not a "
                f"lafin checkpoint ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:160]})"
            ) from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise RunFolderError(f"{path}: not a lafin training checkpoint")
        if len(state["numpy_rng"]) != self.world:
            raise RunFolderError(
                f"{path}: saved with {len(state['numpy_rng'])} processes, "
                f"resumed with {self.world}; exact resume needs the same number"
            )
        networks = self.networks
        try:
            for k, net in networks.nets.items():
                unwrap(net).load_state_dict(state["nets"][k], strict=True)
            if state["ema"] is not None:
                networks.ema.load_state_dict(state["ema"], strict=True)
            else:  # a checkpoint from before the landmark stage kept an average
                networks.ema.load_state_dict(unwrap(networks.nets[networks.trained]).state_dict())
                log.info("%s: no EMA weights in the checkpoint; the average starts here", path)
            for k, opt in networks.optims.items():
                opt.load_state_dict(state["optims"][k])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise RunFolderError(
                f"{path}: does not match this run's stage and model (saved: stage "
                f"{state.get('train_config', {}).get('stage', '?')}; {type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:160]}); resume with the run's own config"
            ) from None
        self.rng.bit_generator.state = state["numpy_rng"][self.rank]
        torch.set_rng_state(state["torch_rng"][self.rank].cpu())
        step = int(state["step"])
        log.info("resumed %s at step %d", path, step)
        return step

    def save(self, out_dir: Path, step: int) -> None:
        """Write ``checkpoint.pt`` and ``weights.safetensors`` (rank 0; every rank must call)."""
        state = self.state_dict(step)  # collective under DDP
        if self.rank != 0:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        save_atomic(state, out_dir / "checkpoint.pt")
        self.export_weights(out_dir / "weights.safetensors", step)

    def export_weights(self, path: Path, step: int) -> None:
        """Inference weights of this run: the EMA of the trained network (and, in the joint
        stage, the frozen landmark predictor it used)."""
        from lafin.checkpoint import save_weights

        networks, trained = self.networks, self.networks.trained
        refiner = None
        if trained == "landmarks":
            generator, landmarks = None, networks.ema
        elif trained == "refiner":  # the refiner with the generator it was trained on
            generator, landmarks, refiner = unwrap(networks.nets["generator"]), None, networks.ema
        else:
            generator = networks.ema
            landmarks = unwrap(networks.nets["landmarks"]) if "landmarks" in networks.nets else None
        metadata = {"step": str(step), "stage": self.config.stage}
        if trained in networks.steps_before:
            metadata["steps_before"] = str(networks.steps_before[trained])
        # a frozen network keeps the history it came with (the refine stage's generator, the
        # generator stages' landmark predictor); the trained one gets this run's
        frozen = [
            name
            for name, net in (("generator", generator), ("landmarks", landmarks))
            if net is not None and name != trained and name in networks.history
        ]
        for name in frozen:
            metadata.update({f"{name}.{k}": v for k, v in networks.history[name].items()})
        if refiner is not None:
            metadata.update({f"refiner.{k}": v for k, v in metadata.items() if "." not in k})
        elif frozen:
            metadata.update({f"{trained}.{k}": v for k, v in metadata.items() if "." not in k})
        save_weights(
            path,
            self.model_config,
            generator=generator,
            landmark_predictor=landmarks,
            refiner=refiner,
            metadata=metadata,
        )
