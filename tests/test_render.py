"""The CPU warp renderer on the bundled portrait: each check measures pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from teller_agent.motion import MotionLatent, expression


def _motion(**kw) -> MotionLatent:
    m = MotionLatent.neutral(1, 68)
    exp = {k: v for k, v in kw.items() if k not in ("yaw", "pitch", "roll", "tx", "ty")}
    if exp:
        m.exp[:] = expression(**exp)
    m.yaw[:], m.pitch[:], m.roll[:] = kw.get("yaw", 0), kw.get("pitch", 0), kw.get("roll", 0)
    m.t[:, 0], m.t[:, 1] = kw.get("tx", 0), kw.get("ty", 0)
    return m


def _polygon_mask(shape, points) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def test_zero_motion_returns_the_crop(renderer, avatar):
    frame = renderer.render_frame(MotionLatent.neutral(1, 68))
    assert frame.shape == avatar.image.shape and frame.dtype == np.uint8
    err = np.abs(frame.astype(np.float32) - avatar.image)[8:-8, 8:-8].mean() / 255.0
    assert err < 2 / 255


def test_opening_the_jaw_darkens_the_mouth(renderer, avatar):
    closed = renderer.render_frame(_motion())
    motion = _motion(jaw_open=0.8)
    opened = renderer.render_frame(motion)
    inner = renderer.warp.driven(motion)[0][0, 60:68]
    mask = _polygon_mask(opened.shape, inner)
    assert mask.sum() > 100, "the driven inner lips should enclose an opening"
    dark = lambda img: int((cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[mask] < 60).sum())
    assert dark(opened) > dark(closed) + 0.3 * mask.sum()


def test_blink_covers_the_eye(renderer, avatar):
    eye = _polygon_mask(avatar.image.shape, avatar.landmarks[36:42]) | _polygon_mask(
        avatar.image.shape, avatar.landmarks[42:48]
    )
    open_ = renderer.render_frame(_motion())
    shut = renderer.render_frame(_motion(blink_left=1.0, blink_right=1.0))
    # the photo's skin between each eye and its brow (40% of the way from the lid to the brow)
    lm = avatar.landmarks
    spots = [lm[[37, 38]].mean(0) + 0.4 * (lm[[18, 19, 20]].mean(0) - lm[[37, 38]].mean(0)),
             lm[[43, 44]].mean(0) + 0.4 * (lm[[23, 24, 25]].mean(0) - lm[[43, 44]].mean(0))]
    skin = np.mean([np.median(avatar.image[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3].reshape(-1, 3), 0)
                    for x, y in spots], axis=0).astype(np.float32)
    dist = lambda img: np.linalg.norm(img[eye].astype(np.float32) - skin, axis=1)
    # Iris, pupil and sclera give way to lid skin: the eye region moves toward skin tone
    # and loses its dark pixels.
    assert dist(shut).mean() < 0.6 * dist(open_).mean()
    gray = lambda img: cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[eye]
    assert (gray(shut) < 70).sum() < 0.5 * max((gray(open_) < 70).sum(), 1)


def _closed_lid_vs_skin(renderer) -> tuple[float, float]:
    """(colour distance, grain ratio) of the closed lids against the skin just above them, both eyes
    averaged: CIE76 distance in Lab of the mean colours (the middle half of the eye, between the lid's
    feathered top and its lash line, against the skin from half to one and a half feather widths above
    the top), and the std of the lightness high-pass (Gaussian, sigma 1.5 px) inside the lid over the
    same in that skin."""
    from teller_agent.render.mouth_atlas import smooth_chain
    from teller_agent.render.paint import lid_edge
    from teller_agent.render.renderer import _EYES

    motion = _motion(blink_left=1.0, blink_right=1.0)
    lab = cv2.cvtColor(renderer.render_frame(motion), cv2.COLOR_RGB2Lab).astype(np.float32)
    grain = lab[..., 0] - cv2.GaussianBlur(lab[..., 0], (0, 0), 1.5)
    face, rigid = (a[0] for a in renderer.warp.driven(motion))
    out = []
    for upper, lower in _EYES:
        rest = rigid[list(upper)]
        left, right = rest[:, 0].min(), rest[:, 0].max()
        width = right - left
        xs = np.arange(np.ceil(left + 0.25 * width), np.floor(right - 0.25 * width) + 1)
        fold, feather = lid_edge(width)
        top = smooth_chain(rest, xs) - fold - 1
        edge = smooth_chain(face[list(lower)], xs) - 0.08 * width
        lid = [(int(y), int(x)) for x, a, b in zip(xs, top + feather, edge) for y in np.arange(np.ceil(a), np.floor(b) + 1)]
        skin = [(int(y), int(x)) for x, a in zip(xs, top) for y in np.arange(np.floor(a - 1.5 * feather), np.floor(a - 0.5 * feather) + 1)]
        assert len(lid) > 20 and len(skin) > 20
        ly, lx = np.array(lid).T
        sy, sx = np.array(skin).T
        out.append((np.linalg.norm(lab[ly, lx].mean(0) - lab[sy, sx].mean(0)),
                    grain[ly, lx].std() / max(grain[sy, sx].std(), 1e-3)))
    return tuple(np.mean(out, axis=0))


def test_a_closed_lid_has_the_skins_tone_and_grain(renderer, shared_data, settings):
    """The closing lid is the photo's skin, not a flat patch: on the shared portraits its colour stays
    near the skin above it and it keeps a good share of that skin's grain (a blurred flat lid, the
    former painter, had a median grain ratio of about 0.25 and a median colour distance of about 13)."""
    from teller_agent.errors import TellerError
    from teller_agent.eval.identity import PORTRAIT_SUFFIXES, list_media
    from teller_agent.face import prepare_avatar
    from teller_agent.render import WarpRenderer

    paths = list_media(shared_data / "portraits", PORTRAIT_SUFFIXES)
    figures = [_closed_lid_vs_skin(renderer)]
    for path in paths:
        try:
            figures.append(_closed_lid_vs_skin(WarpRenderer(prepare_avatar(path, settings))))
        except TellerError:
            continue  # no usable face (the preparation tests cover those errors)
    colour, grain = np.array(figures).T
    assert len(figures) > 20
    assert np.median(grain) > 0.45 and grain.min() > 0.15, np.round(grain, 2)
    assert np.median(colour) < 11.0, np.round(colour, 1)


@pytest.mark.parametrize("yaw", [10.0, -10.0])
def test_yaw_moves_the_nose_tip_sideways(renderer, avatar, yaw):
    x, y = np.round(avatar.landmarks[30]).astype(int)
    r = 40
    patch = lambda img: np.float32(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[y - r : y + r, x - r : x + r])
    turned = renderer.render_frame(_motion(yaw=yaw))
    (dx, dy), _ = cv2.phaseCorrelate(patch(avatar.image), patch(turned))
    assert np.sign(dx) == np.sign(yaw) and abs(dx) > 3, dx  # positive yaw: nose toward image right
    assert abs(dy) < abs(dx)


def test_background_far_from_the_head_does_not_move(renderer, avatar):
    frame = renderer.render_frame(_motion(yaw=15, pitch=-10, roll=8, tx=0.05, ty=0.03, jaw_open=1.0))
    outside = ~renderer.warp.moving
    assert outside.mean() > 0.2, "the warped region should not cover most of the frame"
    assert outside[:, :10].all() and outside[-10:].all(), "frame edges and shoulders stay put"
    assert np.array_equal(frame[outside], avatar.image[outside])
    # Far below the chin (shoulders) nothing moves either, even inside the region box.
    chin_y = int(avatar.landmarks[8, 1])
    face_w = float(np.linalg.norm(avatar.landmarks[16] - avatar.landmarks[0]))
    below = int(chin_y + 0.7 * face_w)
    assert np.abs(frame[below:].astype(int) - avatar.image[below:]).max() <= 1


def test_head_motion_is_smooth_over_time(renderer):
    """A slowly turning head gives small frame-to-frame changes (no jumps)."""
    n = 10
    m = MotionLatent.neutral(n, 68)
    m.yaw[:] = np.linspace(0, 5, n)
    frames = np.stack(list(renderer.render(m))).astype(np.float32)
    steps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    assert steps.max() < 2.0 and steps.max() < 3 * steps.min() + 0.5


def test_renderer_refuses_other_motion_spaces(renderer):
    with pytest.raises(ValueError, match="face68"):
        renderer.render_frame(MotionLatent.neutral(1, 21, "liveportrait21"))


def test_other_frame_sizes(settings):
    from teller_agent.face import prepare_avatar
    from teller_agent.render import WarpRenderer

    small = prepare_avatar(None, settings.model_copy(update={"frame_size": 256}))
    r = WarpRenderer(small)
    assert r.render_frame(_motion(jaw_open=0.5, yaw=5)).shape == (256, 256, 3)
    assert np.array_equal(r.render_frame(_motion()), small.image)


def test_render_threads_also_limit_numpys_blas_pool():
    """Idle OpenBLAS workers busy-wait: at 25 solves per second each extra one burns a core."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from teller_agent.render import set_render_threads

    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    if not blas:
        pytest.skip("numpy is not linked against a BLAS that threadpoolctl can control")
    with threadpool_limits(limits=None):  # restore the process's limits afterwards
        set_render_threads(1)
        assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} == {1}
        assert cv2.getNumThreads() == 1


