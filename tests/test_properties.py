"""Property-based tests (Hypothesis) of the input layer and of ``inpaint`` on random small images,
masks, dtypes and modes with a tiny random-weight model: the only failure allowed is a clear
InputError; otherwise the output keeps the input's shape and every known pixel bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lafin.config import get_preset
from lafin.errors import InputError
from lafin.io import load_image, load_mask
from lafin.networks import build_generator, build_landmark_predictor

DTYPES = ["uint8", "uint16", "float32", "float64", "bool", "int64", "int16", "float16"]


@st.composite
def image_arrays(draw, max_side: int = 40, min_side: int = 4, bad_values: bool = True):
    """Random arrays of any dtype and layout, inside or (with ``bad_values``, sometimes) outside
    the value rules."""
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    channels = draw(st.sampled_from([None, 1, 3, 4]))
    dtype = draw(st.sampled_from(DTYPES))
    shape = (h, w) if channels is None else (h, w, channels)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype == "bool":
        arr = rng.random(shape) > 0.5
    elif dtype.startswith("float"):
        ranges = [(0.0, 1.0), (0.0, 1.0)] + ([(-0.1, 1.0), (0.0, 1.05), (0.0, 255.0)] if bad_values else [])
        lo, hi = draw(st.sampled_from(ranges))
        arr = rng.uniform(lo, hi, shape).astype(dtype)
        if bad_values and draw(st.booleans()) and draw(st.booleans()):
            arr.flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    else:
        top = {"uint8": 255, "uint16": 65535}.get(
            dtype, draw(st.sampled_from([255, 1000] if bad_values else [255]))
        )
        lo = -5 if bad_values and dtype in ("int16", "int64") and draw(st.booleans()) else 0
        arr = rng.integers(lo, top + 1, shape).astype(dtype)
    return arr


@st.composite
def masks_for(draw, h: int, w: int):
    dtype = draw(st.sampled_from(["uint8", "bool", "float32", "uint16"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["box", "box", "noise", "noise", "empty", "full"]))
    hole = np.zeros((h, w), bool)
    if kind == "box":
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        hole[y0 : y0 + draw(st.integers(1, h)), x0 : x0 + draw(st.integers(1, w))] = True
    elif kind == "noise":
        hole = rng.random((h, w)) < draw(st.floats(0.01, 0.9))
    elif kind == "full":
        hole[:] = True
    top = {"uint8": 255, "bool": True, "float32": 1.0, "uint16": 65535}[dtype]
    return np.where(hole, top, 0).astype(dtype)


@settings(max_examples=60, deadline=None)
@given(image_arrays())
def test_load_image_gives_rgb_uint8_or_a_clear_input_error(arr):
    before = arr.copy()
    try:
        out = load_image(arr)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    finally:
        np.testing.assert_array_equal(arr, before)  # the caller's array is never modified
    assert out.dtype == np.uint8 and out.shape == (*arr.shape[:2], 3)
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        np.testing.assert_array_equal(out, arr)


@settings(max_examples=40, deadline=None)
@given(image_arrays(max_side=24))
def test_load_mask_gives_binary_or_a_clear_input_error(arr):
    try:
        out = load_mask(arr, shape=arr.shape[:2])
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert out.dtype == np.uint8 and out.shape == arr.shape[:2]
    assert set(np.unique(out)) <= {0, 1}


@pytest.fixture(scope="module")
def tiny_module_model():
    from lafin.pipeline import LaFInModel

    config = get_preset("tiny")
    torch.manual_seed(0)
    return LaFInModel.from_networks(config, build_generator(config), build_landmark_predictor(config))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_inpaint_keeps_shape_and_known_pixels_or_refuses_clearly(tiny_module_model, data):
    torch.set_num_threads(1)
    # mostly usable inputs (the refusals are covered above), so that the model really runs
    image = data.draw(
        image_arrays(
            max_side=48, min_side=8, bad_values=data.draw(st.sampled_from([False, False, False, True]))
        ),
        label="image",
    )
    h, w = image.shape[:2]
    mask = data.draw(masks_for(h, w), label="mask")
    mode = data.draw(st.sampled_from(["crop", "auto", "photo"]), label="mode")
    try:
        out = tiny_module_model.inpaint(image, mask, mode=mode)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        event(f"refused: {type(exc).__name__}")
        return
    event(f"inpainted ({mode})")
    known = load_mask(mask, shape=(h, w)) == 0
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[known], load_image(image)[known])
