"""Motion extraction from talking-head videos: synthetic round trips and one real clip.

The real-clip test reads ``../shared/data/talking`` and skips with a reason when it is absent.
"""

from __future__ import annotations

import numpy as np
import pytest

from teller_agent.face.face68 import inner_lip_gap
from teller_agent.data import (
    extract_clip,
    fit_motion,
    landmarks_to_motion,
    load_clip_audio,
    load_record,
    save_record,
    track_landmarks,
)
from teller_agent.data.extract import _rot64
from teller_agent.errors import AudioLoadError, TellerError
from teller_agent.motion import FACE68, MotionLatent, expression, rotation_matrix

REAL_CLIP = "deep_avsr__00001.mp4"  # 4.8 s, 160x160 LRS2 crop, own audio track


def _synthetic(portrait, num_frames: int = 200):
    """A known motion: a few degrees of head rotation, translation, scale and jaw opening."""
    t = np.arange(num_frames) / 25.0
    m = MotionLatent.neutral(num_frames, 68)
    m.yaw[:] = 8 * np.sin(2 * np.pi * t / 4)
    m.pitch[:] = 5 * np.sin(2 * np.pi * t / 3 + 1)
    m.roll[:] = 4 * np.sin(2 * np.pi * t / 5 + 2)
    m.t[:, 0] = 0.05 * np.sin(2 * np.pi * t / 6)
    m.t[:, 1] = 0.03 * np.cos(2 * np.pi * t / 7)
    m.scale[:] = 1 + 0.05 * np.sin(2 * np.pi * t / 8)
    jaw = 0.6 * np.clip(np.sin(2 * np.pi * 1.3 * t), 0, None)
    m.exp[:] = expression(jaw_open=jaw)
    return m, jaw


@pytest.fixture(scope="module")
def portrait(avatar):
    return FACE68.lift(avatar.landmarks, avatar.size)


def test_rotation_twin_matches_rotation_matrix():
    angles = np.random.default_rng(0).normal(size=(20, 3))
    assert np.allclose(_rot64(angles), rotation_matrix(*np.rad2deg(angles).T), atol=1e-6)


def test_synthetic_round_trip(portrait):
    truth, jaw = _synthetic(portrait)
    crop = portrait.drive(truth)[..., :2]
    # Into the pixels of a larger "video": 768-px crop placed at (100, 50) in a 1000x900 frame.
    pixels = (crop + 1.0) * 384.0 + np.array([100.0, 50.0])
    fit = fit_motion(pixels, None, (1000, 900))
    got = fit.motion
    assert got.num_frames == truth.num_frames and fit.valid.all()
    # The rest pose is the clip's median pose, so compare offsets from the median.
    for name, tol in (("pitch", 1.5), ("yaw", 1.5), ("roll", 0.5)):
        est, tru = getattr(got, name), getattr(truth, name)
        err = np.abs((est - np.median(est)) - (tru - np.median(tru))).max()
        assert err < tol, f"{name} off by {err:.2f} deg"
        assert abs(np.median(est) - np.median(tru)) < tol
    gap = inner_lip_gap(fit.portrait.drive(got))
    assert np.corrcoef(gap, jaw)[0, 1] > 0.95
    assert fit.reproj_error_px < 0.5 and fit.stats["raw_reproj_error_px"] < 1e-3
    # The virtual crop has the default framing: face width 2 * 0.42 crop units.
    assert fit.portrait.scale == pytest.approx(0.84, rel=0.03)


def test_exact_reconstruction_without_smoothing(portrait):
    truth, _ = _synthetic(portrait, 60)
    pixels = (portrait.drive(truth)[..., :2] + 1.0) * 256.0
    fit = fit_motion(pixels, smooth=False)
    driven = fit.portrait.drive(fit.motion)[..., :2]
    assert np.abs(driven - fit.observed).max() * 256 < 1e-3  # pixels at 512
    assert np.allclose(fit.motion.exp[..., 2], 0.0)


