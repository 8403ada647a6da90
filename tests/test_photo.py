"""Photo mode on real, unaligned photos (scikit-image's astronaut): detection, fallbacks,
several faces, big photos, tilted heads, background holes, seamless pasting."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from conftest import face_like
from lafin.blend import harmonize, match_edge_colour
from lafin.photo import hole_regions

# The astronaut's face in skimage.data.astronaut(): box about (180, 67)-(266, 163); mouth at
# about (223, 146).
MOUTH = (slice(135, 160), slice(200, 250))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


def _hole(shape, *slices) -> np.ndarray:
    hole = np.zeros(shape[:2], np.uint8)
    for sl in slices:
        hole[sl] = 1
    return hole


def _check_known_pixels(result, image, hole):
    assert result.image.shape == image.shape
    assert np.array_equal(result.image[hole == 0], image[hole == 0])


def test_face_is_detected_and_only_the_hole_changes(tiny_model, astronaut):
    hole = _hole(astronaut.shape, MOUTH)
    result = tiny_model(astronaut, hole, mode="photo")
    _check_known_pixels(result, astronaut, hole)
    assert result.mode == "photo" and len(result.faces) == 1
    face = result.faces[0]
    assert face.path == "detected"
    left, top, right, bottom = face.box
    assert left < 223 < right and top < 146 < bottom
    assert face.hole_pixels == hole.sum() and result.background_pixels == 0
    assert result.landmarks.shape == (68, 2)


def test_auto_mode_picks_photo_for_big_images(tiny_model, astronaut):
    assert tiny_model(astronaut, _hole(astronaut.shape, MOUTH)).mode == "photo"
    small = cv2.resize(astronaut[60:180, 165:285], (64, 64))
    assert tiny_model(small, _hole(small.shape, (slice(30, 50), slice(20, 44)))).mode == "crop"


def test_background_hole_is_filled_by_opencv(tiny_model, astronaut):
    hole = _hole(astronaut.shape, MOUTH, (slice(420, 470), slice(40, 120)))
    result = tiny_model(astronaut, hole, mode="photo")
    _check_known_pixels(result, astronaut, hole)
    assert len(result.faces) == 1
    assert result.background_pixels == 50 * 80


def test_hidden_face_falls_back_to_the_hole_surroundings(tiny_model, astronaut):
    hole = _hole(astronaut.shape, (slice(50, 200), slice(150, 300)))
    result = tiny_model(astronaut, hole, mode="photo")
    _check_known_pixels(result, astronaut, hole)
    assert [f.path for f in result.faces] == ["hole-surroundings"]
    assert result.faces[0].hole_pixels == hole.sum()
    # said in the result (the CLI and the web demo show it), not only in the log
    assert len(result.warnings) == 1 and result.warnings[0].startswith("no face found near 1 part")


def test_two_faces_in_one_photo(tiny_model, astronaut):
    photo = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    hole = _hole(photo.shape, MOUTH, (MOUTH[0], slice(1024 - 250, 1024 - 200)))
    result = tiny_model(photo, hole, mode="photo")
    _check_known_pixels(result, photo, hole)
    assert len(result.faces) == 2
    assert all(f.path.startswith("detected") for f in result.faces)
    assert result.background_pixels == 0


def test_big_photo_with_a_small_tilted_face(tiny_model, astronaut):
    rot = cv2.getRotationMatrix2D((223.0, 115.0), 15, 1.0)
    tilted = cv2.warpAffine(astronaut, rot, (512, 512), borderMode=cv2.BORDER_REFLECT)
    photo = np.full((2400, 3600, 3), 120, np.uint8)
    photo[900:1412, 2000:2512] = tilted
    mouth = (223 * rot[0, 0] + 148 * rot[0, 1] + rot[0, 2], 223 * rot[1, 0] + 148 * rot[1, 1] + rot[1, 2])
    cy, cx = int(900 + mouth[1]), int(2000 + mouth[0])
    hole = _hole(photo.shape, (slice(cy - 10, cy + 10), slice(cx - 22, cx + 22)))
    result = tiny_model(photo, hole, mode="photo")
    _check_known_pixels(result, photo, hole)
    assert len(result.faces) == 1 and result.faces[0].path.startswith("detected")
    assert result.background_pixels == 0


def test_given_landmarks_in_photo_mode(tiny_model, astronaut):
    hole = _hole(astronaut.shape, MOUTH)
    from lafin.face import annotate_largest_face

    landmarks, _ = annotate_largest_face(astronaut)
    result = tiny_model(astronaut, hole, landmarks=landmarks, mode="photo")
    _check_known_pixels(result, astronaut, hole)
    assert result.faces[0].path == "given-landmarks"
    np.testing.assert_allclose(result.faces[0].landmarks, landmarks, atol=0.05)


def test_harmonize_removes_a_colour_offset_at_the_edge():
    photo = np.full((64, 64, 3), 100, np.uint8)
    hole = np.zeros((64, 64), np.uint8)
    hole[20:44, 20:44] = 1
    generated = np.full((64, 64, 3), 80, np.float32)
    fixed = harmonize(photo, generated, hole)
    assert np.abs(fixed[hole > 0] - 100).max() < 3  # the offset is gone inside the hole
    assert np.array_equal(fixed[hole == 0], generated[hole == 0])


def test_match_edge_colour_removes_a_cast_and_keeps_the_texture():
    rng = np.random.default_rng(0)
    known = np.zeros((128, 128, 3), np.float32)
    known[...] = (180, 120, 100)  # warm skin
    hole = np.zeros((128, 128), bool)
    hole[30:100, 20:90] = True
    texture = rng.normal(0, 12, (128, 128, 1)).astype(np.float32)
    filled = np.where(hole[..., None], np.float32((150, 130, 100)) + texture, known)  # green-grey cast
    fixed = match_edge_colour(known, filled, hole, scale=0.5)
    # at the seam (the hole's outer 3 px) the cast is gone; deep inside the hole the network's
    # own colour is kept (lips are not skin-coloured)
    seam = hole & ~cv2.erode(hole.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    cast_before = np.abs(filled[seam].mean(axis=0) - known[0, 0]).max()
    cast_after = np.abs(fixed[seam].mean(axis=0) - known[0, 0]).max()
    assert cast_before > 25 and cast_after < 5, (cast_before, cast_after)
    np.testing.assert_allclose(fixed[65, 55], filled[65, 55], atol=1.0)  # 35 px deep
    # only a slow colour field is added: the texture (pixel minus its neighbour) is kept
    added = (fixed - filled)[32:98, 22:88]
    assert np.diff(added, axis=1).std() < 1.0 < np.diff(texture[32:98, 22:88], axis=1).std() / 10
    assert np.array_equal(fixed[~hole], filled[~hole])


def test_wide_masked_mean_on_a_coarse_grid_matches_the_full_size_one():
    """The edge colour match spreads its offsets with a 16-px Gaussian on a 4x coarser grid:
    within a tenth of a grey level of the full-size mean where the weight has support, and the
    full-size computation itself for a narrow Gaussian."""
    from lafin.blend import masked_mean, _smooth_masked_mean

    yy, xx = np.mgrid[:256, :256].astype(np.float32)
    # colour offsets that vary along the edge, tens of grey levels
    offsets = np.stack([20 * np.sin(xx / 25), 15 * np.cos(yy / 30), 10 + xx / 20], axis=-1)
    band = np.zeros((256, 256), np.float32)
    cv2.rectangle(band, (60, 50), (200, 180), 1.0, 2)  # a 2-px band like a hole's edge
    full, cover = masked_mean(offsets, band, 16.0)
    coarse = _smooth_masked_mean(offsets, band, 16.0)
    near = cover > 0.01
    assert near.mean() > 0.3 and np.abs(full[near]).mean() > 5
    assert np.abs(coarse - full)[near].mean() < 0.1
    assert np.array_equal(_smooth_masked_mean(offsets, band, 4.0), masked_mean(offsets, band, 4.0)[0])


def test_match_edge_colour_leaves_a_matching_fill_alone():
    rng = np.random.default_rng(1)
    known = rng.normal(120, 20, (96, 96, 3)).astype(np.float32)
    hole = np.zeros((96, 96), bool)
    hole[30:60, 30:60] = True
    fixed = match_edge_colour(known, known, hole, scale=0.5)
    assert np.abs(fixed[hole] - known[hole]).mean() < 4  # noise only: no offset is invented
    # no hole or all hole: nothing to match against
    assert np.array_equal(match_edge_colour(known, known, np.zeros((96, 96), bool)), known)
    assert np.array_equal(match_edge_colour(known, known, np.ones((96, 96), bool)), known)


def test_edge_colour_match_is_an_option_of_the_pipeline(tiny_model, monkeypatch):
    from lafin.alignment import canonical_landmarks
    from lafin.generator_runner import GeneratorRunner
    from lafin.options import InferenceOptions

    def cast_generator(self, img_t, hole_t, points):  # the skin's colour, greener and paler
        cast = np.array([170, 130, 100], np.float32) / 255
        return np.broadcast_to(cast, (img_t.shape[0], self.image_size, self.image_size, 3)).copy()

    monkeypatch.setattr(GeneratorRunner, "generate", cast_generator)
    noise = np.random.default_rng(2).normal(0, 10, (128, 128, 3))  # a colour photo, not tinted
    face = np.clip(np.array([200, 120, 90]) + noise, 0, 255).astype(np.uint8)
    hole = np.zeros((128, 128), np.uint8)
    hole[40:90, 30:100] = 1
    points = canonical_landmarks(128)  # an aligned face: crop mode generates it as it is
    on = tiny_model.inpaint(face, hole, points, mode="crop")
    off = tiny_model.with_options(edge_colour_match=False).inpaint(face, hole, points, mode="crop")
    assert tiny_model.options.edge_colour_match
    target = face[hole == 0].mean(axis=0)
    seam = (hole > 0) & ~cv2.erode(hole, np.ones((5, 5), np.uint8)).astype(bool)
    cast_on = np.abs(on[seam].mean(axis=0) - target).max()
    cast_off = np.abs(off[seam].mean(axis=0) - target).max()
    assert cast_off > 20 and cast_on < 5, (cast_off, cast_on)
    assert np.array_equal(on[hole == 0], face[hole == 0]) and np.array_equal(off[hole == 0], face[hole == 0])
    with pytest.raises(ValueError, match="edge_colour_match"):
        InferenceOptions(edge_colour_match="yes")


def test_hole_regions_merge_overlaps():
    hole = np.zeros((200, 200), np.uint8)
    hole[50:60, 50:60] = 1
    hole[65:75, 65:75] = 1
    hole[180:190, 5:10] = 1
    regions = hole_regions(hole, grow=0.5, min_side=8)
    assert len(regions) == 2


def test_hole_regions_are_in_the_photos_coordinates():
    """The parts are labelled inside the hole's bounding box; the boxes come back in photo pixels."""
    hole = np.zeros((600, 800), np.uint8)
    hole[400:420, 600:650] = 1
    hole[500:505, 700:760] = 1
    assert sorted(hole_regions(hole, grow=0.0, min_side=2)) == [(600, 400, 650, 420), (700, 500, 760, 505)]
    assert hole_regions(np.zeros((50, 60), np.uint8)) == []


