"""Regression tests of issue #26's audit: every bad input one clear line and exit code 2, no
file the user gave is ever written, run folders never replaced by accident, workers and
temporary files cleaned up."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import box_mask, face_like
from lafin.cli import main
from test_io import bad_landmark_files, sideways_image, png_header_only


@pytest.fixture
def pair(tmp_path):
    image, mask = face_like(80, 64), box_mask(80, 64)
    Image.fromarray(image).save(tmp_path / "a.png")
    Image.fromarray(mask * 255).save(tmp_path / "m.png")
    return tmp_path / "a.png", tmp_path / "m.png"


@pytest.fixture
def no_model(monkeypatch):
    """Refusals must come before any work: loading the model fails the test."""
    import lafin.cli

    monkeypatch.setattr(lafin.cli, "_load_model", lambda args: pytest.fail("the model was loaded"))


def _refused(capsys, argv: list[str], match: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lafin"), err
    assert match in lines[0], lines[0]
    return lines[0]


def _digest(path: Path) -> bytes:
    return path.read_bytes()


# ----------------------------------------------------------------------------- item 1: overlay


def test_overlay_never_overwrites_an_input_or_the_result(pair, tmp_path, capsys, no_model):
    a, m = pair
    before = _digest(a), _digest(m)
    out = tmp_path / "out" / "o.png"
    _refused(
        capsys,
        ["inpaint", str(a), str(m), "-o", str(out), "--overlay", str(a)],
        "refusing to overwrite an input",
    )
    _refused(capsys, ["inpaint", str(a), str(m), "-o", str(out), "--overlay", str(out)], "name the same file")
    _refused(
        capsys,
        [
            "inpaint",
            str(a),
            str(m),
            "-o",
            str(out),
            "--landmarks-out",
            str(tmp_path / "a.pts"),
            "--overlay",
            str(m),
        ],
        "refusing to overwrite",
    )
    assert (_digest(a), _digest(m)) == before and not out.exists()


def test_a_hard_link_of_an_input_is_not_overwritten(pair, tmp_path, capsys, no_model):
    a, m = pair
    link = tmp_path / "link.png"
    os.link(a, link)
    before = _digest(a)
    _refused(capsys, ["inpaint", str(a), str(m), "-o", str(link)], "refusing to overwrite")
    os.symlink(m, tmp_path / "soft.png")
    _refused(
        capsys,
        ["inpaint", str(a), str(m), "-o", str(tmp_path / "x.png"), "--overlay", str(tmp_path / "soft.png")],
        "refusing to overwrite",
    )
    assert _digest(a) == before


def test_landmarks_out_may_not_overwrite_the_given_landmarks(pair, tmp_path, capsys, no_model, tiny_model):
    from lafin.landmarks import write_pts

    a, m = pair
    write_pts(tmp_path / "given.pts", tiny_model.predict_landmarks(np.asarray(Image.open(a))))
    _refused(
        capsys,
        [
            "inpaint",
            str(a),
            str(m),
            "-o",
            str(tmp_path / "o.png"),
            "--landmarks",
            str(tmp_path / "given.pts"),
            "--landmarks-out",
            str(tmp_path / "given.pts"),
        ],
        "refusing to overwrite",
    )


# ----------------------------------------------------------------------------- output paths


@pytest.mark.parametrize(
    "output,match",
    [
        ("x.xyz", "cannot write '.xyz' files"),
        ("x", "no file extension"),
        ("existing_dir", "is a folder"),
        ("new_dir/", "is a folder"),
        ("afile.png/o.png", "is a file, not a folder"),
    ],
)
def test_bad_outputs_refused_before_inference(pair, tmp_path, capsys, no_model, output, match):
    a, m = pair
    (tmp_path / "existing_dir").mkdir()
    Image.fromarray(face_like(16, 16)).save(tmp_path / "afile.png")
    _refused(capsys, ["inpaint", str(a), str(m), "-o", str(tmp_path) + "/" + output], match)


def test_landmarks_out_extension_checked_before_the_result_is_written(pair, tmp_path, capsys, no_model):
    a, m = pair
    _refused(
        capsys,
        [
            "inpaint",
            str(a),
            str(m),
            "-o",
            str(tmp_path / "o.png"),
            "--landmarks-out",
            str(tmp_path / "x.png"),
        ],
        "cannot write '.png'",
    )
    assert not (tmp_path / "o.png").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder(pair, tmp_path, capsys, no_model):
    a, m = pair
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _refused(
            capsys, ["inpaint", str(a), str(m), "-o", str(locked / "sub" / "o.png")], "permission denied"
        )
    finally:
        locked.chmod(0o700)


def test_unwritable_output_folder_as_the_os_reports_it(pair, tmp_path, capsys, no_model, monkeypatch):
    # the same refusal where the test runs as root (root may write anywhere): os.access says no
    a, m = pair
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: Path(p) != locked and real(p, mode))
    _refused(capsys, ["inpaint", str(a), str(m), "-o", str(locked / "o.png")], "permission denied")
    (locked / "o.png").write_bytes(b"")
    monkeypatch.setattr(os, "access", lambda p, mode, **k: Path(p).name != "o.png")
    _refused(capsys, ["inpaint", str(a), str(m), "-o", str(locked / "o.png")], "read-only")


# ----------------------------------------------------------------------------- item 3: EXIF


def test_cli_returns_an_exif_photo_upright_with_the_hole_where_drawn(tmp_path, tiny_weights):
    upright = face_like(72, 56)
    photo = sideways_image(tmp_path / "phone.png", upright)
    hole = box_mask(72, 56, 0.5, 0.3, 0.8, 0.7)  # drawn on the upright view: 56 wide, 72 high
    Image.fromarray(hole * 255).save(tmp_path / "hole.png")
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "inpaint",
                str(photo),
                str(tmp_path / "hole.png"),
                "-o",
                str(out),
                "-q",
                "--weights",
                str(tiny_weights),
                "--mode",
                "crop",
            ]
        )
        == 0
    )
    result = np.asarray(Image.open(out))
    assert result.shape == upright.shape
    np.testing.assert_array_equal(result[hole == 0], upright[hole == 0])


# ----------------------------------------------------------------------------- item 5: folders


def test_folder_mode_refuses_shared_stems_and_counts_right(tmp_path, tiny_weights, capsys):
    images, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    for name in ("dup.jpg", "dup.png", "solo.png"):
        Image.fromarray(face_like(40, 40)).save(images / name)
    for stem in ("dup", "solo"):
        Image.fromarray(box_mask(40, 40) * 255).save(masks / f"{stem}.png")
    assert main(["inpaint", str(images), str(masks), "-o", str(out), "--weights", str(tiny_weights)]) == 0
    printed = capsys.readouterr().out
    assert "Inpainted 1 of 3 images" in printed
    assert "skipped dup.jpg: several images named 'dup'" in printed
    assert sorted(p.name for p in out.iterdir()) == ["solo.png"]


def test_folder_mode_survives_a_decompression_bomb(tmp_path, tiny_weights, capsys):
    images, masks = tmp_path / "in", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    png_header_only(images / "bomb.png", 12000, 12000, rows=12000)
    Image.fromarray(face_like(40, 40)).save(images / "good.png")
    for stem in ("bomb", "good"):
        Image.fromarray(box_mask(40, 40) * 255).save(masks / f"{stem}.png")
    assert (
        main(
            ["inpaint", str(images), str(masks), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "Inpainted 1 of 2" in printed and "skipped bomb.png: image bomb.png is 12000x12000" in printed


def test_folder_output_may_not_be_an_input_folder(tmp_path, capsys, no_model):
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    _refused(
        capsys,
        ["inpaint", str(tmp_path / "in"), str(tmp_path / "masks"), "-o", str(tmp_path / "in")],
        "refusing to overwrite an input",
    )


# ----------------------------------------------------------------------------- item 6: non-faces


def test_photo_mode_warns_when_no_face_is_found(tiny_model, caplog):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    hole = box_mask(200, 200, 0.4, 0.4, 0.6, 0.6)
    with caplog.at_level("WARNING", logger="lafin.pipeline"):
        out = tiny_model.inpaint(noise, hole, mode="photo")
    assert "no face found" in caplog.text
    np.testing.assert_array_equal(out[hole == 0], noise[hole == 0])


# ----------------------------------------------------------------------------- one line, exit 2


def test_pixel_budget_and_bombs_are_one_line(tmp_path, capsys, pair, no_model):
    _, m = pair
    bomb = png_header_only(tmp_path / "bomb.png", 12000, 12000, rows=12000)
    _refused(
        capsys,
        ["inpaint", str(bomb), str(m), "-o", str(tmp_path / "o.png")],
        "over the limit of 50 megapixels",
    )
    a, _ = pair
    _refused(
        capsys,
        ["inpaint", str(a), str(m), "-o", str(tmp_path / "o.png"), "--max-megapixels", "0.001"],
        "over the limit of 0.001 megapixels",
    )


def test_every_malformed_landmarks_file_is_one_line(pair, tmp_path, capsys, no_model):
    a, m = pair
    bad = bad_landmark_files(tmp_path)
    huge = tmp_path / "far.json"
    huge.write_text(json.dumps([[1e30, 1.0]] * 68))
    for _name, path in [*bad.items(), ("1e30", huge)]:
        _refused(
            capsys, ["inpaint", str(a), str(m), "-o", str(tmp_path / "o.png"), "--landmarks", str(path)], ""
        )


@pytest.mark.parametrize(
    "argv,match",
    [
        (["prepare", "s", "o", "--size", "0"], "--size: 0 is out of range"),
        (["prepare", "s", "o", "--size", "-5"], "--size: -5 is out of range"),
        (["prepare", "s", "o", "--size", "100000"], "out of range"),
        (["prepare", "s", "o", "--workers", "0"], "--workers: 0 is out of range"),
        (["prepare", "s", "o", "--upsample", "-1"], "--upsample"),
        (["prepare", "s", "o", "--size", "ten"], "not an integer"),
        (["serve", "--port", "-1"], "--port"),
        (["serve", "--port", "99999"], "--port"),
        (["serve", "--max-megapixels", "0"], "--max-megapixels"),
        (["inpaint", "a", "b", "-o", "c.png", "--max-megapixels", "nan"], "--max-megapixels"),
        (["inpaint-video", "v.mp4", "m.png", "-o", "o.mp4", "--smoothing", "0"], "--smoothing"),
        (["train", "--out", "r", "--max-steps", "-3"], "--max-steps"),
        (["inpaint", "a", "b", "-o", "c.png", "--device", "bogus"], "unknown device"),
    ],
)
def test_absurd_option_values_are_one_line(argv, match, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_machine_is_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["inpaint", "a", "b", "-o", "c.png", "--device", "cuda"])
    assert info.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_a_port_in_use_is_refused_before_loading(capsys, no_model):
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        pytest.skip("the web extra is not installed")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        _refused(capsys, ["serve", "--port", str(port)], f"cannot listen on 127.0.0.1:{port}")


# ----------------------------------------------------------------------------- item 2: training


@pytest.fixture
def run_config(tmp_path):
    from lafin.alignment import canonical_landmarks
    from lafin.data.cache import write_cache

    images = np.stack([face_like(64, 64, seed=i) for i in range(8)])
    marks = np.stack([canonical_landmarks(64)] * 8).astype(np.float32)
    write_cache(tmp_path / "cache", images, marks)
    config = {
        "stage": "inpaint",
        "model": "tiny",
        "batch_size": 2,
        "max_steps": 2,
        "log_every": 1,
        "sample_every": 0,
        "checkpoint_every": 2,
        "val_every": 0,
        "warmup_adversarial_steps": 0,
        "threads": 1,
        "data": {"train": [str(tmp_path / "cache")], "mask_mix": {"block": 1.0}},
    }
    path = tmp_path / "config.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config))
    return path


def test_train_never_replaces_a_run_without_resume_or_overwrite(run_config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", str(run_config), "--out", str(run)]) == 0
    capsys.readouterr()
    checkpoint = (run / "checkpoint.pt").read_bytes()
    _refused(
        capsys, ["train", "--config", str(run_config), "--out", str(run), "--max-steps", "1"], "holds a run"
    )
    assert (run / "checkpoint.pt").read_bytes() == checkpoint
    _refused(
        capsys,
        ["train", "--config", str(run_config), "--out", str(run), "--resume", "--overwrite"],
        "give one of them",
    )
    assert (
        main(["train", "--config", str(run_config), "--out", str(run), "--overwrite", "--max-steps", "1"])
        == 0
    )
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 1


def test_resume_from_a_damaged_or_foreign_checkpoint_is_one_line(run_config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", str(run_config), "--out", str(run)]) == 0
    capsys.readouterr()
    good = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    _refused(
        capsys, ["train", "--config", str(run_config), "--out", str(run), "--resume"], "cannot be resumed"
    )
    torch.save({"weights": torch.zeros(3)}, run / "checkpoint.pt")
    _refused(
        capsys,
        ["train", "--config", str(run_config), "--out", str(run), "--resume"],
        "not a lafin training checkpoint",
    )
    (run / "checkpoint.pt").write_bytes(good)
    _refused(
        capsys,
        ["train", "--config", str(run_config), "--out", str(run), "--resume", "--stage", "landmarks"],
        "does not match this run",
    )


# ----------------------------------------------------------------------------- weights *.tmp


def test_interrupted_weights_writes_leave_no_temporary_files(tmp_path, tiny_config):
    from lafin.atomic import atomic_write
    from lafin.checkpoint import save_weights
    from lafin.networks import build_landmark_predictor

    target = tmp_path / "w.safetensors"
    # a writer killed with kill -9 (its process id no longer exists) left its temporary file
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    stale = tmp_path / f".w.safetensors.{dead}.abc123.tmp"
    stale.write_bytes(b"partial")
    with pytest.raises(KeyboardInterrupt):  # Ctrl+C (or SIGTERM through the CLI) mid-write
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert not stale.exists() and list(tmp_path.iterdir()) == []
    save_weights(target, tiny_config, landmark_predictor=build_landmark_predictor(tiny_config))
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


# ----------------------------------------------------------------------------- prepare


def test_prepare_workers_end_when_the_parent_is_killed(tmp_path):
    pids = tmp_path / "pids"
    script = textwrap.dedent(f"""
        import os, time
        from lafin.workers import process_pool

        def job(i):
            with open({str(pids)!r}, "a") as f:
                f.write(f"{{os.getpid()}}\\n")
            time.sleep(60)

        if __name__ == "__main__":
            pool = process_pool(2)
            list(pool.map(job, range(2)))
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    deadline = time.time() + 30
    while time.time() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
        time.sleep(0.1)
    workers = [int(p) for p in pids.read_text().split()]
    assert len(workers) == 2
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        stat = Path(f"/proc/{pid}/stat")
        return not (stat.exists() and stat.read_text().split()[2] == "Z")

    deadline = time.time() + 10
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.1)
    left = [p for p in workers if alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "workers outlived their parent"


def test_prepare_report_keeps_every_row_after_an_interrupted_run(tmp_path, monkeypatch):
    from lafin.data import prepare as prep

    src = tmp_path / "photos"
    src.mkdir()
    for i in range(4):
        Image.fromarray(face_like(64, 64, seed=i)).save(src / f"p{i}.png")
    out = tmp_path / "set"
    real = prep.process_photo
    calls = {"n": 0}

    def interrupted(job):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(prep, "process_photo", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(src, out, prep.PrepareOptions(size=64, aligned=True), workers=1)
    with (out / "report.csv").open() as f:
        first = [row["name"] for row in csv.DictReader(f)]
    assert first == ["p0", "p1"]  # what was done before the interruption is on record
    # a crop written whose row never was (killed between the two): recorded on resume
    monkeypatch.setattr(prep, "process_photo", real)
    real((str(src / "p2.png"), str(out / "images"), prep.PrepareOptions(size=64, aligned=True)))
    prep.prepare(src, out, prep.PrepareOptions(size=64, aligned=True), workers=1)
    with (out / "report.csv").open() as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == ["p0", "p1", "p2", "p3"]
    assert rows["p2"]["detail"] == "prepared by an earlier run"


def test_prepare_refuses_an_output_inside_the_photos(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    _refused(
        capsys,
        ["prepare", str(tmp_path / "photos"), str(tmp_path / "photos" / "set")],
        "inside the photo folder",
    )


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_skips_a_bad_file_with_a_warning(tmp_path, caplog):
    from lafin.evaluation.runner import main as evaluate_main

    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(2):
        Image.fromarray(face_like(64, 64, seed=i)).save(faces / f"f{i}.png")
    png_header_only(faces / "bomb.png", 12000, 12000, rows=12000)
    (faces / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with caplog.at_level("WARNING"):
        code = evaluate_main(
            [
                "--images",
                str(faces),
                "--size",
                "64",
                "--methods",
                "telea",
                "--bins",
                "1",
                "--no-identity",
                "--out",
                str(tmp_path / "r"),
                "-q",
            ]
        )
    assert code == 0
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert sorted(s["image"] for s in results["skipped"]) == ["bomb.png", "broken.png"]
    assert "skipping bomb.png" in caplog.text


def test_photo_mode_on_slivers_does_not_crash_dlib(tiny_model):
    # found by the property test: dlib's CNN detector read outside images under ~12 px wide
    from lafin.face import detect_faces_cnn

    assert detect_faces_cnn(np.zeros((200, 8, 3), np.uint8)) == []
    for h, w in ((8, 8), (200, 8), (8, 200)):
        image = face_like(h, w)
        hole = np.zeros((h, w), np.uint8)
        hole[h // 2, w // 2] = 1
        out = tiny_model.inpaint(image, hole, mode="photo")
        assert out.shape == image.shape
        np.testing.assert_array_equal(out[hole == 0], image[hole == 0])


def test_video_output_may_not_be_a_link_of_the_input(tmp_path, capsys, no_model):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    os.link(video, tmp_path / "same.mp4")
    _refused(
        capsys,
        ["inpaint-video", str(video), str(video), "-o", str(tmp_path / "same.mp4")],
        "refusing to overwrite an input",
    )
    assert video.read_bytes() == b"not really a video"


def test_video_api_refuses_a_hard_link_of_its_input_as_output(tmp_path, tiny_model):
    from lafin.io import InputError
    from lafin.video import inpaint_video

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    os.link(video, tmp_path / "same.mp4")
    with pytest.raises(InputError, match="refusing to overwrite an input"):
        inpaint_video(tiny_model, video, video, tmp_path / "same.mp4")
    assert video.read_bytes() == b"not really a video"


def test_restore_refuses_a_hard_link_of_the_photo_as_output(pair, tmp_path, capsys, no_model):
    a, _ = pair
    before = _digest(a)
    os.link(a, tmp_path / "linked.png")
    _refused(capsys, ["restore", str(a), "-o", str(tmp_path / "linked.png")], "refusing to overwrite")
    _refused(
        capsys,
        ["restore", str(a), "-o", str(tmp_path / "r.png"), "--damage-out", str(tmp_path / "linked.png")],
        "refusing to overwrite",
    )
    assert _digest(a) == before
