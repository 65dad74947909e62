"""Motion latent, spaces and procedural motion."""

from __future__ import annotations

import numpy as np
import pytest

from teller_agent.errors import MotionFileError
from teller_agent.motion import FACE68, LIVEPORTRAIT21, MotionLatent, PortraitKeypoints, procedural_motion, rotation_matrix


def _random_latent(n=7, k=68, seed=0) -> MotionLatent:
    rng = np.random.default_rng(seed)
    return MotionLatent(rng.normal(size=(n, k, 3)) * 0.01, rng.normal(size=n), rng.normal(size=n),
                        rng.normal(size=n), rng.normal(size=(n, 3)) * 0.01, 1 + rng.normal(size=n) * 0.01,
                        "face68" if k == 68 else "liveportrait21")


def test_flat_view_round_trip_and_layout():
    m = _random_latent()
    flat = m.flat()
    assert flat.shape == (7, 3 * 68 + 7) and flat.dtype == np.float32
    assert np.allclose(flat[:, 204], m.pitch) and np.allclose(flat[:, -1], m.scale)
    back = MotionLatent.from_flat(flat, 68)
    assert np.array_equal(back.flat(), flat)


def test_liveportrait_space_has_21_keypoints():
    m = _random_latent(k=21)
    assert LIVEPORTRAIT21.dim == m.dim == 70
    assert MotionLatent.from_flat(m.flat(), 21, "liveportrait21").num_keypoints == 21
    portrait = PortraitKeypoints(np.random.default_rng(1).normal(size=(21, 3)).astype(np.float32), 0, 0, 0,
                                 np.zeros(3, np.float32), 1.0)
    assert portrait.drive(m).shape == (7, 21, 3)
    with pytest.raises(ValueError):
        LIVEPORTRAIT21.lift(np.zeros((21, 2)), 512)


def test_save_load(tmp_path):
    m = _random_latent()
    path = tmp_path / "m.npz"
    m.save(path)
    back = MotionLatent.load(path, space="face68")
    assert np.array_equal(back.flat(), m.flat()) and back.space == "face68"
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_load_errors(tmp_path):
    with pytest.raises(MotionFileError, match="does not exist"):
        MotionLatent.load(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(MotionFileError, match="not a readable"):
        MotionLatent.load(bad)
    other = tmp_path / "lp.npz"
    _random_latent(k=21).save(other)
    with pytest.raises(MotionFileError, match="liveportrait21"):
        MotionLatent.load(other, space="face68")


def test_rotation_matches_liveportrait_convention():
    pitch, yaw, roll = 10.0, -20.0, 5.0
    p, y, r = np.deg2rad([pitch, yaw, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    expected = (rz @ ry @ rx).T
    got = rotation_matrix(pitch, yaw, roll)
    assert np.allclose(got, expected, atol=1e-6)
    assert np.allclose(got @ got.T, np.eye(3), atol=1e-6)
    # Sign conventions documented in latent.py: +yaw moves a point in front (z > 0) to +x.
    assert (np.array([0, 0, 1.0]) @ rotation_matrix(0, 10, 0))[0] > 0
    assert (np.array([0, 0, 1.0]) @ rotation_matrix(10, 0, 0))[1] < 0


def test_lift_reproduces_landmarks_and_neutral_drive_is_rest():
    rng = np.random.default_rng(3)
    theta = np.deg2rad(7)
    base = np.stack([np.linspace(150, 350, 68), 250 + 60 * np.sin(np.linspace(0, 6, 68))], 1)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    lm = (base - 256) @ rot.T + 256 + rng.normal(size=(68, 2))
    portrait = FACE68.lift(lm, 512)
    rest_px = (portrait.rest()[:, :2] + 1) * 256
    assert np.allclose(rest_px, lm, atol=1e-3)
    assert np.allclose(portrait.drive(FACE68.neutral(3)), portrait.rest()[None], atol=1e-6)
    # Canonical keypoints are in face widths: jaw ends one unit apart.
    assert np.isclose(np.linalg.norm(portrait.canonical[16, :2] - portrait.canonical[0, :2]), 1.0, atol=1e-4)


def test_procedural_motion_is_seeded_and_alive():
    a, b, c = procedural_motion(250, seed=1), procedural_motion(250, seed=1), procedural_motion(250, seed=2)
    assert np.array_equal(a.flat(), b.flat()) and not np.array_equal(a.flat(), c.flat())
    blink = a.exp[:, 37, 1]
    assert blink.max() > 0.05, "10 s of motion should contain a blink"
    assert np.ptp(a.yaw) > 1.0 and np.ptp(a.exp[:, 66, 1]) > 0.02
    quiet = procedural_motion(100, seed=1, talking=False)
    assert np.abs(quiet.exp[:, 66, 1] - quiet.exp[:, 62, 1]).max() < 1e-6, "not talking: lips stay together"
    follows = procedural_motion(50, mouth=np.r_[np.zeros(25), np.ones(25)])
    assert follows.exp[30:, 66, 1].mean() > follows.exp[:20, 66, 1].mean() + 0.05
