"""The web demo's handlers (no browser): inpaint, landmark editing, expressions, limits, errors."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import box_mask, face_like
from lafin.alignment import CANONICAL_LANDMARKS
from lafin.landmarks import EXPRESSION_NAMES, edit_expression, edit_region

gr = pytest.importorskip("gradio", reason="the web demo needs the 'web' extra (gradio)")

from lafin.webapp import (  # noqa: E402
    DemoHandlers,
    Session,
    Step,
    build_app,
    decode_painting,
    landmarks_to_table,
    table_to_landmarks,
)
from lafin.webapp.view import render_view  # noqa: E402


def painting(hole: np.ndarray) -> str:
    """What the page's painter sends: its stroke layer as a PNG data URL (alpha > 0 = painted)."""
    import base64
    import io

    layer = np.zeros((*hole.shape, 4), np.uint8)
    layer[hole.astype(bool)] = (255, 0, 255, 255)
    buffer = io.BytesIO()
    Image.fromarray(layer, "RGBA").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def handlers(tiny_model, tmp_path):
    return DemoHandlers(tiny_model, work_dir=tmp_path / "work")


@pytest.fixture
def face():
    return face_like(96, 80), box_mask(96, 80)


def canonical(size: float = 128.0) -> np.ndarray:
    return CANONICAL_LANDMARKS.astype(np.float64) * size


def opened(handlers, image: np.ndarray, folder, name: str = "face.png") -> Session:
    Image.fromarray(image).save(folder / name)
    session = Session()
    handlers.photos.open([str(folder / name)], session)
    return session


# ---------------------------------------------------------------------------- inpaint


def test_the_progress_bar_never_steps_back(handlers, face, tmp_path, monkeypatch):
    """A loose crop runs crop mode's landmarks, then photo mode's detection and landmarks: the
    bar stays where it got to while the label names the stage that runs."""
    image, hole = face
    session = opened(handlers, image, tmp_path)
    real = handlers.inpainting.model

    class LooseCropOrder:
        def __getattr__(self, name):
            return getattr(real, name)

        def __call__(self, *args, progress=None, **kwargs):
            for stage in ("landmarks", "detect", "landmarks"):
                progress(stage)
            return real(*args, progress=progress, **kwargs)

    monkeypatch.setattr(handlers.inpainting, "model", LooseCropOrder())
    progress: list[tuple[float, str]] = []
    handlers.inpainting.inpaint(
        painting(hole), None, "crop", session, progress=lambda frac, desc: progress.append((frac, desc))
    )
    fractions = [frac for frac, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] > fractions[0]
    assert [desc for _, desc in progress][:3] == [
        "Predicting landmarks",
        "Detecting faces",
        "Predicting landmarks",
    ]


def test_inpaint_fills_the_painted_hole_only(handlers, face, tmp_path):
    image, hole = face
    session = opened(handlers, image, tmp_path)
    progress: list[tuple[float, str]] = []
    painter, compare, view, table, files, status, session = handlers.inpainting.inpaint(
        painting(hole), None, "crop", session, progress=lambda frac, desc: progress.append((frac, desc))
    )
    # the pipeline's stages by its labels, each at its place in the pipeline's order
    from lafin.pipeline import STAGE_LABELS

    labels = list(STAGE_LABELS.values())
    stages = [desc for _, desc in progress]
    fractions = [frac for frac, _ in progress]
    assert len(stages) >= 3 and fractions == sorted(fractions)  # the bar never steps back
    assert all(frac >= labels.index(desc) / len(labels) for frac, desc in progress)
    files = handlers.files.write_downloads(session)
    result = np.asarray(Image.open(files[0]))
    assert result.shape == image.shape
    assert np.array_equal(result[hole == 0], image[hole == 0])
    assert not np.array_equal(result[hole == 1], image[hole == 1])
    assert "Generating face" in stages and "crop mode" in status
    # the painter now shows the result (editing goes on from it); the slider: before, after
    assert 'class="lafin-paint"' in painter and 'data-w="80" data-h="96"' in painter
    assert np.array_equal(np.asarray(Image.open(compare[0])).shape, image.shape)
    # the view is what the model sees: the hole pure white, at display size, landmarks drawn
    view = np.asarray(Image.open(view))
    assert view.dtype == np.uint8 and max(view.shape[:2]) == 512
    assert len(table) == 68 and table[48][1] == "outer_lip"
    names = [p.rsplit("/", 1)[-1] for p in files]
    assert names == ["lafin-result.png", "lafin-mask.png", "lafin-landmarks.json", "lafin-landmarks.pts"]
    assert np.array_equal(np.asarray(Image.open(files[1])) > 0, hole > 0)
    saved = np.array(json.loads(open(files[2]).read())["landmarks"])
    np.testing.assert_allclose(saved, session.landmarks, atol=1e-3)
    assert np.array_equal(session.image, image) and np.array_equal(session.mask, hole)
    assert session.saved["face"].endswith("face-lafin.png")


def test_the_view_shows_the_hole_as_the_model_sees_it(handlers):
    image = np.full((64, 64, 3), 40, np.uint8)
    hole = box_mask(64, 64)
    session = Session(history=[Step(image), Step(image, mask=hole)], position=1)
    view = render_view(session)
    centre = view[200:300, 200:300]
    assert (centre == 255).all()  # white, nothing of the hidden pixels shows through
    assert (view[:100, :100] == 40).all()