def test_remnants_are_dropped_where_they_lie():
    """A stroke's end beside a found face is dropped, a part the size of a hidden mouth kept,
    both far from the photo's corner (labelled inside the hole's bounding box)."""
    from lafin.photo import _without_remnants

    rest = np.zeros((700, 900), np.uint8)
    rest[600:604, 700:706] = 1  # a remnant: narrower than a quarter of the 100-px face
    rest[500:540, 400:460] = 1  # a mouth-sized part
    kept = _without_remnants(rest, [((100.0, 100.0, 200.0, 200.0, 1.0), "detected")])
    assert kept[600:604, 700:706].sum() == 0
    assert np.array_equal(kept[500:540, 400:460], rest[500:540, 400:460])
    assert kept.sum() == 40 * 60 and rest.sum() == 40 * 60 + 24  # the input is untouched


def _big_photo(astronaut) -> np.ndarray:
    """The astronaut upscaled to 896 px and padded to 1024: her face is about 160 px wide."""
    up = cv2.resize(astronaut, (896, 896), interpolation=cv2.INTER_CUBIC)
    return np.pad(up, ((64, 64), (64, 64), (0, 0)), mode="edge")


def test_face_with_hidden_nose_and_mouth_is_confirmed_not_searched(astronaut):
    """HOG scores this face below its threshold; the weak box is confirmed by the CNN on a small
    crop (the slow search of the hole's surroundings is not needed)."""
    from lafin.photo import find_faces

    photo = _big_photo(astronaut)
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[268:350, 414:504] = 1  # nose and mouth
    frames = find_faces(photo, hole, 128)
    assert [f.path for f in frames] == ["detected-confirmed"]
    left, top, right, bottom = frames[0].box
    # the face: about (375, 185)-(540, 345) in this photo
    assert abs((left + right) / 2 - 457) < 25 and abs((top + bottom) / 2 - 265) < 25
    assert 120 < right - left < 220


