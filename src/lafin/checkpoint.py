"""Weights files: our safetensors format, and the original LaFIn release's ``.pth`` files.

Our format is one ``.safetensors`` file whose tensors are prefixed by network (``generator.``,
``landmarks.``, ``discriminator.``) and whose metadata holds ``format`` (``lafin-weights``),
``format_version`` and the :class:`ModelConfig` as JSON, so the networks are rebuilt from the
file alone. Loading is strict: a missing or unexpected tensor is an error that names it.

The original release (``InpaintingModel_gen.pth``, ``InpaintingModel_dis.pth``,
``landmark_detector.pth``) maps onto the ``paper`` preset; its spectral-normalised convolutions
are folded into plain weights exactly as PyTorch computes them in eval mode.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from lafin.config import PRESETS, ModelConfig

FORMAT_NAME = "lafin-weights"
FORMAT_VERSION = 1
NETWORKS = ("generator", "landmarks", "discriminator")

PathLike = str | os.PathLike


class WeightsError(ValueError):
    """A weights file that cannot be used, with the reason."""


@dataclass
class LoadedWeights:
    """Networks' state dicts and the config to rebuild them; a state is None when absent."""

    config: ModelConfig
    generator_state: dict[str, torch.Tensor] | None = None
    landmarks_state: dict[str, torch.Tensor] | None = None
    discriminator_state: dict[str, torch.Tensor] | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def state(self, network: str) -> dict[str, torch.Tensor] | None:
        return getattr(self, f"{network}_state")


# ----------------------------------------------------------------------------- our format

def save_weights(path: PathLike, config: ModelConfig, generator: nn.Module | None = None,
                 landmark_predictor: nn.Module | None = None,
                 discriminator: nn.Module | None = None,
                 metadata: Mapping[str, str] | None = None) -> None:
    """Write the given networks and the config to one safetensors file, atomically."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for prefix, net in (("generator", generator), ("landmarks", landmark_predictor),
                        ("discriminator", discriminator)):
        if net is not None:
            for name, value in net.state_dict().items():
                tensors[f"{prefix}.{name}"] = value.detach().to("cpu").contiguous().clone()
    if not tensors:
        raise ValueError("save_weights needs at least one network")
    meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
            "config": json.dumps(config.to_dict())}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_weights(path: PathLike) -> LoadedWeights:
    """Read one of our safetensors weights files (see the module docstring)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a safetensors weights file ({exc})") from None
    if meta.get("format") != FORMAT_NAME:
        raise WeightsError(f"{path}: safetensors file without lafin metadata (format="
                           f"{meta.get('format')!r}); it is not a lafin weights file")
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        raise WeightsError(f"{path}: bad format_version {meta.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise WeightsError(f"{path}: weights format version {version} is newer than this lafin "
                           f"supports ({FORMAT_VERSION}); upgrade lafin")
    try:
        config = ModelConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: missing or invalid model config ({exc})") from None
    states: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        net, _, name = key.partition(".")
        if net not in NETWORKS:
            raise WeightsError(f"{path}: tensor {key!r} belongs to no known network {NETWORKS}")
        states.setdefault(net, {})[name] = value
    extra = {k: v for k, v in meta.items() if k not in ("format", "format_version", "config")}
    return LoadedWeights(config, states.get("generator"), states.get("landmarks"),
                         states.get("discriminator"), extra)


def load_state_strict(net: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict) with an error that names missing, unexpected and mis-shaped keys."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if items:
                more = f" (+{len(items) - 10} more)" if len(items) > 10 else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:10])}{more}")
        raise WeightsError(f"{what} does not match the model: " + "; ".join(parts))
    net.load_state_dict(state, strict=True)


