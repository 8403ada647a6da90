"""Weights files: our safetensors format and the original LaFIn release's ``.pth`` files.

No original checkpoint is available, so the original-release tests build synthetic ones from
every tensor name and shape listed in ``lafin-original-checkpoints.json`` (random values, with the
structure of the real files: ``module.`` prefixes, modules registered twice, spectral norm).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from lafin.checkpoint import (
    FORMAT_NAME,
    LoadedWeights,
    WeightsError,
    build_from_weights,
    load_any,
    load_weights,
    save_weights,
)
from lafin.original_release import convert_original, fold_spectral_norm, load_original
from lafin.weights_merge import merge_weights
from lafin.config import PRESETS, get_preset
from lafin.networks import build_discriminator, build_generator, build_landmark_predictor

SPEC_NAME = "lafin-original-checkpoints.json"


def _spec_path() -> Path | None:
    candidates = [
        Path(os.environ.get("LAFIN_ORIGINAL_SPEC", "")),
        Path(__file__).parent / "data" / SPEC_NAME,
        Path("/work/shared/reference") / SPEC_NAME,
    ]
    return next((p for p in candidates if p.is_file()), None)


# ------------------------------------------------------------------ the original layout, restated
# Independent of lafin.checkpoint: what the original names become in our modules.

GEN_RENAMES = {
    "encoder1.1.": "encoders.0.1.",
    "encoder2.0.": "encoders.1.0.",
    "encoder3.0.": "encoders.2.0.",
    "middle.": "middle.",
    "decoder1.0.": "decoders.0.0.",
    "decoder2.0.": "decoders.1.0.",
    "fushion1.0.": "fusions.0.0.",
    "fushion2.0.": "fusions.1.0.",
    "decoder3.1.": "to_rgb.1.",
    "auto_attn.model.conv1.": "attention.fuse.conv1.",
    "auto_attn.model.conv2.": "attention.fuse.conv2.",
    "auto_attn.model.bypass.": "attention.fuse.bypass.",
    "auto_attn.": "attention.",
}
DIS_RENAMES = {
    **{f"conv{i + 1}.0.": f"convs.{i}." for i in range(5)},
    **{k: v for k, v in GEN_RENAMES.items() if k.startswith("auto_attn.")},
}
# duplicate registration -> the module it duplicates
ATTN_ALIASES = {
    "auto_attn.model.model.1.": "auto_attn.model.conv1.",
    "auto_attn.model.model.3.": "auto_attn.model.conv2.",
    "auto_attn.model.shortcut.0.": "auto_attn.model.bypass.",
}
DIS_ALIASES = {"features.0.": "conv1.0.", **ATTN_ALIASES}
FOLDED = ("auto_attn.model.conv1.", "auto_attn.model.conv2.", "auto_attn.model.bypass.")
FILES = {
    "generator": ("InpaintingModel_gen.pth", GEN_RENAMES, ATTN_ALIASES),
    "discriminator": ("InpaintingModel_dis.pth", DIS_RENAMES, DIS_ALIASES),
    "detector": ("landmark_detector.pth", {"": ""}, {}),
}


def _rename(name: str, renames: dict[str, str]) -> str:
    for old in sorted(renames, key=len, reverse=True):
        if name.startswith(old):
            return renames[old] + name[len(old) :]
    raise AssertionError(f"no rename for {name}")


def _torch_sn_weight(weight_orig: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The weight torch.nn.utils.spectral_norm uses in eval mode for these tensors."""
    out_c, in_c, kh, kw = weight_orig.shape
    conv = spectral_norm(nn.Conv2d(in_c, out_c, (kh, kw), bias=False))
    conv.load_state_dict({"weight_orig": weight_orig, "weight_u": u, "weight_v": v})
    conv.eval()
    with torch.no_grad():
        conv(torch.zeros(1, in_c, kh, kw))
    return conv.weight.detach().clone()


