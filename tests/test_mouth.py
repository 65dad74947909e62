"""The mouth interior: a real-mouth atlas shipped as package data, warped into the driven inner lips,
nothing painted in silence, textured like a real mouth, and steady on a held vowel."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from teller_agent.config import SHARED_DATA_DIR, TellerSettings
from teller_agent.face import prepare_avatar
from teller_agent.face.face68 import INNER_LIPS
from teller_agent.motion.latent import MotionLatent
from teller_agent.render.mouth_atlas import (
    ATLAS_PATH,
    PATCH_HEIGHT,
    PATCH_WIDTH,
    MouthAtlasError,
    canonical_coords,
    load_atlas,
    mouth_shape,
)
from teller_agent.render.paint import MouthPainter, mouth_gap
from teller_agent.render.renderer import WarpRenderer
from teller_agent.render.states import state_motion

INNER = list(INNER_LIPS)
HELD_VOWEL_CLIP = SHARED_DATA_DIR / "talking" / "AniPortrait__pose_ref_video.mp4"


@pytest.fixture(scope="module")
def renderer():
    return WarpRenderer(prepare_avatar(None, TellerSettings()))


def _driven(renderer, motion):
    """(warped frame without paint, driven 68 points) of a one-frame motion."""
    face, rigid = renderer.warp.driven(motion)
    head = renderer.warp.rigid_points(motion)
    return renderer.warp.remap(face[0], rigid[0], head[0]), face[0]


def _mouth_box(inner: np.ndarray, pad: int = 2) -> tuple[slice, slice]:
    x0, y0 = np.floor(inner.min(0)).astype(int) - pad
    x1, y1 = np.ceil(inner.max(0)).astype(int) + pad + 1
    return slice(max(y0, 0), y1), slice(max(x0, 0), x1)


def test_the_atlas_ships_as_package_data_with_documented_arrays():
    assert ATLAS_PATH.is_file(), ATLAS_PATH
    assert ATLAS_PATH.stat().st_size < 2 * 1024 * 1024
    assert (ATLAS_PATH.parent / "README.md").is_file()
    atlas = load_atlas()
    k, m = len(atlas.openings), len(atlas.widths)
    assert atlas.num_entries == k * m >= 16
    assert atlas.patches.shape == (k, m, PATCH_HEIGHT, PATCH_WIDTH, 3) and atlas.patches.dtype == np.uint8
    assert atlas.openings.dtype == atlas.widths.dtype == np.float32
    assert np.all(np.diff(atlas.openings) > 0) and np.all(np.diff(atlas.widths) > 0)
    assert atlas.ring_lab.shape == (k, m, 2, 3) and atlas.ring_lab.dtype == np.float32
    assert atlas.measured.shape == (k, m, 2) and atlas.sources.shape == (k, m)
    assert all("@" in s for s in atlas.sources.ravel())
    # real mouths: each patch has texture (not a flat fill)
    assert (atlas.patches.reshape(k * m, -1).std(axis=1) > 10).all()


def test_a_missing_atlas_names_the_fix(tmp_path):
    with pytest.raises(MouthAtlasError, match="python -m teller_agent.render.mouth_atlas build"):
        load_atlas(tmp_path / "nope.npz")


def test_closed_lips_leave_the_mouth_unpainted(renderer):
    """At (or below) the portrait's own gap nothing is painted: the frame is the bare warp."""
    for amounts in ({}, {"jaw_open": -0.3}, {"blink_left": 1.0, "blink_right": 1.0}):
        warped, face = _driven(renderer, state_motion(amounts))
        assert mouth_gap(face[INNER]) <= renderer.rest_gap + 0.5
        frame = renderer.render_frame(state_motion(amounts))
        box = _mouth_box(face[INNER], pad=4)
        np.testing.assert_array_equal(frame[box], warped[box])
    # and the painter alone, at exactly the rest gap of the portrait's own inner lips
    portrait_inner = np.asarray(renderer.avatar.landmarks, np.float32)[INNER]
    frame = renderer.image.copy()
    renderer.mouth.paint(frame, portrait_inner)
    np.testing.assert_array_equal(frame, renderer.image)