def test_editing_goes_on_from_the_result_with_undo_redo_and_rerun(handlers, face, tmp_path):
    image, hole = face
    second = box_mask(96, 80, 0.75, 0.2, 0.9, 0.5)
    session = opened(handlers, image, tmp_path)
    handlers.inpainting.inpaint(painting(hole), None, "crop", session)
    first_result = session.current.copy()
    out = handlers.inpainting.inpaint(painting(second), None, "crop", session)
    session = out[-1]
    # the second run started from the first result: its hole is refilled, the first one kept
    assert np.array_equal(session.image, first_result)
    assert np.array_equal(session.current[second == 0], first_result[second == 0])
    assert session.position == 2 and "Redo" not in out[5]
    out = handlers.inpainting.undo(session)
    assert np.array_equal(out[-1].current, first_result) and "Undone" in out[5]
    out = handlers.inpainting.undo(out[-1])
    assert np.array_equal(out[-1].current, image) and out[1] is None  # the photo: no slider
    with pytest.raises(gr.Error, match="Nothing to undo"):
        handlers.inpainting.undo(out[-1])
    out = handlers.inpainting.redo(handlers.inpainting.redo(out[-1])[-1])
    assert out[-1].position == 2
    with pytest.raises(gr.Error, match="Nothing to redo"):
        handlers.inpainting.redo(out[-1])
    # re-run: the last hole again on the shown image; a new run drops the redo steps
    handlers.inpainting.undo(session)
    out = handlers.inpainting.rerun("crop", session)
    assert len(out[-1].history) == 3 and np.array_equal(out[-1].mask, second)
    assert np.array_equal(out[-1].image, first_result)


@pytest.fixture
def refined_handlers(tmp_path):
    """Handlers over the tiny model with a refiner whose noise visibly changes the hole."""
    import torch
    from torch import nn

    from lafin.config import ModelConfig, get_preset
    from lafin.networks import build_generator, build_landmark_predictor, build_refiner
    from lafin.pipeline import LaFInModel

    torch.manual_seed(0)
    refiner_config = {"output_size": 128, "channels": [4, 8, 8, 8], "num_residual_blocks": 1}
    config = ModelConfig.from_dict({**get_preset("tiny").to_dict(), "refiner": refiner_config})
    refiner = build_refiner(config)
    nn.init.normal_(refiner.to_rgb.weight, std=0.5)
    model = LaFInModel.from_networks(
        config, build_generator(config), build_landmark_predictor(config), refiner=refiner
    )
    return DemoHandlers(model, work_dir=tmp_path / "work")


def test_skin_grain_reaches_the_model_of_every_run(refined_handlers, face, tmp_path, monkeypatch):
    """Inpaint, Re-run and Regenerate run the model at the slider's refiner_noise: 0 gives the
    API's ``refiner_noise=0`` result, which differs from 1's in the hole."""
    image, hole = face
    handlers = refined_handlers
    model = handlers.inpainting.model
    session = opened(handlers, image, tmp_path)
    grainy = handlers.inpainting.inpaint(painting(hole), None, "crop", session, 1.0)[-1].current.copy()
    handlers.inpainting.undo(session)
    smooth = handlers.inpainting.inpaint(painting(hole), None, "crop", session, 0.0)[-1].current
    assert np.array_equal(grainy, model(image, hole, mode="crop").image)  # 1: the default
    assert np.array_equal(smooth, model.with_options(refiner_noise=0)(image, hole, mode="crop").image)
    assert np.abs(smooth.astype(int) - grainy)[hole == 1].mean() > 1
    assert np.array_equal(smooth[hole == 0], image[hole == 0])

    asked = []
    real = type(model).with_options
    monkeypatch.setattr(type(model), "with_options", lambda self, **kw: asked.append(kw) or real(self, **kw))
    handlers.inpainting.rerun("crop", session, 0.5)
    table = landmarks_to_table(session.landmarks)
    handlers.inpainting.regenerate(table, "crop", session, 1.5)
    assert asked == [{"refiner_noise": 0.5}, {"refiner_noise": 1.5}]
    assert model.options.refiner_noise == 1.0  # the loaded model is left as it was


@pytest.mark.parametrize("bad", [-0.5, 2.5, float("nan"), "grainy", True])
def test_a_bad_skin_grain_is_a_message(handlers, inpainted, face, bad):
    _, hole = face
    table = landmarks_to_table(inpainted.landmarks)
    runs = [
        lambda: handlers.inpainting.inpaint(painting(hole), None, "crop", inpainted, bad),
        lambda: handlers.inpainting.rerun("crop", inpainted, bad),
        lambda: handlers.inpainting.regenerate(table, "crop", inpainted, bad),
    ]
    for run in runs:
        with pytest.raises(gr.Error, match="Skin grain must be a number from 0 to 2") as info:
            run()
        assert re.fullmatch(r"Skin grain must be a number from 0 to 2, not [^\n]+\.", info.value.message)
        assert info.value.print_exception is False
    assert len(inpainted.history) == 2  # nothing ran


