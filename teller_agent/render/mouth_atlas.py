"""An atlas of real mouth interiors: what the renderer shows between the driven inner lips.

A photo with closed lips holds no teeth, tongue or oral cavity, so the warp alone cannot open a
mouth. The atlas holds small patches of real open mouths cut from talking clips (the inside of the
inner-lip contour, landmarks 60-67), on a grid of mouth shapes; the renderer
(:class:`teller_agent.render.paint.MouthPainter`) blends the nearest ones, matches them to the
portrait's light and colour and warps them into the driven inner lips.

Canonical patch
---------------
A patch is ``(PATCH_HEIGHT, PATCH_WIDTH)`` pixels in a *column-normalised* frame of the mouth:
column ``j`` is the fraction ``u = (j + 0.5) / PATCH_WIDTH`` of the way from the leftmost to the
rightmost inner-lip point (after the face is rotated so that its eye line is horizontal); row ``i``
is the fraction ``v = (i + 0.5) / PATCH_HEIGHT`` of the way down from the upper lip's inner edge
(points 60-64, :data:`~teller_agent.face.face68.INNER_UPPER_LIP`) to the lower lip's inner edge
(60, 67-65, 64, :data:`~teller_agent.face.face68.INNER_LOWER_LIP`) in that column (both edges are
the polylines through the points, linear in ``x``). :func:`canonical_coords` is that map, used both
to cut patches (:func:`build_atlas`) and to paste them (the renderer), so the two agree exactly.

Grid
----
Cells are indexed by two numbers of the inner lips:

- opening ``r = gap / width``: :func:`~teller_agent.face.face68.inner_lip_gap` (mean of the three
  inner-lip pairs) over the inner width (distance 60-64);
- relative width ``w = width / rest width``: the inner width over that face's own width with the
  mouth closed (a clip: the median over its most-closed frames; a portrait: its own landmarks).
  ``w < 1`` is a rounded mouth, ``w > 1`` a spread one.

Cell ``(k, m)`` holds the real mouth nearest to ``(openings[k], widths[m])``.

File
----
A compressed ``.npz`` (:data:`ATLAS_PATH`, shipped as package data with a model card beside it)
with ``patches`` ``(K, M, PATCH_HEIGHT, PATCH_WIDTH, 3) uint8`` RGB, ``openings`` ``(K,)`` and
``widths`` ``(M,)`` float32 (increasing), ``ring_lab`` ``(K, M, 2, 3)`` float32 (mean and standard
deviation of the source frame's lip ring, between the outer and the inner lip contour, in CIE Lab
with L in [0, 100]), ``measured`` ``(K, M, 2)`` float32 (the ``r`` and ``w`` of the frame actually
used) and ``sources`` ``(K, M)`` str (``"<clip stem>@<frame index at 25 fps>"``).

Build it with ``python -m teller_agent.render.mouth_atlas build`` (:func:`build_atlas`); it reads
``talking/`` of the shared data folder (research-use footage, see the model card) in place.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import TellerError
from ..face.face68 import (
    INNER_LIPS,
    INNER_LOWER_LIP,
    INNER_UPPER_LIP,
    NOSE_TIP,
    OUTER_LIPS,
    eye_centers,
    inner_lip_gap,
)

log = logging.getLogger(__name__)

#: Rows and columns of a canonical patch.
PATCH_HEIGHT = 32
PATCH_WIDTH = 64

#: The shipped atlas.
ATLAS_DIR = Path(__file__).resolve().parents[1] / "models" / "mouth-atlas"
ATLAS_PATH = ATLAS_DIR / "mouth_atlas.npz"

#: Clips the shipped atlas is cut from (stems in ``talking/``), best first: a cell takes its mouth
#: from an earlier clip unless a later one fits its shape clearly better (:func:`build_atlas`).
DEFAULT_CLIPS = (
    "SadTalker__WDA_BobMenendez_000",
    "Wav2Lip-GFPGAN__kim_7s_raw",
    "SadTalker__RD_Radio34_000",
    "SadTalker__WDA_EdMarkey0_000",
    "EAMM__M030_sad_3_001",
)
#: Grid of the shipped atlas: openings ``r`` and relative widths ``w`` (module docstring).
DEFAULT_OPENINGS = (0.05, 0.10, 0.15, 0.21, 0.27, 0.33, 0.40, 0.48)
DEFAULT_WIDTHS = (0.9, 1.0, 1.1)

#: Frames kept for the atlas: head yaw (nose tip off the eye midpoint, in inter-ocular distances)
#: and roll (eye line, degrees) at most these, eyes at least this far apart (pixels), and the
#: mouth's sharpness (:func:`_sharpness`) at least this fraction of the clip's median.
MAX_YAW = 0.08
MAX_ROLL_DEG = 10.0
MIN_INTER_OCULAR = 80.0
MIN_SHARPNESS_RATIO = 0.8

# Positions of the inner-lip chains inside an (8, 2) inner-lip array (points 60-67 in order).
_UPPER = [INNER_LIPS.index(i) for i in INNER_UPPER_LIP]
_LOWER = [INNER_LIPS.index(i) for i in INNER_LOWER_LIP]


class MouthAtlasError(TellerError):
    """The mouth atlas file is missing or malformed."""


@dataclass(frozen=True)
class MouthAtlas:
    """A loaded atlas (module docstring: the grid and the file).

    Attributes:
        patches: ``(K, M, PATCH_HEIGHT, PATCH_WIDTH, 3) uint8`` RGB canonical patches.
        openings: ``(K,) float32`` increasing opening ``r`` of each grid row.
        widths: ``(M,) float32`` increasing relative width ``w`` of each grid column.
        ring_lab: ``(K, M, 2, 3) float32`` mean and standard deviation (CIE Lab, L in [0, 100]) of
            the lip ring of each patch's source frame.
        measured: ``(K, M, 2) float32`` the ``(r, w)`` of each patch's source frame.
        sources: ``(K, M)`` str, ``"<clip stem>@<frame index at 25 fps>"``.
    """

    patches: np.ndarray
    openings: np.ndarray
    widths: np.ndarray
    ring_lab: np.ndarray
    measured: np.ndarray
    sources: np.ndarray

    def __post_init__(self) -> None:
        k, m = len(self.openings), len(self.widths)
        expected = {
            "patches": ((k, m, PATCH_HEIGHT, PATCH_WIDTH, 3), np.uint8),
            "ring_lab": ((k, m, 2, 3), np.float32),
            "measured": ((k, m, 2), np.float32),
        }
        for name, (shape, dtype) in expected.items():
            value = getattr(self, name)
            if value.shape != shape or value.dtype != dtype:
                raise MouthAtlasError(f"mouth atlas {name} must be {shape} {np.dtype(dtype)}, "
                                      f"got {value.shape} {value.dtype}")
        for name in ("openings", "widths"):
            value = getattr(self, name)
            if value.dtype != np.float32 or value.ndim != 1 or len(value) < 1 or np.any(np.diff(value) <= 0):
                raise MouthAtlasError(f"mouth atlas {name} must be an increasing (n,) float32 array")
        if self.sources.shape != (k, m):
            raise MouthAtlasError(f"mouth atlas sources must be {(k, m)}, got {self.sources.shape}")

    @property
    def num_entries(self) -> int:
        """Patches in the grid, ``K * M``."""
        return len(self.openings) * len(self.widths)

    def save(self, path: str | Path) -> Path:
        """Write the atlas as a compressed ``.npz`` (parents created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez_compressed(f, patches=self.patches, openings=self.openings, widths=self.widths,
                                ring_lab=self.ring_lab, measured=self.measured, sources=self.sources.astype(str))
        return path


def load_atlas(path: str | Path | None = None) -> MouthAtlas:
    """Load a mouth atlas.

    Args:
        path: an ``.npz`` written by :meth:`MouthAtlas.save`; default :data:`ATLAS_PATH` (the
            shipped one).

    Raises:
        MouthAtlasError: the file is missing (the message names the command that builds it) or
            its arrays are missing or malformed.
    """
    path = Path(path) if path is not None else ATLAS_PATH
    if not path.is_file():
        raise MouthAtlasError(
            f"the mouth atlas {path} is missing. It ships with teller-agent (reinstall the package), "
            f"or build it from the shared talking clips: python -m teller_agent.render.mouth_atlas build -o {path}"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: np.array(z[name]) for name in
                      ("patches", "openings", "widths", "ring_lab", "measured", "sources")}
    except (KeyError, ValueError, OSError) as e:
        raise MouthAtlasError(f"the mouth atlas {path} cannot be read ({e}); rebuild it: "
                              f"python -m teller_agent.render.mouth_atlas build -o {path}") from e
    return MouthAtlas(**arrays)


# --- geometry shared by cutting and pasting ---------------------------------------------------


def _pchip_slopes(h: list[float], delta: list[float]) -> list[float]:
    """Fritsch-Carlson slopes of a monotone cubic through points with spacings ``h`` and secant
    slopes ``delta`` (n-1 each); shape-preserving end slopes, as SciPy's ``PchipInterpolator``.
    Plain floats: a lip chain has 5 points, where NumPy's per-call overhead would dominate."""
    d = [0.0] * (len(h) + 1)
    for k in range(1, len(h)):
        if delta[k - 1] * delta[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    for end, (h0, h1, d0, d1) in ((0, (h[0], h[1], delta[0], delta[1])), (-1, (h[-1], h[-2], delta[-1], delta[-2]))):
        m = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if m * d0 <= 0 and not (m == 0 and d0 == 0):
            m = 0.0
        elif d0 * d1 < 0 and abs(m) > abs(3 * d0):
            m = 3 * d0
        d[end] = m
    return d


def smooth_chain(points: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """y of a smooth curve through ``points`` (n, 2) at ``xs``: a monotone cubic (PCHIP, no
    overshoot) through the landmarks sorted by x, so the lip edge has no corner at a landmark
    (a polyline makes the opening an octagon); flat beyond the ends. Linear where two points share
    an x or there are fewer than 3."""
    order = np.argsort(points[:, 0], kind="stable")
    px, py = points[order, 0].astype(np.float64), points[order, 1].astype(np.float64)
    h = np.diff(px)
    if len(px) < 3 or np.any(h <= 1e-6):
        return np.interp(xs, px, py)
    hl, pl, yl = h.tolist(), px.tolist(), py.tolist()
    dl = [(yl[k + 1] - yl[k]) / hl[k] for k in range(len(hl))]
    d = _pchip_slopes(hl, dl)
    # the cubic of each interval in powers of s = x - x_k (Hermite form expanded)
    coef = np.array([(yl[k], d[k], (3 * dl[k] - 2 * d[k] - d[k + 1]) / hl[k],
                      (d[k] + d[k + 1] - 2 * dl[k]) / (hl[k] * hl[k])) for k in range(len(hl))])
    x = np.clip(np.asarray(xs, np.float64), pl[0], pl[-1])
    k = np.clip(np.searchsorted(px, x, side="right") - 1, 0, len(hl) - 1)
    c, sx = coef[k], x - px[k]
    return ((c[:, 3] * sx + c[:, 2]) * sx + c[:, 1]) * sx + c[:, 0]


def lip_edges(inner_lips: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inner edges of the upper and lower lip at columns ``xs``.

    Args:
        inner_lips: ``(8, 2)`` float pixel positions of landmarks 60-67, in that order.
        xs: ``(n,)`` float x positions (pixels).

    Returns:
        ``(y_upper, y_lower)``, each ``(n,)`` float64 pixels; ``y_lower >= y_upper``.
    """
    y_up = smooth_chain(inner_lips[_UPPER], xs)
    y_lo = np.maximum(smooth_chain(inner_lips[_LOWER], xs), y_up)
    return y_up, y_lo


def canonical_coords(inner_lips: np.ndarray, xs: np.ndarray, ys: np.ndarray):
    """Canonical coordinates of the pixels ``(xs, ys)`` of a mouth with inner lips ``inner_lips``.

    Args:
        inner_lips: ``(8, 2)`` float pixel positions of landmarks 60-67 (eye line horizontal).
        xs: ``(n,)`` float column positions; ys: ``(m, 1)`` float row positions (pixels).

    Returns:
        ``(u, v, gap)``: ``u`` ``(1, n)`` and ``v`` ``(m, n)`` float64 fractions across the mouth
        and down from the upper to the lower lip (module docstring; outside [0, 1] outside the
        opening), and ``gap`` ``(1, n)`` the opening of each column in pixels (at least 1e-3).
    """
    left, right = float(inner_lips[:, 0].min()), float(inner_lips[:, 0].max())
    y_up, y_lo = lip_edges(inner_lips, xs)
    gap = np.maximum(y_lo - y_up, 1e-3)[None, :]
    u = ((xs - left) / max(right - left, 1e-3))[None, :]
    v = (ys - y_up[None, :]) / gap
    return u, v, gap


def mouth_shape(inner_lips: np.ndarray) -> tuple[float, float]:
    """``(opening r, inner width in pixels)`` of ``(8, 2)`` inner lips (landmarks 60-67): ``r`` is
    the mean gap of the inner-lip pairs over the distance 60-64 (0 when that is zero)."""
    pts = np.zeros((68, 2), np.float64)
    pts[list(INNER_LIPS)] = inner_lips
    width = float(np.linalg.norm(inner_lips[_UPPER[-1]] - inner_lips[_UPPER[0]]))
    return (float(inner_lip_gap(pts)) / width if width > 1e-6 else 0.0), width


# --- building ---------------------------------------------------------------------------------


def _roll_deg(landmarks: np.ndarray) -> float:
    right_eye, left_eye = eye_centers(landmarks)
    d = left_eye - right_eye
    return float(np.degrees(np.arctan2(d[1], d[0])))


def _rotation(angle_deg: float, centre: np.ndarray) -> np.ndarray:
    """2x3 affine rotating by ``angle_deg`` (image coordinates, y down) about ``centre``."""
    return cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle_deg, 1.0)


def _apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ affine[:, :2].T + affine[:, 2]


def cut_patch(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The canonical patch of the open mouth in ``frame``.

    The face is rotated so its eye line is horizontal, the frame is low-passed in proportion to
    the downscale, and each patch pixel samples the frame (bilinear) at its canonical position.

    Args:
        frame: ``(H, W, 3) uint8`` RGB.
        landmarks: ``(68, 2)`` float pixel positions of the face's landmarks.

    Returns:
        ``(PATCH_HEIGHT, PATCH_WIDTH, 3) uint8`` RGB.
    """
    lm = np.asarray(landmarks, np.float64)
    centre = lm[list(INNER_LIPS)].mean(0)
    level = _rotation(_roll_deg(lm), centre)  # takes the face to a level eye line
    back = cv2.invertAffineTransform(level)
    inner = _apply(level, lm[list(INNER_LIPS)])
    left, right = inner[:, 0].min(), inner[:, 0].max()
    xs = left + (np.arange(PATCH_WIDTH) + 0.5) / PATCH_WIDTH * (right - left)
    y_up, y_lo = lip_edges(inner, xs)
    v = ((np.arange(PATCH_HEIGHT) + 0.5) / PATCH_HEIGHT)[:, None]
    gx = np.broadcast_to(xs[None, :], (PATCH_HEIGHT, PATCH_WIDTH))
    gy = y_up[None, :] + v * (y_lo - y_up)[None, :]
    src = _apply(back, np.stack([gx, gy], -1).reshape(-1, 2)).reshape(PATCH_HEIGHT, PATCH_WIDTH, 2)
    scale = (right - left) / PATCH_WIDTH  # source pixels per patch column
    x0, y0 = np.floor(src.reshape(-1, 2).min(0)).astype(int) - 4
    x1, y1 = np.ceil(src.reshape(-1, 2).max(0)).astype(int) + 5
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    roi = frame[y0:y1, x0:x1]
    if scale > 1.2:
        roi = cv2.GaussianBlur(roi, (0, 0), 0.45 * scale)
    mx = (src[..., 0] - x0).astype(np.float32)
    my = (src[..., 1] - y0).astype(np.float32)
    return cv2.remap(roi, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def lip_ring_lab(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of the lips (between the outer and the inner lip contour).

    Args:
        image: ``(H, W, 3) uint8`` RGB.
        landmarks: ``(68, 2)`` float pixel positions.

    Returns:
        ``(2, 3) float32``: mean and standard deviation in CIE Lab (L in [0, 100], a and b about
        [-127, 127]); the mean of the whole mouth box where the ring has no pixel.
    """
    lm = np.asarray(landmarks, np.float64)
    pts = lm[list(OUTER_LIPS)]
    x0, y0 = np.maximum(np.floor(pts.min(0)).astype(int) - 1, 0)
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 2
    roi = image[y0:y1, x0:x1]
    mask = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(pts - (x0, y0)).astype(np.int32)], 1)
    cv2.fillPoly(mask, [np.round(lm[list(INNER_LIPS)] - (x0, y0)).astype(np.int32)], 0)
    lab = cv2.cvtColor(roi.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3)
    sel = lab[mask.reshape(-1) > 0]
    if len(sel) < 4:
        sel = lab
    return np.stack([sel.mean(0), sel.std(0)]).astype(np.float32)


def _sharpness(patch: np.ndarray) -> float:
    """Mean absolute Laplacian of the patch's grey levels (0-255 scale)."""
    grey = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F))[2:-2, 2:-2].mean())


@dataclass
class _Candidate:
    clip: int
    frame: int
    r: float
    w: float
    sharp: float
    patch: np.ndarray
    ring: np.ndarray


def _clip_candidates(path: Path, rank: int) -> list[_Candidate]:
    """Frames of one clip that pass the pose, size and sharpness tests, with their patches."""
    from ..data.extract import track_landmarks
    from ..media import read_video_frames

    clip = track_landmarks(path, audio=False)
    lm = clip.landmarks
    ok = clip.valid & (clip.mesh_lips if clip.mesh_lips is not None else clip.valid)
    eyes = eye_centers(np.nan_to_num(lm))
    iod = np.linalg.norm(eyes[:, 1] - eyes[:, 0], axis=-1)
    yaw = np.abs(np.nan_to_num(lm)[:, NOSE_TIP, 0] - eyes.mean(1)[:, 0]) / np.maximum(iod, 1e-6)
    shape = np.array([mouth_shape(p[list(INNER_LIPS)]) if v else (np.nan, np.nan) for p, v in zip(lm, ok)])
    r, width = shape[:, 0], shape[:, 1]
    closed = ok & (r <= np.nanpercentile(r[ok], 20)) if ok.any() else ok
    if not closed.any():
        return []
    rest_width = float(np.median(width[closed]))
    # steady frames only: the opening changes little around them (no motion blur)
    dr = np.abs(np.gradient(np.nan_to_num(r)))
    keep = ok & (yaw <= MAX_YAW) & (iod >= MIN_INTER_OCULAR) & (r >= 0.03) & (dr <= 0.04)
    keep &= np.array([abs(_roll_deg(p)) <= MAX_ROLL_DEG if v else False for p, v in zip(lm, ok)])
    out = []
    for i, frame in enumerate(read_video_frames(path)):
        if i < len(keep) and keep[i]:
            patch = cut_patch(frame, lm[i])
            out.append(_Candidate(rank, i, float(r[i]), float(width[i] / rest_width), _sharpness(patch), patch,
                                  lip_ring_lab(frame, lm[i])))
    if out:
        median_sharp = float(np.median([c.sharp for c in out]))
        out = [c for c in out if c.sharp >= MIN_SHARPNESS_RATIO * median_sharp]
    log.info("%s: %d of %d frames kept", path.name, len(out), len(lm))
    return out


def build_atlas(
    talking_dir: str | Path,
    out_path: str | Path | None = None,
    clips: tuple[str, ...] = DEFAULT_CLIPS,
    openings: tuple[float, ...] = DEFAULT_OPENINGS,
    widths: tuple[float, ...] = DEFAULT_WIDTHS,
) -> MouthAtlas:
    """Cut a mouth atlas from real talking clips (deterministic for the same clips and libraries).

    Each clip is tracked (:func:`~teller_agent.data.extract.track_landmarks`: dlib landmarks with
    face-mesh lips, 25 fps); frames off-pose, small or blurred are dropped (:data:`MAX_YAW`,
    :data:`MAX_ROLL_DEG`, :data:`MIN_INTER_OCULAR`, :data:`MIN_SHARPNESS_RATIO`, a steady
    opening). Each grid cell takes the kept frame minimising the squared distance to its
    ``(opening, width)`` (openings in units of 0.05, widths in units of 0.1) plus 0.5 per rank of its
    clip in ``clips`` and minus a small bonus for sharpness.

    Args:
        talking_dir: folder holding ``<stem>.mp4`` for every stem in ``clips`` (read in place).
        out_path: where to write the ``.npz`` (:meth:`MouthAtlas.save`); None: do not write.
        clips: clip stems, best first.
        openings, widths: the grid (increasing).

    Returns:
        The atlas.

    Raises:
        FileNotFoundError: ``talking_dir`` or a clip is missing.
        MouthAtlasError: no clip frame passed the tests.
    """
    talking_dir = Path(talking_dir)
    if not talking_dir.is_dir():
        raise FileNotFoundError(f"no talking-clip folder {talking_dir}")
    candidates: list[_Candidate] = []
    for rank, stem in enumerate(clips):
        path = talking_dir / f"{stem}.mp4"
        if not path.is_file():
            raise FileNotFoundError(f"no clip {path}")
        candidates += _clip_candidates(path, rank)
    if not candidates:
        raise MouthAtlasError(f"no frame of {list(clips)} passed the atlas's pose, size and sharpness tests")
    cr = np.array([c.r for c in candidates])
    cw = np.array([c.w for c in candidates])
    rank = np.array([c.clip for c in candidates], np.float64)
    sharp = np.array([c.sharp for c in candidates])
    sharp_bonus = 0.3 * sharp / sharp.max()
    k, m = len(openings), len(widths)
    patches = np.zeros((k, m, PATCH_HEIGHT, PATCH_WIDTH, 3), np.uint8)
    rings = np.zeros((k, m, 2, 3), np.float32)
    measured = np.zeros((k, m, 2), np.float32)
    sources = np.empty((k, m), dtype=object)
    for a, ro in enumerate(openings):
        for b, wo in enumerate(widths):
            cost = ((cr - ro) / 0.05) ** 2 + ((cw - wo) / 0.1) ** 2 + 0.5 * rank - sharp_bonus
            best = candidates[int(np.argmin(cost))]
            patches[a, b], rings[a, b] = best.patch, best.ring
            measured[a, b] = (best.r, best.w)
            sources[a, b] = f"{clips[best.clip]}@{best.frame}"
    atlas = MouthAtlas(patches=patches, openings=np.asarray(openings, np.float32),
                       widths=np.asarray(widths, np.float32), ring_lab=rings, measured=measured,
                       sources=sources.astype(str))
    if out_path is not None:
        atlas.save(out_path)
    return atlas


def main(argv: list[str] | None = None) -> int:
    """``python -m teller_agent.render.mouth_atlas build [--talking DIR] [-o PATH]``."""
    from ..config import SHARED_DATA_DIR

    parser = argparse.ArgumentParser(prog="python -m teller_agent.render.mouth_atlas",
                                     description="Build the mouth-interior atlas from real talking clips.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="cut the atlas from the talking clips and write the .npz")
    b.add_argument("--talking", type=Path, default=SHARED_DATA_DIR / "talking",
                   help="folder of talking clips (default ../shared/data/talking)")
    b.add_argument("-o", "--out", type=Path, default=ATLAS_PATH, help=f"output .npz (default {ATLAS_PATH})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cv2.setNumThreads(1)
    atlas = build_atlas(args.talking, args.out)
    print(f"wrote {args.out}: {atlas.num_entries} entries ({len(atlas.openings)} openings x "
          f"{len(atlas.widths)} widths), {args.out.stat().st_size / 1024:.0f} KiB")
    for a, ro in enumerate(atlas.openings):
        cells = ", ".join(f"{s} (r {atlas.measured[a, b, 0]:.2f}, w {atlas.measured[a, b, 1]:.2f})"
                          for b, s in enumerate(atlas.sources[a]))
        print(f"  r {ro:.2f}: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
