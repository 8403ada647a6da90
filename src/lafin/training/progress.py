"""Reports a run's progress: the tqdm bar, periodic log lines of the mean losses and the speed,
and the same scalars in TensorBoard (rank 0)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


def open_tensorboard(out_dir: Path):
    """A TensorBoard writer into ``out_dir/tensorboard``, or None without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed: no TensorBoard scalars (pip install 'lafin[train]')")
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


class ProgressReport:
    """Sums the step logs and, every ``log_every`` steps and at the last, reports their means
    (divided by ``log_every``) and the images per second since the previous report."""

    def __init__(
        self, out_dir: Path, stage: str, log_every: int, rank: int, world: int, step: int, max_steps: int
    ) -> None:
        from tqdm import tqdm

        self.log_every = log_every
        self.rank = rank
        self.world = world
        self.max_steps = max_steps
        self.writer = open_tensorboard(out_dir) if rank == 0 else None
        # in a log file (not a terminal) a bar refreshes rarely, so logs stay readable
        self.bar = tqdm(
            total=max_steps,
            initial=step,
            disable=rank != 0,
            unit="step",
            dynamic_ncols=True,
            desc=stage,
            mininterval=0.1 if sys.stderr.isatty() else 60.0,
        )
        self._restart()

    def _restart(self) -> None:
        self.t0, self.images_seen, self.running = time.perf_counter(), 0, {}

    def step_done(self, step: int, logs: dict[str, float], batch_size: int, lr: float) -> None:
        """Count one finished step (``step`` is its number from 1; ``lr`` the base rate now)."""
        self.images_seen += batch_size * self.world
        for k, v in logs.items():
            self.running[k] = self.running.get(k, 0.0) + v
        self.bar.update(1)
        if step % self.log_every != 0 and step != self.max_steps:
            return
        rate = self.images_seen / (time.perf_counter() - self.t0)
        means = {k: v / self.log_every for k, v in self.running.items()}
        self.bar.set_postfix(
            {"img/s": f"{rate:.1f}", **{k.split("/")[-1]: f"{v:.4f}" for k, v in list(means.items())[:3]}}
        )
        if self.rank == 0:
            log.info(
                "step %d  %.1f img/s  %s", step, rate, "  ".join(f"{k}={v:.4f}" for k, v in means.items())
            )
            if self.writer is not None:
                for k, v in means.items():
                    self.writer.add_scalar(k, v, step)
                self.writer.add_scalar("speed/images_per_second", rate, step)
                self.writer.add_scalar("lr", lr, step)
        self._restart()

    def validation(self, step: int, metrics: dict[str, float]) -> None:
        log.info("step %d  validation  %s", step, "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        if self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
