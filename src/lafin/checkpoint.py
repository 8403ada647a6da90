"""Our weights file format: one safetensors file with the model config, read and written
strictly; :func:`load_any` also takes the original LaFIn release's ``.pth`` files.

Our format
----------
One ``.safetensors`` file. Tensor names are prefixed by network: ``generator.``, ``landmarks.``,
``discriminator.`` (any subset may be present). The safetensors metadata (all strings) holds

* ``format`` = ``"lafin-weights"`` and ``format_version`` = ``"1"``;
* ``config``: the :class:`~lafin.config.ModelConfig` as JSON, so the networks are rebuilt from
  the file alone;
* any extra string metadata given when saving (e.g. ``step``).

Building networks from a file is strict: a missing, unexpected or mis-shaped tensor is a
:class:`WeightsError` that names it.

Merging files: :mod:`lafin.weights_merge`; the original release's ``.pth`` files:
:mod:`lafin.original_release`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from lafin.atomic import atomic_write
from lafin.config import ModelConfig

log = logging.getLogger(__name__)

FORMAT_NAME = "lafin-weights"
FORMAT_VERSION = 1
NETWORKS = ("generator", "landmarks", "discriminator", "refiner")
_RESERVED_METADATA = ("format", "format_version", "config")

PathLike = str | os.PathLike
StateDict = dict[str, torch.Tensor]


class WeightsError(ValueError):
    """A weights file that cannot be used; the message names the file and the problem."""


@dataclass
class LoadedWeights:
    """Networks' state dicts and the config to rebuild them.

    Attributes:
        config: the model configuration the states belong to.
        generator_state / landmarks_state / discriminator_state / refiner_state: name -> tensor
            (on the CPU), in our modules' naming; None when the source did not contain that
            network.
        metadata: extra string metadata (e.g. ``step``; for the original release ``source`` and
            ``<network>_iteration``).
    """

    config: ModelConfig
    generator_state: StateDict | None = None
    landmarks_state: StateDict | None = None
    discriminator_state: StateDict | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    refiner_state: StateDict | None = None

    def state(self, network: str) -> StateDict | None:
        """The state of ``network`` (one of :data:`NETWORKS`), or None."""
        if network not in NETWORKS:
            raise ValueError(f"unknown network {network!r}; expected one of {NETWORKS}")
        return getattr(self, f"{network}_state")

    def set_state(self, network: str, state: StateDict | None) -> None:
        if network not in NETWORKS:
            raise ValueError(f"unknown network {network!r}; expected one of {NETWORKS}")
        setattr(self, f"{network}_state", state)

    @property
    def networks(self) -> tuple[str, ...]:
        """Names of the networks present, in :data:`NETWORKS` order."""
        return tuple(n for n in NETWORKS if self.state(n) is not None)


# ----------------------------------------------------------------------------- helpers


def list_report(label: str, items: Sequence[str], limit: int = 10) -> str:
    more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"{len(items)} {label}: {', '.join(items[:limit])}{more}"


def mismatch_report(missing: Sequence[str], unexpected: Sequence[str], shapes: Sequence[str]) -> str:
    parts = [
        list_report(label, items)
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("with the wrong shape", shapes),
        )
        if items
    ]
    return "; ".join(parts)


def compare_state(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, shape descriptions) of ``state`` against ``expected``."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    return missing, unexpected, shapes


def _builders() -> dict[str, Callable[[ModelConfig], nn.Module]]:
    from lafin.networks import build_discriminator, build_generator, build_landmark_predictor, build_refiner

    return {
        "generator": build_generator,
        "landmarks": build_landmark_predictor,
        "discriminator": build_discriminator,
        "refiner": build_refiner,
    }


def expected_state(network: str, config: ModelConfig) -> dict[str, torch.Tensor]:
    """The state dict (names and shapes only, on the meta device) of ``network`` for ``config``."""
    with torch.device("meta"):
        return _builders()[network](config).state_dict()


# ----------------------------------------------------------------------------- our format


def write_weights(
    path: PathLike,
    config: ModelConfig,
    states: Mapping[str, Mapping[str, torch.Tensor]],
    metadata: Mapping[str, Any] | None,
) -> None:
    """Write per-network states as one of our files, atomically (temp file + os.replace)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for network, state in states.items():
        for name, value in state.items():
            # clone: safetensors refuses tensors that share storage (e.g. tied weights)
            tensors[f"{network}.{name}"] = value.detach().to("cpu").contiguous().clone()
    if not tensors:
        raise ValueError("nothing to save: give at least one network")
    extra = {str(k): str(v) for k, v in (metadata or {}).items()}
    clash = sorted(set(extra) & set(_RESERVED_METADATA))
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved by the weights format")
    meta = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(config.to_dict()),
        **extra,
    }

    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def save_weights(
    path: PathLike,
    config: ModelConfig,
    generator: nn.Module | None = None,
    landmark_predictor: nn.Module | None = None,
    discriminator: nn.Module | None = None,
    metadata: Mapping[str, Any] | None = None,
    refiner: nn.Module | None = None,
) -> None:
    """Write the given networks and their config to one safetensors file, atomically.

    Args:
        path: output file (``.safetensors``); its directory is created if needed. The file is
            written to a temporary file in the same directory and renamed into place, so readers
            never see a partial file.
        config: the configuration the networks were built from.
        generator / landmark_predictor / discriminator / refiner: networks to store (at least
            one); their ``state_dict()`` is saved on the CPU.
        metadata: extra entries, stored as strings (e.g. ``{"step": 1000}``); the keys
            ``format``, ``format_version`` and ``config`` are reserved.
    """
    states = {
        network: net.state_dict()
        for network, net in zip(NETWORKS, (generator, landmark_predictor, discriminator, refiner))
        if net is not None
    }
    write_weights(path, config, states, metadata)


