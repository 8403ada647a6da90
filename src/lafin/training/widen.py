"""Widen a trained compact generator without changing what it computes (Net2Net-style growth).

Training from scratch throws away CPU-hours; a wider network started from the trained one keeps
them. Every old channel keeps its weights; every new channel gets a fresh random input side, and
its weights *into old channels* are zero, so the widened network's output is exactly the old one's
at step 0. Gradients reach the zero weights at once (they multiply the new channels' non-zero
activations), so the new channels start learning from the first step.

Only the scales before the deepest one can grow: the middle blocks and the attention layer work
at the deepest scale and keep their sizes.

    python -m lafin.training.widen lafin-compact.safetensors runs/wide-start.safetensors \\
        --channels 24,48,96,128,256

The output holds the widened generator (with its model config) and, unchanged, the landmark
predictor of the input file; use it as ``init_from`` with ``model:`` set to the same mapping
(``python -m lafin.training.widen ... --print-model`` prints it as YAML).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
import torch

from lafin.config import ModelConfig


def _space_maps(old: tuple[int, ...], new: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Index of each old channel in the new layout, per channel space of the generator."""
    maps = {f"s{k}": np.arange(o) for k, o in enumerate(old)}
    depth = len(old) - 1
    for j in range(depth):
        deep, skip = depth - j, depth - 1 - j
        # decoder j's input is cat([deeper features, gated skip])
        maps[f"cat{j}"] = np.concatenate([np.arange(old[deep]), new[deep] + np.arange(old[skip])])
    return maps


def _dims(name: str, depth: int) -> tuple[str | None, str | None]:
    """(output space, input space) of a generator parameter; None = a fixed size (image
    channels) and 'dw' marks a depthwise weight, whose one space is the output's."""
    if name.startswith("stem.0."):
        return "s0", None
    if name.startswith("to_rgb."):
        return None, "s0"
    m = re.match(r"encoders\.(\d+)\.(\d)\.(\d)\.", name)
    if m:
        i, conv, part = (int(g) for g in m.groups())
        space_in = f"s{i}" if conv == 0 else f"s{i + 1}"
        return (space_in, "dw") if part == 0 else (f"s{i + 1}", space_in)
    m = re.match(r"decoders\.(\d+)\.(\d)\.(\d)\.", name)
    if m:
        j, conv, part = (int(g) for g in m.groups())
        out = f"s{depth - 1 - j}"
        space_in = f"cat{j}" if conv == 0 else out
        return (space_in, "dw") if part == 0 else (out, space_in)
    raise ValueError(f"widen: no rule for generator parameter {name!r}")


def widen_generator_state(
    state: dict[str, torch.Tensor], config: ModelConfig, channels: tuple[int, ...], seed: int = 0
) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """A state for ``config`` with the compact generator's ``channels`` grown to ``channels``.

    Args:
        state: the trained generator's state dict (compact architecture).
        config: its model config.
        channels: new channels per scale; each at least the old one, the deepest unchanged.
        seed: seed of the new channels' random initialisation.

    Returns:
        (new state dict, new model config); the widened network computes the same output.
    """
    from lafin.networks import build_generator

    gen_cfg = config.generator
    old = tuple(gen_cfg.channels)
    channels = tuple(int(c) for c in channels)
    if gen_cfg.arch != "compact":
        raise ValueError(f"widen: only the compact generator can be widened, not {gen_cfg.arch!r}")
    if len(channels) != len(old):
        raise ValueError(f"widen: {len(old)} scales in the model, {len(channels)} given")
    if channels[-1] != old[-1]:
        raise ValueError(
            f"widen: the deepest scale keeps {old[-1]} channels (attention and the "
            f"middle blocks work there), not {channels[-1]}"
        )
    if any(n < o for n, o in zip(channels, old)):
        raise ValueError(f"widen: channels can only grow: {old} -> {channels}")

    new_config = dataclasses.replace(config, generator=dataclasses.replace(gen_cfg, channels=channels))
    torch.manual_seed(seed)
    fresh = build_generator(new_config).state_dict()
    maps = _space_maps(old, channels)
    depth = len(old) - 1
    out_state: dict[str, torch.Tensor] = {}
    for name, init in fresh.items():
        if name not in state:
            raise ValueError(f"widen: {name!r} missing from the trained generator")
        value = init.clone()
        trained = state[name].to(value.dtype)
        if name.startswith(("middle.", "attention.")):  # the deepest scale: sizes unchanged
            out_state[name] = trained.clone()
            continue
        space_out, space_in = _dims(name, depth)
        rows = maps[space_out] if space_out else np.arange(value.shape[0])
        rows_t = torch.as_tensor(rows)
        if value.ndim == 1:  # bias
            value[rows_t] = trained
        elif space_in == "dw":
            value[rows_t] = trained
        else:
            cols = torch.as_tensor(maps[space_in] if space_in else np.arange(value.shape[1]))
            # old outputs read only old inputs: zero the new inputs' weights into them
            value[rows_t] = 0
            value[rows_t[:, None], cols[None, :]] = trained
        out_state[name] = value
    unknown = sorted(set(state) - set(fresh))
    if unknown:
        raise ValueError(f"widen: unexpected trained parameters {unknown}")
    return out_state, new_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path, help="a lafin weights file with a compact generator")
    parser.add_argument("out", type=Path, help="where to write the widened weights")
    parser.add_argument("--channels", required=True, help="new channels per scale, e.g. 24,48,96,128,256")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--print-model",
        action="store_true",
        help="print the new model config as YAML (for the training config)",
    )
    args = parser.parse_args(argv)

    import yaml

    from lafin.checkpoint import build_from_weights, load_any, save_weights
    from lafin.networks import build_generator

    loaded = load_any(args.weights)
    if loaded.generator_state is None:
        sys.exit(f"{args.weights}: no generator in this file")
    channels = tuple(int(c) for c in args.channels.split(","))
    state, config = widen_generator_state(loaded.generator_state, loaded.config, channels, seed=args.seed)
    generator = build_generator(config)
    generator.load_state_dict(state, strict=True)
    _, predictor = build_from_weights(loaded)
    meta = {k: v for k, v in loaded.metadata.items() if k not in ("format", "format_version", "config")}
    meta["widened_from"] = ",".join(str(c) for c in loaded.config.generator.channels)
    save_weights(args.out, config, generator=generator, landmark_predictor=predictor, metadata=meta)
    print(f"wrote {args.out}: generator channels {loaded.config.generator.channels} -> {channels}")
    if args.print_model:
        print(yaml.safe_dump({"model": config.to_dict()}, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