def build_from_weights(loaded: LoadedWeights, device: str | torch.device = "cpu"
                       ) -> tuple[nn.Module | None, nn.Module | None]:
    """Build (generator, landmark predictor) from loaded weights, in eval mode on ``device``."""
    from lafin.networks import build_generator, build_landmark_predictor

    generator = predictor = None
    if loaded.generator_state is not None:
        generator = build_generator(loaded.config)
        load_state_strict(generator, loaded.generator_state, "generator weights")
        generator = generator.to(device).eval()
    if loaded.landmarks_state is not None:
        predictor = build_landmark_predictor(loaded.config)
        load_state_strict(predictor, loaded.landmarks_state, "landmark predictor weights")
        predictor = predictor.to(device).eval()
    return generator, predictor


def merge_weights(inputs: Sequence[PathLike], output: PathLike) -> None:
    """Combine several of our weights files into one (later files win per network)."""
    merged: LoadedWeights | None = None
    for path in inputs:
        loaded = load_weights(path)
        if merged is None:
            merged = loaded
            continue
        if loaded.config != merged.config:
            raise WeightsError(f"{path}: model config differs from {inputs[0]}; cannot merge")
        for net in NETWORKS:
            if loaded.state(net) is not None:
                setattr(merged, f"{net}_state", loaded.state(net))
        merged.metadata.update(loaded.metadata)
    if merged is None:
        raise ValueError("merge_weights needs at least one input")
    _save_states(output, merged)


def _save_states(path: PathLike, loaded: LoadedWeights) -> None:
    """save_weights for bare state dicts."""

    class _Holder(nn.Module):
        def __init__(self, state: Mapping[str, torch.Tensor]) -> None:
            super().__init__()
            self._state = dict(state)

        def state_dict(self, *args, **kwargs):  # type: ignore[override]
            return self._state

    holders = {net: (_Holder(s) if (s := loaded.state(net)) is not None else None) for net in NETWORKS}
    save_weights(path, loaded.config, holders["generator"], holders["landmarks"],
                 holders["discriminator"], metadata=loaded.metadata)


# ----------------------------------------------------------------------------- the original release