def test_weak_false_face_over_a_background_hole_is_not_taken(astronaut):
    """HOG gives a weak 'face' on the suit (score about -0.2 at 640 px); the CNN rejects it, so a
    hole there is background, filled by OpenCV, not painted with a face."""
    from lafin.photo import find_faces

    photo = _big_photo(astronaut)
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[700:790, 330:420] = 1
    assert find_faces(photo, hole, 128) == []


def test_diffusion_mix_is_the_stated_share_of_the_fill_inside_the_hole_only():
    import cv2

    from lafin.blend import diffusion_mix

    ramp = np.tile(np.linspace(40, 200, 64, dtype=np.float32)[None, :, None], (64, 1, 3))
    photo = ramp.astype(np.uint8)
    hole = np.zeros((64, 64), np.uint8)
    hole[20:44, 20:44] = 1
    generated = np.full((64, 64, 3), 128, np.float32)
    fill = cv2.inpaint(photo, hole, 5, cv2.INPAINT_NS).astype(np.float32)
    out = diffusion_mix(photo, generated, hole, 0.25)
    inside = hole > 0
    assert np.allclose(out[inside], 0.75 * 128 + 0.25 * fill[inside], atol=1e-3)
    assert np.array_equal(out[~inside], generated[~inside])
    # the fill of a ramp is close to the ramp, so the mix moves the flat fill towards the truth
    assert np.abs(out[inside] - ramp[inside]).mean() < np.abs(generated[inside] - ramp[inside]).mean()
    assert diffusion_mix(photo, generated, hole, 0.0) is generated
    assert diffusion_mix(photo, generated, np.ones_like(hole), 0.5) is generated  # nothing known
    with pytest.raises(ValueError, match="weight"):
        diffusion_mix(photo, generated, hole, 1.5)


