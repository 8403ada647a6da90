"""The networks' shapes, value ranges, sizes and gradients; landmark maps and mirroring."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from lafin.config import GeneratorConfig, ModelConfig, get_preset
from lafin.landmarks import FLIP_PERMUTATION, PARTS, POINT_PARTS, flip_landmarks, landmark_map
from lafin.networks import (
    CompactGenerator,
    LaFInGenerator,
    build_discriminator,
    build_generator,
    build_landmark_predictor,
)

# batch sizes: the paper networks at 256 px are slow on a CPU, one face is enough
BATCH = {"paper": 1, "compact": 2, "tiny": 2}


def _inputs(batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, size, size, generator=g)
    mask = torch.zeros(batch, 1, size, size)
    mask[..., size // 4 : size // 2, size // 3 : 3 * size // 4] = 1
    masked = image * (1 - mask) + mask
    points = torch.rand(batch, 68, 2, generator=g) * (size - 1)
    return image, masked, landmark_map(points, size), mask


@pytest.mark.parametrize("preset", ["paper", "compact", "tiny"])
def test_network_shapes_and_ranges(preset):
    config = get_preset(preset)
    size, batch = config.image_size, BATCH[preset]
    image, masked, lmap, mask = _inputs(batch, size)
    torch.manual_seed(0)
    generator = build_generator(config).eval()
    predictor = build_landmark_predictor(config).eval()
    discriminator = build_discriminator(config).eval()
    assert isinstance(generator, LaFInGenerator if config.generator.arch == "lafin" else CompactGenerator)
    with torch.no_grad():
        out = generator(masked, lmap, mask)
        coords = predictor(masked)
        logits, features = discriminator(image, lmap)
    assert out.shape == (batch, 3, size, size) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert out.std() > 0  # not a constant image
    assert coords.shape == (batch, 2 * config.landmarks.num_points)
    assert torch.isfinite(coords).all()
    # 4x4 convs with padding 1: stride 2 three times (size / 8), then two stride-1 (-1 each)
    assert logits.shape == (batch, 1, size // 8 - 2, size // 8 - 2)
    assert torch.isfinite(logits).all()
    base = config.discriminator.base_channels
    assert [f.shape[1] for f in features] == [base, 2 * base, 4 * base, 8 * base]


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_paper_parameter_counts_match_the_original():
    config = get_preset("paper")
    with torch.device("meta"):
        generator = build_generator(config)
        predictor = build_landmark_predictor(config)
        discriminator = build_discriminator(config)
    # the original release: 11.73 M (without its twice-registered attention block), 2.55 M, 3.24 M
    assert round(_count(generator) / 1e6, 2) == 11.73
    assert round(_count(predictor) / 1e6, 2) == 2.55
    assert round(_count(discriminator) / 1e6, 2) == 3.24


def test_compact_generator_is_smaller_than_the_paper_one():
    with torch.device("meta"):
        compact = _count(build_generator(get_preset("compact")))
        paper = _count(build_generator(get_preset("paper")))
    assert compact < paper / 4


TINY_LAFIN = ModelConfig(
    name="tiny-lafin",
    image_size=64,
    generator=GeneratorConfig(arch="lafin", channels=(8, 16, 32), num_residual_blocks=2),
)


@pytest.mark.parametrize("config", [get_preset("tiny"), TINY_LAFIN], ids=["tiny", "tiny-lafin"])
def test_gradients_reach_every_generator_parameter(config):
    torch.manual_seed(0)
    generator = build_generator(config).train()
    assert generator.attention is not None
    with torch.no_grad():
        # both attention gates start at 0 (the layer starts as the identity), which blocks the
        # query's gradient until they move; open them to see every path
        generator.attention.gamma.fill_(0.5)
        generator.attention.alpha.fill_(0.5)
    size = config.image_size
    _, masked, lmap, mask = _inputs(2, size)
    target = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    loss = (generator(masked, lmap, mask) - target).abs().mean()
    loss.backward()
    dead = [
        name
        for name, p in generator.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
    ]
    assert not dead, f"no gradient reaches {dead}"


def test_gates_get_gradients_at_initialisation():
    torch.manual_seed(0)
    generator = build_generator(get_preset("tiny"))
    _, masked, lmap, mask = _inputs(2, 64)
    generator(masked, lmap, mask).mean().backward()
    assert generator.attention.gamma.grad.abs() > 0
    assert generator.attention.alpha.grad.abs() > 0


def test_generator_ignores_hole_content_of_skips():
    """Only known content enters the decoder skips: with the hole at 1, changing the image
    under the hole must not change the output (the input already whites it out)."""
    config = get_preset("tiny")
    torch.manual_seed(0)
    generator = build_generator(config).eval()
    image, _, lmap, mask = _inputs(1, 64)
    other = image.clone()
    other[mask.expand_as(image) > 0] = torch.rand(int(mask.sum()) * 3)
    with torch.no_grad():
        a = generator(image * (1 - mask) + mask, lmap, mask)
        b = generator(other * (1 - mask) + mask, lmap, mask)
    assert torch.equal(a, b)


def test_landmark_map_marks_rounded_pixels():
    points = torch.tensor(
        [
            [[3.4, 5.6], [10.0, 0.0], [-2.0, 70.0], [63.6, 12.2]],
            [[0.0, 0.0], [0.4, 0.4], [31.5, 31.49], [20.0, 40.0]],
        ]
    )
    m = landmark_map(points, 64)
    assert m.shape == (2, 1, 64, 64) and m.dtype == torch.float32
    assert set(m.unique().tolist()) == {0.0, 1.0}
    # (x, y) -> row y, column x; rounded; clamped into the image
    expected = [[(6, 3), (0, 10), (63, 0), (12, 63)], [(0, 0), (31, 32), (40, 20)]]
    for b, pixels in enumerate(expected):
        for row, col in pixels:
            assert m[b, 0, row, col] == 1, (b, row, col)
        assert m[b].sum() == len(pixels)  # nothing else (two points share a pixel in b = 1)


def test_flip_landmarks_is_an_involution():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 255, (3, 68, 2)).astype(np.float32)
    twice = flip_landmarks(flip_landmarks(pts, 256), 256)
    np.testing.assert_allclose(twice, pts, atol=1e-4)
    assert sorted(FLIP_PERMUTATION.tolist()) == list(range(68))
    assert np.array_equal(FLIP_PERMUTATION[FLIP_PERMUTATION], np.arange(68))


def test_point_parts_name_each_point_by_its_part():
    assert len(POINT_PARTS) == 68
    for name, (a, b) in PARTS.items():
        assert [i for i, part in enumerate(POINT_PARTS) if part == name] == list(range(a, b))
    assert (POINT_PARTS[8], POINT_PARTS[30], POINT_PARTS[45]) == ("jaw", "nose_bridge", "left_eye")


def test_flip_landmarks_keeps_left_and_right_semantics():
    width = 256
    # a frontal face: the subject's right eye (iBUG 36-41) is on the image's left, the left
    # eye (42-47) on the image's right
    pts = np.zeros((68, 2), np.float32)
    pts[:, 0] = np.linspace(40, 215, 68)
    pts[:, 1] = 128
    r0, r1 = PARTS["right_eye"]
    l0, l1 = PARTS["left_eye"]
    pts[r0:r1, 0] = np.linspace(70, 100, r1 - r0)
    pts[l0:l1, 0] = np.linspace(156, 186, l1 - l0)
    flipped = flip_landmarks(pts, width)

    # the left eye's outer corner (45) moves to the image's left side and becomes the right
    # eye's outer corner (36)
    assert flipped[36, 0] == pytest.approx(width - 1 - pts[45, 0])
    assert np.all(flipped[r0:r1, 0] < width / 2) and np.all(flipped[l0:l1, 0] > width / 2)
    assert np.all(flipped[:, 1] == pts[:, 1])

    # mirror pairs of the iBUG 68-point scheme, independently of FLIP_PERMUTATION's layout
    pairs = {
        0: 16,
        1: 15,
        7: 9,
        17: 26,
        21: 22,
        31: 35,
        32: 34,
        36: 45,
        37: 44,
        38: 43,
        39: 42,
        40: 47,
        41: 46,
        48: 54,
        49: 53,
        50: 52,
        55: 59,
        56: 58,
        60: 64,
        61: 63,
        65: 67,
    }
    fixed = [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]
    coded = np.stack([np.arange(68, dtype=np.float32), np.zeros(68, np.float32)], axis=1)
    source = width - 1 - flip_landmarks(coded, width)[:, 0]  # which point each one came from
    for a, b in pairs.items():
        assert source[a] == b and source[b] == a, (a, b)
    for a in fixed:
        assert source[a] == a, a


def test_predictor_output_follows_flip_convention():
    """The predictor's 136 outputs reshape to (68, 2) x, y pairs usable by flip_landmarks."""
    config = get_preset("tiny")
    predictor = build_landmark_predictor(config).eval()
    with torch.no_grad():
        coords = predictor(torch.rand(1, 3, 64, 64))
    pts = coords.view(1, 68, 2).numpy() * 64
    assert flip_landmarks(pts, 64).shape == (1, 68, 2)
    assert math.isfinite(float(pts.sum()))


