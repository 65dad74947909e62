"""Lip-sync metrics on synthetic face68 trajectories with known answers."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from teller_agent.eval import metrics as m
from teller_agent.face import face68 as f68

# -- a synthetic 68-point face -------------------------------------------------------
# Template in "face units" (x right, y down; the jaw spans x in [-1, 1]), iBUG order.
_JAW = [(-math.cos(math.pi * i / 16), 1.2 * math.sin(math.pi * i / 16)) for i in range(17)]
_BROWS = [(-0.8 + 0.15 * i, -0.55 - 0.08 * math.sin(math.pi * i / 4)) for i in range(5)]
_BROWS += [(-x, y) for x, y in reversed(_BROWS)]
_NOSE = [(0.0, -0.3 + 0.18 * i) for i in range(4)] + [(-0.2 + 0.1 * i, 0.35 - 0.03 * (i in (0, 4))) for i in range(5)]
_EYE_L = [(-0.6, -0.25), (-0.5, -0.3), (-0.4, -0.3), (-0.3, -0.25), (-0.4, -0.2), (-0.5, -0.2)]
_EYE_R = [(0.3, -0.25), (0.4, -0.3), (0.5, -0.3), (0.6, -0.25), (0.5, -0.2), (0.4, -0.2)]
_LIPS_OUT = [(-0.35, 0.65), (-0.22, 0.58), (-0.08, 0.55), (0.0, 0.57), (0.08, 0.55), (0.22, 0.58),
             (0.35, 0.65), (0.22, 0.75), (0.08, 0.8), (0.0, 0.8), (-0.08, 0.8), (-0.22, 0.75)]
_LIPS_IN = [(-0.28, 0.65), (-0.1, 0.63), (0.0, 0.63), (0.1, 0.63), (0.28, 0.65), (0.1, 0.67), (0.0, 0.67),
            (-0.1, 0.67)]
TEMPLATE = np.array(_JAW + _BROWS + _NOSE + _EYE_L + _EYE_R + _LIPS_OUT + _LIPS_IN, np.float64)
TEMPLATE_IOD = 0.9  # eye centres at x = -0.45 and 0.45
TEMPLATE_GAP = 0.04  # inner-lip gap of the closed template
TEMPLATE_EAR = 1 / 3  # lid gap 0.1 over eye width 0.3
LOWER_LIP = [55, 56, 57, 58, 59, 65, 66, 67]
UPPER_LIDS, LOWER_LIDS = [37, 38, 43, 44], [40, 41, 46, 47]

IOD_PX = 60.0
CENTRE = np.array([256.0, 250.0])


def face(opening=0.0, closure=0.0, iod_px=IOD_PX, centre=CENTRE, roll_deg=0.0) -> np.ndarray:
    """(T, 68, 2) pixel trajectory: jaw/lower lip down by ``opening`` face units, lids ``closure`` in [0, 1]."""
    opening, closure = np.broadcast_arrays(np.atleast_1d(np.asarray(opening, float)),
                                           np.atleast_1d(np.asarray(closure, float)))
    pts = np.repeat(TEMPLATE[None], len(opening), axis=0)
    pts[:, LOWER_LIP, 1] += opening[:, None]
    pts[:, 4:13, 1] += opening[:, None] * np.sin(np.linspace(0.3, math.pi - 0.3, 9))  # lower jaw follows
    pts[:, UPPER_LIDS, 1] += 0.05 * closure[:, None]
    pts[:, LOWER_LIDS, 1] -= 0.05 * closure[:, None]
    return similarity(pts * (iod_px / TEMPLATE_IOD), roll_deg, 1.0, centre)


def similarity(landmarks: np.ndarray, angle_deg: float, scale: float, translation) -> np.ndarray:
    """Rotate about the origin by ``angle_deg``, scale, then translate, every frame."""
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    return scale * landmarks @ rot + np.asarray(translation, float)


def smooth_series(n: int, seed: int = 0) -> np.ndarray:
    """(n,) random smooth series: white noise through a 9-tap moving average (~360 ms)."""
    noise = np.random.default_rng(seed).normal(size=n + 8)
    return np.convolve(noise, np.ones(9) / 9, mode="valid")


def speech_openings(n: int, seed: int = 0) -> np.ndarray:
    """(n,) mouth openings in face units, 0 to about 0.3, smooth."""
    s = smooth_series(n, seed)
    return 0.3 * (s - s.min()) / (s.max() - s.min())


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# -- the synthetic face itself -----------------------------------------------------------


def test_index_sets_match_the_face68_space():
    from teller_agent.motion.space import FACE68

    g = FACE68.groups
    assert f68.RIGHT_EYE == g["eye_right"] == tuple(range(36, 42)) and f68.LEFT_EYE == g["eye_left"]
    assert f68.NOSE == g["nose"] and f68.LIPS == g["lips_outer"] + g["lips_inner"]
    lids = g["upper_lid_left"] + g["lower_lid_left"] + g["upper_lid_right"] + g["lower_lid_right"]
    assert set(lids) == set(f68.EYELIDS)
    assert set(f68.RIGID_POINTS).isdisjoint(g["jaw"] + f68.LIPS + lids + f68.BROWS)
    assert set(f68.RIGID_POINTS) < set(f68.POSE_FIT_POINTS) and len(f68.POSE_FIT_WEIGHTS) == len(f68.POSE_FIT_POINTS)


def test_geometry_of_the_template_face():
    lm = face(roll_deg=17.0)
    assert m.inter_ocular_distance(lm) == pytest.approx([IOD_PX])
    assert m.eye_aspect_ratio(lm) == pytest.approx([TEMPLATE_EAR])
    assert m.mouth_opening(lm) == pytest.approx([TEMPLATE_GAP / TEMPLATE_IOD])
    assert m.mouth_opening(face(opening=0.18)) == pytest.approx([(TEMPLATE_GAP + 0.18) / TEMPLATE_IOD])
    assert m.eye_aspect_ratio(face(closure=1.0)) == pytest.approx([0.0], abs=1e-12)


def test_mouth_opening_ignores_pose_and_size():
    openings = speech_openings(50)
    a = m.mouth_opening(face(openings))
    b = m.mouth_opening(similarity(face(openings), 25.0, 0.4, (-30.0, 12.0)))
    np.testing.assert_allclose(a, b, rtol=1e-12)


# -- pearson, lag, shift ---------------------------------------------------------------------


def test_identical_trajectories_give_r_1_and_lve_0(no_warnings):
    lm = face(speech_openings(200), roll_deg=5.0)
    assert m.pearson(m.mouth_opening(lm), m.mouth_opening(lm)) == pytest.approx(1.0, abs=1e-12)
    assert m.lip_vertex_error(lm, lm.copy()) == 0.0
    summary = m.summarize(lm, lm.copy())
    assert summary["mouth_r"] == pytest.approx(1.0, abs=1e-12) and summary["lve"] == 0.0
    assert summary["best_lag"] == 0


def test_pearson_known_values_and_errors():
    x = smooth_series(100)
    assert m.pearson(x, -2.0 * x + 3.0) == pytest.approx(-1.0, abs=1e-12)
    assert m.pearson([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        m.pearson(x, x[:-1])
    with pytest.raises(ValueError):
        m.pearson(np.zeros((3, 2)), np.zeros((3, 2)))


def test_constant_series_give_r_0_without_nan_or_warnings(no_warnings):
    x = smooth_series(100)
    for const in (np.zeros(100), np.full(100, 0.1), np.full(100, 0.1) * 3.0, np.full(100, 1e12)):
        assert m.pearson(const, x) == 0.0 and m.pearson(x, const) == 0.0 and m.pearson(const, const) == 0.0
        assert m.best_lag(const, x) == 0 and m.best_lag(x, const) == 0
    # np.full(100, 0.1).mean() != 0.1: without the constant check, r would correlate rounding noise.
    assert np.any(np.full(100, 0.1) - np.full(100, 0.1).mean() != 0)
    # Values one ulp apart are constant too (e.g. a still face after per-frame alignment).
    ulp_ramp = 0.1 + np.arange(7) * np.spacing(0.1)
    assert m.pearson(ulp_ramp, np.arange(7.0)) == 0.0


def test_constant_trajectory_summary_is_finite_without_warnings(no_warnings):
    moving = face(speech_openings(100), closure=np.zeros(100))
    still = face(np.zeros(100))
    for pred, true in ((still, moving), (moving, still), (still, still), (np.zeros((100, 68, 2)),) * 2):
        summary = m.summarize(pred, true)
        assert all(math.isfinite(v) for v in summary.values()), summary
    assert m.summarize(still, moving)["mouth_r"] == 0.0
    summary = m.summarize(still, still)
    assert summary["lve"] == 0.0 and summary["mouth_velocity_pred"] == 0.0 and summary["mouth_jitter_true"] == 0.0
    assert summary["blink_rate_pred"] == 0.0


@pytest.mark.parametrize("k", [-7, -3, -1, 1, 2, 5, 8])
def test_best_lag_recovers_a_known_shift(k, no_warnings):
    true = smooth_series(250, seed=k + 10)
    assert m.best_lag(m.shift(true, k), true) == k  # edge-padded shift
    longer = smooth_series(270, seed=k + 20)  # and a true delay, no padding: pred[t] = true[t - k]
    pred, true = longer[10 - k : 260 - k], longer[10:260]
    assert m.best_lag(pred, true, max_lag=8) == k
    assert m.lagged_pearson(pred, true, k) == pytest.approx(1.0, abs=1e-12)


def test_best_lag_sign_convention_and_limits(no_warnings):
    true = np.array([0, 0, 1, 0, 0, 0], float)
    pred = np.array([0, 0, 0, 1, 0, 0], float)  # the same event one frame later
    assert m.best_lag(pred, true) == 1 and m.best_lag(true, pred) == -1
    assert m.best_lag(pred, true, max_lag=0) == 0
    assert m.best_lag([], []) == 0 and m.best_lag([1.0], [2.0]) == 0
    with pytest.raises(ValueError):
        m.best_lag(pred, true, max_lag=-1)


def test_best_lag_on_landmarks_of_a_late_prediction():
    openings = speech_openings(300, seed=3)
    summary = m.summarize(m.shift(face(openings), 3), face(openings))
    assert summary["best_lag"] == 3 and summary["best_lag_r"] == pytest.approx(1.0)
    assert summary["mouth_r"] < 0.9


def test_shift_is_edge_padded():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(m.shift(x, 1), [1.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(m.shift(x, -2), [3.0, 4.0, 4.0, 4.0])
    np.testing.assert_array_equal(m.shift(x, 0), x)
    np.testing.assert_array_equal(m.shift(x, 9), [1.0] * 4)
    assert m.shift(np.zeros((0, 68, 2)), 3).shape == (0, 68, 2)
    lm = face(speech_openings(10))
    np.testing.assert_array_equal(m.shift(lm, 2)[5], lm[3])


# -- pose normalisation and LVE ------------------------------------------------------------------


def test_normalize_pose_puts_the_reference_in_iod_units():
    lm = similarity(face(speech_openings(20)), 30.0, 2.5, (40.0, -7.0))
    out = m.normalize_pose(lm)
    left, right = out[0, list(f68.RIGHT_EYE)].mean(0), out[0, list(f68.LEFT_EYE)].mean(0)  # image left, right
    np.testing.assert_allclose(right - left, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(out[:, list(f68.RIGID_POINTS)].mean(1), 0.0, atol=1e-12)
    # Every frame shares the reference's stable points (they only moved rigidly).
    np.testing.assert_allclose(out[:, list(f68.RIGID_POINTS)], np.broadcast_to(out[:1, list(f68.RIGID_POINTS)],
                                                                              (20, 13, 2)), atol=1e-12)
    assert m.normalize_pose(np.zeros((0, 68, 2))).shape == (0, 68, 2)


def test_lve_is_invariant_to_pose_and_size():
    true = face(speech_openings(60, seed=1))
    pred = face(speech_openings(60, seed=2), roll_deg=3.0)
    base = m.lip_vertex_error(pred, true)
    assert base > 0.05
    for angle, scale, translation in ((20.0, 1.0, (0, 0)), (0.0, 0.37, (0, 0)), (0.0, 1.0, (-80.0, 33.0)),
                                      (-35.0, 2.2, (15.0, 120.0))):
        assert m.lip_vertex_error(similarity(pred, angle, scale, translation), true) == pytest.approx(base, rel=1e-9)
        assert m.lip_vertex_error(pred, similarity(true, angle, scale, translation)) == pytest.approx(base, rel=1e-9)


def test_lve_of_a_known_lip_displacement():
    true = face(speech_openings(40), roll_deg=0.0)
    pred = true.copy()
    pred[:, list(f68.LIPS), 1] += 0.1 * IOD_PX  # all lips 0.1 inter-ocular distances down
    assert m.lip_vertex_error(pred, true) == pytest.approx(0.1, rel=1e-9)
    # The same in a rotated, smaller copy of the prediction.
    assert m.lip_vertex_error(similarity(pred, 40.0, 0.5, (3.0, 4.0)), true) == pytest.approx(0.1, rel=1e-9)
    # Jaw and blink differences do not move the alignment (stable points only).
    blinking = pred.copy()
    blinking[:, UPPER_LIDS, 1] += 5.0
    blinking[:, list(range(17)), 1] += 20.0
    assert m.lip_vertex_error(blinking, true) == pytest.approx(0.1, rel=1e-9)


def test_lve_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        m.lip_vertex_error(face(np.zeros(5)), face(np.zeros(6)))
    with pytest.raises(ValueError):
        m.lip_vertex_error(np.zeros((5, 21, 2)), np.zeros((5, 21, 2)))


# -- smoothness -----------------------------------------------------------------------------------------


def test_velocity_and_jitter(no_warnings):
    ramp = 0.3 * np.arange(50) + 2.0
    assert m.jitter(ramp) == pytest.approx(0.0, abs=1e-12)
    assert m.velocity(ramp) == pytest.approx(0.3)
    zigzag = np.array([0.0, 1.0, 0.0, 1.0, 0.0])
    assert m.velocity(zigzag) == 1.0 and m.jitter(zigzag) == 2.0
    for short in ([], [1.0], [1.0, 2.0]):
        assert m.jitter(short) == 0.0
    assert m.velocity([]) == 0.0 and m.velocity([4.0]) == 0.0 and m.velocity([1.0, 3.0]) == 2.0
    trajectory = face(np.linspace(0.0, 0.2, 30))
    assert m.jitter(trajectory) == pytest.approx(0.0, abs=1e-9)  # linear landmark motion


# -- blinks ------------------------------------------------------------------------------------------------


def test_blink_rate_of_five_dips_in_30_seconds(no_warnings):
    rng = np.random.default_rng(0)
    ear = 0.3 + 0.005 * rng.normal(size=30 * 25)
    profile = np.array([0.2, 0.1, 0.05, 0.1, 0.15, 0.22])
    for start in (60, 200, 350, 500, 690):
        ear[start : start + len(profile)] = profile
    assert m.count_blinks(ear) == 5
    assert m.blink_rate(ear, fps=25) == pytest.approx(10.0)


def test_blink_hysteresis_counts_a_noisy_dip_once():
    ear = np.full(100, 0.3)
    ear[40:48] = [0.15, 0.19, 0.17, 0.2, 0.16, 0.19, 0.21, 0.17]  # crosses 0.6 * median (0.18) repeatedly
    assert m.count_blinks(ear) == 1
    assert m.count_blinks(ear, release=0.6) == 4  # without hysteresis every crossing counts
    assert m.count_blinks(ear, min_frames=2) == 0


def test_blink_rate_from_landmarks_and_edge_cases(no_warnings):
    closure = np.zeros(25 * 20)
    for start in (50, 180, 300, 420):
        closure[start : start + 4] = [0.6, 1.0, 1.0, 0.5]
    assert m.blink_rate(m.eye_aspect_ratio(face(closure=closure))) == pytest.approx(12.0)  # 4 in 20 s
    assert m.blink_rate([]) == 0.0 and m.blink_rate([0.3]) == 0.0 and m.blink_rate(np.zeros(10)) == 0.0
    with pytest.raises(ValueError):
        m.blink_rate(np.ones(10), fps=0)


# -- empty and one-frame clips ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1])
def test_summary_of_empty_and_one_frame_clips(n, no_warnings):
    lm = face(np.zeros(n)) if n else np.zeros((0, 68, 2))
    summary = m.summarize(lm, lm)
    assert summary["num_frames"] == n and summary["duration_s"] == n / 25
    assert {k: v for k, v in summary.items() if k not in ("num_frames", "duration_s")} == dict.fromkeys(
        ["mouth_r", "lve", "best_lag", "best_lag_r", "mouth_std_pred", "mouth_std_true", "mouth_velocity_pred",
         "mouth_velocity_true",
         "mouth_jitter_pred", "mouth_jitter_true", "blink_rate_pred", "blink_rate_true"], 0)
    assert m.mouth_opening(lm).shape == (n,) and m.eye_aspect_ratio(lm).shape == (n,)
    with pytest.raises(ValueError):
        m.summarize(lm, face(np.zeros(n + 1)))


# -- many clips ------------------------------------------------------------------------------------


def test_mean_summary_averages_metrics_and_sums_lengths(no_warnings):
    rise = speech_openings(100, seed=2)
    a = m.summarize(face(rise), face(rise))  # r 1, lag 0
    b = m.summarize(face(m.shift(rise, 3)), face(rise))  # lag +3
    c = m.summarize(face(m.shift(rise, -3)), face(rise))  # lag -3
    mean = m.mean_summary([a, b, c])
    assert mean["clips"] == 3
    assert mean["num_frames"] == 300 and mean["duration_s"] == pytest.approx(12.0)
    assert mean["mouth_r"] == pytest.approx((a["mouth_r"] + b["mouth_r"] + c["mouth_r"]) / 3)
    assert mean["best_lag"] == pytest.approx(0.0) and mean["abs_best_lag"] == pytest.approx(2.0)
    assert mean["lve"] == pytest.approx((b["lve"] + c["lve"]) / 3) and a["lve"] == 0.0


def test_mean_summary_edge_cases():
    assert m.mean_summary([]) == {"clips": 0}
    one = m.summarize(face(np.zeros(5)), face(np.zeros(5)))
    assert m.mean_summary([one]) == {**one, "clips": 1, "best_lag": 0.0, "abs_best_lag": 0.0}
    assert all(math.isfinite(v) for v in m.mean_summary([one, one]).values())
    with pytest.raises(ValueError):
        m.mean_summary([one, {"mouth_r": 1.0}])