def test_diffusion_mix_in_the_pipeline_changes_only_the_hole(tiny_model):
    from lafin.examples import example_face
    from lafin.io import InputError
    from lafin.masks import blob_mask
    from lafin.options import InferenceOptions

    # ragged holes: OpenCV's fill of them reads some of the pixels under the hole
    image, hole = example_face(64), blob_mask(64, np.random.default_rng(0), hole_ratio=(0.3, 0.4))
    assert 0 < tiny_model.options.diffusion_mix < 1
    mixed = tiny_model.inpaint(image, hole, mode="crop")
    plain = tiny_model.with_options(diffusion_mix=0.0).inpaint(image, hole, mode="crop")
    # what lies under the hole never reaches the result, also not through OpenCV's fill
    other = image.copy()
    other[hole > 0] = 255 - other[hole > 0]
    assert np.array_equal(
        tiny_model.inpaint(other, hole, mode="crop"), np.where(hole[..., None] > 0, mixed, other)
    )
    with pytest.raises(InputError, match="diffusion_mix"):
        tiny_model.with_options(diffusion_mix=2.0)
    with pytest.raises(InputError, match="diffusion_mix"):
        InferenceOptions(diffusion_mix=True)
    assert np.array_equal(mixed[hole == 0], image[hole == 0])
    changed = (mixed != plain).any(axis=2)
    assert changed.any() and not changed[hole == 0].any()