def test_painting_touches_only_the_mouth_box(renderer):
    warped, face = _driven(renderer, state_motion({"jaw_open": 0.6}))
    frame = warped.copy()
    renderer.mouth.paint(frame, face[INNER])
    changed = np.argwhere(np.any(frame != warped, axis=-1))
    assert len(changed)
    inner = face[INNER]
    assert (changed[:, 1] >= np.floor(inner[:, 0].min())).all() and (changed[:, 1] <= np.ceil(inner[:, 0].max())).all()
    assert (changed[:, 0] >= np.floor(inner[:, 1].min())).all() and (changed[:, 0] <= np.ceil(inner[:, 1].max())).all()


def _interior_grey(frame: np.ndarray, inner: np.ndarray):
    """Grey levels of the opening's interior (away from the lip edges and corners): (values,
    mean absolute horizontal gradient over the brightest 30 % of the interior)."""
    box = _mouth_box(inner, pad=0)
    ys = np.arange(box[0].start, box[0].stop, dtype=float)[:, None]
    xs = np.arange(box[1].start, box[1].stop, dtype=float)
    u, v, gap = canonical_coords(inner, xs, ys)
    interior = (u > 0.15) & (u < 0.85) & (v > 0.1) & (v < 0.9) & (gap > 4)
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[box].astype(np.float64)
    values = grey[interior]
    bright = interior[:, 1:] & interior[:, :-1] & (grey[:, 1:] > np.percentile(values, 70))
    return values, float(np.abs(np.diff(grey, axis=1))[bright].mean()) if bright.any() else 0.0


def test_an_open_mouth_shows_a_textured_real_interior(renderer):
    """Teeth and a dark cavity: bright and dark pixels, texture, and tooth edges across the bright
    part (the former painted fill had a smooth tooth band: its gradient there was about 6 grey
    levels per pixel; a flat fill has none)."""
    warped, face = _driven(renderer, state_motion({"jaw_open": 0.6}))
    frame = warped.copy()
    # the atlas's interior (the default portrait smiles with its teeth, which it would keep)
    MouthPainter(renderer.image, renderer.avatar.landmarks, own_interior=False).paint(frame, face[INNER])
    values, tooth_edges = _interior_grey(frame, face[INNER])
    assert np.percentile(values, 95) > 150, "no bright (tooth) pixels"
    assert np.percentile(values, 5) < 60, "no dark cavity"
    assert np.percentile(values, 1) > 8, "the cavity is pitch black"
    assert values.std() > 25, "the interior is nearly flat"
    assert tooth_edges > 9.0, f"no tooth edges in the bright part ({tooth_edges:.1f})"
    # a flat fill fails the same checks
    flat = warped.copy()
    box = _mouth_box(face[INNER], pad=0)
    flat[box] = 20
    values, _ = _interior_grey(flat, face[INNER])
    assert values.std() < 1


def test_blend_weights_are_continuous_in_the_opening(renderer):
    painter = renderer.mouth
    rs = np.linspace(0.0, 1.0, 2001)
    dense = np.zeros((len(rs), len(painter.openings)))
    for i, r in enumerate(rs):
        for k, m, wt in painter.weights(r, 1.0):
            dense[i, k] += wt
    np.testing.assert_allclose(dense.sum(1), 1.0, atol=1e-9)
    assert np.abs(np.diff(dense, axis=0)).max() < 0.02  # no jump on a 0.0005 step


def _mouth_change(frames: list[np.ndarray], inners: list[np.ndarray]) -> float:
    """Mean absolute RGB change (0-255) between consecutive frames inside the first frame's inner-lip
    box, each frame shifted so its inner-lip centre matches the first's (head motion removed)."""
    box = _mouth_box(inners[0], pad=0)
    centre = inners[0].mean(0)
    aligned = []
    for frame, inner in zip(frames, inners):
        dx, dy = centre - inner.mean(0)
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        aligned.append(cv2.warpAffine(frame, shift, frame.shape[1::-1], flags=cv2.INTER_LINEAR).astype(np.float64))
    return float(np.mean([np.abs(b[box] - a[box]).mean() for a, b in itertools.pairwise(aligned)]))


