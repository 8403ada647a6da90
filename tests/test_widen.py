"""Widening a trained compact generator keeps its output and lets the new channels learn."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lafin.config import get_preset
from lafin.networks import build_generator
from lafin.training.widen import main, widen_generator_state


def _inputs(size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    masked = torch.rand(2, 3, size, size, generator=g)
    lmap = (torch.rand(2, 1, size, size, generator=g) > 0.98).float()
    mask = (torch.rand(2, 1, size, size, generator=g) > 0.6).float()
    return masked, lmap, mask


def _small_config():
    tiny = get_preset("tiny")
    gen = dataclasses.replace(tiny.generator, channels=(8, 16, 32), num_residual_blocks=2)
    return dataclasses.replace(tiny, generator=gen)


def test_widened_generator_computes_the_same_output_and_trains():
    config = _small_config()
    torch.manual_seed(1)
    old = build_generator(config).eval()
    # make every parameter non-trivial (the attention gates start at 0)
    with torch.no_grad():
        for p in old.parameters():
            p.add_(0.05 * torch.randn_like(p))
    state, wide_config = widen_generator_state(old.state_dict(), config, (12, 24, 32))
    assert wide_config.generator.channels == (12, 24, 32)
    wide = build_generator(wide_config)
    wide.load_state_dict(state, strict=True)
    wide.eval()
    x = _inputs(config.image_size)
    with torch.no_grad():
        assert torch.allclose(old(*x), wide(*x), atol=1e-5)
    # one step moves the zero weights from new channels into old ones
    wide.train()
    loss = (wide(*x) - 0.5).abs().mean()
    loss.backward()
    grad = wide.decoders[-1][0][1].weight.grad  # pointwise conv reading cat(deep, skip)
    assert grad[:8, 16:24].abs().sum() > 0  # old outputs <- new deep channels


def test_widen_refuses_what_it_cannot_preserve():
    config = _small_config()
    state = build_generator(config).state_dict()
    with pytest.raises(ValueError, match="deepest scale"):
        widen_generator_state(state, config, (8, 16, 48))
    with pytest.raises(ValueError, match="only grow"):
        widen_generator_state(state, config, (4, 16, 32))
    with pytest.raises(ValueError, match="3 scales"):
        widen_generator_state(state, config, (8, 32))


def test_widen_command_writes_a_loadable_file(tiny_weights, tmp_path, capsys):
    from lafin.checkpoint import build_from_weights, load_any

    out = tmp_path / "wide.safetensors"
    assert main([str(tiny_weights), str(out), "--channels", "12,20,32", "--print-model"]) == 0
    assert "channels" in capsys.readouterr().out
    loaded = load_any(out)
    generator, predictor = build_from_weights(loaded)
    assert loaded.config.generator.channels == (12, 20, 32)
    assert predictor is not None and loaded.metadata["widened_from"] == "8,16,32"
    before, _ = build_from_weights(load_any(tiny_weights))
    x = _inputs(loaded.config.image_size, seed=3)
    with torch.no_grad():
        assert torch.allclose(before(*x), generator(*x), atol=1e-5)