def test_thin_plate_spline_interpolates_its_points_and_reproduces_affine_maps():
    """teller_agent/render/tps.py: exact at the control points, exact for an affine map everywhere, and the
    per-frame float32 evaluation (OpenCV's log) agrees with a float64 numpy evaluation of the same spline."""
    from teller_agent.render import tps

    rng = np.random.default_rng(3)
    centers = rng.uniform(-0.6, 0.6, (40, 2))
    values = np.stack([np.sin(3 * centers[:, 0]) + centers[:, 1], np.cos(2 * centers[:, 1])], 1)
    coef = tps.solve(centers, values)
    assert np.allclose(tps.evaluate(coef, centers, centers), values, atol=1e-4)
    affine = centers @ np.array([[0.3, -1.2], [0.8, 0.5]]) + np.array([0.1, -0.4])
    points = rng.uniform(-1, 1, (500, 2)).astype(np.float32)
    coef_affine = tps.solve(centers, affine)
    expect = points.astype(np.float64) @ np.array([[0.3, -1.2], [0.8, 0.5]]) + np.array([0.1, -0.4])
    assert np.allclose(tps.evaluate(coef_affine, centers, points), expect, atol=1e-4)
    d2 = ((points[:, None, :].astype(np.float64) - centers[None]) ** 2).sum(-1)
    reference = (d2 * np.log(np.maximum(d2, 1e-12))) @ coef[:40] + coef[40] + points @ coef[41:]
    assert np.abs(tps.evaluate(coef, centers, points) - reference).max() < 1e-3 * np.abs(reference).max()