def test_the_skin_grain_of_an_api_call_is_checked_by_the_handlers(tiny_model, tmp_path, face):
    """Through the app's Inpaint event as a client calls it: out of range or not a number gets
    the page's one-line message (no traceback logged), a good value runs."""
    import asyncio

    from gradio.state_holder import SessionState

    demo = build_app(tiny_model, work_dir=tmp_path / "app")
    image, hole = face
    state = SessionState(demo)
    state_id = next(i for i, b in demo.blocks.items() if isinstance(b, gr.State))
    state[state_id] = session = opened(demo.lafin_handlers, image, tmp_path)
    inpaint = next(f for f in demo.fns.values() if f.name == "on_inpaint")

    def call(grain):
        inputs = [painting(hole), None, "crop", grain, None]
        return asyncio.run(demo.process_api(block_fn=inpaint, inputs=inputs, state=state))

    for bad in (3.0, -1, "grainy"):
        with pytest.raises(gr.Error, match="Skin grain must be a number from 0 to 2") as info:
            call(bad)
        assert info.value.print_exception is False
    assert len(session.history) == 1
    call(0.5)
    assert len(session.history) == 2 and np.array_equal(session.mask, hole)


def test_history_is_bounded(tiny_model, tmp_path, face):
    image, hole = face
    small = DemoHandlers(tiny_model, work_dir=tmp_path / "w", history_limit=2)
    session = opened(small, image, tmp_path)
    for _ in range(4):
        small.inpainting.inpaint(painting(hole), None, "crop", session)
    assert len(session.history) == 3 and np.array_equal(session.history[0].image, image)


def test_mask_file_is_used_instead_of_the_painting(handlers, face, tmp_path):
    image, hole = face
    Image.fromarray(hole * 255).save(tmp_path / "hole.png")
    session = opened(handlers, image, tmp_path)
    out = handlers.inpainting.inpaint("", str(tmp_path / "hole.png"), "crop", session)
    assert np.array_equal(out[-1].mask, hole)
    assert np.array_equal(out[-1].current[hole == 0], image[hole == 0])


def test_empty_mask_is_a_message(handlers, face, tmp_path):
    image, _ = face
    with pytest.raises(gr.Error, match="mask is empty"):
        handlers.inpainting.inpaint("", None, "crop", opened(handlers, image, tmp_path))


@pytest.mark.parametrize(
    "problem,expected",
    [
        ("no photo", "Open a photo first"),
        ("wrong size", "differs from image size"),
        ("not an image", "not an image"),
        ("bad mode", "Unknown mode"),
        ("painting of another size", "does not match"),
        ("garbled painting", "did not arrive as an image"),
    ],
)
def test_bad_inputs_are_messages(handlers, face, tmp_path, problem, expected):
    image, hole = face
    session = opened(handlers, image, tmp_path)
    painted, mask_file, mode = painting(hole), None, "crop"
    if problem == "no photo":
        session = Session()
    elif problem == "wrong size":
        Image.fromarray(np.full((50, 50), 255, np.uint8)).save(tmp_path / "m.png")
        mask_file = str(tmp_path / "m.png")
    elif problem == "not an image":
        (tmp_path / "m.png").write_text("hello")
        mask_file = str(tmp_path / "m.png")
    elif problem == "painting of another size":
        painted = painting(np.ones((40, 40), np.uint8))
    elif problem == "garbled painting":
        painted = "data:image/png;base64,aGVsbG8="
    else:
        mode = "sideways"
    with pytest.raises(gr.Error, match=expected) as info:
        handlers.inpainting.inpaint(painted, mask_file, mode, session)
    assert str(tmp_path) not in info.value.message  # the file's name, not the server's folders
    assert info.value.print_exception is False  # a user's mistake: no traceback in the log


def _truncated(path):
    Image.fromarray(face_like(100, 90)).save(path, "JPEG")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.mark.parametrize(
    "content,expected",
    [
        (lambda p: p.write_text("hello"), "notes.txt is not an image"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (_truncated, "damaged or truncated"),
        (lambda p: Image.new("RGB", (120, 100)).save(p, "PNG"), r"too large: 120x100.*at most 0\.01"),
    ],
)
def test_refused_uploads_say_why(tiny_model, tmp_path, content, expected):
    handlers = DemoHandlers(tiny_model, max_upload_pixels=10_000, work_dir=tmp_path / "w")
    path = tmp_path / ("notes.txt" if "txt" in expected else "photo.jpg")
    content(path)
    with pytest.raises(gr.Error, match=expected) as info:
        handlers.photos.open([str(path)], Session())
    assert info.value.print_exception is False


def test_oversized_photo_is_refused_before_it_is_decoded(tiny_model, tmp_path, monkeypatch):
    from PIL import ImageFile

    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    decoded = []
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: decoded.append(self) or pytest.fail("decoded")
    )
    handlers = DemoHandlers(tiny_model, max_upload_pixels=50_000, work_dir=tmp_path / "w")
    with pytest.raises(gr.Error, match="too large: 300x300"):
        handlers.photos.open([str(tmp_path / "big.png")], Session())
    assert not decoded