def test_box_from_landmarks_is_where_the_detector_puts_the_box(astronaut):
    """dlib's shape predictor needs the detector's box convention: the box derived from the
    landmarks overlaps the HOG box closely and re-annotating in it lands on the same points."""
    from lafin.face import annotate, box_from_landmarks, detect_faces

    box = detect_faces(astronaut)[0]
    points = annotate(astronaut, box)
    derived = box_from_landmarks(points)
    left, top = max(box.left, derived.left), max(box.top, derived.top)
    right, bottom = min(box.right, derived.right), min(box.bottom, derived.bottom)
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    iou = inter / (box.width * box.height + derived.width * derived.height - inter)
    assert iou > 0.8, iou
    again = annotate(astronaut, derived)
    eyes = np.linalg.norm(points[36] - points[45])
    assert np.linalg.norm(again - points, axis=1).mean() / eyes < 0.05


def test_photo_refine_realigns_on_the_first_pass_and_keeps_implausible_frames(tiny_model):
    """Photo mode's second landmark pass re-aligns a face by the first pass's points (here a
    face found 2 px right of and 1 px above where the frame expected it), but keeps the frame
    when the points would move the face implausibly (scale, rotation) or when no face was found."""
    from lafin.alignment import canonical_landmarks
    from lafin.photo import FaceFrame

    s = tiny_model.image_size
    canonical = canonical_landmarks(s)
    image = face_like(200, 200, seed=1)
    hole = np.zeros((200, 200), np.uint8)
    hole[80:120, 70:130] = 1
    frame = FaceFrame(np.array([[s / 200, 0, 0], [0, s / 200, 0]]), s, "detected", (0, 0, 200, 200))
    centre = canonical.mean(axis=0)
    turn = np.radians(30)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    firsts = np.stack(
        [
            canonical + [2, -1],  # plausible: a small shift
            centre + (canonical - centre) * 1.6,  # a third smaller: implausible
            centre + (canonical - centre) @ rotation.T,
        ]
    )  # 30 degrees: implausible
    surroundings = FaceFrame(frame.matrix, s, "hole-surroundings", frame.box)
    frames, points = tiny_model.locator.refine_frames(
        image, hole, [frame, frame, frame, surroundings], np.concatenate([firsts, firsts[:1]])
    )
    assert points.shape == (4, 68, 2)
    expected = frame.matrix.copy()
    expected[:, 2] -= [2, -1]  # the face moves to where the canonical crop wants it
    assert np.allclose(frames[0].matrix, expected, atol=1e-6) and frames[0] is not frame
    assert frames[1] is frame and frames[2] is frame and frames[3] is surroundings


def test_nothing_under_the_hole_reaches_the_photo_result(tiny_model, astronaut):
    """A hole from the mouth far past the face: the face's seam harmonisation, its crop and the
    OpenCV fill beyond it read only known pixels (the pixels under the hole are inverted here)."""
    hole = _hole(astronaut.shape, (slice(135, 160), slice(200, 420)))
    other = astronaut.copy()
    other[hole > 0] = 255 - other[hole > 0]
    a = tiny_model(astronaut, hole, mode="photo")
    b = tiny_model(other, hole, mode="photo")
    assert len(a.faces) == 1 and a.background_pixels > 0
    assert np.array_equal(a.image[hole > 0], b.image[hole > 0])


