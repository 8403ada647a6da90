"""The ``lafin`` command line end to end, with a tiny random-weights checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import box_mask, face_like
from lafin import __version__
from lafin.cli import main
from lafin.landmarks import read_pts


@pytest.fixture
def inputs(tmp_path):
    image, mask = face_like(90, 70), box_mask(90, 70)
    Image.fromarray(image).save(tmp_path / "face.png")
    Image.fromarray(mask * 255).save(tmp_path / "hole.png")
    return tmp_path / "face.png", tmp_path / "hole.png", image, mask


def test_inpaint_end_to_end(inputs, tiny_weights, tmp_path, capsys):
    face, hole, image, mask = inputs
    out = tmp_path / "out" / "result.png"
    code = main(
        [
            "inpaint",
            str(face),
            str(hole),
            "-o",
            str(out),
            "--weights",
            str(tiny_weights),
            "--landmarks-out",
            str(tmp_path / "lm.pts"),
            "--overlay",
            str(tmp_path / "ov.png"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    for stage in ("Loading model...", "Predicting landmarks...", "Generating face...", "Done!"):
        assert stage in printed
    result = np.asarray(Image.open(out))
    assert result.shape == image.shape
    assert np.array_equal(result[mask == 0], image[mask == 0])
    pts = read_pts(tmp_path / "lm.pts")
    assert pts.shape == (68, 2)
    assert np.asarray(Image.open(tmp_path / "ov.png")).shape == image.shape


def test_landmarks_in_and_json_out(inputs, tiny_weights, tmp_path):
    face, hole, image, _ = inputs
    given = np.random.default_rng(0).uniform(5, 60, (68, 2)).astype(np.float32)
    np.save(tmp_path / "given.npy", given)
    code = main(
        [
            "inpaint",
            str(face),
            str(hole),
            "-o",
            str(tmp_path / "r.png"),
            "-q",
            "--weights",
            str(tiny_weights),
            "--landmarks",
            str(tmp_path / "given.npy"),
            "--landmarks-out",
            str(tmp_path / "lm.json"),
        ]
    )
    assert code == 0
    saved = np.array(json.loads((tmp_path / "lm.json").read_text())["landmarks"])
    np.testing.assert_allclose(saved, given, atol=1e-3)


def test_expression_edits_the_landmarks_and_grows_the_hole_over_them(tiny_weights, tmp_path, capsys):
    """--expression open-mouth with given landmarks (a canonical face) and a hole over the eyes:
    the landmarks used are the edited ones, the pixels in the box over the moved points change,
    every pixel outside the hole and the box stays the input's."""
    from lafin.alignment import canonical_landmarks
    from lafin.edit_hole import hole_over_edit
    from lafin.landmarks import edit_expression

    image = face_like(128, 128, seed=2)
    mask = np.zeros((128, 128), np.uint8)
    mask[35:55, 25:105] = 1  # the eyes only
    Image.fromarray(image).save(tmp_path / "face.png")
    Image.fromarray(mask * 255).save(tmp_path / "hole.png")
    points = canonical_landmarks(128).astype(np.float32)
    np.save(tmp_path / "given.npy", points)
    argv = ["inpaint", str(tmp_path / "face.png"), str(tmp_path / "hole.png"), "--weights", str(tiny_weights)]
    argv += ["--landmarks", str(tmp_path / "given.npy"), "--mode", "crop", "--expression", "open-mouth"]
    assert main([*argv, "-o", str(tmp_path / "r.png"), "--landmarks-out", str(tmp_path / "lm.npy")]) == 0
    assert "Expression: open mouth (strength 1); the hole grows by" in capsys.readouterr().out
    opened = edit_expression(points, "open mouth")
    np.testing.assert_allclose(np.load(tmp_path / "lm.npy"), opened, atol=1e-3)
    result = np.asarray(Image.open(tmp_path / "r.png"))
    grown = hole_over_edit(mask, points, opened) > 0
    box = grown & (mask == 0)
    assert box.sum() > 500
    assert (result[~grown] == image[~grown]).all()
    assert (np.abs(result.astype(int) - image)[box].max(axis=-1) > 0).mean() > 0.5
    # a name it does not know, and folders: one line, exit 2
    assert main([*argv[:-1], "wink", "-o", str(tmp_path / "w.png")]) == 2
    assert "unknown 'wink'; choose one of open-mouth" in capsys.readouterr().err
    (tmp_path / "faces").mkdir()
    (tmp_path / "masks").mkdir()
    folders = ["inpaint", str(tmp_path / "faces"), str(tmp_path / "masks"), "-o", str(tmp_path / "out")]
    assert main([*folders, "--expression", "smile"]) == 2
    assert "--expression works with one image" in capsys.readouterr().err


