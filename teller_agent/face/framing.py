"""Geometry of the head-and-shoulders crop and the face mask.

A crop is ``(x0, y0, side)`` in original-image pixels: it covers pixel
columns ``x0 .. x0 + side - 1`` and rows ``y0 .. y0 + side - 1`` (integers).
Resized to ``size x size``, crop pixel ``X`` shows original position
``x = x0 + (X + 0.5) * side / size - 0.5`` (pixel centres at integers, as
:func:`cv2.resize` does), and likewise for ``y``.

Framing stays inside the photo wherever it can: a crop that would leave it is
first moved (the face a little off its place, at most :data:`MAX_SHIFT` of the
frame), then made smaller (the face larger, up to :data:`MAX_ZOOM` times the
configured scale). Only a photo cropped tighter than that leaves a band outside
it, and that band is filled with the photo's own edge content mirrored and
blurred, joined with a soft seam (:func:`extract_crop`): never with repeated
rows, which turn necks and shoulders into vertical streaks.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .face68 import BROWS, CHIN
from .landmarks import Box, face_width

#: ``(x0, y0, side)`` in original-image pixels.
CropBox = tuple[float, float, float]

#: The face mask reaches above the eyebrows by this fraction of the
#: chin-to-brow distance (the forehead is about half of it in adults; a little
#: more so the mask covers the hairline).
FOREHEAD_EXTENSION = 0.6

#: Most the face centre may move from its configured place (fraction of the frame side) to keep
#: the crop inside the photo.
MAX_SHIFT = 0.04
#: Most the face may be enlarged over the configured ``face_scale`` to keep the crop inside the photo.
MAX_ZOOM = 1.5
#: Width of the soft seam between the photo and a filled band, as a fraction of the frame side.
SEAM = 0.06


def crop_for_face(landmarks: np.ndarray, face_scale: float, face_center_y: float,
                  image_size: tuple[int, int] | None = None) -> CropBox:
    """Square, axis-aligned crop framing the face.

    The side is ``face_width / face_scale`` (face width: jaw points 0-16); the
    face centre (mean of the 68 landmarks) lands at the horizontal centre and
    at ``face_center_y`` of the height. Given ``image_size``, a crop that would
    leave the photo is moved by up to :data:`MAX_SHIFT` of its side and, if that is
    not enough, made smaller, down to ``1 / MAX_ZOOM`` of the side (the largest that
    fits is taken); beyond that it is placed as far inside as those limits allow.
    Values are rounded to whole pixels.

    Args:
        landmarks: ``(68, 2)`` pixel coordinates in the original image.
        face_scale, face_center_y: the framing (:class:`~teller_agent.config.TellerSettings`).
        image_size: ``(width, height)`` of the photo in pixels; None frames without it.
    """
    side = max(1.0, face_width(landmarks) / face_scale)
    cx, cy = (float(v) for v in landmarks.mean(axis=0))
    # Columns x0 .. x0+side-1 span [x0 - 0.5, x0 + side - 0.5] (pixel centres at integers).
    side_px = max(1, round(side))
    x_px = _round_half_up(cx + 0.5 - 0.5 * side_px)
    y_px = _round_half_up(cy + 0.5 - face_center_y * side_px)
    if image_size is not None and not (0 <= x_px <= image_size[0] - side_px and 0 <= y_px <= image_size[1] - side_px):
        width, height = image_size

        def place(s: float) -> tuple[float, float, bool]:
            """Position of a crop of side ``s`` with the face moved by at most MAX_SHIFT * s, as far
            inside the photo as that allows; and whether it is wholly inside."""
            out, fits = [], True
            for want, extent in ((cx + 0.5 - 0.5 * s, width), (cy + 0.5 - face_center_y * s, height)):
                lo, hi = want - MAX_SHIFT * s, want + MAX_SHIFT * s  # allowed positions
                first, last = 0.0, extent - s  # positions that keep the crop inside the photo
                if first <= last and max(lo, first) <= min(hi, last):
                    out.append(min(max(want, first), last))
                    continue
                fits = False
                # as far inside as allowed: towards the photo, or centred on it if it is too small
                target = 0.5 * (first + last) if first > last else (first if want < first else last)
                out.append(min(max(target, lo), hi))
            return out[0], out[1], fits

        x0, y0, fits = place(side)
        if not fits:
            smallest = side / MAX_ZOOM
            x0, y0, fits = place(smallest)
            if not fits:
                side = smallest
            else:
                lo, hi = smallest, side  # the largest side that fits: bisection (fitting is monotone)
                for _ in range(30):
                    mid = 0.5 * (lo + hi)
                    lo, hi = (mid, hi) if place(mid)[2] else (lo, mid)
                side = lo
                x0, y0, _ = place(side)
        if fits:  # whole pixels that stay inside
            side_px = max(1, min(math.floor(side + 1e-3), width, height))
            return (float(min(max(_round_half_up(x0), 0), width - side_px)),
                    float(min(max(_round_half_up(y0), 0), height - side_px)), float(side_px))
        side_px = max(1, round(side))
        return float(_round_half_up(x0)), float(_round_half_up(y0)), float(side_px)
    return float(x_px), float(y_px), float(side_px)


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def extract_crop(image: np.ndarray, crop: CropBox, size: int) -> np.ndarray:
    """Cut ``crop`` out of ``image`` and resize it to ``size x size``.

    The part inside the image is resized (``INTER_AREA`` when shrinking,
    ``INTER_CUBIC`` when growing). Where the crop leaves the image, the band is
    filled with the image's edge content mirrored across the edge and blurred,
    blended in over a soft seam of :data:`SEAM` of the side (:func:`fill_border`),
    so it reads as out-of-focus background and clothing. The fill is made after
    resizing, so memory stays ``O(size**2)`` even for huge crops.

    Args:
        image: ``(H, W, 3) uint8``.
        crop: ``(x0, y0, side)`` from :func:`crop_for_face`.
        size: output side in pixels.

    Returns:
        ``(size, size, 3) uint8``.

    Raises:
        ValueError: the crop does not overlap the image.
    """
    x0, y0, side = (int(v) for v in crop)
    height, width = image.shape[:2]
    scale = size / side
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, width), min(y0 + side, height)
    if sx1 <= sx0 or sy1 <= sy0:
        raise ValueError(f"crop {crop} does not overlap the {width}x{height} image")
    ox0, ox1 = _output_span(sx0 - x0, sx1 - x0, scale, size)
    oy0, oy1 = _output_span(sy0 - y0, sy1 - y0, scale, size)
    interpolation = cv2.INTER_AREA if scale <= 1.0 else cv2.INTER_CUBIC
    inside = cv2.resize(image[sy0:sy1, sx0:sx1], (ox1 - ox0, oy1 - oy0), interpolation=interpolation)
    return fill_border(inside, (oy0, size - oy1, ox0, size - ox1))


def _mirror_indices(n: int, before: int, after: int) -> np.ndarray:
    """Indices into ``range(n)`` for ``before + n + after`` positions, mirrored at both ends
    without repeating the edge (as ``BORDER_REFLECT_101``), repeatedly for bands wider than ``n``."""
    i = np.arange(-before, n + after)
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    m = np.mod(i, period)
    return np.where(m < n, m, period - m)


def fill_border(inside: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """``inside`` ``(h, w, 3) uint8`` extended by ``(top, bottom, left, right)`` pixels: the band is
    the edge content mirrored and blurred (sigma 2% of the output side), faded in from the sharp
    mirror at the edge over :data:`SEAM` of the side. No row or column repeats its neighbour."""
    top, bottom, left, right = pads
    if not any(pads):
        return np.ascontiguousarray(inside)
    h, w = inside.shape[:2]
    rows = _mirror_indices(h, top, bottom)
    cols = _mirror_indices(w, left, right)
    mirrored = inside[rows[:, None], cols[None, :]]
    side = max(len(rows), len(cols))
    blurred = cv2.GaussianBlur(mirrored, (0, 0), max(1.5, 0.02 * side))
    dy = np.maximum(np.maximum(top - np.arange(len(rows)), np.arange(len(rows)) - (top + h - 1)), 0)
    dx = np.maximum(np.maximum(left - np.arange(len(cols)), np.arange(len(cols)) - (left + w - 1)), 0)
    dist = np.sqrt(dy[:, None].astype(np.float32) ** 2 + dx[None, :].astype(np.float32) ** 2)
    weight = np.clip(dist / max(1.0, SEAM * side), 0.0, 1.0)[..., None]
    out = mirrored.astype(np.float32) * (1.0 - weight) + blurred.astype(np.float32) * weight
    return np.ascontiguousarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))


def streak_share(image: np.ndarray, run: int = 12, texture: float = 2.0) -> float:
    """Share (0..1) of ``image`` covered by replicated-border streaks: runs of at least ``run``
    rows (or columns) each exactly equal to its neighbour while textured (grey-level standard
    deviation along it above ``texture``): what repeating an edge row does to a neck or shoulders.
    A plain background (rows equal but flat) does not count.

    Args:
        image: ``(H, W, 3) uint8``.
    """
    img = np.asarray(image)
    mask = np.zeros(img.shape[:2], bool)
    for axis in (0, 1):
        a = img if axis == 0 else img.transpose(1, 0, 2)
        same = np.all(a[1:] == a[:-1], axis=(1, 2)) & (a[1:].mean(axis=2).std(axis=1) > texture)
        hit = np.zeros(len(a), bool)
        start = None
        for i, flag in enumerate(np.append(same, False)):
            if flag and start is None:
                start = i
            elif not flag and start is not None:
                if i - start >= run:
                    hit[start : i + 1] = True  # the run and the line it repeats
                start = None
        if axis == 0:
            mask[hit, :] = True
        else:
            mask[:, hit] = True
    return float(mask.mean())


def _output_span(start: int, stop: int, scale: float, size: int) -> tuple[int, int]:
    """Output pixel range of the source range ``[start, stop)`` (crop-relative)."""
    out0 = min(max(round(start * scale), 0), size - 1)
    out1 = min(max(round(stop * scale), out0 + 1), size)
    return out0, out1


def to_crop_points(points: np.ndarray, crop: CropBox, size: int) -> np.ndarray:
    """Map ``(N, 2)`` original-image pixel coordinates into the resized crop."""
    x0, y0, side = crop
    scale = size / side
    origin = np.array([x0, y0], dtype=np.float64)
    return ((np.asarray(points, dtype=np.float64) - origin + 0.5) * scale - 0.5).astype(np.float32)


def to_crop_box(box: Box, crop: CropBox, size: int) -> Box:
    """Map a ``(left, top, right, bottom)`` box into the resized crop (floats)."""
    corners = to_crop_points(np.array([box[:2], box[2:]], dtype=np.float64), crop, size)
    return tuple(float(v) for v in corners.reshape(-1))  # type: ignore[return-value]


def clip_box(box: Box, size: int) -> tuple[int, int, int, int]:
    """Round a box to integers and clip it to ``[0, size - 1]``."""
    return tuple(int(min(max(round(v), 0), size - 1)) for v in box)  # type: ignore[return-value]


def face_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Binary mask of the face including the forehead.

    The convex hull of the 68 landmarks plus the ten eyebrow points (17-26)
    shifted "up the face" by :data:`FOREHEAD_EXTENSION` times the vector from
    the chin (point 8) to the eyebrow centre, so it follows head tilt.

    Args:
        landmarks: ``(68, 2)`` pixel coordinates in an image of ``size x size``.

    Returns:
        ``(size, size) uint8``, 255 inside the face, 0 outside.
    """
    brows = landmarks[list(BROWS)].astype(np.float64)
    up = brows.mean(axis=0) - landmarks[CHIN]
    forehead = brows + FOREHEAD_EXTENSION * up
    points = np.concatenate([landmarks, forehead]).round().astype(np.int32)
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points), 255)
    return mask