def test_given_landmarks_frame_the_face_on_all_points_hidden_ones_too(tiny_model, astronaut, monkeypatch):
    """Given (or lafin's own) landmarks are trusted under the hole too: the face is framed on
    all 68, as training frames its faces, not on the visible ones alone as for a detector's
    points (an open mouth under the hole moves the frame)."""
    from lafin.face import annotate_largest_face
    from lafin.landmarks import edit_expression
    from lafin.photo import robust_alignment
    from lafin.photo_inpainter import PhotoInpainter

    landmarks, _ = annotate_largest_face(astronaut)
    opened = edit_expression(landmarks, "open mouth", 1.2)
    hole = _hole(astronaut.shape, MOUTH)
    frames = []
    render = PhotoInpainter.render_faces
    monkeypatch.setattr(
        PhotoInpainter, "render_faces", lambda self, *a, **k: frames.extend(a[3]) or render(self, *a, **k)
    )
    tiny_model(astronaut, hole, landmarks=opened, mode="photo")
    s = tiny_model.image_size
    everything = robust_alignment(opened, None, s)
    xy = np.round(opened).astype(int)
    visible_only = robust_alignment(opened, hole[xy[:, 1], xy[:, 0]] == 0, s)
    assert len(frames) == 1 and np.allclose(frames[0].matrix, everything)
    assert not np.allclose(everything, visible_only, atol=1e-3)


def test_photo_refine_frames_the_face_on_its_points_with_outliers_down_weighted(tiny_model):
    """A first pass with one point far astray (a jaw point 30 px off) moves the frame less than
    a plain least-squares fit on all 68 points would: its weight falls with its residual."""
    from lafin.alignment import canonical_landmarks, invert_affine, similarity_transform, transform_points
    from lafin.photo import FaceFrame

    s = tiny_model.image_size
    canonical = canonical_landmarks(s).astype(np.float64)
    image = face_like(200, 200, seed=1)
    hole = np.zeros((200, 200), np.uint8)
    hole[80:120, 70:130] = 1
    frame = FaceFrame(np.array([[s / 200, 0, 0], [0, s / 200, 0]]), s, "detected", (0, 0, 200, 200))
    first = canonical.copy()
    first[8] += [0.0, 30.0]
    frames, _ = tiny_model.locator.refine_frames(image, hole, [frame], first[None])
    photo_points = transform_points(first, invert_affine(frame.matrix))
    plain = similarity_transform(photo_points, canonical)
    good = np.arange(68) != 8  # where each frame puts the 67 good points, against their places

    def error(matrix: np.ndarray) -> float:
        return float(np.abs(transform_points(photo_points, matrix)[good] - canonical[good]).max())

    assert frames[0] is not frame and error(frames[0].matrix) < 0.5 * error(plain)


def test_predict_landmarks_in_photo_mode_are_those_photo_mode_generates_from(tiny_model, astronaut):
    """predict_landmarks(mode="photo"): the largest face the hole touches, the very points photo
    mode generates it from; with no hole, the largest face in the photo (the two faces of a
    doubled photo differ in size); no face: one NoFaceError."""
    from lafin.errors import NoFaceError

    hole = _hole(astronaut.shape, MOUTH)
    generated = tiny_model(astronaut, hole, mode="photo").landmarks
    np.testing.assert_array_equal(tiny_model.predict_landmarks(astronaut, hole, mode="photo"), generated)
    np.testing.assert_array_equal(tiny_model.predict_landmarks(astronaut, hole, mode="auto"), generated)
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    photo = np.full((600, 900, 3), 120, np.uint8)
    photo[40:552, 20:532] = astronaut
    photo[300:556, 600:856] = small
    points = tiny_model.predict_landmarks(photo, mode="photo")
    assert points.shape == (68, 2) and points.dtype == np.float32
    centre = points.mean(axis=0)
    assert 20 + 150 < centre[0] < 20 + 300 and 40 + 40 < centre[1] < 40 + 200  # the big face's
    with pytest.raises(NoFaceError, match="no face found in the photo"):
        tiny_model.predict_landmarks(np.full((600, 900, 3), 120, np.uint8), mode="photo")