def test_expression_without_landmarks_generates_once_in_crop_mode(tiny_weights, tmp_path, monkeypatch):
    """--expression without --landmarks on a face crop: the points edited are crop mode's own
    (predict_landmarks: what its generation uses) and the face is generated once, from them."""
    from lafin.landmarks import edit_expression
    from lafin.pipeline import LaFInModel

    image = face_like(128, 128, seed=3)
    mask = np.zeros((128, 128), np.uint8)
    mask[80:110, 40:90] = 1
    Image.fromarray(image).save(tmp_path / "face.png")
    Image.fromarray(mask * 255).save(tmp_path / "hole.png")
    calls = []
    original = LaFInModel.__call__

    def counted(self, *args, **kwargs):
        calls.append(kwargs.get("mode"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LaFInModel, "__call__", counted)
    argv = ["inpaint", str(tmp_path / "face.png"), str(tmp_path / "hole.png"), "-q"]
    argv += ["--weights", str(tiny_weights), "--expression", "smile"]
    argv += ["--landmarks-out", str(tmp_path / "lm.npy")]
    assert main([*argv, "-o", str(tmp_path / "r.png")]) == 0
    assert calls == ["auto"]
    expected = edit_expression(LaFInModel(tiny_weights).predict_landmarks(image, mask), "smile")
    np.testing.assert_allclose(np.load(tmp_path / "lm.npy"), expected, atol=1e-3)


@pytest.mark.parametrize("background_hole", [False, True])
def test_expression_on_a_photo_edits_its_face(tiny_weights, tmp_path, monkeypatch, background_hole):
    """--expression on a photo whose mask is empty, or whose hole touches no face: the face
    found in the photo (not the whole photo read as one face crop) is edited, generated once,
    and nothing outside the box over the moved points and the hole changes."""
    from skimage import data

    from lafin.edit_hole import hole_over_edit
    from lafin.landmarks import edit_expression
    from lafin.pipeline import LaFInModel

    photo = np.full((600, 900, 3), 120, np.uint8)
    photo[40:552, 20:532] = data.astronaut()
    Image.fromarray(photo).save(tmp_path / "photo.png")
    hole = np.zeros((600, 900), np.uint8)
    if background_hole:
        hole[500:540, 700:800] = 255
    Image.fromarray(hole).save(tmp_path / "empty.png")
    calls, asked = [], []
    original, predict = LaFInModel.__call__, LaFInModel.predict_landmarks
    monkeypatch.setattr(
        LaFInModel, "__call__", lambda self, *a, **k: calls.append(k["landmarks"]) or original(self, *a, **k)
    )
    monkeypatch.setattr(
        LaFInModel,
        "predict_landmarks",
        lambda self, i, m=None, **k: asked.append(m) or predict(self, i, m, **k),
    )
    argv = ["inpaint", str(tmp_path / "photo.png"), str(tmp_path / "empty.png"), "-q", "--weights"]
    argv += [str(tiny_weights), "--expression", "open-mouth"]
    assert main([*argv, "-o", str(tmp_path / "r.png")]) == 0
    assert len(calls) == 1  # generated once
    # a hole that touches no face: asked again without it (the photo's face)
    assert [m is None for m in asked] == ([False, True] if background_hole else [False])
    before = LaFInModel(tiny_weights).predict_landmarks(photo, mode="photo")
    after = edit_expression(before, "open mouth")
    np.testing.assert_allclose(calls[0], after, atol=1e-3)  # generated from the edited face
    # the astronaut's face (about (200, 107)-(286, 203) here), not the photo read as one crop
    # (random weights: the points are rough, but in that face's crop)
    centre = before.mean(axis=0)
    assert 20 + 120 < centre[0] < 20 + 330 and 40 + 20 < centre[1] < 40 + 230
    box = hole_over_edit(hole, before, after) > 0
    assert box.sum() < 0.05 * box.size
    changed = np.abs(np.asarray(Image.open(tmp_path / "r.png")).astype(int) - photo).max(axis=-1) > 0
    assert not changed[~box].any() and changed[hole > 0].any() == background_hole


def test_landmarks_out_says_why_no_file_is_written(tiny_weights, tmp_path, capsys):
    """A photo whose hole touches no face (it has one elsewhere) generates no face:
    --landmarks-out writes nothing and says so (the result itself is written)."""
    from skimage import data

    photo = np.full((600, 900, 3), 120, np.uint8)
    photo[40:552, 20:532] = data.astronaut()
    hole = np.zeros((600, 900), np.uint8)
    hole[500:540, 700:800] = 255
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(hole).save(tmp_path / "hole.png")
    argv = ["inpaint", str(tmp_path / "photo.png"), str(tmp_path / "hole.png")]
    argv += ["--weights", str(tiny_weights)]
    argv += ["-o", str(tmp_path / "r.png"), "--landmarks-out", str(tmp_path / "lm.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"no face was generated, so there are no landmarks to write to {tmp_path / 'lm.json'}" in out
    assert (tmp_path / "r.png").is_file() and not (tmp_path / "lm.json").exists()


def test_resolved_mode(tiny_weights):
    from lafin.errors import OptionError
    from lafin.pipeline import LaFInModel

    model = LaFInModel(tiny_weights)
    side = 2 * model.image_size
    assert model.resolved_mode((side, side)) == "crop"
    assert model.resolved_mode((side, side + 1, 3)) == "photo"
    assert model.resolved_mode((side + 1, side), "crop") == "crop"
    with pytest.raises(OptionError, match="mode must be"):
        model.resolved_mode((10, 10), "face")


@pytest.mark.parametrize("command", ["inpaint", "inpaint-video", "restore", "serve"])
def test_threads_reach_the_model_and_bad_counts_are_refused(
    command, inputs, tiny_weights, monkeypatch, capsys
):
    from lafin import cli
    from lafin.pipeline import LaFInModel

    made = []

    class Stop(Exception):
        pass

    def record(*args, **kwargs):
        made.append(kwargs.get("threads"))
        raise Stop

    face, hole, _, _ = inputs
    argv = {
        "inpaint": ["inpaint", str(face), str(hole), "-o", str(face.with_name("o.png"))],
        "inpaint-video": ["inpaint-video", str(face.with_name("v.mp4")), str(hole), "-o", "o.mp4"],
        "restore": ["restore", str(face), "-o", str(face.with_name("r.png"))],
        "serve": ["serve", "--port", "1"],
    }[command]
    argv += ["--weights", str(tiny_weights)]
    monkeypatch.setattr(LaFInModel, "__init__", record)
    monkeypatch.setattr(cli, "_check_port_free", lambda *a: None)
    if command == "serve":
        pytest.importorskip("gradio")
    monkeypatch.setattr(cli, "_restore_jobs", lambda args: ([], 1), raising=False)
    for extra, threads in (([], None), (["--threads", "2"], 2)):
        with pytest.raises(Stop):
            cli.main(argv + extra)
        assert made.pop() == threads
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as exit_:  # argparse's own refusal: exit code 2
            cli.main(argv + ["--threads", bad])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "--threads" in err and err.strip().count("\n") == 0
    assert not made


@pytest.mark.parametrize(
    "problem,expected",
    [
        ("size", "differs from image size"),
        ("missing", "not found"),
        ("garbage", "not an image"),
        ("weights", "weights"),
        ("full", "whole image"),
    ],
)
def test_bad_input_gives_one_line_error(inputs, tiny_weights, tmp_path, capsys, problem, expected):
    face, hole, image, _ = inputs
    weights = str(tiny_weights)
    if problem == "size":
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(hole)
    elif problem == "missing":
        face = tmp_path / "absent.png"
    elif problem == "garbage":
        face.write_bytes(b"\x00garbage")
    elif problem == "weights":
        (tmp_path / "w.safetensors").write_text("not weights")
        weights = str(tmp_path / "w.safetensors")
    elif problem == "full":
        Image.fromarray(np.full(image.shape[:2], 255, np.uint8)).save(hole)
    code = main(["inpaint", str(face), str(hole), "-o", str(tmp_path / "o.png"), "--weights", weights])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err.lower() or expected in err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0  # one line


def test_empty_mask_writes_image_unchanged(inputs, tiny_weights, tmp_path, capsys):
    face, hole, image, _ = inputs
    Image.fromarray(np.zeros(image.shape[:2], np.uint8)).save(hole)
    code = main(
        ["inpaint", str(face), str(hole), "-o", str(tmp_path / "o.png"), "--weights", str(tiny_weights)]
    )
    assert code == 0
    assert "empty" in capsys.readouterr().out
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), image)


def test_refuses_to_overwrite_input(inputs, tiny_weights, capsys):
    face, hole, _, _ = inputs
    before = face.read_bytes()
    assert main(["inpaint", str(face), str(hole), "-o", str(face), "--weights", str(tiny_weights)]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert face.read_bytes() == before


def test_version_and_help():
    run = subprocess.run([sys.executable, "-m", "lafin.cli", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and __version__ in run.stdout
    run = subprocess.run([sys.executable, "-m", "lafin.cli", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "examples:" in run.stdout and "lafin inpaint" in run.stdout


def test_folders_are_matched_by_name_and_bad_pairs_skipped(tiny_weights, tmp_path, capsys):
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    faces = {name: face_like(80, 72, seed=i) for i, name in enumerate(["a", "b", "c"])}
    for name, face in faces.items():
        Image.fromarray(face).save(images / f"{name}.png")
    Image.fromarray(box_mask(80, 72) * 255).save(masks / "a.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(masks / "b.png")  # wrong size
    Image.fromarray(box_mask(80, 72) * 255).save(masks / "stray.png")  # no image: reported
    before = {p: p.read_bytes() for p in [*images.iterdir(), *masks.iterdir()]}

    code = main(["inpaint", str(images), str(masks), "-o", str(out), "--weights", str(tiny_weights)])
    assert code == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]
    assert "Inpainted 1 of 3" in printed
    assert "skipped b.png" in printed and "skipped c.png: no mask" in printed
    assert "skipped stray.png: mask without an image" in printed
    result = np.asarray(Image.open(out / "a.png"))
    hole = box_mask(80, 72).astype(bool)
    assert np.array_equal(result[~hole], faces["a"][~hole])
    assert {p: p.read_bytes() for p in [*images.iterdir(), *masks.iterdir()]} == before
    # writing into an input folder is refused
    assert main(["inpaint", str(images), str(masks), "-o", str(images), "--weights", str(tiny_weights)]) == 2
    assert "refusing" in capsys.readouterr().err