def check_weights_file(path: PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    if not path.is_file():
        raise WeightsError(f"{path}: not a file")
    return path


def load_weights(path: PathLike) -> LoadedWeights:
    """Read one of our safetensors weights files (see the module docstring).

    Tensors are loaded on the CPU. Names and shapes are checked against the networks only when
    they are built (:func:`build_from_weights`).

    Raises:
        WeightsError: not a file, not safetensors, a safetensors file that is not ours, a
            format version newer than this lafin supports, or a bad config.
    """
    from safetensors import SafetensorError, safe_open

    path = check_weights_file(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    if meta.get("format") != FORMAT_NAME:
        names = ", ".join(sorted(tensors)[:5]) or "none"
        raise WeightsError(
            f"{path}: a safetensors file without lafin metadata (format="
            f"{meta.get('format')!r}, tensors: {names}); it is not a lafin "
            "weights file"
        )
    raw_version = meta.get("format_version")
    try:
        version = int(raw_version)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise WeightsError(f"{path}: missing or bad format_version {raw_version!r}") from None
    if version > FORMAT_VERSION:
        raise WeightsError(
            f"{path}: weights format version {version} is newer than this lafin "
            f"supports ({FORMAT_VERSION}); upgrade lafin to read it"
        )
    if version < 1:
        raise WeightsError(f"{path}: bad format_version {raw_version!r}")
    if "config" not in meta:
        raise WeightsError(f"{path}: no model config in the metadata")
    try:
        config = ModelConfig.from_dict(json.loads(meta["config"]))
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        raise WeightsError(f"{path}: bad model config in the metadata ({exc})") from None

    states: dict[str, StateDict] = {}
    stray: list[str] = []
    for key, value in tensors.items():
        network, _, name = key.partition(".")
        if network in NETWORKS and name:
            states.setdefault(network, {})[name] = value
        else:
            stray.append(key)
    if stray:
        raise WeightsError(
            f"{path}: tensors that belong to no network {NETWORKS}: {list_report('tensors', sorted(stray))}"
        )
    extra = {k: v for k, v in meta.items() if k not in _RESERVED_METADATA}
    return LoadedWeights(
        config,
        states.get("generator"),
        states.get("landmarks"),
        states.get("discriminator"),
        extra,
        refiner_state=states.get("refiner"),
    )


def load_state_strict(net: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """``net.load_state_dict(state, strict=True)`` with an error that names the bad keys.

    Raises:
        WeightsError: naming (the first 10 of, and the count of) the missing, unexpected and
            mis-shaped tensors.
    """
    missing, unexpected, shapes = compare_state(net.state_dict(), state)
    if missing or unexpected or shapes:
        raise WeightsError(f"{what} do not match the model: {mismatch_report(missing, unexpected, shapes)}")
    net.load_state_dict(state, strict=True)


def build_from_weights(
    loaded: LoadedWeights, device: str | torch.device = "cpu"
) -> tuple[nn.Module | None, nn.Module | None]:
    """Build (generator, landmark predictor) from loaded weights, strictly.

    Returns:
        The networks (None for a network the weights do not contain), in eval mode on ``device``.

    Raises:
        WeightsError: if a state does not match the network its config describes.
    """
    builders = _builders()
    built: dict[str, nn.Module | None] = {}
    for network, what in (("generator", "generator weights"), ("landmarks", "landmark predictor weights")):
        state = loaded.state(network)
        if state is None:
            built[network] = None
            continue
        net = builders[network](loaded.config)
        load_state_strict(net, state, f"{what} ({loaded.config.name} preset)")
        built[network] = net.to(device).eval()
    return built["generator"], built["landmarks"]


def build_refiner_from_weights(loaded: LoadedWeights, device: str | torch.device = "cpu") -> nn.Module | None:
    """The refiner of loaded weights (strictly), in eval mode on ``device``; None without one.

    Raises:
        WeightsError: a refiner state without a refiner config, or one that does not match it.
    """
    state = loaded.state("refiner")
    if state is None:
        return None
    if not loaded.config.refiner.enabled:
        raise WeightsError(
            "the file has refiner weights but its config has no refiner (refiner.output_size = 0)"
        )
    net = _builders()["refiner"](loaded.config)
    load_state_strict(net, state, f"refiner weights ({loaded.config.name} preset)")
    return net.to(device).eval()


# ----------------------------------------------------------------------------- by content


def sniff_weights(path: PathLike) -> str:
    """What a file looks like: ``"safetensors"``, ``"torch"`` (zip or legacy pickle) or
    ``"unknown"``. Only the first bytes are read."""
    path = check_weights_file(path)
    with path.open("rb") as f:
        head = f.read(9)
    # safetensors: little-endian u64 header length, then the JSON header. Checked first: the
    # header length's low byte can be anything, but byte 8 of a torch file is never "{".
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 2**27:
        return "safetensors"
    # torch: a zip archive (torch >= 1.6) or a bare pickle (legacy format, protocol 2..5)
    if head[:4] == b"PK\x03\x04" or (
        head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    ):
        return "torch"
    return "unknown"


def load_any(source: PathLike | Sequence[PathLike]) -> LoadedWeights:
    """Load weights by content: our safetensors file(s) or original release ``.pth`` file(s).

    Several files of ours are merged (same config required; later files win per network);
    several original files are combined as by :func:`load_original`. Mixing the two kinds is
    an error.
    """
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not sources:
        raise WeightsError("no weights files given")
    kinds: dict[str, list[Path]] = {"safetensors": [], "torch": []}
    for raw in sources:
        path = check_weights_file(raw)
        kind = sniff_weights(path)
        if kind == "unknown":
            with path.open("rb") as f:
                head = f.read(16)
            raise WeightsError(
                f"{path}: not a weights file: neither safetensors nor a PyTorch "
                f"checkpoint ({path.stat().st_size} bytes starting {head!r})"
            )
        kinds[kind].append(path)
    if kinds["safetensors"] and kinds["torch"]:
        raise WeightsError(
            f"cannot combine lafin weights ({', '.join(map(str, kinds['safetensors']))}) "
            f"with original .pth files ({', '.join(map(str, kinds['torch']))}); "
            "convert the originals first with 'lafin convert'"
        )
    if kinds["torch"]:
        from lafin.original_release import load_original

        return load_original(kinds["torch"])
    paths = kinds["safetensors"]
    if len(paths) == 1:
        return load_weights(paths[0])
    from lafin.weights_merge import merge_loaded

    return merge_loaded([(p, load_weights(p)) for p in paths])