def test_invalid_frames_are_interpolated_and_smoothing_is_light(portrait):
    truth, jaw = _synthetic(portrait, 150)
    pixels = (portrait.drive(truth)[..., :2] + 1.0) * 256.0
    pixels = pixels + np.random.default_rng(1).normal(scale=0.5, size=pixels.shape)  # dlib-like jitter
    valid = np.ones(150, bool)
    valid[40:46] = False
    pixels[40:46] = np.nan
    pixels[100] = pixels[100] * 0.3 + 200  # a broken frame: the rigid fit flags it
    motion, rest = landmarks_to_motion(pixels, valid)
    assert np.all(np.isfinite(motion.flat()))
    yaw = motion.yaw - np.median(motion.yaw)
    assert np.abs(yaw[40:46] - (truth.yaw[40:46] - np.median(truth.yaw))).max() < 1.5
    assert abs(yaw[100] - (truth.yaw[100] - np.median(truth.yaw))) < 1.5
    assert np.corrcoef(inner_lip_gap(rest.drive(motion)), jaw)[0, 1] > 0.95


def test_rest_mouth_is_closed(portrait):
    truth, jaw = _synthetic(portrait)
    fit = fit_motion((portrait.drive(truth)[..., :2] + 1.0) * 256.0)
    rest_gap = inner_lip_gap(fit.portrait.rest()) / fit.portrait.scale
    assert rest_gap == pytest.approx(inner_lip_gap(portrait.rest()) / portrait.scale, abs=0.01)


def test_no_valid_frame_is_a_clear_error():
    with pytest.raises(TellerError, match="no valid frame"):
        fit_motion(np.full((5, 68, 2), np.nan))


def test_record_round_trip(tmp_path, portrait):
    truth, _ = _synthetic(portrait, 30)
    motion, rest = landmarks_to_motion((portrait.drive(truth)[..., :2] + 1.0) * 256.0)
    record = {"motion": motion, "portrait": rest, "audio": np.zeros(19200, np.float32), "sample_rate": 16000,
              "valid": np.ones(30, bool), "fps": 25, "reproj_error_px": 0.1, "source": "x.mp4"}
    path = save_record(record, tmp_path / "clip.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npz"]  # no temporary left behind
    back = load_record(path)
    assert np.array_equal(back["motion"].flat(), motion.flat())
    assert np.allclose(back["portrait"].rest(), rest.rest())
    assert back["fps"] == 25 and back["audio"].shape == (19200,) and back["source"] == "x.mp4"
    with pytest.raises(TellerError):
        load_record(tmp_path / "missing.npz")


def test_silent_video_without_partner_is_a_clear_error(tmp_path):
    from teller_agent.media import VideoWriter

    path = tmp_path / "silent.mp4"
    with VideoWriter(path, size=(64, 64)) as w:
        for _ in range(5):
            w.write(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(AudioLoadError, match="silent.wav"):
        load_clip_audio(path)


def test_real_clip(shared_data, tmp_path):
    from teller_agent.media import probe

    path = shared_data / "talking" / REAL_CLIP
    if not path.is_file():
        pytest.skip(f"{path} is absent from the shared data folder")
    clip = track_landmarks(path, audio=False)
    duration = probe(path)["duration"]
    assert abs(clip.num_frames - duration * 25) <= 1
    assert clip.valid.mean() > 0.9
    assert clip.landmarks.shape == (clip.num_frames, 68, 2) and clip.frame_size == (160, 160)

    record = extract_clip(path)
    motion, rest = record["motion"], record["portrait"]
    assert motion.num_frames == clip.num_frames and record["fps"] == 25 and record["valid"].mean() > 0.9
    assert record["sample_rate"] == 16000 and abs(len(record["audio"]) / 16000 - motion.num_frames / 25) < 0.1
    gap = inner_lip_gap(rest.drive(motion)) / rest.scale  # face widths
    assert np.percentile(gap, 95) - np.percentile(gap, 5) > 0.02  # the mouth moves with speech
    assert record["reproj_error_px"] < 3.0
    assert np.abs(motion.yaw).max() < 45
    back = load_record(save_record(record, tmp_path / "real.npz"))
    assert np.array_equal(back["motion"].flat(), motion.flat()) and np.array_equal(back["audio"], record["audio"])
