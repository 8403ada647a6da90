"""Combining several of our weights files into one (e.g. a predictor and a generator trained
apart); each network keeps its own section of the config and its training history."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

from lafin.checkpoint import NETWORKS, LoadedWeights, PathLike, WeightsError, load_weights, write_weights

# the metadata of one training run: file-level for the file's last run, NETWORK.KEY per network
RUN_KEYS = ("step", "stage", "steps_before")


def network_history(metadata: Mapping[str, str], network: str) -> dict[str, str]:
    """The run keys of ``network``'s training: its own ``NETWORK.KEY`` entries as a whole, or,
    for a network without any, the file-level ones (the file's last run). Never a mix: the
    file-level ``steps_before`` may be another network's."""
    own = {k: metadata[f"{network}.{k}"] for k in RUN_KEYS if f"{network}.{k}" in metadata}
    return own or {k: metadata[k] for k in RUN_KEYS if k in metadata}


def merge_weights(
    inputs: Sequence[PathLike],
    output: PathLike,
    half: bool = False,
    without: Sequence[str] = (),
    steps_before: Mapping[str, int] | None = None,
) -> None:
    """Combine several of our weights files into one; later files win per network.

    The inputs must work at the same image size; each network keeps the sizes of the file it
    comes from (e.g. a widened generator beside the landmark predictor it was trained with), and
    the preset name is the generator's, or that of the preset the merged config equals
    (:func:`lafin.config.named_like_preset`). ``half=True`` stores floating-point tensors as
    float16 (half the file size, e.g. for shipping); loading casts them back to the networks'
    float32 parameters, so nothing else changes. ``without`` names networks to leave out (e.g.
    ``refiner``: the bare generator, to judge it alone); a refiner left out is also taken out
    of the config. ``steps_before`` ({network: steps}) corrects a network's recorded earlier
    training steps (``NETWORK.steps_before``; the file-level ``steps_before`` too when the file's
    last run is that network's), for a history that was lost or miscounted on the way.
    """
    from lafin.config import RefinerConfig, named_like_preset

    merged = merge_loaded([(Path(p), load_weights(p)) for p in inputs])
    for network in without:
        if network not in merged.networks:
            raise WeightsError(
                f"cannot leave out {network!r}: the merged weights hold {', '.join(merged.networks)}"
            )
        merged.set_state(network, None)
        if network == "refiner":
            merged.config = replace(merged.config, refiner=RefinerConfig())
        merged.metadata = {k: v for k, v in merged.metadata.items() if k.split(".")[0] != network}
    if not merged.networks:
        raise WeightsError("nothing left to write: every network was left out")
    for network, steps in (steps_before or {}).items():
        if network not in merged.networks:
            raise WeightsError(
                f"cannot set the steps of {network!r}: the merged weights hold {', '.join(merged.networks)}"
            )
        if not isinstance(steps, int) or steps < 0:
            raise WeightsError(f"steps before of {network!r} must be a whole number >= 0, not {steps!r}")
        meta = merged.metadata
        last_run = all(
            meta.get(key) is not None and meta.get(key) == meta.get(f"{network}.{key}")
            for key in ("stage", "step")
        )
        meta[f"{network}.steps_before"] = str(steps)
        if last_run:
            meta["steps_before"] = str(steps)
    merged.config = named_like_preset(merged.config)
    states = {n: merged.state(n) for n in merged.networks}
    if half:
        states = {
            n: {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
            for n, state in states.items()
        }  # type: ignore[union-attr]
    write_weights(output, merged.config, states, merged.metadata)  # type: ignore[arg-type]


def merge_loaded(items: Sequence[tuple[Path, LoadedWeights]]) -> LoadedWeights:
    """The networks of several loaded files as one (later files win per network); each
    network keeps its file's section of the config and its per-network history."""
    if not items:
        raise ValueError("nothing to merge: give at least one weights file")
    first_path, first = items[0]
    merged = LoadedWeights(first.config, metadata=dict(first.metadata))
    for path, loaded in items:
        if loaded.config.image_size != merged.config.image_size:
            raise WeightsError(
                f"{path}: model config ({loaded.config.name} preset, "
                f"{loaded.config.image_size} px) differs from that of {first_path} "
                f"({merged.config.name} preset, {merged.config.image_size} px); "
                "cannot merge networks of different image sizes"
            )
        # each network brings its own section of the config (its sizes)
        sections = {n: getattr(loaded.config, n) for n in loaded.networks}
        if "generator" in loaded.networks:
            sections["name"] = loaded.config.name
        merged.config = replace(merged.config, **sections)
        for network in loaded.networks:
            merged.set_state(network, loaded.state(network))
        # a file's per-network history ("landmarks.step") belongs to networks it carries; the
        # top-level keys describe its last training run, which may not be that network's: a
        # later run replaces them as a whole (an earlier run's "steps_before" is not this one's)
        if "stage" in loaded.metadata:
            for key in RUN_KEYS:
                merged.metadata.pop(key, None)
        merged.metadata.update(
            {
                k: v
                for k, v in loaded.metadata.items()
                if k.split(".")[0] not in NETWORKS or k.split(".")[0] in loaded.networks
            }
        )
        for network in loaded.networks:  # where each network came from survives the merge
            history = network_history(loaded.metadata, network)
            for key in RUN_KEYS:
                if key in history:
                    merged.metadata[f"{network}.{key}"] = history[key]
                else:
                    merged.metadata.pop(f"{network}.{key}", None)
    return merged
