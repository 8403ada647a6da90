"""Where and how the networks run: the device, the CPU threads and denormal flushing of a call,
and the memory format each network gets."""

from __future__ import annotations

import functools
import os
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from lafin.devices import resolve_device
from lafin.errors import OptionError

# Environment variables by which a user sets the CPU threads of torch (then lafin keeps them).
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def flush_denormal_enabled() -> bool:
    """Whether this thread flushes denormal floats to zero (probed: 1e-39 is denormal in fp32)."""
    return bool((torch.full((1,), 1e-39) * 1.0001).item() == 0.0)


class Runtime:
    """A torch device and the CPU settings the networks run under.

    Args:
        device: ``"cpu"``, ``"cuda"``, ... (checked by :func:`lafin.devices.resolve_device`).
        threads: CPU threads during a call; None: one, unless the environment sets
            ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` (then torch's setting is kept).
    """

    def __init__(self, device: str | torch.device = "cpu", threads: int | None = None) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise OptionError(f"threads must be a positive integer or None, not {threads!r}")
        self.device = resolve_device(device)
        self.threads = threads
        self._local = threading.local()

    @contextmanager
    def cpu_settings(self) -> Iterator[None]:
        """Threads and denormal flushing for one call (re-entrant); restored afterwards.

        Denormals (|x| < 1.2e-38) appear in the attention's softmax over many positions and make
        CPU matrix products many times slower; one thread avoids OpenMP threads spin-waiting for
        each other on a busy CPU (docs/SPEED.md).
        """
        depth = getattr(self._local, "depth", 0)
        if depth or self.device.type != "cpu":
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        previous = torch.get_num_threads()
        wanted = (
            self.threads
            if self.threads is not None
            else (None if any(os.environ.get(k) for k in _THREAD_ENV) else 1)
        )
        flushing = flush_denormal_enabled()
        self._local.depth = 1
        try:
            if wanted is not None and wanted != previous:
                torch.set_num_threads(wanted)
            if not flushing:
                torch.set_flush_denormal(True)
            yield
        finally:
            self._local.depth = 0
            if not flushing:
                torch.set_flush_denormal(False)
            if torch.get_num_threads() != previous:
                torch.set_num_threads(previous)

    def use_channels_last(self, network: torch.nn.Module | None) -> bool:
        """Put ``network`` in the channels-last memory format where that measured faster
        (docs/SPEED.md: on the CPU, the MobileNetV2 landmark predictor, the compact generator
        and the refiner; not the original release's generator). Returns whether it did."""
        from lafin.networks import CompactGenerator, LandmarkPredictor, Refiner

        if self.device.type != "cpu" or not isinstance(
            network, (CompactGenerator, LandmarkPredictor, Refiner)
        ):
            return False
        network.to(memory_format=torch.channels_last)
        return True


def cpu_call(method: Callable) -> Callable:
    """Run a method of an object with a ``runtime`` under that runtime's CPU settings."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.runtime.cpu_settings():
            return method(self, *args, **kwargs)

    return wrapper
