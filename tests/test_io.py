"""The input layer (lafin.io): pixel budget, EXIF orientation, the dtype/range rule, landmarks
files, devices, and one error class per kind of failure (issue #26)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lafin import io as lio
from lafin.devices import resolve_device
from lafin.errors import (
    DeviceError,
    ImageFormatError,
    ImageReadError,
    ImageTooLargeError,
    InputError,
    LandmarksError,
    MaskError,
)
from lafin.io import check_landmarks, load_image, load_mask
from lafin.landmarks import load_landmarks, write_pts

from conftest import box_mask, face_like


def png_header_only(path: Path, width: int, height: int, rows: int = 0) -> Path:
    """A grayscale PNG whose header claims width x height; ``rows`` rows of zeros are really
    stored (streamed through zlib, so a 12000x12000 one is a ~140 KB file)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    z = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(z.compress(row) for _ in range(rows)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


# ----------------------------------------------------------------------------- pixel budget


def test_pixel_budget_refuses_a_small_file_that_decodes_huge_before_decoding(tmp_path, monkeypatch):
    path = png_header_only(tmp_path / "bomb.png", 12000, 12000, rows=12000)
    assert path.stat().st_size < 400_000  # the audit's 140 KB file that decodes to 144 MB
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded before the check"))
    with pytest.raises(ImageTooLargeError, match="12000x12000 = 144.0 megapixels.*limit of 50"):
        load_image(path)
    with pytest.raises(ImageTooLargeError):
        load_mask(path)


def test_pixel_budget_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "face.png"
    Image.fromarray(face_like(40, 50)).save(path)
    assert load_image(path).shape == (40, 50, 3)
    with pytest.raises(ImageTooLargeError, match="40 = 0.0"):
        load_image(path, max_pixels=1000)
    monkeypatch.setenv(lio.MAX_PIXELS_ENV, "0.001")  # 1000 pixels
    with pytest.raises(ImageTooLargeError):
        load_image(path)
    with pytest.raises(ImageTooLargeError):  # arrays and PIL images obey the same budget
        load_image(face_like(40, 50))
    lio.set_max_pixels(10_000)
    try:
        assert load_image(Image.open(path)).shape == (40, 50, 3)
    finally:
        lio.set_max_pixels(None)
    monkeypatch.setenv(lio.MAX_PIXELS_ENV, "lots")
    with pytest.raises(InputError, match="LAFIN_MAX_MEGAPIXELS"):
        load_image(path)


def test_decompression_bomb_is_one_clear_error(tmp_path):
    # over Pillow's own bomb limit (2 x 89 megapixels): Image.open raises before our check
    path = png_header_only(tmp_path / "bomb.png", 20000, 20000)
    lio.set_max_pixels(10**9)
    try:
        with pytest.raises(ImageTooLargeError, match="decompression bomb"):
            load_image(path)
    finally:
        lio.set_max_pixels(None)


def test_damaged_and_foreign_files_are_read_errors(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(face_like(64, 64)).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:200])
    text = tmp_path / "notes.png"
    text.write_text("hello")
    for path in (cut, text, tmp_path / "missing.png", tmp_path):
        with pytest.raises(ImageReadError):
            load_image(path)


# ----------------------------------------------------------------------------- EXIF


def sideways_image(path: Path, upright: np.ndarray, orientation: int = 6) -> Path:
    """Store ``upright`` as a camera does: pixels rotated, EXIF tag saying how to show them."""
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # tag 6 undoes it
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif)
    return path


def test_exif_orientation_is_applied_to_image_and_mask(tmp_path):
    upright = face_like(48, 32)
    img_path = sideways_image(tmp_path / "photo.png", upright)
    assert Image.open(img_path).size == (48, 32)  # stored sideways
    np.testing.assert_array_equal(load_image(img_path), upright)
    np.testing.assert_array_equal(load_image(Image.open(img_path)), upright)
    hole = box_mask(48, 32, 0.1, 0.2, 0.4, 0.5) * 255
    mask_path = sideways_image(tmp_path / "mask.png", hole)
    np.testing.assert_array_equal(load_mask(mask_path, shape=(48, 32)), hole > 0)


def test_exif_photo_inpaints_upright_with_the_hole_where_drawn(tmp_path, tiny_model):
    upright = face_like(48, 40)
    img_path = sideways_image(tmp_path / "phone.png", upright)
    hole = box_mask(48, 40, 0.55, 0.3, 0.8, 0.7)  # drawn on the upright picture, no EXIF
    out = tiny_model.inpaint(img_path, hole * 255, mode="crop")
    assert out.shape == upright.shape
    np.testing.assert_array_equal(out[hole == 0], upright[hole == 0])


# ----------------------------------------------------------------------------- values


def test_floats_must_be_in_unit_range_no_guessing():
    img = face_like(16, 16).astype(np.float64) / 255
    np.testing.assert_array_equal(load_image(img), face_like(16, 16))
    pushed = img.copy()
    pushed[3, 4] = 1.03  # a bicubic resize's overshoot: refused, not read as 0-255
    with pytest.raises(ImageFormatError, match=r"float arrays must be in \[0, 1\]"):
        load_image(pushed)
    below = img.copy()
    below[0, 0, 1] = -0.01
    with pytest.raises(ImageFormatError):
        load_image(below)
    nan = img.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(ImageFormatError, match="NaN"):
        load_image(nan)
    with pytest.raises(ImageFormatError):
        load_mask(np.full((16, 16), 2.0))


