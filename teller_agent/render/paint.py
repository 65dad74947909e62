"""Painting what a warp of one photo cannot show: the mouth interior and closing eyelids.

A portrait usually has closed lips and open eyes. When the driven inner lips
part, :func:`paint_mouth` fills the gap with a dark oral cavity shaded toward
the back, a band of upper teeth and, when wide open, a hint of tongue. When the
driven upper lid comes down, :func:`paint_eyelids` slides lid skin (the
portrait's own skin tone) with a lash line over the still eyeball.

Both work column by column inside the feature's bounding box only, with
anti-aliased edges, and modify ``frame`` in place.
"""

from __future__ import annotations

import numpy as np

_CAVITY_EDGE = np.array([105.0, 40.0, 45.0], np.float32)
_CAVITY_DEEP = np.array([22.0, 6.0, 8.0], np.float32)
_TONGUE = np.array([150.0, 62.0, 68.0], np.float32)
_TEETH = np.array([228.0, 222.0, 208.0], np.float32)
_LASH = np.array([38.0, 28.0, 26.0], np.float32)


def _chain(points: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """y of the polyline ``points`` (n, 2) at columns ``xs`` (linear, sorted by x)."""
    order = np.argsort(points[:, 0], kind="stable")
    return np.interp(xs, points[order, 0], points[order, 1])


def smoothstep(x: np.ndarray) -> np.ndarray:
    """Hermite ease 3x^2 - 2x^3 of ``x`` clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _box(frame: np.ndarray, x0: float, x1: float, y0: float, y1: float):
    h, w = frame.shape[:2]
    ix0, ix1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, w)
    iy0, iy1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, h)
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    return ix0, ix1, iy0, iy1


def mouth_gap(inner_lips: np.ndarray) -> float:
    """Largest vertical inner-lip gap in pixels; ``inner_lips`` is (8, 2) = landmarks 60-67."""
    upper, lower = inner_lips[[1, 2, 3]], inner_lips[[7, 6, 5]]
    return float(max((lower[:, 1] - upper[:, 1]).max(), 0.0))


def paint_mouth(frame: np.ndarray, inner_lips: np.ndarray, rest_gap: float) -> None:
    """Fill the opening between the driven inner lips.

    Args:
        frame: (S, S, 3) uint8 RGB, modified in place.
        inner_lips: (8, 2) float driven pixel positions of landmarks 60-67.
        rest_gap: the portrait's own inner-lip gap in pixels; the fill fades
            in over the first 3 pixels of opening beyond it (a photo with an
            open mouth keeps its own teeth until the mouth opens further).
    """
    strength = float(np.clip((mouth_gap(inner_lips) - rest_gap - 0.5) / 3.0, 0.0, 1.0))
    if strength <= 0.0:
        return
    upper = inner_lips[[0, 1, 2, 3, 4]]
    lower = inner_lips[[0, 7, 6, 5, 4]]
    left, right = float(inner_lips[:, 0].min()), float(inner_lips[:, 0].max())
    box = _box(frame, left, right, inner_lips[:, 1].min(), inner_lips[:, 1].max())
    if box is None or right - left < 2:
        return
    x0, x1, y0, y1 = box
    xs = np.arange(x0, x1, dtype=np.float32)
    y_up = _chain(upper, xs)[None, :]
    y_lo = np.maximum(_chain(lower, xs), _chain(upper, xs))[None, :]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    gap = np.maximum(y_lo - y_up, 1e-3)
    cover = np.clip(ys + 0.5 - y_up, 0, 1) * np.clip(y_lo - ys + 0.5, 0, 1)
    cover *= ((xs >= left) & (xs <= right))[None, :]
    if not cover.any():
        return
    width = right - left
    u = np.clip((xs[None, :] - left) / width, 0.0, 1.0)
    arch = np.clip(np.sin(np.pi * u), 0.0, 1.0)  # 0 at the corners, 1 mid-mouth
    v = np.clip((ys - y_up) / gap, 0, 1)
    # Cavity: dark red at the lips, near black deep inside and toward the corners.
    depth = smoothstep(np.minimum(v, 1 - v) * 2.5) * (0.55 + 0.45 * arch)
    color = _CAVITY_EDGE + (_CAVITY_DEEP - _CAVITY_EDGE) * depth[..., None]
    # Tongue: the lower part of a wide-open mouth.
    tongue = smoothstep((v - 0.6) / 0.4) * np.clip(gap / (0.35 * width), 0, 1) * arch**0.5
    color += (_TONGUE - color) * (0.7 * tongue)[..., None]
    # Upper teeth: a band under the upper lip, narrower than the mouth.
    teeth_h = np.minimum(0.45 * gap, 0.16 * width)
    in_teeth = np.clip(y_up + teeth_h - ys, 0, 1) * smoothstep((0.4 - np.abs(u - 0.5)) / 0.08)
    shade = 0.62 + 0.38 * arch**0.7
    color += (_TEETH * shade[..., None] - color) * in_teeth[..., None]
    alpha = (cover * strength)[..., None]
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = np.clip(roi + (color - roi) * alpha, 0, 255).astype(np.uint8)


def paint_eyelids(
    frame: np.ndarray, rest_upper: np.ndarray, lid_upper: np.ndarray, lower: np.ndarray, skin: np.ndarray
) -> None:
    """Slide the upper lid of one eye down to ``lid_upper``.

    Args:
        frame: (S, S, 3) uint8 RGB, modified in place.
        rest_upper: (4, 2) pixel positions of the upper lid (corner, 2 lid
            points, corner) where the warped eye has it, i.e. without expression.
        lid_upper: (4, 2) the driven upper lid; it stops at the lower lid.
        lower: (4, 2) the lower lid (corner, 2 lid points, corner).
        skin: (3,) float RGB lid skin tone.
    """
    left, right = float(rest_upper[:, 0].min()), float(rest_upper[:, 0].max())
    if right - left < 2:
        return
    xs = np.arange(np.floor(left), np.ceil(right) + 1, dtype=np.float32)
    y_rest = _chain(rest_upper, xs)
    y_low = _chain(lower, xs)
    y_lid = np.minimum(np.maximum(_chain(lid_upper, xs), y_rest), np.maximum(y_low, y_rest))
    travel = y_lid - y_rest
    if travel.max() < 0.3:
        return
    # The photo's own lashes sit just above the upper-lid landmarks: start the lid above them.
    fold = max(1.5, 0.1 * (right - left))
    box = _box(frame, left, right, y_rest.min() - fold - 1, y_lid.max() + 2)
    if box is None:
        return
    x0, x1, y0, y1 = box
    sel = (xs >= x0) & (xs < x1)
    xs, y_rest, y_lid, travel = xs[sel], y_rest[sel][None], y_lid[sel][None], travel[sel][None]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    inside = ((xs >= left) & (xs <= right))[None, :]
    cover = np.clip((ys - (y_rest - fold - 1.0)) / 2.0, 0, 1) * np.clip(y_lid + 0.5 - ys, 0, 1) * inside
    cover *= np.clip(travel / 1.5, 0, 1)
    # Lid skin shaded as a convex surface (darker at the fold and at the edge),
    # with a lash line along the edge.
    toward_edge = np.clip((ys - y_rest + fold) / np.maximum(travel + fold, 1.0), 0, 1)
    color = skin * (0.8 + 0.12 * np.sin(np.pi * toward_edge))[..., None]
    lash = np.clip(2.2 - np.abs(ys - y_lid), 0, 1) * np.clip(travel / 2.0, 0, 1)
    color += (_LASH - color) * (0.85 * lash)[..., None]
    alpha = cover[..., None]
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = np.clip(roi + (color - roi) * alpha, 0, 255).astype(np.uint8)