def test_exif_orientation_is_applied(handlers, tmp_path):
    image = face_like(60, 90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the photo is shown turned 90 degrees clockwise
    Image.fromarray(image).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    session = Session()
    handlers.photos.open([str(tmp_path / "turned.jpg")], session)
    assert session.current.shape == (90, 60, 3)


def test_folder_mode_steps_through_photos_and_saves_each_result(handlers, tmp_path):
    paths = []
    for i, name in enumerate(["b.png", "a.png", "notes.txt"]):
        if name.endswith(".txt"):
            (tmp_path / name).write_text("not a photo")
        else:
            Image.fromarray(face_like(96, 80, seed=i)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    session = Session()
    out = handlers.photos.open(paths, session)
    assert [n for n, _ in session.photos] == ["a.png", "b.png"]  # sorted, the text file refused
    assert "a.png" in out[5] and "photo 1 of 2" in out[5] and "notes.txt is not an image" in out[5]
    handlers.inpainting.inpaint(painting(box_mask(96, 80)), None, "crop", session)
    handlers.files.write_downloads(session)
    with pytest.raises(gr.Error, match="first photo"):
        handlers.photos.step(-1, session)
    out = handlers.photos.step(1, session)
    assert session.name == "b" and session.position == 0 and "photo 2 of 2" in out[5]
    handlers.inpainting.inpaint(painting(box_mask(96, 80)), None, "crop", session)
    files = handlers.files.write_downloads(session)
    assert [Path(p).name for p in files[-1:]] == ["a-lafin.png"]  # the other photo's result
    assert sorted(Path(p).name for p in session.saved.values()) == ["a-lafin.png", "b-lafin.png"]
    with pytest.raises(gr.Error, match="last photo"):
        handlers.photos.step(1, session)
    handlers.photos.choose("a.png", session)
    assert session.name == "a"


def test_large_photo_is_painted_on_a_preview_and_filled_at_full_size(tiny_model, tmp_path):
    handlers = DemoHandlers(tiny_model, work_dir=tmp_path / "w", preview_side=128)
    image, hole = face_like(300, 260, seed=3), box_mask(300, 260, 0.55, 0.35, 0.8, 0.65)
    session = opened(handlers, image, tmp_path)
    assert session.preview_scale == pytest.approx(128 / 300)
    painter = handlers.pages.editor(session)
    assert 'data-w="111" data-h="128"' in painter
    small = cv2.resize(hole, (111, 128), interpolation=cv2.INTER_NEAREST)
    out = handlers.inpainting.inpaint(painting(small), None, "auto", session)
    assert "photo mode" in out[5]
    session = out[-1]
    assert session.mask.shape == hole.shape
    assert (session.mask != hole).mean() < 0.01  # the painted outline, scaled up
    assert np.array_equal(session.current[session.mask == 0], image[session.mask == 0])


def test_previews_are_reduced_without_aliasing():
    from lafin.webapp import preview

    stripes = np.zeros((1500, 1200, 3), np.uint8)
    stripes[::2] = 255  # 1-px lines: any aliasing shows as bands
    for side in (1024, 300):
        small, scale = preview(stripes, side)
        assert max(small.shape[:2]) == side and scale == pytest.approx(side / 1500)
        area = cv2.resize(stripes, small.shape[1::-1], interpolation=cv2.INTER_AREA)
        assert small.std() <= area.std() + 1 and abs(small.mean() - 127.5) < 3
    image = face_like(96, 80)
    assert preview(image, 128)[0] is image  # small enough: not copied


def test_view_of_a_large_photo_shows_the_face_and_maps_clicks_back(handlers):
    image = np.zeros((1500, 2000, 3), np.uint8)
    hole = np.zeros((1500, 2000), np.uint8)
    hole[700:800, 1200:1300] = 1
    points = canonical(200) + (1100, 600)  # a 200 px face at (1100, 600)
    session = Session(
        history=[Step(image), Step(image, mask=hole)], position=1, landmarks=points.astype(np.float32)
    )
    view = render_view(session)
    x0, y0, scale = session.view
    assert max(view.shape[:2]) == 512 and 900 < x0 < 1100 and 400 < y0 < 600 and scale > 1
    assert view[..., 1].max() > 200  # the green landmarks are drawn
    _, _, _, session = handlers.landmarks.click(session, (points[30] - (x0, y0) + 0.5) * scale - 0.5)
    assert session.selected == 30


def test_sessions_are_separate(handlers, tmp_path):
    a_img, b_img = face_like(96, 80, seed=1), face_like(64, 72, seed=2)
    a, b = opened(handlers, a_img, tmp_path, "a.png"), opened(handlers, b_img, tmp_path, "b.png")
    handlers.inpainting.inpaint(painting(box_mask(96, 80)), None, "crop", a)
    handlers.inpainting.inpaint(painting(box_mask(64, 72, 0.1, 0.1, 0.5, 0.5)), None, "crop", b)
    assert np.array_equal(a.image, a_img) and np.array_equal(b.image, b_img)
    assert a.out_dir != b.out_dir
    handlers.cleanup(a)
    assert not os.path.exists(a.out_dir) and os.path.exists(b.out_dir)
    assert a.history == []  # its images are dropped with it


def test_uploads_are_deleted_when_the_last_session_using_them_ends(tiny_model, tmp_path, face):
    image, hole = face
    uploads = tmp_path / "cache"
    handlers = DemoHandlers(tiny_model, work_dir=uploads, upload_dir=uploads)
    (uploads / "h1").mkdir(parents=True)
    (uploads / "h2").mkdir()
    photo, mask = uploads / "h1" / "a.png", uploads / "h2" / "hole.png"
    Image.fromarray(image).save(photo)
    Image.fromarray(hole * 255).save(mask)
    outside = tmp_path / "mine.png"  # not an upload: never deleted
    Image.fromarray(image).save(outside)
    first, second = Session(), Session()
    handlers.photos.open([str(photo), str(outside)], first)
    handlers.inpainting.inpaint("", str(mask), "crop", first)
    handlers.photos.open([str(photo)], second)  # the same upload in another tab
    handlers.cleanup(first)
    assert not mask.exists() and not mask.parent.exists()
    assert photo.exists() and outside.exists()  # the other tab still uses the photo
    handlers.cleanup(second)
    assert not photo.exists() and outside.exists()
    handlers.cleanup(second)  # twice: nothing happens


def test_example_loads_with_its_hole_painted(handlers):
    from lafin.examples import example_face, example_mask

    session = Session()
    out = handlers.photos.load_example(session)
    assert np.array_equal(session.current, example_face(256))
    assert 'data-mask="data:image/png;base64,' in out[0]
    url = out[0].split('data-mask="', 1)[1].split('"', 1)[0]
    np.testing.assert_array_equal(decode_painting(url), example_mask(256))


# ---------------------------------------------------------------------------- old photos


def _painter_mask(painter: str) -> np.ndarray | None:
    """The stroke layer a painter's HTML pre-paints (1 = painted), None if it has none."""
    if 'data-mask="' not in painter:
        return None
    return decode_painting(painter.split('data-mask="', 1)[1].split('"', 1)[0])


def test_detect_damage_proposes_a_mask_the_user_corrects_before_inpaint(tiny_model, tmp_path, monkeypatch):
    from lafin import restore as restore_module

    def fake_probability(detector, image, **kwargs):  # the detector "finds" two scratches
        prob = np.zeros(image.shape[:2], np.float32)
        prob[30, 10:150] = 0.9  # a 1-px scratch, found at the default threshold
        prob[120, 10:150] = 0.5  # a faint one, found only below 0.5
        return prob

    monkeypatch.setattr(restore_module, "damage_probability", fake_probability)
    handlers = DemoHandlers(tiny_model, work_dir=tmp_path / "w", preview_side=112)
    with pytest.raises(gr.Error, match="Open a photo first"):
        handlers.damage.detect(0.7, Session())
    image = face_like(168, 160, seed=5)
    session = opened(handlers, image, tmp_path)
    assert session.preview_scale == pytest.approx(112 / 168)

    painter, mask_file, status, session = handlers.damage.detect(0.7, session)
    assert mask_file is None and "Detected damage" in status and "grown by 2 px" in status
    expected = np.zeros((168, 160), np.uint8)
    expected[30, 10:150] = 1
    expected = (restore_module.grow_mask(expected, 2) > 0).astype(np.uint8)  # as restore grows it
    assert expected[28:33, 10:150].all() and expected.sum() < 5 * 144
    assert np.array_equal(session.proposed, expected)
    shown = _painter_mask(painter)
    assert shown.shape == (112, 107) and shown[18:22].any(axis=0)[8:100].all()
    assert not shown[:17].any() and not shown[23:].any()

    # the user erases the scratch's right half and paints a spot; Inpaint fills exactly the
    # detected outline at full size where it was left as it was
    corrected = shown.copy()
    corrected[:, 60:] = 0
    corrected[70:80, 40:50] = 1
    out = handlers.inpainting.inpaint(painting(corrected), None, "crop", session)
    hole = out[-1].mask
    assert np.array_equal(hole[:60, :85], expected[:60, :85])  # not blurred by the preview
    assert not hole[:60, 92:].any()  # erased
    assert hole[107:118, 62:73].all() and hole.sum() < expected.sum()  # the painted spot
    assert np.array_equal(out[-1].current[hole == 0], image[hole == 0])
    assert session.proposed is None and _painter_mask(out[0]) is None  # the result: no proposal

    # a lower threshold proposes the faint scratch too; a high one finds nothing
    painter, _, status, session = handlers.damage.detect(0.4, session)
    assert session.proposed[118:123, 20:140].all() and session.proposed[28:33, 20:140].all()
    painter, _, status, session = handlers.damage.detect(0.95, session)
    assert "No damage found" in status and _painter_mask(painter) is None
    assert session.proposed is None
    with pytest.raises(gr.Error, match="Cannot detect damage: threshold"):
        handlers.damage.detect(1.0, session)


# ---------------------------------------------------------------------------- landmark editing


@pytest.fixture
def inpainted(handlers, face, tmp_path):
    image, hole = face
    session = opened(handlers, image, tmp_path)
    handlers.inpainting.inpaint(painting(hole), None, "crop", session)
    return session


def test_preset_then_regenerate_uses_the_edited_landmarks(handlers, inpainted, face):
    image, hole = face
    before = inpainted.landmarks.copy()
    view, table, status, session = handlers.landmarks.apply_preset("raise eyebrows", 1.0, inpainted)
    assert "raise eyebrows" in status
    moved = np.flatnonzero(np.abs(session.landmarks - before).max(axis=1) > 1e-6)
    assert set(moved) <= set(range(17, 27)) | {37, 38, 43, 44} and len(moved) >= 10
    np.testing.assert_allclose(table_to_landmarks(table), session.landmarks, atol=0.051)
    out = handlers.inpainting.regenerate(table, "crop", session)
    session = out[-1]
    assert "your landmarks" in out[5]
    files = handlers.files.write_downloads(session)
    saved = np.array(json.loads(open(files[2]).read())["landmarks"])
    np.testing.assert_allclose(saved, table_to_landmarks(table), atol=1e-3)
    result = np.asarray(Image.open(files[0]))
    # known pixels stay: outside the painted hole grown over the moved brows
    assert (session.mask >= hole).all()
    assert np.array_equal(result[session.mask == 0], image[session.mask == 0])
    # regenerate replaced the shown result: one undo goes back to the photo
    assert session.position == 1 and len(session.history) == 2
    # reset goes back to what Inpaint predicted
    _, table, _, session = handlers.landmarks.reset(session)
    np.testing.assert_allclose(session.landmarks, before)


def test_table_edit_and_bad_tables(handlers, inpainted):
    table = landmarks_to_table(inpainted.landmarks)
    table[30][2], table[30][3] = 12.5, 40.0
    _, status, session = handlers.landmarks.edit_table(table, inpainted)
    np.testing.assert_allclose(session.landmarks[30], [12.5, 40.0])
    bad = [list(r) for r in table]
    bad[5][2] = "left"
    with pytest.raises(gr.Error, match="row 6"):
        handlers.landmarks.edit_table(bad, session)
    with pytest.raises(gr.Error, match="68 rows"):
        handlers.landmarks.edit_table(table[:67], session)


def test_table_round_trip_accepts_dataframes():
    import pandas as pd

    points = canonical().astype(np.float32)
    rows = landmarks_to_table(points)
    np.testing.assert_allclose(table_to_landmarks(rows), points, atol=0.051)
    shuffled = rows[::-1]  # rows are placed by their point number, not their order
    np.testing.assert_allclose(table_to_landmarks(pd.DataFrame(shuffled)), points, atol=0.051)


def test_click_picks_the_nearest_point_then_moves_it(handlers, inpainted):
    x0, y0, scale = inpainted.view
    target = inpainted.landmarks[33]
    near = (target - (x0, y0) + 0.5) * scale - 0.5 + 1.0  # one view pixel off
    _, _, status, session = handlers.landmarks.click(inpainted, near)
    assert session.selected == 33 and "Point 33" in status
    _, table, status, session = handlers.landmarks.click(session, (100.0, 200.0))
    expected = (np.array([100.0, 200.0]) + 0.5) / scale - 0.5 + (x0, y0)
    np.testing.assert_allclose(session.landmarks[33], expected, atol=1e-4)
    assert session.selected is None and "moved" in status


def test_moving_a_point_outside_the_hole_says_so(handlers, face, tmp_path):
    image, _ = face
    hole = box_mask(96, 80, 0.6, 0.3, 0.9, 0.7)  # the mouth only
    session = opened(handlers, image, tmp_path)
    handlers.inpainting.inpaint(painting(hole), None, "crop", session)
    table = landmarks_to_table(session.landmarks)
    table[19][3] = float(table[19][3]) - 3  # a brow point, far from the hole
    _, status, _ = handlers.landmarks.edit_table(table, session)
    assert "outside the hole" in status and "19" in status
    table = landmarks_to_table(session.landmarks)
    y, x = np.argwhere(hole)[len(np.argwhere(hole)) // 2]
    table[62][2], table[62][3] = float(x), float(y)  # into the hole
    _, status, _ = handlers.landmarks.edit_table(table, session)
    assert "outside the hole" not in status


@pytest.fixture
def eyes_painted(handlers, face, tmp_path):
    """A session inpainted with the eyes painted over, its landmarks a face whose mouth and jaw
    lie outside that hole (set as the predicted ones: a tiny random model places points
    anywhere)."""
    image, _ = face
    hole = box_mask(96, 80, 0.26, 0.19, 0.47, 0.81)
    session = opened(handlers, image, tmp_path)
    handlers.inpainting.inpaint(painting(hole), None, "crop", session)
    points = (CANONICAL_LANDMARKS * 80 + (0, 8)).astype(np.float32)  # the face 80 px wide
    session.step.predicted, session.landmarks = points, points.copy()
    return session, hole


def test_open_mouth_outside_the_hole_grows_it_on_regenerate(handlers, face, eyes_painted):
    from lafin.edit_hole import face_footprint, hole_over_edit

    image, _ = face
    session, hole = eyes_painted
    points = session.landmarks.copy()
    _, table, status, session = handlers.landmarks.apply_preset("open mouth", 1.0, session)
    assert "outside the hole" in status and "Grow the hole over moved points" in status
    assert "paint over" not in status
    opened_lm = table_to_landmarks(table)
    out = handlers.inpainting.regenerate(table, "crop", session)  # the checkbox is on by default
    session = out[-1]
    # the box, within the face's aligned crop (beyond it a photo's hole gets only OpenCV's fill)
    region = edit_region(points, opened_lm, hole.shape, min_margin_px=0.04 * 80)
    region &= face_footprint(points, hole.shape)
    assert region[80:88, 30:50].all() and not (region & (hole > 0)).any()
    assert not region[88:].any()  # below the face's 80-px crop (rows 8-87)
    # the result's hole is the painted one joined with the box over the moved points
    assert np.array_equal(session.mask, hole_over_edit(hole, points, opened_lm))
    assert np.array_equal(session.mask > 0, (hole > 0) | region)
    assert np.array_equal(session.step.painted, hole) and np.array_equal(session.last_mask, session.mask)
    added = int(region.sum())
    assert f"The hole was grown over the moved points ({added} px)." in out[5]
    # the mouth changed; known pixels (outside the grown hole) did not
    changed = np.abs(session.current.astype(int) - image.astype(int)).max(axis=2) > 0
    assert changed[region].mean() > 0.5
    assert not changed[session.mask == 0].any()
    # the mask download is the grown hole; Undo and Redo come back to it with its status
    files = handlers.files.write_downloads(session)
    assert np.array_equal(np.asarray(Image.open(files[1])) > 0, session.mask > 0)
    handlers.inpainting.undo(session)
    out = handlers.inpainting.redo(session)
    assert np.array_equal(out[-1].mask, (hole > 0) | region) and "grown over the moved points" in out[5]
    # landmarks reset to the predicted ones: Regenerate fills the painted hole again
    _, table, _, session = handlers.landmarks.reset(session)
    out = handlers.inpainting.regenerate(table, "crop", session)
    assert np.array_equal(out[-1].mask, hole) and "grown" not in out[5]
    assert np.array_equal(out[-1].current[hole == 0], image[hole == 0])


def test_unticked_regenerate_keeps_every_pixel_outside_the_painted_hole(handlers, face, eyes_painted):
    image, _ = face
    session, hole = eyes_painted
    _, table, _, session = handlers.landmarks.apply_preset("open mouth", 1.0, session)
    out = handlers.inpainting.regenerate(table, "crop", session, grow_hole=False)
    session = out[-1]
    assert np.array_equal(session.mask, hole) and session.step.painted is None
    assert np.array_equal(session.current[hole == 0], image[hole == 0])
    assert "your landmarks" in out[5] and "grown" not in out[5]


def test_the_grown_hole_around_a_small_face_in_a_large_photo_is_face_sized():
    """The least growth is 4% of the face's crop side (here 60 px: 2.4 px), not 4% of the
    photo (64 px across a 1600-px photo)."""
    from lafin.crop_frame import face_side
    from lafin.edit_hole import hole_over_edit

    points = CANONICAL_LANDMARKS.astype(np.float64) * 60 + (900, 500)
    assert face_side(points) == pytest.approx(60, rel=1e-4)
    moved = points.copy()
    moved[57] += (0.0, 4.0)  # one point 4 px down: the box is a line, its growth the least
    hole = np.zeros((1200, 1600), np.uint8)
    hole[100:120, 100:120] = 1
    grown = hole_over_edit(hole, points, moved)
    assert grown.dtype == np.uint8 and (grown >= hole).all()
    ys, xs = np.nonzero(grown[200:])
    x, y = points[57]
    assert xs.min() == int(np.floor(x - 2.4)) and xs.max() == int(np.ceil(x + 2.4)) - 1
    assert ys.min() + 200 == int(np.floor(y - 2.4)) and ys.max() + 200 == int(np.ceil(y + 4 + 2.4)) - 1
    assert not np.array_equal(grown[200:] > 0, edit_region(points, moved, hole.shape)[200:])
    assert np.array_equal(hole_over_edit(hole, points, points), hole)  # nothing moved


def test_landmarks_file_upload(handlers, inpainted, tmp_path):
    from lafin.landmarks import save_landmarks

    points = canonical(96).astype(np.float32)
    save_landmarks(tmp_path / "p.pts", points)
    _, table, _, session = handlers.landmarks.load_file(str(tmp_path / "p.pts"), inpainted)
    np.testing.assert_allclose(session.landmarks, points, atol=1e-3)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(gr.Error, match="bad.json"):
        handlers.landmarks.load_file(str(tmp_path / "bad.json"), session)


def test_editing_before_inpaint_is_a_message(handlers):
    with pytest.raises(gr.Error, match="Inpaint first"):
        handlers.landmarks.apply_preset("smile", 1.0, Session())
    with pytest.raises(gr.Error, match="Inpaint first"):
        handlers.inpainting.regenerate(landmarks_to_table(canonical()), "crop", Session())
    with pytest.raises(gr.Error, match="Nothing to re-run"):
        handlers.inpainting.rerun("crop", Session())


# ---------------------------------------------------------------------------- expressions


def test_expression_buttons_move_the_points_as_the_library_does(handlers, inpainted):
    """The buttons are lafin.landmarks' expressions (their geometry is tested in
    test_landmark_edits.py); a refusal is a message on the page."""
    before = inpainted.landmarks.copy()
    for name in EXPRESSION_NAMES:
        inpainted.landmarks = before.copy()
        _, table, _, session = handlers.landmarks.apply_preset(name, 0.5, inpainted)
        np.testing.assert_array_equal(session.landmarks, edit_expression(before, name, 0.5))
        np.testing.assert_allclose(table_to_landmarks(table), session.landmarks, atol=0.051)
    with pytest.raises(gr.Error, match="unknown expression") as info:
        handlers.landmarks.apply_preset("wink", 1.0, inpainted)
    assert info.value.print_exception is False
    inpainted.landmarks = np.zeros((68, 2), np.float32)
    with pytest.raises(gr.Error, match="degenerate"):
        handlers.landmarks.apply_preset("smile", 1.0, inpainted)


# ---------------------------------------------------------------------------- the app and the CLI


def test_build_app_queue_and_temp_folder(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "before"))  # restored afterwards
    queued = []
    real_queue = gr.Blocks.queue
    monkeypatch.setattr(gr.Blocks, "queue", lambda self, **kw: queued.append(kw) or real_queue(self, **kw))
    demo = build_app(tiny_model, work_dir=tmp_path / "app")
    assert isinstance(demo, gr.Blocks)
    assert os.environ["GRADIO_TEMP_DIR"].startswith(str(tmp_path / "app"))
    # one run at a time unless an event says otherwise (whatever GRADIO_DEFAULT_CONCURRENCY_LIMIT);
    # the last call is the app's (Gradio makes a default queue with the page)
    assert queued[-1].get("default_concurrency_limit") == 1
    model_runs = [f for f in demo.fns.values() if f.name in ("on_inpaint", "on_regenerate")]
    assert len(model_runs) == 2
    assert {f.concurrency_id for f in model_runs} == {"model"}
    assert all(f.concurrency_limit == 1 for f in model_runs)
    detect = next(f for f in demo.fns.values() if f.name == "on_detect")
    assert detect.concurrency_id == "model"
    from lafin.restore import DEFAULT_THRESHOLD

    slider = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "lafin-threshold")
    assert slider.value == DEFAULT_THRESHOLD  # the detector's own default
    # the skin grain starts at the option's default and goes to every model run
    from lafin.options import InferenceOptions

    grain = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "lafin-grain")
    assert grain.value == InferenceOptions().refiner_noise == 1.0
    assert (grain.minimum, grain.maximum, grain.step) == (0, 2, 0.1) and grain.label == "Skin grain"
    runs = {f.name: f for f in demo.fns.values() if f.name in ("on_inpaint", "on_rerun", "on_regenerate")}
    assert len(runs) == 3 and all(grain in f.inputs for f in runs.values())
    # Regenerate grows the hole over moved points unless its checkbox (on at first) is unticked
    grow = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "lafin-grow-hole")
    assert isinstance(grow, gr.Checkbox) and grow.value is True
    assert grow.label == "Grow the hole over moved points" and grow in runs["on_regenerate"].inputs
    # the pipeline's vocabulary, not a copy of it: its modes and expressions
    from lafin.pipeline import MODES

    radio = next(b for b in demo.blocks.values() if isinstance(b, gr.Radio))
    assert [c[1] for c in radio.choices] == list(MODES)
    presets = sorted(
        b.elem_id for b in demo.blocks.values() if str(getattr(b, "elem_id", "")).startswith("lafin-preset-")
    )
    assert presets == sorted(f"lafin-preset-{n.replace(' ', '-')}" for n in EXPRESSION_NAMES)
    # no Share button (it only says "Must be on Spaces to share" off Hugging Face)
    images = [b for b in demo.blocks.values() if isinstance(b, (gr.Image, gr.ImageSlider))]
    assert images and all(b.buttons is not None and "share" not in b.buttons for b in images)