def test_integer_rule_is_by_dtype_not_by_values():
    dark16 = np.full((16, 16), 200, np.uint16)  # 16-bit: 200/65535 is almost black
    assert load_image(dark16).max() == 1
    assert load_image(np.full((16, 16, 3), 200, np.int64)).max() == 200
    with pytest.raises(ImageFormatError, match="0-255"):
        load_image(np.full((16, 16, 3), 300, np.int32))
    with pytest.raises(ImageFormatError, match="dtype"):
        load_image(np.zeros((16, 16, 3), np.complex64))
    np.testing.assert_array_equal(load_image(np.ones((16, 16), bool)), 255)


def test_array_shapes_and_sizes_are_format_errors():
    for bad in (
        np.zeros((16,), np.uint8),
        np.zeros((16, 16, 2), np.uint8),
        np.zeros((4, 16, 3), np.uint8),
        np.zeros((16, 16, 3, 1), np.uint8),
    ):
        with pytest.raises(ImageFormatError):
            load_image(bad)
    with pytest.raises(InputError, match="path, PIL image or numpy"):
        load_image([[1, 2], [3, 4]])
    with pytest.raises(MaskError, match="differs from image size"):
        load_mask(np.zeros((10, 12), np.uint8), shape=(12, 10))


def test_the_callers_array_is_never_returned():
    img = face_like(16, 16)
    out = load_image(img)
    assert not np.shares_memory(out, img)


# ----------------------------------------------------------------------------- landmarks


def bad_landmark_files(tmp: Path) -> dict[str, Path]:
    def put(name: str, data) -> Path:
        p = tmp / name
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data)
        return p

    good = "\n".join(f"{i} {i}" for i in range(68))
    np.save(tmp / "short.npy", np.zeros((5, 2)))
    np.save(tmp / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp / "strings.npy", np.array(["a", "b"]))
    return {
        "missing": tmp / "nothing.pts",
        "directory": (tmp / "dir.pts").mkdir() or tmp / "dir.pts",
        "no block": put("noblock.pts", good),
        "too few": put("few.pts", "{\n1 2\n3 4\n}"),
        "not numbers": put("words.pts", "{\n" + good.replace("7 7", "x y") + "\n}"),
        "binary": put("bin.pts", b"\xff\xfe\x00\x81" * 50),
        "bad json": put("bad.json", "{landmarks: "),
        "json no key": put("nokey.json", json.dumps({"points": []})),
        "json strings": put("str.json", json.dumps({"landmarks": [["a", "b"]] * 68})),
        "json ragged": put("ragged.json", json.dumps({"landmarks": [[1, 2], [3]] * 34})),
        "json shape": put("shape.json", json.dumps([[1, 2, 3]] * 68)),
        "json 1e40": put("huge.json", json.dumps([[1e40, 1]] * 68)),
        "npy shape": tmp / "short.npy",
        "npy pickle": tmp / "objects.npy",
        "npy strings": tmp / "strings.npy",
        "npy garbage": put("junk.npy", b"not numpy at all"),
        "extension": put("points.txt", good),
    }


def test_every_malformed_landmarks_file_is_one_landmarks_error(tmp_path):
    for name, path in bad_landmark_files(tmp_path).items():
        with pytest.raises(LandmarksError) as info:
            load_landmarks(path)
        assert "\n" not in str(info.value), name


def test_landmarks_out_of_range_and_from_a_file(tmp_path, tiny_model):
    img, hole = face_like(64, 64), box_mask(64, 64)
    points = tiny_model.predict_landmarks(img, hole)
    huge = points.copy()
    huge[3] = 1e30
    with pytest.raises(LandmarksError, match="far outside"):
        check_landmarks(huge, (64, 64))
    with pytest.raises(LandmarksError):
        tiny_model.inpaint(img, hole, landmarks=huge)
    write_pts(tmp_path / "p.pts", points)
    by_path = tiny_model.inpaint(img, hole, landmarks=str(tmp_path / "p.pts"), mode="crop")
    # the same as the file's values given as an array (.pts keeps 3 decimals)
    np.testing.assert_array_equal(
        by_path, tiny_model.inpaint(img, hole, landmarks=load_landmarks(tmp_path / "p.pts"), mode="crop")
    )
    with pytest.raises(LandmarksError, match="not found"):
        tiny_model.inpaint(img, hole, landmarks="file.pts")


# ----------------------------------------------------------------------------- devices


@pytest.mark.parametrize("name", ["bogus", "cuda:x", "", "tpu"])
def test_unknown_devices_are_device_errors(name):
    with pytest.raises(DeviceError):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_device_error(tiny_config):
    from lafin.networks import build_generator, build_landmark_predictor
    from lafin.pipeline import LaFInModel

    with pytest.raises(DeviceError, match="CUDA is not available"):
        LaFInModel.from_networks(
            tiny_config, build_generator(tiny_config), build_landmark_predictor(tiny_config), device="cuda"
        )
    assert resolve_device("cpu") == torch.device("cpu")
