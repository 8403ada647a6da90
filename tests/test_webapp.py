"""The web demo's handlers (no browser): inpaint, landmark editing, expressions, limits, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import box_mask, face_like
from lafin.alignment import CANONICAL_LANDMARKS

gr = pytest.importorskip("gradio", reason="the web demo needs the 'web' extra (gradio)")

from lafin.webapp import (  # noqa: E402
    EXPRESSIONS,
    DemoError,
    DemoHandlers,
    Session,
    apply_expression,
    build_app,
    example_editor_value,
    landmarks_to_table,
    table_to_landmarks,
)


def editor_value(image: np.ndarray, painted: np.ndarray | None = None) -> dict:
    """What gr.ImageEditor(type="numpy", image_mode="RGBA") hands the handler."""
    h, w = image.shape[:2]
    rgba = np.dstack([image, np.full((h, w), 255, np.uint8)])
    layer = np.zeros((h, w, 4), np.uint8)
    if painted is not None:
        layer[painted.astype(bool)] = (255, 0, 255, 255)
    return {"background": rgba, "layers": [layer], "composite": rgba}


@pytest.fixture
def handlers(tiny_model, tmp_path):
    return DemoHandlers(tiny_model, work_dir=tmp_path / "work")


@pytest.fixture
def face():
    return face_like(96, 80), box_mask(96, 80)


def canonical(size: float = 128.0) -> np.ndarray:
    return CANONICAL_LANDMARKS.astype(np.float64) * size


# ---------------------------------------------------------------------------- inpaint


def test_inpaint_fills_the_painted_hole_only(handlers, face):
    image, hole = face
    session = Session()
    stages: list[str] = []
    result_path, view, table, files, status, session = handlers.inpaint(
        editor_value(image, hole), None, "crop", session,
        progress=lambda frac, desc: stages.append(desc))
    result = np.asarray(Image.open(result_path))
    assert result.shape == image.shape
    assert np.array_equal(result[hole == 0], image[hole == 0])
    assert not np.array_equal(result[hole == 1], image[hole == 1])
    assert "Generating face" in stages and "crop mode" in status
    # the view: masked input at display size with the landmarks; the table: 68 editable rows
    assert view.dtype == np.uint8 and max(view.shape[:2]) == 512
    assert len(table) == 68 and table[48][1] == "outer_lip"
    # downloads: result, mask (white = hole), landmarks as .json and .pts
    names = [p.rsplit("/", 1)[-1] for p in files]
    assert names == ["lafin-result.png", "lafin-mask.png", "lafin-landmarks.json",
                     "lafin-landmarks.pts"]
    assert np.array_equal(np.asarray(Image.open(files[1])) > 0, hole > 0)
    saved = np.array(json.loads(open(files[2]).read())["landmarks"])
    np.testing.assert_allclose(saved, session.landmarks, atol=1e-3)
    assert session.image is not None and np.array_equal(session.mask, hole)


def test_mask_file_is_used_instead_of_the_painting(handlers, face, tmp_path):
    image, hole = face
    Image.fromarray(hole * 255).save(tmp_path / "hole.png")
    out = handlers.inpaint(editor_value(image), str(tmp_path / "hole.png"), "crop", Session())
    assert np.array_equal(out[-1].mask, hole)
    assert np.array_equal(np.asarray(Image.open(out[0]))[hole == 0], image[hole == 0])


def test_empty_mask_is_a_message(handlers, face):
    image, _ = face
    with pytest.raises(gr.Error, match="mask is empty"):
        handlers.inpaint(editor_value(image), None, "crop", Session())


@pytest.mark.parametrize("problem,expected", [
    ("no photo", "Upload a photo first"),
    ("wrong size", "differs from image size"),
    ("not an image", "not an image"),
    ("bad mode", "Unknown mode"),
])
def test_bad_inputs_are_messages(handlers, face, tmp_path, problem, expected):
    image, hole = face
    editor, mask_file, mode = editor_value(image, hole), None, "crop"
    if problem == "no photo":
        editor = {"background": None, "layers": [], "composite": None}
    elif problem == "wrong size":
        Image.fromarray(np.full((50, 50), 255, np.uint8)).save(tmp_path / "m.png")
        mask_file = str(tmp_path / "m.png")
    elif problem == "not an image":
        (tmp_path / "m.png").write_text("hello")
        mask_file = str(tmp_path / "m.png")
    else:
        mode = "sideways"
    with pytest.raises(gr.Error, match=expected) as info:
        handlers.inpaint(editor, mask_file, mode, Session())
    assert str(tmp_path) not in info.value.message  # the file's name, not the server's folders


def test_upload_size_limit_names_the_limit(tiny_model, tmp_path, face):
    image, hole = face  # 80x96 = 7680 pixels
    small = DemoHandlers(tiny_model, max_upload_pixels=5000, work_dir=tmp_path)
    with pytest.raises(gr.Error, match=r"too large: 80x96.*at most 0\.005 megapixels"):
        small.inpaint(editor_value(image, hole), None, "crop", Session())
    # a mask file is checked from its header, before it is decoded
    ok = DemoHandlers(tiny_model, max_upload_pixels=8000, work_dir=tmp_path)
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(gr.Error, match=r"mask is too large.*at most 0\.008 megapixels"):
        ok.inpaint(editor_value(image), str(tmp_path / "big.png"), "crop", Session())


def test_sessions_are_separate(handlers):
    a_img, b_img = face_like(96, 80, seed=1), face_like(64, 72, seed=2)
    a, b = Session(), Session()
    handlers.inpaint(editor_value(a_img, box_mask(96, 80)), None, "crop", a)
    handlers.inpaint(editor_value(b_img, box_mask(64, 72, 0.1, 0.1, 0.5, 0.5)), None, "crop", b)
    assert np.array_equal(a.image, a_img) and np.array_equal(b.image, b_img)
    assert a.out_dir != b.out_dir
    handlers.cleanup(a)
    assert not os.path.exists(a.out_dir) and os.path.exists(b.out_dir)


def test_example_loads_with_its_hole_painted(handlers):
    from lafin.examples import example_face, example_mask

    value = example_editor_value(256)
    assert np.array_equal(handlers.image_from_editor(value), example_face(256))
    assert np.array_equal(handlers.mask_from_inputs(value, None, (256, 256)), example_mask(256))


def test_large_photo_goes_through_the_photo_path(handlers):
    image, hole = face_like(300, 260, seed=3), box_mask(300, 260, 0.55, 0.35, 0.8, 0.65)
    result_path, view, _, _, status, session = handlers.inpaint(
        editor_value(image, hole), None, "auto", Session())
    assert "photo mode" in status
    result = np.asarray(Image.open(result_path))
    assert np.array_equal(result[hole == 0], image[hole == 0])
    assert not np.array_equal(result[hole == 1], image[hole == 1])


def test_view_of_a_large_photo_shows_the_face_and_maps_clicks_back(handlers):
    image = np.zeros((1500, 2000, 3), np.uint8)
    hole = np.zeros((1500, 2000), np.uint8)
    hole[700:800, 1200:1300] = 1
    points = canonical(200) + (1100, 600)  # a 200 px face at (1100, 600)
    session = Session(image=image, mask=hole, landmarks=points.astype(np.float32))
    view = handlers.render_view(session)
    x0, y0, scale = session.view
    assert max(view.shape[:2]) == 512 and 900 < x0 < 1100 and 400 < y0 < 600 and scale > 1
    assert view[..., 1].max() > 200  # the green landmarks are drawn
    _, _, _, session = handlers.click(session, (points[30] - (x0, y0) + 0.5) * scale - 0.5)
    assert session.selected == 30


# ---------------------------------------------------------------------------- landmark editing


@pytest.fixture
def inpainted(handlers, face):
    image, hole = face
    session = Session()
    handlers.inpaint(editor_value(image, hole), None, "crop", session)
    return session


def test_preset_then_regenerate_uses_the_edited_landmarks(handlers, inpainted, face):
    image, hole = face
    before = inpainted.landmarks.copy()
    view, table, status, session = handlers.apply_preset("raise eyebrows", 1.0, inpainted)
    assert "raise eyebrows" in status
    moved = np.flatnonzero(np.abs(session.landmarks - before).max(axis=1) > 1e-6)
    assert set(moved) <= set(range(17, 27)) | {37, 38, 43, 44} and len(moved) >= 10
    np.testing.assert_allclose(table_to_landmarks(table), session.landmarks, atol=0.051)
    result_path, _, _, files, status, session = handlers.regenerate(table, "crop", session)
    assert "your landmarks" in status
    saved = np.array(json.loads(open(files[2]).read())["landmarks"])
    np.testing.assert_allclose(saved, table_to_landmarks(table), atol=1e-3)
    result = np.asarray(Image.open(result_path))
    assert np.array_equal(result[hole == 0], image[hole == 0])
    # reset goes back to what Inpaint predicted
    _, table, _, session = handlers.reset(session)
    np.testing.assert_allclose(session.landmarks, before)


def test_table_edit_and_bad_tables(handlers, inpainted):
    table = landmarks_to_table(inpainted.landmarks)
    table[30][2], table[30][3] = 12.5, 40.0
    _, status, session = handlers.edit_table(table, inpainted)
    np.testing.assert_allclose(session.landmarks[30], [12.5, 40.0])
    bad = [list(r) for r in table]
    bad[5][2] = "left"
    with pytest.raises(gr.Error, match="row 6"):
        handlers.edit_table(bad, session)
    with pytest.raises(gr.Error, match="68 rows"):
        handlers.edit_table(table[:67], session)


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
    _, _, status, session = handlers.click(inpainted, near)
    assert session.selected == 33 and "Point 33" in status
    _, table, status, session = handlers.click(session, (100.0, 200.0))
    expected = (np.array([100.0, 200.0]) + 0.5) / scale - 0.5 + (x0, y0)
    np.testing.assert_allclose(session.landmarks[33], expected, atol=1e-4)
    assert session.selected is None and "moved" in status


def test_landmarks_file_upload(handlers, inpainted, tmp_path):
    from lafin.landmarks import save_landmarks

    points = canonical(96).astype(np.float32)
    save_landmarks(tmp_path / "p.pts", points)
    _, table, _, session = handlers.load_landmarks_file(str(tmp_path / "p.pts"), inpainted)
    np.testing.assert_allclose(session.landmarks, points, atol=1e-3)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(gr.Error, match="bad.json"):
        handlers.load_landmarks_file(str(tmp_path / "bad.json"), session)


def test_editing_before_inpaint_is_a_message(handlers):
    with pytest.raises(gr.Error, match="Inpaint first"):
        handlers.apply_preset("smile", 1.0, Session())
    with pytest.raises(gr.Error, match="Inpaint first"):
        handlers.regenerate(landmarks_to_table(canonical()), "crop", Session())


# ---------------------------------------------------------------------------- expressions


def _inner_gap(p: np.ndarray) -> float:
    return float(p[[65, 66, 67], 1].mean() - p[[61, 62, 63], 1].mean())


def test_open_and_close_mouth():
    p = canonical()
    opened = apply_expression(p, "open mouth")
    iod = np.linalg.norm(p[42:48].mean(0) - p[36:42].mean(0))
    assert _inner_gap(opened) > _inner_gap(p) + 0.25 * iod
    assert opened[8, 1] > p[8, 1] + 0.25 * iod                     # the jaw drops with it
    np.testing.assert_allclose(opened[17:48], p[17:48], atol=1e-4)  # brows, nose, eyes stay
    closed = apply_expression(opened, "close mouth")
    assert abs(_inner_gap(closed)) < 1e-3 * iod
    half = apply_expression(opened, "close mouth", 0.5)
    assert _inner_gap(half) == pytest.approx(_inner_gap(opened) / 2, rel=1e-3)
    np.testing.assert_allclose(apply_expression(closed, "close mouth"), closed, atol=1e-4)


def test_smile_eyebrows_and_eyes():
    p = canonical()
    smile = apply_expression(p, "smile")
    width = lambda q: np.linalg.norm(q[54] - q[48])  # noqa: E731
    assert width(smile) > width(p) and smile[48, 1] < p[48, 1] and smile[54, 1] < p[54, 1]
    brows = apply_expression(p, "raise eyebrows")
    assert (brows[17:27, 1] < p[17:27, 1]).all()
    np.testing.assert_allclose(brows[:17], p[:17], atol=1e-4)
    frown = apply_expression(p, "frown")
    assert frown[21, 1] > p[21, 1] and frown[22, 0] - frown[21, 0] < p[22, 0] - p[21, 0]
    closed = apply_expression(p, "close eyes")
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        np.testing.assert_allclose(closed[upper], closed[lower], atol=1e-4)
    assert apply_expression(p, "smile", 0.0) == pytest.approx(p.astype(np.float32))


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_expressions_follow_the_face_when_it_is_rotated(name):
    p = canonical()
    angle = np.deg2rad(35)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([64.0, 64.0])
    turn = lambda q: (q - centre) @ rot.T + centre  # noqa: E731
    np.testing.assert_allclose(apply_expression(turn(p), name), turn(apply_expression(p, name)),
                               atol=1e-3)


def test_expression_errors():
    with pytest.raises(DemoError, match="unknown expression"):
        apply_expression(canonical(), "wink")
    with pytest.raises(DemoError, match="degenerate"):
        apply_expression(np.zeros((68, 2)), "smile")


# ---------------------------------------------------------------------------- the app and the CLI


def test_build_app_queue_and_temp_folder(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "before"))  # restored afterwards
    demo = build_app(tiny_model, work_dir=tmp_path / "app")
    assert isinstance(demo, gr.Blocks)
    assert os.environ["GRADIO_TEMP_DIR"].startswith(str(tmp_path / "app"))
    assert demo._queue.default_concurrency_limit == 1
    model_runs = [f for f in demo.fns.values() if f.name in ("on_inpaint", "on_regenerate")]
    assert len(model_runs) == 2
    assert {f.concurrency_id for f in model_runs} == {"model"}
    assert all(f.concurrency_limit == 1 for f in model_runs)


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