def _synthetic_state(
    shapes: dict[str, list[int]], aliases: dict[str, str], seed: int, share_aliases: bool
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        if name.endswith(("weight_u", "weight_v")):
            t = F.normalize(torch.randn(shape, generator=g), dim=0)
        elif name.endswith("running_var"):
            t = torch.rand(shape, generator=g) + 0.5
        elif name.endswith("num_batches_tracked"):
            t = torch.tensor(12345, dtype=torch.long)
        elif name.endswith(("gamma", "alpha")):
            t = torch.rand(shape, generator=g) + 0.5  # non-zero: both attention branches matter
        else:
            t = torch.randn(shape, generator=g) * 0.05
        state[name] = t
    for name in state:
        for alias, canonical in aliases.items():
            if name.startswith(alias):
                twin = state[canonical + name[len(alias) :]]
                # the real files store one shared tensor under both names
                state[name] = twin if share_aliases else twin.clone()
    return state


@pytest.fixture(scope="module")
def spec() -> dict[str, dict[str, list[int]]]:
    path = _spec_path()
    if path is None:
        pytest.skip(f"{SPEC_NAME} not found (set LAFIN_ORIGINAL_SPEC or put it in tests/data/)")
    files = json.loads(path.read_text())["files"]
    return {key: files[fname]["tensors"] for key, (fname, _, _) in FILES.items()}


@pytest.fixture(scope="module")
def originals(spec, tmp_path_factory):
    """Synthetic original files: generator with 'module.' (zip format), detector without
    (legacy pre-1.6 format, like the 2019 release), discriminator with 'module.'."""
    root = tmp_path_factory.mktemp("original")
    states, paths = {}, {}
    for i, (key, (fname, _, aliases)) in enumerate(FILES.items()):
        state = _synthetic_state(spec[key], aliases, seed=i, share_aliases=key == "generator")
        prefix = "" if key == "detector" else "module."
        path = root / fname
        torch.save(
            {"iteration": 1000 + i, key: {prefix + k: v for k, v in state.items()}},
            path,
            _use_new_zipfile_serialization=key != "detector",
        )
        states[key], paths[key] = state, path
    return states, paths


def _expected_ours(
    key: str, spec_shapes: dict[str, list[int]], state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Our state for an original one, from the rules alone; accounts for every tensor."""
    _, renames, aliases = FILES[key]
    out: dict[str, torch.Tensor] = {}
    accounted = 0
    for name in spec_shapes:
        module, _, leaf = name.rpartition(".")
        if any(name.startswith(a) for a in aliases):
            accounted += 1  # duplicate registration, equal to its twin
        elif module + "." in FOLDED and leaf.startswith("weight_"):
            accounted += 1
            if leaf == "weight_orig":
                out[_rename(module + ".weight", renames)] = _torch_sn_weight(
                    state[name], state[module + ".weight_u"], state[module + ".weight_v"]
                )
        else:
            accounted += 1
            out[_rename(name, renames)] = state[name]
    assert accounted == len(spec_shapes)
    return out


# ------------------------------------------------------------------ original release


def test_load_original_consumes_every_tensor(spec, originals):
    states, paths = originals
    loaded = load_original([paths["detector"], paths["discriminator"], paths["generator"]])
    assert loaded.config == PRESETS["paper"]
    assert loaded.metadata["generator_iteration"] == "1000"
    assert loaded.metadata["landmarks_iteration"] == "1002"
    for key, ours in (
        ("generator", loaded.generator_state),
        ("detector", loaded.landmarks_state),
        ("discriminator", loaded.discriminator_state),
    ):
        expected = _expected_ours(key, spec[key], states[key])
        assert ours is not None
        assert sorted(ours) == sorted(expected), key
        for name, value in expected.items():
            assert torch.equal(ours[name], value), f"{key}: {name} differs"
    # and the names are exactly those of our networks
    build = {
        "generator": build_generator,
        "landmarks": build_landmark_predictor,
        "discriminator": build_discriminator,
    }
    for network, builder in build.items():
        with torch.device("meta"):
            names = set(builder(PRESETS["paper"]).state_dict())
        assert set(loaded.state(network)) == names, network


def test_spectral_norm_folding_equals_torch_eval():
    g = torch.Generator().manual_seed(3)
    for shape in [(16, 32, 3, 3), (8, 4, 1, 1), (1, 12, 4, 4)]:
        w = torch.randn(shape, generator=g)
        u = F.normalize(torch.randn(shape[0], generator=g), dim=0)
        v = F.normalize(torch.randn(w[0].numel(), generator=g), dim=0)
        assert torch.equal(fold_spectral_norm(w, u, v), _torch_sn_weight(w, u, v))


def _original_generator_forward(
    state: dict[str, torch.Tensor], masked: torch.Tensor, landmark_map: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The original generator's computation, written against the original's tensor names, with
    torch's own spectral-norm modules and the original's bilinear mask downsampling."""

    def conv(x, name, **kw):
        return F.conv2d(x, state[name + ".weight"], state[name + ".bias"], **kw)

    def convt(x, name):
        return F.conv_transpose2d(x, state[name + ".weight"], state[name + ".bias"], 2, 1)

    def sn_conv(x, name):
        w = _torch_sn_weight(
            state[name + ".weight_orig"], state[name + ".weight_u"], state[name + ".weight_v"]
        )
        return F.conv2d(x, w, state[name + ".bias"], padding=w.shape[-1] // 2)

    def norm_relu(x):
        return F.relu(F.instance_norm(x))

    def down(m, factor):
        return F.interpolate(
            m, size=(m.shape[2] // factor, m.shape[3] // factor), mode="bilinear", align_corners=True
        )

    x = torch.cat([masked, landmark_map], 1)
    e1 = norm_relu(conv(F.pad(x, (3,) * 4, mode="reflect"), "encoder1.1"))
    e2 = norm_relu(conv(e1, "encoder2.0", stride=2, padding=1))
    e3 = norm_relu(conv(e2, "encoder3.0", stride=2, padding=1))
    x = e3
    for i in range(7):
        y = norm_relu(conv(F.pad(x, (2,) * 4, mode="reflect"), f"middle.{i}.conv_block.1", dilation=2))
        x = x + F.instance_norm(conv(F.pad(y, (1,) * 4, mode="reflect"), f"middle.{i}.conv_block.5"))
    b, c, h, w = x.shape
    q = conv(x, "auto_attn.query_conv").view(b, -1, h * w)
    att = torch.softmax(q.transpose(1, 2) @ q, dim=-1)
    out = state["auto_attn.gamma"] * (x.view(b, c, -1) @ att.transpose(1, 2)).view(b, c, h, w) + x
    flow = (e3.view(b, c, -1) @ att.transpose(1, 2)).view(b, c, h, w)
    mq = down(mask, 4)
    flow = state["auto_attn.alpha"] * mq * flow + (1 - mq) * e3
    z = torch.cat([out, flow], 1)
    y = sn_conv(F.leaky_relu(z, 0.01), "auto_attn.model.model.1")
    y = sn_conv(F.leaky_relu(y, 0.01), "auto_attn.model.model.3")
    x = y + sn_conv(z, "auto_attn.model.shortcut.0")
    x = norm_relu(convt(x, "decoder1.0"))
    x = norm_relu(conv(torch.cat([e2 * (1 - down(mask, 2)), x], 1), "fushion1.0"))
    x = norm_relu(convt(x, "decoder2.0"))
    x = norm_relu(conv(torch.cat([e1 * (1 - mask), x], 1), "fushion2.0"))
    x = conv(F.pad(x, (3,) * 4, mode="reflect"), "decoder3.1")
    return (torch.tanh(x) + 1) / 2


def test_original_networks_build_and_run(originals):
    states, paths = originals
    generator, predictor = build_from_weights(load_original([paths["generator"], paths["detector"]]))
    assert generator is not None and predictor is not None
    assert not generator.training and not predictor.training

    # the converted generator computes what the original computes (64 px: fully convolutional);
    # a left-half hole, where the original's bilinear mask resizing and ours agree exactly
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 64, 64, generator=g)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :32] = 1
    masked = image * (1 - mask) + mask
    lmap = (torch.rand(1, 1, 64, 64, generator=g) > 0.98).float()
    with torch.no_grad():
        ours = generator(masked, lmap, mask)
        reference = _original_generator_forward(states["generator"], masked, lmap, mask)
    assert torch.allclose(ours, reference, atol=1e-5), (ours - reference).abs().max()

    assert ours.shape == (1, 3, 64, 64) and ours.std() > 0
    # (the paper generator at 256 px takes seconds on a CPU: tests/test_networks.py runs it once)

    with torch.no_grad():
        coords = predictor(torch.rand(1, 3, 256, 256, generator=g))
    assert coords.shape == (1, 136) and torch.isfinite(coords).all()


def test_original_module_prefix_is_optional(originals, tmp_path):
    states, paths = originals
    prefixed = tmp_path / "det.pth"
    torch.save({"detector": {"module." + k: v for k, v in states["detector"].items()}}, prefixed)
    a = load_original(prefixed).landmarks_state
    b = load_original(paths["detector"]).landmarks_state
    assert a is not None and b is not None and sorted(a) == sorted(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_original_file_kind_is_decided_by_content(originals, tmp_path):
    _, paths = originals
    misnamed = tmp_path / "InpaintingModel_gen.pth"
    misnamed.symlink_to(paths["detector"])
    loaded = load_original(misnamed)
    assert loaded.generator_state is None and loaded.landmarks_state is not None


def test_original_registered_twice_must_agree(originals, tmp_path):
    states, _ = originals
    state = {k: v.clone() for k, v in states["discriminator"].items()}
    state["features.0.weight_orig"][0, 0, 0, 0] += 1
    path = tmp_path / "dis.pth"
    torch.save({"discriminator": state}, path)
    with pytest.raises(WeightsError, match=r"features\.0\.weight_orig.*conv1\.0\.weight_orig"):
        load_original(path)


def test_original_missing_and_unexpected_tensors_are_named(originals, tmp_path):
    states, _ = originals
    det = dict(states["detector"])
    del det["last_block.1.running_var"]
    det["head.extra.weight"] = torch.zeros(3)
    path = tmp_path / "det.pth"
    torch.save({"detector": det}, path)
    with pytest.raises(WeightsError) as err:
        load_original(path)
    msg = str(err.value)
    assert "1 missing: last_block.1.running_var" in msg
    assert "1 unexpected: head.extra.weight" in msg and str(path) in msg

    # a module registered twice needs only one of its copies
    dis = {
        "module." + k: v for k, v in states["discriminator"].items() if k != "auto_attn.model.bypass.weight_u"
    }
    path = tmp_path / "dis.pth"
    torch.save({"discriminator": dis}, path)
    assert load_original(path).discriminator_state is not None
    # without both, the spectral-norm part is named; a wrong shape is named with both shapes
    del dis["module.auto_attn.model.shortcut.0.weight_u"]
    dis["module.conv3.0.weight_orig"] = torch.zeros(7, 7)
    torch.save({"discriminator": dis}, path)
    with pytest.raises(WeightsError) as err:
        load_original(path)
    msg = str(err.value)
    assert "1 missing: auto_attn.model.bypass.weight_u" in msg
    assert "convs.2.weight_orig (file (7, 7), model (256, 128, 4, 4))" in msg


def test_wrong_kind_of_file(tmp_path, originals):
    _, paths = originals
    text = tmp_path / "notes.pth"
    text.write_text("hello, these are not weights\n")
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, foreign)
    a_list = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], a_list)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(paths["discriminator"].read_bytes()[:100_000])
    for path, pattern in [
        (text, "not a readable PyTorch"),
        (foreign, "found keys: epoch, state_dict"),
        (a_list, "found list"),
        (truncated, "not a readable PyTorch"),
        (tmp_path / "absent.pth", "not found"),
        (tmp_path, "not a file"),
    ]:
        with pytest.raises(WeightsError, match=pattern):
            load_original(path)
    with pytest.raises(WeightsError, match="neither safetensors nor a PyTorch"):
        load_any(text)
    with pytest.raises(WeightsError, match="found keys: epoch, state_dict"):
        load_any(foreign)
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_weights(foreign)
    training = tmp_path / "checkpoint.pt"
    torch.save({"format": "lafin-train-checkpoint", "step": 3, "nets": {}}, training)
    with pytest.raises(WeightsError, match="training checkpoint.*weights.safetensors"):
        load_any(training)
    with pytest.raises(WeightsError, match="already read from .*give each network once"):
        load_original([paths["detector"], paths["detector"]])


