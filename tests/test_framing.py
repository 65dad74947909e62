"""Framing of real portraits: the crop stays inside the photo where it can, a band it cannot cover
is filled without replicated-border streaks, and the face lands centred at the configured scale
(or the largest that fits)."""

from __future__ import annotations

import numpy as np
import pytest

from teller_agent.eval.identity import PORTRAIT_SUFFIXES
from teller_agent.face import framing
from teller_agent.face.face68 import NUM_LANDMARKS
from teller_agent.face.landmarks import face_width


def _settings(tmp_path, **kw):
    from teller_agent import TellerSettings

    return TellerSettings(cache_dir=tmp_path / "cache", avatar_image=None, **kw)


def test_replicated_rows_are_streaks_a_plain_background_is_not():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (100, 80, 3), dtype=np.uint8)
    img[60:] = img[59]  # the last 41 rows repeat a textured row
    assert framing.streak_share(img) == pytest.approx(41 / 100)
    flat = np.full((100, 80, 3), 200, np.uint8)
    assert framing.streak_share(flat) == 0.0
    img[60:] = rng.integers(0, 255, (40, 80, 3), dtype=np.uint8)
    img[:, 70:] = img[:, 69:70]  # 11 columns: a run too short to count
    assert framing.streak_share(img) == 0.0


def test_filled_band_continues_the_photo_without_streaks():
    rng = np.random.default_rng(1)
    inside = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    out = framing.fill_border(inside, (0, 212, 56, 56))
    assert out.shape == (512, 512, 3)
    np.testing.assert_array_equal(out[:300, 56:456], inside)  # the photo itself is untouched
    assert framing.streak_share(out) == 0.0
    # the seam: the first filled row mirrors the photo's second-to-last row, not its last
    np.testing.assert_allclose(out[300, 56:456].astype(float), inside[298].astype(float), atol=40)


def test_a_crop_that_fits_is_moved_or_shrunk_rather_than_padded():
    lm = np.zeros((NUM_LANDMARKS, 2))
    lm[:, 0] = np.linspace(100, 300, NUM_LANDMARKS)  # face 200 px wide around x = 200
    lm[:, 1] = 300.0
    lm[0], lm[16] = (100, 300), (300, 300)
    side = face_width(lm) / 0.42
    free = framing.crop_for_face(lm, 0.42, 0.45)
    assert free[2] == round(side)
    # a photo 420 px wide, 700 tall: the 476 px crop cannot fit across, so it shrinks to 420
    x0, y0, s = framing.crop_for_face(lm, 0.42, 0.45, image_size=(420, 700))
    assert s == 420 and x0 == 0 and y0 >= 0 and y0 + s <= 700
    # a tiny photo: the crop shrinks by MAX_ZOOM at most and is placed as far inside as allowed
    x0, y0, s = framing.crop_for_face(lm, 0.42, 0.45, image_size=(260, 260))
    assert s == round(side / framing.MAX_ZOOM)


def test_every_shared_portrait_is_framed_without_streaks_and_centred(shared_data, tmp_path):
    from teller_agent.errors import TellerError
    from teller_agent.face import prepare_avatar
    from teller_agent.face.face68 import eye_centers

    folder = shared_data / "portraits"
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in PORTRAIT_SUFFIXES)
    if not paths:
        pytest.skip(f"no portraits in {folder}")
    settings = _settings(tmp_path)
    size, scale = settings.frame_size, settings.face_scale
    bad, framed = [], 0
    for path in paths:
        try:
            avatar = prepare_avatar(path, settings, use_cache=False)
        except TellerError:
            continue  # no usable face (the preparation tests cover those errors)
        framed += 1
        streaks = framing.streak_share(avatar.image)
        lm = avatar.landmarks.astype(np.float64)
        centre = lm.mean(axis=0) / size
        off = abs(centre[0] - 0.5), abs(centre[1] - settings.face_center_y)
        got_scale = face_width(lm) / size
        # the configured scale, or larger when the photo was too tight for it (up to MAX_ZOOM)
        scale_ok = 0.9 * scale <= got_scale <= 1.1 * framing.MAX_ZOOM * scale
        if streaks > 0 or max(off) > 0.05 or not scale_ok:
            bad.append(f"{path.name}: streaks {streaks:.3f}, centre off by {max(off):.3f}, "
                       f"face {got_scale:.3f} of the frame")
        assert np.linalg.norm(np.diff(eye_centers(lm), axis=0)) > 0.05 * size
    assert framed >= 0.8 * len(paths), f"only {framed} of {len(paths)} portraits had a usable face"
    assert not bad, "\n".join(bad)