def test_a_closed_tab_frees_its_session_at_once(tiny_model, tmp_path, face):
    from gradio.state_holder import StateHolder

    from lafin.webapp import forget_session

    demo = build_app(tiny_model, work_dir=tmp_path / "app")
    holder = StateHolder()
    holder.set_blocks(demo)
    image, hole = face
    handlers = demo.lafin_handlers
    session = opened(handlers, image, tmp_path)
    handlers.inpainting.inpaint(painting(hole), None, "crop", session)
    state_id = next(i for i, b in demo.blocks.items() if isinstance(b, gr.State))
    holder["tab-1"][state_id] = session
    holder["tab-2"]
    forget_session(demo, handlers.files, "tab-1")
    assert "tab-1" not in holder and "tab-2" in holder  # the other tab is untouched
    assert not os.path.exists(session.out_dir) and session.history == []
    forget_session(demo, handlers.files, "tab-1")  # twice, or an unknown tab: nothing happens


def test_serve_without_weights_is_one_line(monkeypatch, tmp_path, capsys):
    import lafin.pipeline
    from lafin.cli import main
    from lafin.webapp import main as webapp_main

    missing = tmp_path / "none.safetensors"
    monkeypatch.setattr(lafin.pipeline, "default_weights_path", lambda: missing)
    for run in (lambda: main(["serve", "--port", "7"]), lambda: webapp_main(["--port", "7"])):
        assert run() == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("lafin: error:") and "no default weights" in err
        assert "\n" not in err and "Traceback" not in err


