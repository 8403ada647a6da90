"""Checking a torch device name before any work is done on it."""

from __future__ import annotations

import torch

from lafin.errors import DeviceError


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine, or :class:`DeviceError`.

    ``"bogus"``, ``"cuda"`` without a usable GPU, ``"cuda:3"`` with two GPUs and ``"mps"`` off
    Apple silicon are refused with a one-line reason.
    """
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device.strip())
        except (RuntimeError, ValueError):
            raise DeviceError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    else:
        raise DeviceError(f"device must be a string such as 'cpu' or 'cuda', not {type(device).__name__}")
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r}: CUDA is not available on this machine "
                "(no GPU, or torch built without CUDA); use --device cpu"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(
                f"device {device!r}: this machine has {count} CUDA device(s), numbered 0..{count - 1}"
            )
        return dev
    if dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"device {device!r}: Apple's MPS is not available on this machine")
        return dev
    if dev.type == "meta":  # torch's shape-only device (tests, model surgery)
        return dev
    backend = getattr(torch, dev.type, None)  # xpu, ...: torch.<type>.is_available()
    if backend is not None and callable(getattr(backend, "is_available", None)):
        if not backend.is_available():
            raise DeviceError(f"device {device!r}: {dev.type} is not available on this machine")
        return dev
    raise DeviceError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps")