def test_spatial_landmark_head_sees_where_features_are():
    """The compact preset's head keeps a 4x4 grid; the paper preset keeps the original pooling."""
    from lafin.config import LandmarkConfig

    assert get_preset("compact").landmarks.head == "spatial"
    assert get_preset("paper").landmarks.head == "pooled"
    torch.manual_seed(0)
    config = ModelConfig(name="t", image_size=64, landmarks=LandmarkConfig(width_mult=0.25, head="spatial"))
    net = build_landmark_predictor(config).eval()
    assert net.fc_landmark.in_features == 128 + 128 + 32 * 16
    with torch.no_grad():
        assert net(torch.rand(2, 3, 64, 64)).shape == (2, 136)
    with pytest.raises(ValueError, match="head"):
        LandmarkConfig(head="heatmap")


def test_bilinear_upsampling_takes_the_same_weights_and_no_blocks():
    """``generator.upsample``: the same parameters load strictly either way; nearest copies
    each decoder value into 2x2 blocks (a 2-px pattern in the output), bilinear does not."""
    import dataclasses

    from lafin.networks import build_generator

    nearest_config = get_preset("tiny")
    bilinear_config = dataclasses.replace(
        nearest_config, generator=dataclasses.replace(nearest_config.generator, upsample="bilinear")
    )
    torch.manual_seed(0)
    nearest = build_generator(nearest_config).eval()
    for p in nearest.parameters():  # a fresh generator's output is nearly flat: give it structure
        nn.init.normal_(p, std=0.3)
    bilinear = build_generator(bilinear_config).eval()
    bilinear.load_state_dict(nearest.state_dict(), strict=True)
    size = nearest_config.image_size
    g = torch.Generator().manual_seed(1)
    masked, mask = torch.rand(2, 3, size, size, generator=g), torch.zeros(2, 1, size, size)
    mask[..., 16:48, 16:48] = 1
    lm = torch.zeros(2, 1, size, size)

    def alternation(out: torch.Tensor) -> float:  # second differences along x: 2-px patterns
        x = out[..., 18:46, 18:46]
        return float((2 * x[..., 1:-1] - x[..., :-2] - x[..., 2:]).abs().mean())

    with torch.no_grad():
        a, b = nearest(masked, lm, mask), bilinear(masked, lm, mask)
    assert a.shape == b.shape and not torch.allclose(a, b)
    assert alternation(b) < 0.5 * alternation(a)
    with pytest.raises(ValueError, match="upsample"):
        GeneratorConfig(arch="compact", upsample="bicubic")
    with pytest.raises(ValueError, match="compact"):
        GeneratorConfig(arch="lafin", upsample="bilinear")


def test_folding_batch_norms_keeps_the_eval_output_and_removes_every_norm():
    """The landmark predictor with trained-looking statistics (random running means, variances
    and affine parameters): folded, the same output within float error, no BatchNorm2d left;
    a norm without affine parameters and a conv with a bias fold too."""
    from lafin.networks.folding import fold_batch_norms

    torch.manual_seed(0)
    config = get_preset("compact")
    predictor = build_landmark_predictor(config).eval()
    for module in predictor.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = predictor(x)
        folded = fold_batch_norms(copy.deepcopy(predictor))
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert torch.allclose(folded(x), expected, atol=1e-5, rtol=1e-4)
        # in training mode the norms use the batch's statistics: a different function
        assert not torch.allclose(folded(x), predictor.train()(x), atol=1e-3)

        plain = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, bias=True), torch.nn.BatchNorm2d(4, affine=False), torch.nn.ReLU()
        ).eval()
        plain[1].running_mean.uniform_(-1, 1)
        plain[1].running_var.uniform_(0.5, 2.0)
        want = plain(x)
        assert torch.allclose(fold_batch_norms(plain)(x), want, atol=1e-5)
        assert isinstance(plain[1], torch.nn.Identity)
