"""The torchrun process group: this process's rank, the world size, and the DDP wrappers."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def init_distributed() -> tuple[int, int]:
    """Initialise torch.distributed when launched by torchrun; returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the network itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def wrap_trainable(nets: dict[str, nn.Module]) -> None:
    """Replace, in place, every network with trainable weights by its DDP wrapper."""
    for name, net in nets.items():
        if any(p.requires_grad for p in net.parameters()):
            # the discriminator's attention has a long-range branch it never uses
            nets[name] = nn.parallel.DistributedDataParallel(
                net, find_unused_parameters=name == "discriminator"
            )


def gather_from_ranks(value: Any, world: int) -> list[Any]:
    """Every rank's ``value`` (a collective call under DDP: every rank must make it)."""
    if world == 1:
        return [value]
    values: list[Any] = [None] * world
    dist.all_gather_object(values, value)
    return values