def test_lafin_serve_passes_its_limits(monkeypatch):
    import socket

    import lafin.cli
    import lafin.webapp

    seen = {}
    monkeypatch.setattr(lafin.cli, "_load_model", lambda args: "model")
    monkeypatch.setattr(lafin.webapp, "serve", lambda **kwargs: seen.update(kwargs))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert (
        lafin.cli.main(
            [
                "serve",
                "--port",
                str(port),
                "--session-ttl",
                "60",
                "--max-megapixels",
                "2",
                "--max-upload-mb",
                "5",
            ]
        )
        == 0
    )
    assert seen["session_ttl"] == 60 and seen["max_upload_pixels"] == 2_000_000
    assert seen["max_file_size"] == "5mb" and seen["model"] == "model"
    with pytest.raises(SystemExit):
        lafin.cli.main(["serve", "--session-ttl", "0"])


def test_webapp_modules_state_their_job_and_keep_classes_small():
    """Each module of lafin.webapp opens with a docstring saying its one job, no class grows
    past 300 lines (the handlers are parts, each in its own module) and no function past 80,
    docstring included (the page is made one panel per function, its events wired by part)."""
    import ast

    import lafin.webapp

    for path in sorted(Path(lafin.webapp.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.name}: no opening docstring"
        for node in ast.walk(tree):
            lines = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.ClassDef):
                assert lines <= 300, f"{path.name}: class {node.name} has {lines} lines"
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert lines <= 80, f"{path.name}: function {node.name} has {lines} lines"
