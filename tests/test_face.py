"""Face preparation: loading, dlib landmarks, framing, cache and bad inputs.

Everything runs the real decoders and dlib models (no mocks except where a
test must prove that dlib is *not* called, or must make a cache write fail).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from teller_agent.config import SHARED_DATA_DIR, TellerSettings
from teller_agent.errors import (
    FaceTooSmallError,
    ImageLoadError,
    ImageTooLargeError,
    ImageTooSmallError,
    NoFaceError,
    TellerError,
)
from teller_agent.face import (
    DEFAULT_PORTRAIT_SOURCE,
    PreparedAvatar,
    default_portrait,
    detect_landmarks,
    eye_centers,
    face_width,
    load_portrait,
    predictor_path,
    prepare_avatar,
)
from teller_agent.face import cache as face_cache
from teller_agent.face import prepare as face_prepare

PORTRAITS = SHARED_DATA_DIR / "portraits"
FRONTAL_PORTRAITS = [
    "LivePortrait__s1.jpg",
    "EAMM__7.png",
    "GeneFace__000002.jpg",
    "dreamtalk__f30.png",
    "hallo__3.jpg",
]
LIMIT = 60_000_000


# --- helpers -----------------------------------------------------------------


def make_settings(tmp_path: Path, **overrides) -> TellerSettings:
    """Settings with the documented defaults (independent of TELLER_* env vars)."""
    values = dict(
        avatar_image=None,
        frame_size=512,
        face_scale=0.42,
        face_center_y=0.45,
        face_min_size=40,
        max_image_pixels=LIMIT,
        cache_dir=tmp_path / "cache",
    )
    values.update(overrides)
    return TellerSettings(**values)


def save(tmp_path: Path, name: str, array: np.ndarray, **params) -> Path:
    path = tmp_path / name
    Image.fromarray(array).save(path, **params)
    return path


def assert_face_geometry(landmarks: np.ndarray, box, tolerance: float = 0.15) -> None:
    """Eyes above the nose tip above the mouth, eyes either side of the nose,
    all points in ``box`` give or take ``tolerance`` x box width."""
    assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
    right_eye, left_eye = eye_centers(landmarks)
    nose_tip = landmarks[30]
    assert landmarks[36:48, 1].max() < nose_tip[1] < landmarks[48:68, 1].min()
    assert right_eye[0] < nose_tip[0] < left_eye[0]
    left, top, right, bottom = box
    slack = tolerance * (right - left)
    assert (landmarks[:, 0] >= left - slack).all() and (landmarks[:, 0] <= right + slack).all()
    assert (landmarks[:, 1] >= top - slack).all() and (landmarks[:, 1] <= bottom + slack).all()


def png_with_fake_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR claims ``width x height`` (CRC fixed up)."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(buffer, format="PNG")
    png = bytearray(buffer.getvalue())
    assert png[12:16] == b"IHDR"
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return default_portrait()


@pytest.fixture(scope="module")
def astronaut_landmarks(astronaut) -> np.ndarray:
    detection = detect_landmarks(astronaut)
    assert detection is not None
    return detection.landmarks


# --- landmarks on real portraits ---------------------------------------------


def test_predictor_model_is_found():
    assert predictor_path().name == "shape_predictor_68_face_landmarks.dat"
    assert predictor_path().stat().st_size > 50_000_000


@pytest.mark.parametrize("name", FRONTAL_PORTRAITS)
def test_landmarks_on_real_portraits(name):
    path = PORTRAITS / name
    if not path.is_file():
        pytest.skip(f"portrait data set not available ({path} is missing)")
    image = load_portrait(path, LIMIT)
    detection = detect_landmarks(image)
    assert detection is not None, f"dlib found no face in {name}"
    assert_face_geometry(detection.landmarks, detection.box)
    assert face_width(detection.landmarks) > 0.15 * min(image.shape[:2])


def test_landmarks_on_default_portrait(astronaut, astronaut_landmarks):
    assert astronaut.shape == (512, 512, 3) and astronaut.dtype == np.uint8
    assert_face_geometry(astronaut_landmarks, detect_landmarks(astronaut).box)


# --- prepare_avatar and the cache --------------------------------------------


def test_default_portrait_prepares(tmp_path):
    settings = make_settings(tmp_path)
    avatar = prepare_avatar(settings=settings)
    assert isinstance(avatar, PreparedAvatar)
    assert avatar.source == DEFAULT_PORTRAIT_SOURCE
    assert avatar.size == 512
    assert avatar.image.shape == (512, 512, 3) and avatar.image.dtype == np.uint8
    assert avatar.landmarks.shape == (68, 2) and avatar.landmarks.dtype == np.float32
    assert avatar.face_mask.shape == (512, 512) and avatar.face_mask.dtype == np.uint8
    assert set(np.unique(avatar.face_mask)) == {0, 255}
    assert_face_geometry(avatar.landmarks, avatar.face_box)
    # framing: face width 0.42 of the frame, centre at (0.5, 0.45)
    assert face_width(avatar.landmarks) == pytest.approx(0.42 * 512, rel=0.06)
    centre = avatar.landmarks.mean(axis=0)
    assert abs(centre[0] - 256) < 8 and abs(centre[1] - 0.45 * 512) < 8
    assert 0.3 < avatar.inter_ocular / face_width(avatar.landmarks) < 0.6
    # the mask covers the face and the forehead above the brows, not the corners
    nose_x, nose_y = avatar.landmarks[30].round().astype(int)
    brow_top = int(avatar.landmarks[17:27, 1].min())
    assert avatar.face_mask[nose_y, nose_x] == 255
    assert avatar.face_mask[brow_top - 30, nose_x] == 255
    assert avatar.face_mask[0, 0] == 0 and avatar.face_mask[-1, -1] == 0
    # crop box in original pixels: side = face width / face_scale
    x0, y0, side = avatar.crop_box
    assert side == pytest.approx(avatar.source_face_width / 0.42, abs=1)
    assert avatar.source_face_width == pytest.approx(93, abs=5)
    assert not avatar.image.flags.writeable


def test_second_prepare_hits_cache_without_dlib(tmp_path, monkeypatch):
    settings = make_settings(tmp_path)
    first = prepare_avatar(settings=settings)
    cache_file = face_cache.cache_path(settings.cache_dir, first.key)
    assert cache_file.is_file()
    assert [p.name for p in cache_file.parent.iterdir()] == [cache_file.name]  # no temp files

    def no_dlib(*args, **kwargs):
        raise AssertionError("dlib must not run on a cache hit")

    monkeypatch.setattr(face_prepare, "detect_landmarks", no_dlib)
    monkeypatch.setattr(face_prepare, "predict_landmarks", no_dlib)
    second = prepare_avatar(settings=settings)
    assert second.key == first.key
    for field in ("image", "landmarks", "face_mask"):
        np.testing.assert_array_equal(getattr(second, field), getattr(first, field))
    assert second.face_box == first.face_box and second.crop_box == first.crop_box
    assert second.source == first.source
    # other framing settings are another cache entry (and would need dlib)
    with pytest.raises(AssertionError, match="must not run"):
        prepare_avatar(settings=make_settings(tmp_path, face_scale=0.35))


def test_corrupt_cache_file_is_ignored_and_rewritten(tmp_path):
    settings = make_settings(tmp_path)
    first = prepare_avatar(settings=settings)
    cache_file = face_cache.cache_path(settings.cache_dir, first.key)
    cache_file.write_bytes(b"PK\x03\x04 definitely not a zip")
    second = prepare_avatar(settings=settings)
    np.testing.assert_array_equal(second.landmarks, first.landmarks)
    reloaded = face_cache.load_avatar(cache_file, first.key, "x")
    assert reloaded is not None
    np.testing.assert_array_equal(reloaded.image, first.image)


def test_failed_cache_write_leaves_nothing(tmp_path, monkeypatch, astronaut):
    settings = make_settings(tmp_path)

    def failing_savez(file, **arrays):
        file.write(b"half of an npz")
        raise OSError("disk full")

    monkeypatch.setattr(face_cache.np, "savez_compressed", failing_savez)
    avatar = prepare_avatar(astronaut, settings=settings)  # still succeeds
    assert avatar.image.shape == (512, 512, 3)
    assert list((settings.cache_dir / "avatars").iterdir()) == []


def test_use_cache_false_writes_nothing(tmp_path, astronaut):
    settings = make_settings(tmp_path, frame_size=256)
    avatar = prepare_avatar(astronaut, settings=settings, use_cache=False)
    assert avatar.image.shape == (256, 256, 3) and avatar.source == "<array>"
    assert not settings.cache_dir.exists()


def test_face_near_the_border_is_framed_inside_the_photo_or_filled_without_streaks(tmp_path, astronaut):
    from teller_agent.face import framing

    # keep only the lower-right part: the configured crop would leave the image on the left and top
    corner = np.ascontiguousarray(astronaut[60:, 120:])
    avatar = prepare_avatar(corner, settings=make_settings(tmp_path), use_cache=False)
    x0, y0, side = avatar.crop_box
    h, w = corner.shape[:2]
    assert x0 >= 0 and y0 >= 0 and x0 + side <= w and y0 + side <= h  # moved and zoomed in to stay inside
    assert_face_geometry(avatar.landmarks, avatar.face_box)
    # tighter still: no crop fits within the zoom limit, and the band is filled, not replicated
    tight = np.ascontiguousarray(astronaut[90:, 150:])
    avatar = prepare_avatar(tight, settings=make_settings(tmp_path), use_cache=False)
    x0, y0, side = avatar.crop_box
    assert x0 < 0 or y0 < 0 or x0 + side > tight.shape[1] or y0 + side > tight.shape[0]
    assert framing.streak_share(avatar.image) == 0.0
    assert_face_geometry(avatar.landmarks, avatar.face_box)


# --- bad inputs ----------------------------------------------------------------


def test_a_weak_larger_false_detection_does_not_win_over_the_face(tmp_path, astronaut):
    """Mirrored and saved as a JPEG, the astronaut's round mission badge is a weak dlib detection
    larger than her face; the face (a strong detection) must be the one framed."""
    from teller_agent.face.landmarks import detect_faces, get_detector

    path = tmp_path / "mirrored.jpg"
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(path)
    img = np.asarray(Image.open(path).convert("RGB"))
    rects, scores, _ = get_detector().run(img, 0, 0.0)
    if len(rects) < 2:
        pytest.skip("this libjpeg/dlib build does not detect the badge; nothing to choose between")
    (left, top, right, bottom) = detect_faces(img)[0]
    assert bottom < 200, "the badge on the suit was framed instead of the face"
    prepared = prepare_avatar(path, TellerSettings(cache_dir=tmp_path), use_cache=False)
    assert prepared.crop_box[1] < 120


def test_no_face_names_the_file(tmp_path):
    path = save(tmp_path, "coffee_cup.png", skdata.coffee())
    with pytest.raises(NoFaceError, match="coffee_cup.png") as info:
        prepare_avatar(path, settings=make_settings(tmp_path))
    assert "frontal" in str(info.value) and "40 px" in str(info.value)


def test_corrupt_file_raises_image_load_error(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageLoadError, match="broken.jpg"):
        load_portrait(path, LIMIT)
    with pytest.raises(ImageLoadError, match="broken.jpg"):
        prepare_avatar(path, settings=make_settings(tmp_path))


def test_missing_truncated_and_text_files(tmp_path, astronaut):
    with pytest.raises(ImageLoadError, match="not_there.png"):
        load_portrait(tmp_path / "not_there.png", LIMIT)
    jpeg = save(tmp_path, "full.jpg", astronaut, quality=90).read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg[: len(jpeg) // 3])
    with pytest.raises(ImageLoadError, match="truncated"):
        load_portrait(truncated, LIMIT)
    text = tmp_path / "notes.png"
    text.write_text("just some text")
    with pytest.raises(ImageLoadError, match="notes.png"):
        load_portrait(text, LIMIT)
    assert issubclass(ImageLoadError, TellerError)


def test_one_pixel_png_is_too_small(tmp_path):
    path = save(tmp_path, "dot.png", np.zeros((1, 1, 3), dtype=np.uint8))
    with pytest.raises(ImageTooSmallError, match="1x1"):
        load_portrait(path, LIMIT)
    with pytest.raises(ImageTooSmallError):
        prepare_avatar(np.zeros((20, 400, 3), dtype=np.uint8), settings=make_settings(tmp_path))


@pytest.mark.parametrize("side", [20000, 8000])  # beyond Pillow's own limit, and only beyond ours
def test_decompression_bomb_refused_before_decoding(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_fake_size(side, side))
    # decoding the fake file would fail with a plain ImageLoadError (the data
    # is for 64x64), so ImageTooLargeError proves the check ran first
    with pytest.raises(ImageTooLargeError) as info:
        load_portrait(path, LIMIT)
    message = str(info.value)
    assert "TELLER_MAX_IMAGE_PIXELS" in message and "bomb.png" in message
    assert f"{side * side:,}" in message
    with pytest.raises(ImageTooLargeError):
        prepare_avatar(path, settings=make_settings(tmp_path))


def test_max_pixels_limit_applies_to_normal_images(tmp_path, astronaut):
    path = save(tmp_path, "astronaut.png", astronaut)
    with pytest.raises(ImageTooLargeError, match="512x512"):
        load_portrait(path, max_pixels=512 * 511)
    assert load_portrait(path.read_bytes(), max_pixels=512 * 512).shape == (512, 512, 3)


def test_rgba_and_grayscale_portraits(tmp_path, astronaut, astronaut_landmarks):
    alpha = np.full(astronaut.shape[:2], 255, dtype=np.uint8)
    alpha[:40, :40] = 0  # transparent corner, far from the face
    rgba = save(tmp_path, "rgba.png", np.dstack([astronaut, alpha]))
    loaded = load_portrait(rgba, LIMIT)
    assert loaded.shape == (512, 512, 3) and loaded.dtype == np.uint8
    assert (loaded[:40, :40] == 255).all()  # composited on white
    np.testing.assert_array_equal(loaded[100:, 100:], astronaut[100:, 100:])

    gray = save(tmp_path, "gray.png", cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY))
    loaded_gray = load_portrait(gray, LIMIT)
    assert loaded_gray.shape == (512, 512, 3)
    assert (loaded_gray[..., 0] == loaded_gray[..., 2]).all()

    for image in (loaded, loaded_gray):
        landmarks = detect_landmarks(image).landmarks
        assert np.abs(landmarks - astronaut_landmarks).mean() < 2.0


def test_sixteen_bit_and_palette_pngs(tmp_path, astronaut):
    gray16 = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    path16 = tmp_path / "gray16.png"
    Image.fromarray(gray16).save(path16)
    loaded = load_portrait(path16, LIMIT)
    assert loaded.dtype == np.uint8 and loaded.shape == (64, 64, 3)
    np.testing.assert_allclose(loaded[..., 0], gray16 / 257.0, atol=0.51)

    palette = tmp_path / "palette.png"
    Image.fromarray(astronaut).quantize(64).save(palette)
    assert np.abs(load_portrait(palette, LIMIT).astype(int) - astronaut).mean() < 12


@pytest.mark.parametrize("orientation, stored_rotation", [(6, 1), (8, -1)])
def test_exif_orientation_is_applied(tmp_path, astronaut, orientation, stored_rotation):
    upright = np.ascontiguousarray(astronaut[:, 56:456])  # 512 tall, 400 wide
    # Orientation 6 means "rotate 90 degrees clockwise to display", so the
    # stored pixels are the upright image turned counter-clockwise (and 8 the reverse).
    stored = np.ascontiguousarray(np.rot90(upright, stored_rotation))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(tmp_path, f"rotated{orientation}.jpg", stored, quality=95, exif=exif)
    loaded = load_portrait(path, LIMIT)
    assert loaded.shape == upright.shape
    assert np.abs(loaded.astype(int) - upright).mean() < 4
    avatar = prepare_avatar(path, settings=make_settings(tmp_path), use_cache=False)
    assert_face_geometry(avatar.landmarks, avatar.face_box)


def test_small_face_is_refused(tmp_path, astronaut):
    small = cv2.resize(astronaut, (138, 138), interpolation=cv2.INTER_AREA)  # face ~25 px wide
    path = save(tmp_path, "far_away.png", small)
    with pytest.raises(FaceTooSmallError, match="40 px") as info:
        prepare_avatar(path, settings=make_settings(tmp_path))
    assert "far_away.png" in str(info.value)
    width = float(str(info.value).split(" is only ")[1].split(" px")[0])
    assert 18 < width < 32


def test_bad_array_input_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        prepare_avatar(np.zeros((64, 64, 3), dtype=np.float32), settings=make_settings(tmp_path))
    with pytest.raises(TypeError):
        prepare_avatar(12345, settings=make_settings(tmp_path))


def test_settings_avatar_image_is_the_default_input(tmp_path, astronaut):
    path = save(tmp_path, "configured.png", astronaut)
    avatar = prepare_avatar(settings=make_settings(tmp_path, avatar_image=path))
    assert avatar.source == str(path)
    from_bytes = prepare_avatar(path.read_bytes(), settings=make_settings(tmp_path))
    assert from_bytes.key == avatar.key  # same photo bytes, same framing -> same cache entry