def test_convert_original_and_load_any(originals, tmp_path):
    _, paths = originals
    out = tmp_path / "converted.safetensors"
    convert_original([paths["generator"], paths["detector"], paths["discriminator"]], out)
    direct = load_any([paths["generator"], paths["detector"], paths["discriminator"]])
    converted = load_any(out)
    assert converted.config == PRESETS["paper"]
    assert converted.metadata["source"] == "original LaFIn release"
    for network in ("generator", "landmarks", "discriminator"):
        a, b = direct.state(network), converted.state(network)
        assert a is not None and b is not None and sorted(a) == sorted(b)
        assert all(torch.equal(a[k], b[k]) for k in a), network
    with pytest.raises(WeightsError, match="cannot combine"):
        load_any([out, paths["detector"]])


# ------------------------------------------------------------------ our format


def _randomised(net: nn.Module, seed: int) -> nn.Module:
    """Non-trivial values in every parameter and buffer (incl. BN statistics, SN vectors)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(net.parameters()) + list(net.buffers()):
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 + 0.05)
    return net


def test_round_trip_reproduces_outputs_exactly(tmp_path):
    config = get_preset("tiny")
    generator = _randomised(build_generator(config), 1).eval()
    predictor = _randomised(build_landmark_predictor(config), 2).eval()
    discriminator = _randomised(build_discriminator(config), 3)
    path = tmp_path / "w.safetensors"
    save_weights(path, config, generator, predictor, discriminator, metadata={"step": 42})

    loaded = load_weights(path)
    assert loaded.config == config and loaded.metadata == {"step": "42"}
    g2, p2 = build_from_weights(loaded)
    assert g2 is not None and p2 is not None and not g2.training and not p2.training
    x = torch.rand(2, 3, 64, 64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., 10:40, 20:50] = 1
    lmap = (torch.rand(2, 1, 64, 64) > 0.97).float()
    with torch.no_grad():
        assert torch.equal(g2(x, lmap, mask), generator(x, lmap, mask))
        assert torch.equal(p2(x), predictor(x))
    assert loaded.discriminator_state is not None
    for k, v in discriminator.state_dict().items():
        assert torch.equal(loaded.discriminator_state[k], v), k
    assert sorted(os.listdir(tmp_path)) == ["w.safetensors"]  # no temp file left behind


@pytest.mark.parametrize("preset", ["paper", "compact", "tiny"])
def test_config_round_trip(tmp_path, preset):
    config = get_preset(preset)
    path = tmp_path / "lm.safetensors"
    save_weights(path, config, landmark_predictor=build_landmark_predictor(config))
    loaded = load_weights(path)
    assert loaded.config == config
    assert loaded.generator_state is None and loaded.networks == ("landmarks",)
    generator, predictor = build_from_weights(loaded)
    assert generator is None and predictor is not None


def test_strict_loading_names_the_keys(tmp_path):
    config = get_preset("tiny")
    path = tmp_path / "w.safetensors"
    save_weights(path, config, generator=build_generator(config))
    loaded = load_weights(path)
    state = loaded.generator_state
    assert state is not None
    gone = sorted(state)[0]
    del state[gone]
    state["bogus.weight"] = torch.zeros(1)
    reshaped = sorted(state)[-1]
    state[reshaped] = torch.zeros(3, 3, 3)
    with pytest.raises(WeightsError) as err:
        build_from_weights(loaded)
    msg = str(err.value)
    assert f"1 missing: {gone}" in msg and "1 unexpected: bogus.weight" in msg
    assert f"1 with the wrong shape: {reshaped} (file (3, 3, 3)" in msg

    # a whole different network: counts, and only the first ten names
    other = LoadedWeights(get_preset("compact"), generator_state=load_weights(path).generator_state)
    with pytest.raises(WeightsError, match=r"\d+ missing: .* \(\+\d+ more\)"):
        build_from_weights(other)


def _write_raw(path: Path, metadata: dict[str, str] | None) -> None:
    from safetensors.torch import save_file

    save_file({"generator.w": torch.zeros(2)}, str(path), metadata=metadata)


def test_format_errors(tmp_path):
    config_json = json.dumps(get_preset("tiny").to_dict())
    cases = [
        ({"format": FORMAT_NAME, "format_version": "2", "config": config_json}, "newer"),
        ({"format": FORMAT_NAME, "format_version": "one", "config": config_json}, "format_version"),
        ({"format": FORMAT_NAME, "format_version": "1", "config": "{not json"}, "bad model config"),
        (
            {"format": FORMAT_NAME, "format_version": "1", "config": json.dumps({"name": "x", "wings": 2})},
            "bad model config.*wings",
        ),
        ({"format": FORMAT_NAME, "format_version": "1"}, "no model config"),
        ({"something": "else"}, "without lafin metadata"),
        (None, "without lafin metadata"),
    ]
    for i, (meta, pattern) in enumerate(cases):
        path = tmp_path / f"case{i}.safetensors"
        _write_raw(path, meta)
        with pytest.raises(WeightsError, match=pattern) as err:
            load_any(path)
        assert str(path) in str(err.value)

    good = tmp_path / "good.safetensors"
    save_weights(good, get_preset("tiny"), generator=build_generator(get_preset("tiny")))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_any(truncated)
    text = tmp_path / "w.safetensors"
    text.write_text("not weights")
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_weights(text)
    with pytest.raises(ValueError, match="reserved"):
        save_weights(
            good, get_preset("tiny"), generator=build_generator(get_preset("tiny")), metadata={"config": "x"}
        )


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    import safetensors.torch

    config = get_preset("tiny")
    path = tmp_path / "w.safetensors"
    save_weights(path, config, generator=build_generator(config))
    before = path.read_bytes()

    def broken(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_weights(path, config, generator=build_generator(config))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["w.safetensors"]


def test_merge_weights(tmp_path):
    config = get_preset("tiny")
    gen, lm = tmp_path / "g.safetensors", tmp_path / "l.safetensors"
    save_weights(gen, config, generator=build_generator(config), metadata={"stage": "inpaint"})
    save_weights(lm, config, landmark_predictor=build_landmark_predictor(config))
    out = tmp_path / "both.safetensors"
    merge_weights([gen, lm], out)
    merged = load_weights(out)
    assert merged.networks == ("generator", "landmarks")
    assert merged.metadata == {"stage": "inpaint", "generator.stage": "inpaint"}
    assert load_any([gen, lm]).networks == ("generator", "landmarks")
    other = tmp_path / "c.safetensors"
    save_weights(
        other, get_preset("compact"), landmark_predictor=build_landmark_predictor(get_preset("compact"))
    )
    with pytest.raises(WeightsError, match="differs"):
        merge_weights([gen, other], tmp_path / "bad.safetensors")


def test_merged_file_takes_the_name_of_the_preset_it_equals(tmp_path):
    import dataclasses

    from lafin.config import named_like_preset

    # a training run's model config, named after the run: the preset "tiny" under another name
    run_config = dataclasses.replace(get_preset("tiny"), name="tiny-run-7")
    run = tmp_path / "run.safetensors"
    save_weights(run, run_config, generator=build_generator(run_config))
    out = tmp_path / "out.safetensors"
    merge_weights([run], out)
    assert load_weights(out).config == get_preset("tiny")
    # a config that differs in a size keeps its own name
    other = dataclasses.replace(run_config, image_size=32)
    assert named_like_preset(other) is other


def test_merge_keeps_each_networks_own_history(tmp_path):
    """Re-exporting a shipped file (both networks) with a newer generator: the landmark
    predictor keeps its own steps, not the combined file's top-level (generator) ones."""
    config = get_preset("tiny")
    both, gen = tmp_path / "both.safetensors", tmp_path / "g.safetensors"
    save_weights(
        both,
        config,
        generator=build_generator(config),
        landmark_predictor=build_landmark_predictor(config),
        metadata={
            "stage": "inpaint",
            "step": "5500",
            "steps_before": "63400",
            "generator.step": "5500",
            "generator.steps_before": "63400",
            "landmarks.stage": "landmarks",
            "landmarks.step": "4800",
            "landmarks.steps_before": "21900",
        },
    )
    save_weights(
        gen,
        config,
        generator=build_generator(config),
        metadata={"stage": "inpaint", "step": "12000", "steps_before": "68900"},
    )
    out = tmp_path / "out.safetensors"
    merge_weights([both, gen], out)
    meta = load_weights(out).metadata
    assert (meta["landmarks.stage"], meta["landmarks.step"], meta["landmarks.steps_before"]) == (
        "landmarks",
        "4800",
        "21900",
    )
    assert (meta["generator.step"], meta["generator.steps_before"]) == ("12000", "68900")
    # a later file that carries a network without its history drops the earlier history
    bare = tmp_path / "bare.safetensors"
    save_weights(bare, config, landmark_predictor=build_landmark_predictor(config))
    merge_weights([out, bare], out)
    meta = load_weights(out).metadata
    assert "landmarks.step" not in meta and meta["generator.step"] == "12000"