def test_tone_is_judged_around_the_hole():
    """A colour face on a wide neutral canvas keeps a colour fill (the canvas made the whole
    photo's channels agree on average); a sepia print inside a wide white border is tinted."""
    from lafin.blend import keep_tone, tone_context

    canvas = np.full((600, 900, 3), 128, np.uint8)
    face = face_like(128, 128, seed=1)
    canvas[200:328, 300:428] = face
    hole = np.zeros(canvas.shape[:2], np.uint8)
    hole[250:290, 330:400] = 1
    filled = canvas.copy()
    filled[hole > 0] = [200, 120, 100]
    out, tone = keep_tone(canvas, filled, hole)
    assert tone == "colour" and np.array_equal(out, filled)
    context = tone_context(hole)
    assert context[250 - 70, 330 - 70] and not context[250 - 71, 330] and not context[hole > 0].any()

    lum = face_like(256, 256, seed=1).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    sepia = (
        np.clip(lum[..., None] * np.array([1.0, 0.85, 0.62]) + [10, 5, 0], 0, 255).round().astype(np.uint8)
    )
    print_ = np.full((600, 600, 3), 255, np.uint8)
    print_[172:428, 172:428] = sepia
    hole = np.zeros(print_.shape[:2], np.uint8)
    hole[280:300, 270:330] = 1
    filled = print_.copy()
    filled[hole > 0] = [90, 140, 200]  # a bluish fill
    out, tone = keep_tone(print_, filled, hole)
    assert tone == "tinted"
    fill = out[hole > 0].astype(int)
    assert (fill[:, 0] >= fill[:, 2]).all()  # sepia's red above its blue, not the fill's blue


def test_paint_hole_reads_nothing_under_the_hole_and_extends_the_known_pixels():
    from lafin.crop_frame import paint_hole

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)
    hole = _hole(image.shape, (slice(20, 60), slice(30, 70)))
    painted = paint_hole(image, hole)
    other = image.copy()
    other[hole > 0] = rng.integers(0, 256, (int(hole.sum()), 3), dtype=np.uint8)
    assert np.array_equal(paint_hole(other, hole), painted)  # the hole's content is never read
    assert np.array_equal(painted[hole == 0], image[hole == 0])
    flat = np.full_like(image, 100)
    flat_painted = paint_hole(flat, hole)
    assert np.all(flat_painted[20:60, 30:32] == 100)  # beside the edge: the known colour
    assert np.all(flat_painted[38:42, 48:52] == 255)  # deep inside: white, as before
    assert np.array_equal(paint_hole(image, np.zeros_like(hole)), image)


@pytest.mark.parametrize("scale", [1.3, 0.7, 0.35])
def test_face_view_keeps_known_pixels_beside_the_hole(scale):
    """Resampling reaches past the pixels the hole touches: one colour painted in the hole rang
    through the cubic kernel into the known crop pixels beside it."""
    from lafin.alignment import similarity_transform
    from lafin.crop_frame import face_view

    side = int(256 / scale) + 40
    photo = np.full((side, side, 3), 120, np.uint8)
    hole = _hole(photo.shape, (slice(side // 2 - 30, side // 2 + 25), slice(side // 2 - 35, side // 2 + 30)))
    angle = np.radians(10)
    src = np.array([[0, 0], [1, 0], [0, 1]], np.float64) * 100 + side / 2 - 50
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = (src - side / 2) @ rot.T * scale + 128
    matrix = similarity_transform(src, dst)
    crop, crop_hole = face_view(photo, hole, matrix, 256)
    assert crop_hole.any() and not crop_hole.all()
    assert np.abs(crop[~crop_hole].astype(int) - 120).max() <= 1


@pytest.mark.parametrize("side", [100, 256, 300])
def test_crop_frame_reads_nothing_under_the_hole(side):
    """Crop mode's square (enlarged with a cubic kernel, kept, or area-reduced) shows the same
    known pixels whatever lies under the hole."""
    from lafin.crop_frame import CropFrame

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (side, side - 10, 3), dtype=np.uint8)
    hole = _hole(image.shape, (slice(side // 3, side // 2), slice(side // 4, side // 2)))
    other = image.copy()
    other[hole > 0] = 255 - other[hole > 0]
    frame = CropFrame.around(hole.shape, 256)
    img_a, hole_a = frame.tensors(image, hole)
    img_b, hole_b = frame.tensors(other, hole)
    assert torch.equal(hole_a, hole_b)
    known = hole_a[0, 0] == 0
    assert torch.equal(img_a[0][:, known], img_b[0][:, known])