def _real_held_vowel_change() -> float:
    """The mouth change of a real speaker holding an open mouth: the steadiest 6-frame run with the
    mouth open (r > 0.15) among the first 100 frames of a real clip, dlib landmarks."""
    from teller_agent.face.landmarks import detect_landmarks
    from teller_agent.media import read_video_frames

    frames, inners = [], []
    for i, frame in enumerate(read_video_frames(HELD_VOWEL_CLIP)):
        if i >= 100:
            break
        found = detect_landmarks(frame)
        if found is None:
            frames, inners = [], []  # keep runs contiguous
            continue
        frames.append(frame)
        inners.append(found.landmarks[INNER].astype(np.float64))
    r = np.array([mouth_shape(p)[0] for p in inners])
    runs = [(np.abs(np.diff(r[t : t + 6])).max(), t) for t in range(len(r) - 5) if r[t : t + 6].min() > 0.15]
    assert runs, "no open-mouth run in the clip"
    _, t = min(runs)
    return _mouth_change(frames[t : t + 6], inners[t : t + 6])


def _held_vowel_change(renderer, jaw: float, jitter: float = 0.3, frames: int = 25) -> float:
    """Our mouth change on a held vowel: driven inner lips fixed, plus ``jitter`` px of noise."""
    warped, face = _driven(renderer, state_motion({"jaw_open": jaw}))
    rng = np.random.default_rng(0)
    out, inners = [], []
    for _ in range(frames):
        inner = face[INNER] + rng.normal(0.0, jitter, (8, 2)).astype(np.float32)
        frame = warped.copy()
        renderer.mouth.paint(frame, inner)
        out.append(frame)
        inners.append(face[INNER].astype(np.float64))  # the warp is still: no alignment
    return _mouth_change(out, inners)


def test_a_held_vowel_does_not_flicker(renderer):
    """On a held vowel our mouth box changes less from frame to frame than a real speaker's does
    (openings between two atlas rows included, where a nearest-entry choice would flip)."""
    if not HELD_VOWEL_CLIP.is_file():
        pytest.skip(f"needs the shared talking clips ({HELD_VOWEL_CLIP} is absent)")
    real = _real_held_vowel_change()
    ours = max(_held_vowel_change(renderer, jaw) for jaw in (0.25, 0.35, 0.45, 0.6))
    assert ours < real, f"held vowel: ours {ours:.2f} vs real {real:.2f} grey levels per frame"