def test_merge_keeps_each_networks_own_sizes(tmp_path):
    """A widened generator (lafin.training.widen) merges with the landmark predictor it was
    trained beside: each network keeps its file's sizes and the merged file builds strictly."""
    from dataclasses import replace

    narrow = get_preset("tiny")
    wide = replace(narrow, name="tiny-wide", generator=replace(narrow.generator, channels=(12, 24, 32)))
    gen, lm = tmp_path / "g.safetensors", tmp_path / "l.safetensors"
    save_weights(gen, wide, generator=build_generator(wide))
    save_weights(lm, narrow, landmark_predictor=build_landmark_predictor(narrow))
    for order in ([lm, gen], [gen, lm]):
        out = tmp_path / "both.safetensors"
        merge_weights(order, out)
        merged = load_weights(out)
        assert merged.config.generator.channels == (12, 24, 32)
        assert merged.config.landmarks == narrow.landmarks and merged.config.name == "tiny-wide"
        generator, predictor = build_from_weights(merged)
        assert generator is not None and predictor is not None


def test_half_precision_export_loads_as_float32_and_matches(tmp_path):
    from lafin.cli import main

    config = get_preset("tiny")
    torch.manual_seed(3)
    net = _randomised(build_landmark_predictor(config), 3).eval()
    full = tmp_path / "full.safetensors"
    save_weights(full, config, landmark_predictor=net)
    half = tmp_path / "half.safetensors"
    assert main(["export-weights", str(full), "-o", str(half), "--half"]) == 0
    loaded = load_weights(half)
    assert {v.dtype for v in loaded.landmarks_state.values() if v.is_floating_point()} == {torch.float16}
    assert half.stat().st_size < 0.6 * full.stat().st_size
    _, rebuilt = build_from_weights(loaded)
    assert all(p.dtype == torch.float32 for p in rebuilt.parameters())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a, b = net(x), rebuilt(x)
    assert not torch.equal(a, b)  # the weights really were rounded ...
    assert (a - b).abs().max() < 1e-2 * a.abs().max()  # ... and the output barely moves


def test_saved_weights_get_ordinary_permissions(tmp_path):
    config = get_preset("tiny")
    path = tmp_path / "w.safetensors"
    old = os.umask(0o022)
    try:
        save_weights(path, config, generator=build_generator(config))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
