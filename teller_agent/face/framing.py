"""Geometry of the head-and-shoulders crop and the face mask.

A crop is ``(x0, y0, side)`` in original-image pixels: it covers pixel
columns ``x0 .. x0 + side - 1`` and rows ``y0 .. y0 + side - 1`` (integers,
possibly outside the image, where the border is replicated). Resized to
``size x size``, crop pixel ``X`` shows original position
``x = x0 + (X + 0.5) * side / size - 0.5`` (pixel centres at integers, as
:func:`cv2.resize` does), and likewise for ``y``.
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


def crop_for_face(landmarks: np.ndarray, face_scale: float, face_center_y: float) -> CropBox:
    """Square, axis-aligned crop framing the face.

    The side is ``face_width / face_scale`` (face width: jaw points 0-16); the
    face centre (mean of the 68 landmarks) lands at the horizontal centre and
    at ``face_center_y`` of the height. Values are rounded to whole pixels.

    Args:
        landmarks: ``(68, 2)`` pixel coordinates in the original image.
    """
    side = max(1, round(face_width(landmarks) / face_scale))
    cx, cy = (float(v) for v in landmarks.mean(axis=0))
    # Columns x0 .. x0+side-1 span [x0 - 0.5, x0 + side - 0.5] (pixel centres at integers).
    x0 = _round_half_up(cx + 0.5 - 0.5 * side)
    y0 = _round_half_up(cy + 0.5 - face_center_y * side)
    return float(x0), float(y0), float(side)


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def extract_crop(image: np.ndarray, crop: CropBox, size: int) -> np.ndarray:
    """Cut ``crop`` out of ``image`` and resize it to ``size x size``.

    The part inside the image is resized (``INTER_AREA`` when shrinking,
    ``INTER_CUBIC`` when growing); where the crop leaves the image, the edge
    pixels are repeated (``cv2.BORDER_REPLICATE``), which reads as an extended
    background rather than a black bar. Padding is applied after resizing, so
    memory stays ``O(size**2)`` even for huge crops.

    Args:
        image: ``(H, W, 3) uint8``.
        crop: ``(x0, y0, side)`` from :func:`crop_for_face`.
        size: output side in pixels.

    Returns:
        ``(size, size, 3) uint8``.
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
    padded = cv2.copyMakeBorder(inside, oy0, size - oy1, ox0, size - ox1, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(padded)


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