def test_the_painter_accepts_an_explicit_atlas(renderer):
    atlas = load_atlas()
    painter = MouthPainter(renderer.image, renderer.avatar.landmarks, atlas)
    assert painter.patches.shape == atlas.patches.shape and painter.patches.dtype == np.float32
    # a black-and-white portrait gets a grey interior
    grey = np.repeat(cv2.cvtColor(renderer.image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    bw = MouthPainter(grey, renderer.avatar.landmarks, atlas).patches
    assert np.abs(bw - bw.mean(-1, keepdims=True)).max() < 6


def test_neutral_motion_still_gives_the_crop(renderer):
    frame = renderer.render_frame(MotionLatent.neutral(1, 68))
    np.testing.assert_array_equal(frame, renderer.image)


OPEN_SMILES = ("GeneFace__015310.jpg", "GeneFace__000002.jpg")  # shared portraits smiling with upper teeth


def _upper_band_grey(frame: np.ndarray, inner: np.ndarray, depth: float) -> float:
    """Mean grey level of the opening's middle columns from 2 px under the upper inner lip to
    ``depth`` px under it."""
    box = _mouth_box(inner, pad=0)
    ys = np.arange(box[0].start, box[0].stop, dtype=float)[:, None]
    xs = np.arange(box[1].start, box[1].stop, dtype=float)
    u, v, gap = canonical_coords(inner, xs, ys)
    band = (u > 0.3) & (u < 0.7) & (v * gap > 2) & (v * gap < depth)
    return float(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[box].astype(np.float64)[band].mean())


@pytest.mark.parametrize("name", OPEN_SMILES)
def test_an_open_smile_keeps_its_own_upper_teeth(name):
    """A portrait that smiles with its teeth keeps them when the driven mouth opens further: under
    the upper lip, as deep as its own opening was, the frame is as bright as the photo's own teeth
    (the atlas alone put someone else's dark cavity there), with a cavity below them."""
    path = SHARED_DATA_DIR / "portraits" / name
    if not path.is_file():
        pytest.skip(f"needs the shared portraits ({path} is absent)")
    renderer = WarpRenderer(prepare_avatar(path, TellerSettings()))
    assert renderer.mouth.own is not None
    depth = 0.6 * renderer.rest_gap
    photo = _upper_band_grey(renderer.image, np.asarray(renderer.avatar.landmarks, np.float32)[INNER], depth)
    warped, face = _driven(renderer, state_motion({"jaw_open": 0.6}))
    inner = face[INNER]
    assert mouth_gap(inner) > 1.8 * renderer.rest_gap
    frame = warped.copy()
    renderer.mouth.paint(frame, inner)
    kept = _upper_band_grey(frame, inner, depth)
    assert kept >= 0.85 * photo, (kept, photo)
    values, _ = _interior_grey(frame, inner)
    assert np.percentile(values, 5) < 70, "no cavity below the teeth"
    # the atlas alone (the portrait's teeth not kept) fails the first check
    frame = warped.copy()
    MouthPainter(renderer.image, renderer.avatar.landmarks, own_interior=False).paint(frame, inner)
    assert _upper_band_grey(frame, inner, depth) < 0.5 * photo


def test_a_closed_mouth_portrait_gets_the_atlas_interior():
    path = SHARED_DATA_DIR / "portraits" / "SadTalker__happy.png"  # a closed-lip smile
    if not path.is_file():
        pytest.skip(f"needs the shared portraits ({path} is absent)")
    renderer = WarpRenderer(prepare_avatar(path, TellerSettings()))
    assert renderer.mouth.own is None
    warped, face = _driven(renderer, state_motion({"jaw_open": 0.6}))
    frame = warped.copy()
    renderer.mouth.paint(frame, face[INNER])
    values, _ = _interior_grey(frame, face[INNER])
    assert np.percentile(values, 95) > 150 and np.percentile(values, 5) < 60


def test_without_the_mouth_interior_the_frame_is_the_warp_alone(renderer):
    """The identity ablation (``eval identity --no-mouth-interior``): the same frame, minus the painted
    interior; with it, an open mouth differs only inside the mouth box."""
    from teller_agent.render.paint import paint_eyelids
    from teller_agent.render.renderer import _EYES

    motion = state_motion({"jaw_open": 0.6})
    unpainted, face = _driven(renderer, motion)
    rigid = renderer.warp.driven(motion)[1][0]
    for upper, lower in _EYES:
        paint_eyelids(unpainted, rigid[list(upper)], face[list(upper)], face[list(lower)])
    plain = WarpRenderer(renderer.avatar, mouth_interior=False).render_frame(motion)
    painted = renderer.render_frame(motion)
    assert np.array_equal(plain, unpainted)
    box = _mouth_box(face[INNER])
    assert not np.array_equal(plain[box], painted[box])
    outside = np.ones(plain.shape[:2], bool)
    outside[box] = False
    assert np.array_equal(plain[outside], painted[outside])


def _lower_teeth_height(renderer, jaw_open: float) -> tuple[float, float]:
    """(inner-lip gap, height of the bright lower teeth) in pixels at the mouth's centre columns
    (pixels of the lower half of the opening brighter than halfway between its dark and bright ends)."""
    motion = state_motion({"jaw_open": jaw_open})
    frame = cv2.cvtColor(renderer.render_frame(motion), cv2.COLOR_RGB2GRAY).astype(np.float32)
    inner = renderer.warp.driven(motion)[0][0][INNER]
    cx = int(round(inner[:, 0].mean()))
    top, bottom = int(inner[:, 1].min()), int(inner[5:8, 1].max())
    middle = int((inner[1:4, 1].min() + bottom) / 2)
    opening = frame[top:bottom, cx - 3 : cx + 4]
    threshold = 0.5 * (np.percentile(opening, 95) + np.percentile(opening, 5))
    return mouth_gap(inner), float((frame[middle:bottom, cx - 3 : cx + 4] > threshold).sum(0).mean())


def test_a_wide_open_smile_stretches_the_cavity_not_the_lower_teeth(renderer):
    """The bundled portrait smiles with its teeth (its own interior above, the atlas below): opened
    past what the atlas shows, the cavity grows and the lower teeth keep their size (the lower part
    used to stretch as a whole, the teeth growing about as fast as the opening)."""
    assert renderer.mouth.own is not None
    gap_a, teeth_a = _lower_teeth_height(renderer, 0.75)
    gap_b, teeth_b = _lower_teeth_height(renderer, 1.0)
    assert gap_b > 1.2 * gap_a and teeth_a > 3
    assert teeth_b / teeth_a - 1 < 0.5 * (gap_b / gap_a - 1), (gap_a, teeth_a, gap_b, teeth_b)
