"""Video: frame-by-frame photo mode, known pixels kept (lossless), audio kept, smoothing."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from PIL import Image
from skimage import data

ff = pytest.importorskip("imageio_ffmpeg", reason="video needs imageio-ffmpeg (lafin[video])")

from lafin.video import LandmarkSmoother, inpaint_video, write_video  # noqa: E402


def _write_video(path, frames, fps=10, audio=False):
    silent = str(path) + ".silent.mp4" if audio else str(path)
    write_video(silent, frames, fps)
    if audio:
        subprocess.run(
            [
                ff.get_ffmpeg_exe(),
                "-y",
                "-loglevel",
                "error",
                "-i",
                silent,
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=440:duration={len(frames) / fps}",
                "-c:v",
                "copy",
                "-c:a",
                "aac",
                "-shortest",
                str(path),
            ],
            check=True,
        )


def _read_video(path):
    reader = ff.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(r, np.uint8).reshape(h, w, 3).copy() for r in reader]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    face = data.astronaut()[:256, 100:356]
    rng = np.random.default_rng(0)
    frames = [
        np.clip(np.roll(face, i // 3, axis=1).astype(int) + rng.integers(-3, 4, face.shape), 0, 255).astype(
            np.uint8
        )
        for i in range(8)
    ]
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    _write_video(path, frames, audio=True)
    return path, _read_video(path)


def _hole():
    hole = np.zeros((256, 256), np.uint8)
    hole[135:160, 100:150] = 1
    return hole


def test_video_keeps_known_pixels_and_audio(tiny_model, clip, tmp_path):
    path, frames = clip
    Image.fromarray(_hole() * 255).save(tmp_path / "mask.png")
    report = inpaint_video(
        tiny_model, path, tmp_path / "mask.png", tmp_path / "out.mp4", lossless=True, progress=False
    )
    assert report.frames == len(frames) and report.audio
    assert all(n == 1 for n in report.faces_per_frame)
    out = _read_video(tmp_path / "out.mp4")
    assert len(out) == len(frames)
    hole = _hole().astype(bool)
    for a, b in zip(frames, out):
        assert np.array_equal(a[~hole], b[~hole])
        assert not np.array_equal(a[hole], b[hole])
    probe = subprocess.run(
        [ff.get_ffmpeg_exe(), "-hide_banner", "-i", str(tmp_path / "out.mp4")], capture_output=True, text=True
    )
    assert "Audio:" in probe.stderr


def test_video_keeps_the_smoothed_alignment(tiny_model, clip, tmp_path, monkeypatch):
    """Video smooths each face's alignment over time: the photo-mode re-alignment on each frame's
    own first landmark pass (which would make faces jitter) must not run; photo mode does run it."""
    path, frames = clip
    Image.fromarray(_hole() * 255).save(tmp_path / "mask.png")
    calls = []
    original = tiny_model.locator.refine_frames
    monkeypatch.setattr(
        tiny_model.locator, "refine_frames", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    inpaint_video(tiny_model, path, tmp_path / "mask.png", tmp_path / "out.mp4", progress=False)
    assert calls == []
    tiny_model(frames[0], _hole(), mode="photo")
    assert calls == [1]


def test_mask_video_and_refusal_to_overwrite(tiny_model, clip, tmp_path):
    path, frames = clip
    masks = [
        np.repeat((_hole() * 255)[..., None], 3, axis=2) if i % 2 else np.zeros((256, 256, 3), np.uint8)
        for i in range(len(frames))
    ]
    _write_video(tmp_path / "mask.mp4", masks)
    report = inpaint_video(
        tiny_model, path, tmp_path / "mask.mp4", tmp_path / "out.mkv", lossless=True, progress=False
    )
    assert report.faces_per_frame == [0, 1] * (len(frames) // 2)
    from lafin.io import InputError

    with pytest.raises(InputError, match="overwrite"):
        inpaint_video(tiny_model, path, tmp_path / "mask.mp4", path, progress=False)


@pytest.fixture(scope="module")
def clip_landmarks(clip):
    """The clip's true landmarks per frame: dlib's on the first, moved as the clip rolls."""
    from lafin.face import annotate_largest_face

    _, frames = clip
    first, _ = annotate_largest_face(frames[0])
    return [first + np.array([i // 3, 0], np.float32) for i in range(len(frames))]


def _predicting(model, monkeypatch, truths, noise=0.0, jump_at=None):
    """The model's landmark predictor replaced by the truth (+ noise, + a 100-px jump from frame
    ``jump_at`` on); returns the list of frame indices it was asked about."""
    rng = np.random.default_rng(0)
    asked: list[int] = []

    def predict(img, hole, frames):
        i = len(asked)
        asked.append(i)
        moved = truths[i] + (100 if jump_at is not None and i >= jump_at else 0)
        return np.stack([moved + rng.normal(0, noise, moved.shape) for _ in frames]).astype(np.float32)

    monkeypatch.setattr(model, "predict_face_landmarks", predict)
    return asked


def _counting_detections(monkeypatch):
    import lafin.photo

    calls: list[int] = []
    original = lafin.photo.find_faces
    monkeypatch.setattr(lafin.photo, "find_faces", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def test_smoothing_reduces_landmark_jitter(tiny_model, clip, clip_landmarks, tmp_path, monkeypatch):
    path, _ = clip
    Image.fromarray(_hole() * 255).save(tmp_path / "mask.png")

    def jitter(alpha):
        _predicting(tiny_model, monkeypatch, clip_landmarks, noise=2.0)
        report = inpaint_video(
            tiny_model,
            path,
            tmp_path / "mask.png",
            tmp_path / f"o{alpha}.mp4",
            smoothing=alpha,
            progress=False,
        )
        errors = np.stack([f[0] - t for f, t in zip(report.landmarks, clip_landmarks)])
        return np.abs(np.diff(errors, axis=0)).mean()

    assert jitter(0.3) < 0.7 * jitter(1.0)


def test_detectors_run_on_key_frames_only(tiny_model, clip, clip_landmarks, tmp_path, monkeypatch):
    path, frames = clip
    Image.fromarray(_hole() * 255).save(tmp_path / "mask.png")
    calls = _counting_detections(monkeypatch)
    for interval, expected in ((30, 1), (3, 3), (1, len(frames))):
        calls.clear()
        _predicting(tiny_model, monkeypatch, clip_landmarks)
        report = inpaint_video(
            tiny_model,
            path,
            tmp_path / "mask.png",
            tmp_path / "out.mp4",
            progress=False,
            key_interval=interval,
        )
        assert len(calls) == report.key_frames == expected, interval
        assert report.faces_per_frame == [1] * len(frames)
        # followed faces keep their landmarks: the truth (no smoothing error when none moves)
        assert np.abs(report.landmarks[1][0] - clip_landmarks[1]).max() < 1.0


def test_a_lost_face_is_detected_again(tiny_model, clip, clip_landmarks, tmp_path, monkeypatch):
    path, frames = clip
    Image.fromarray(_hole() * 255).save(tmp_path / "mask.png")
    calls = _counting_detections(monkeypatch)
    _predicting(tiny_model, monkeypatch, clip_landmarks, jump_at=4)
    report = inpaint_video(tiny_model, path, tmp_path / "mask.png", tmp_path / "out.mp4", progress=False)
    assert report.key_frames == len(calls) >= 2  # the first frame, then after the jump


def test_frames_go_through_the_generator_in_batches(tiny_model, clip, clip_landmarks, tmp_path, monkeypatch):
    path, frames = clip
    Image.fromarray(_hole() * 255).save(tmp_path / "mask.png")
    _predicting(tiny_model, monkeypatch, clip_landmarks)
    sizes = []
    original = tiny_model.generation.generate
    monkeypatch.setattr(
        tiny_model.generation,
        "generate",
        lambda img_t, *a: sizes.append(img_t.shape[0]) or original(img_t, *a),
    )
    out = tmp_path / "out.mp4"
    report = inpaint_video(
        tiny_model, path, tmp_path / "mask.png", out, progress=False, batch=3, lossless=True
    )
    assert sizes == [3, 3, 2] and report.frames == len(frames)
    hole = _hole().astype(bool)
    for a, b in zip(frames, _read_video(out)):
        assert np.array_equal(a[~hole], b[~hole])


def test_trend_smoothing_follows_a_moving_face_without_lag():
    """A face moving 3 px a frame: plain exponential smoothing lags v (1 - a) / a = 7 px behind
    (a = 0.3); with the trend term the lag vanishes while noise is still averaged."""
    rng = np.random.default_rng(0)
    truth = [np.full((68, 2), 3.0 * i) for i in range(60)]
    observed = [t + rng.normal(0, 1.0, t.shape) for t in truth]

    def errors(trend):
        s = LandmarkSmoother(alpha=0.3, trend=trend)
        s.assign([(0, 0, 100, 100)])
        return np.stack([s.smooth(0, "p", o) - t for o, t in zip(observed, truth)])[30:]

    assert abs(errors(0.0).mean() + 7.0) < 0.5
    with_trend = errors(0.3)
    assert abs(with_trend.mean()) < 0.3
    assert with_trend.std() < 0.8  # the raw observations' spread is 1


def test_tracks_follow_faces_and_split_on_jumps():
    s = LandmarkSmoother(alpha=0.5)
    assert s.assign([(0, 0, 100, 100), (300, 0, 400, 100)]) == [0, 1]
    assert s.assign([(305, 2, 405, 102), (4, 0, 104, 100)]) == [1, 0]
    assert s.assign([(900, 900, 1000, 1000)]) == [2]
    first = s.smooth(2, "p", np.zeros((68, 2)))
    second = s.smooth(2, "p", np.ones((68, 2)) * 10)
    assert np.allclose(first, 0) and np.allclose(second, 5)


def test_cli_video_options_and_bad_batch(clip, tiny_weights, tmp_path, capsys):
    from lafin.cli import main

    path, frames = clip
    Image.fromarray(_hole() * 255).save(tmp_path / "mask.png")
    out = tmp_path / "out.mp4"
    code = main(
        [
            "inpaint-video",
            str(path),
            str(tmp_path / "mask.png"),
            "-o",
            str(out),
            "--weights",
            str(tiny_weights),
            "--fast",
            "--batch",
            "3",
            "--key-interval",
            "4",
        ]
    )
    assert code == 0 and out.is_file()
    assert f"{len(frames)} frames" in capsys.readouterr().out
    code = main(
        [
            "inpaint-video",
            str(path),
            str(tmp_path / "mask.png"),
            "-o",
            str(tmp_path / "o2.mp4"),
            "--weights",
            str(tiny_weights),
            "--batch",
            "0",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "batch" in err and err.strip().count("\n") == 0


def test_nothing_under_the_hole_reaches_the_output(tiny_model, clip, clip_landmarks, tmp_path, monkeypatch):
    """Frames that differ only under the hole give the same video, both where one followed face
    holds the hole (no OpenCV fill made) and on key frames (filled first)."""
    path, frames = clip
    hole = _hole()
    Image.fromarray(hole * 255).save(tmp_path / "mask.png")
    rng = np.random.default_rng(1)
    other = [f.copy() for f in frames]
    for f in other:
        f[hole > 0] = rng.integers(0, 256, (int(hole.sum()), 3))
    _write_video(tmp_path / "other.mp4", other)
    outputs, reports = [], []
    for i, clip_path in enumerate((path, tmp_path / "other.mp4")):
        _predicting(tiny_model, monkeypatch, clip_landmarks)
        reports.append(
            inpaint_video(
                tiny_model,
                clip_path,
                tmp_path / "mask.png",
                tmp_path / f"out{i}.mp4",
                lossless=True,
                progress=False,
                batch=3,
            )
        )
        outputs.append(_read_video(tmp_path / f"out{i}.mp4"))
    for a, b in zip(*outputs):
        assert np.array_equal(a, b)
    # only the key frame was filled by OpenCV first: the followed face held the hole after it
    assert reports[0].opencv_fills == reports[0].key_frames == 1
    assert reports[0].faces_per_frame == [1] * len(frames)


def test_video_reports_its_stages(tiny_model, clip, clip_landmarks, tmp_path, monkeypatch):
    path, _ = clip
    Image.fromarray(_hole() * 255).save(tmp_path / "mask.png")
    _predicting(tiny_model, monkeypatch, clip_landmarks)
    report = inpaint_video(
        tiny_model, path, tmp_path / "mask.png", tmp_path / "out.mp4", progress=False, batch=3
    )
    stages = {"decode", "mask", "detect/track", "fill", "landmarks", "generate", "blend", "encode"}
    assert stages <= set(report.stage_seconds) and set(report.stage_cpu_seconds) == set(report.stage_seconds)
    assert all(v >= 0 for v in report.stage_seconds.values())
    assert report.stage_seconds["generate"] > 0 and report.stage_cpu_seconds["generate"] > 0


def test_an_error_while_rendering_is_raised_and_leaves_no_file(tiny_model, clip, tmp_path, monkeypatch):
    """The networks run in a second thread: what goes wrong there reaches the caller, and no
    half-written video stays behind."""
    path, _ = clip
    Image.fromarray(_hole() * 255).save(tmp_path / "mask.png")
    out_dir = tmp_path / "out"

    def broken(*args, **kwargs):
        raise RuntimeError("generator failed")

    monkeypatch.setattr(tiny_model.generation, "generate", broken)
    with pytest.raises(RuntimeError, match="generator failed"):
        inpaint_video(tiny_model, path, tmp_path / "mask.png", out_dir / "out.mp4", progress=False, batch=2)
    assert list(out_dir.iterdir()) == []


def test_an_interrupted_write_keeps_the_old_output_and_leaves_no_temporary_file(
    tiny_model, clip, tmp_path, monkeypatch
):
    """The output is written whole or not at all (lafin.atomic): an interruption while the audio
    is muxed in, the last step, keeps the previous output as it was, and a killed run's
    temporary file is removed by the next write."""
    import lafin.video

    path, _ = clip
    Image.fromarray(_hole() * 255).save(tmp_path / "mask.png")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "out.mp4"
    out.write_bytes(b"the previous result")
    (out_dir / ".out.mp4.999999999.abcd.video.tmp").write_bytes(b"left by a killed run")

    def interrupted(video, silent, final, container):
        assert silent.stat().st_size > 0  # the frames were written, under a temporary name
        final.write_bytes(b"half a video")
        raise KeyboardInterrupt

    monkeypatch.setattr(lafin.video, "_copy_audio", interrupted)
    with pytest.raises(KeyboardInterrupt):
        inpaint_video(tiny_model, path, tmp_path / "mask.png", out, progress=False)
    assert out.read_bytes() == b"the previous result"
    assert [p.name for p in out_dir.iterdir()] == ["out.mp4"]


def test_video_output_extension_gives_the_container(tiny_model, clip, tmp_path):
    from lafin.io import InputError
    from lafin.video import container_for

    assert container_for("a.MKV") == "matroska" and container_for("a") == "mp4"
    path, _ = clip
    Image.fromarray(_hole() * 255).save(tmp_path / "mask.png")
    with pytest.raises(InputError, match="must end in"):
        inpaint_video(tiny_model, path, tmp_path / "mask.png", tmp_path / "out.gif", progress=False)
    assert not (tmp_path / "out.gif").exists()