def _fold_spectral_norm(prefix: str, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """W / sigma with sigma = u . (W_mat v), what torch's spectral_norm uses in eval mode."""
    weight = state.pop(prefix + "weight_orig")
    u, v = state.pop(prefix + "weight_u"), state.pop(prefix + "weight_v")
    sigma = torch.dot(u, weight.reshape(weight.shape[0], -1) @ v)
    return weight / sigma


def _strip_module(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _drop_aliases(state: dict[str, torch.Tensor], aliases: Mapping[str, str], where: str) -> None:
    """Remove the second registration of modules the original registered twice."""
    for alias, canonical in aliases.items():
        for key in [k for k in state if k.startswith(alias)]:
            twin = canonical + key[len(alias):]
            if twin in state and not torch.equal(state[twin], state[key]):
                raise WeightsError(f"{where}: {key} and {twin} should be the same tensor but differ")
            if twin not in state:
                state[twin] = state[key]
            del state[key]


def _map_attention(state: dict[str, torch.Tensor], src: str, dst: str, where: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    _drop_aliases(state, {f"{src}model.model.1.": f"{src}model.conv1.",
                          f"{src}model.model.3.": f"{src}model.conv2.",
                          f"{src}model.shortcut.0.": f"{src}model.bypass."}, where)
    for name in ("gamma", "alpha", "query_conv.weight", "query_conv.bias"):
        out[dst + name] = state.pop(src + name)
    for conv in ("conv1", "conv2", "bypass"):
        out[f"{dst}fuse.{conv}.weight"] = _fold_spectral_norm(f"{src}model.{conv}.", state)
        out[f"{dst}fuse.{conv}.bias"] = state.pop(f"{src}model.{conv}.bias")
    return out


def _map_original_generator(state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    state = dict(state)
    out = _map_attention(state, "auto_attn.", "attention.", where)
    renames = {"encoder1.1.": "encoders.0.1.", "encoder2.0.": "encoders.1.0.",
               "encoder3.0.": "encoders.2.0.", "decoder1.0.": "decoders.0.0.",
               "decoder2.0.": "decoders.1.0.", "fushion1.0.": "fusions.0.0.",
               "fushion2.0.": "fusions.1.0.", "decoder3.1.": "to_rgb.1.", "middle.": "middle."}
    for key in list(state):
        for old, new in renames.items():
            if key.startswith(old):
                out[new + key[len(old):]] = state.pop(key)
                break
    if state:
        raise WeightsError(f"{where}: unexpected tensors in the original generator: "
                           f"{sorted(state)[:10]}")
    return out


def _map_original_discriminator(state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    state = dict(state)
    _drop_aliases(state, {"features.0.": "conv1.0."}, where)
    out = _map_attention(state, "auto_attn.", "attention.", where)
    for i in range(5):
        for suffix in ("weight_orig", "weight_u", "weight_v"):
            out[f"convs.{i}.{suffix}"] = state.pop(f"conv{i + 1}.0.{suffix}")
    if state:
        raise WeightsError(f"{where}: unexpected tensors in the original discriminator: "
                           f"{sorted(state)[:10]}")
    return out


_ORIGINAL_KEYS = {"generator": "generator", "detector": "landmarks", "discriminator": "discriminator"}


def load_original(paths: PathLike | Sequence[PathLike]) -> LoadedWeights:
    """Load the original LaFIn release's ``.pth`` files onto the ``paper`` preset.

    Each file is recognised by its dict key (``generator``, ``detector``, ``discriminator``),
    not by its name; ``module.`` prefixes (DataParallel) are removed.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    loaded = LoadedWeights(PRESETS["paper"], metadata={"source": "original LaFIn release"})
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for foreign files
            raise WeightsError(f"{path}: not a PyTorch weights file ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:200]})") from None
        if not isinstance(data, dict):
            raise WeightsError(f"{path}: expected a dict, found {type(data).__name__}")
        keys = [k for k in _ORIGINAL_KEYS if k in data]
        if not keys:
            raise WeightsError(f"{path}: not an original LaFIn checkpoint (keys found: "
                               f"{sorted(map(str, data))[:8]}; expected one of {sorted(_ORIGINAL_KEYS)})")
        for key in keys:
            state = _strip_module(data[key])
            where = f"{path} [{key}]"
            try:
                if key == "generator":
                    loaded.generator_state = _map_original_generator(state, where)
                elif key == "discriminator":
                    loaded.discriminator_state = _map_original_discriminator(state, where)
                else:
                    loaded.landmarks_state = dict(state)
            except KeyError as exc:
                raise WeightsError(f"{where}: missing tensor {exc.args[0]}") from None
        if "iteration" in data:
            loaded.metadata[f"iteration_{keys[0]}"] = str(int(data["iteration"]))
    return loaded


def convert_original(inputs: PathLike | Sequence[PathLike], output: PathLike) -> None:
    """Convert original release files into one of our weights files (strictly checked)."""
    loaded = load_original(inputs)
    from lafin.networks import build_discriminator

    build_from_weights(loaded)  # validates names and shapes
    if loaded.discriminator_state is not None:
        load_state_strict(build_discriminator(loaded.config), loaded.discriminator_state,
                          "discriminator weights")
    _save_states(output, loaded)


def load_any(source: PathLike | Sequence[PathLike]) -> LoadedWeights:
    """Load our safetensors file, or one or more original ``.pth`` files, by content."""
    if not isinstance(source, (str, os.PathLike)):
        sources = list(source)
        if len(sources) == 1:
            return load_any(sources[0])
        return load_original(sources)
    path = Path(source)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    with path.open("rb") as f:
        head = f.read(16)
    if head[:2] == b"PK" or head[:1] == b"\x80":  # torch zip archive or legacy pickle
        return load_original(path)
    return load_weights(path)
