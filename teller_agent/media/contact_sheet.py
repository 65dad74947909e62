"""Contact sheets (a grid of labelled thumbnails) for eyeballing frame
sequences, and atomic PNG/JPEG saving."""

from __future__ import annotations

import math
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..config import FPS
from ..utils.atomic import atomic_path

__all__ = ["contact_sheet", "save_image"]

_BACKGROUND = 32  # gray level of the gutters and of empty cells


def contact_sheet(
    frames: Sequence[np.ndarray],
    every: int = 1,
    cols: int = 6,
    labels: Sequence[str] | None = None,
    thumb: int | None = 160,
    gap: int = 2,
    fps: float = FPS,
) -> np.ndarray:
    """Lay every ``every``-th frame out in a labelled grid.

    Frames ``0, every, 2*every, ...`` are resized (``cv2.INTER_AREA``) to
    thumbnails ``thumb`` pixels wide, keeping the aspect ratio of the first
    frame (all thumbnails share that size, so frames of other sizes are
    stretched to it), and placed row by row, ``cols`` per row, separated by
    ``gap`` dark-gray pixels. Each thumbnail carries a small white-on-black
    label drawn with ``cv2.putText``: by default ``"<index> <seconds>s"`` with
    seconds ``index / fps``.

    Args:
        frames: RGB ``uint8`` images ``(H, W, 3)``; grayscale ``(H, W)`` and RGBA
            ``(H, W, 4)`` are accepted (alpha is dropped).
        every: Take every N-th frame (>= 1).
        cols: Thumbnails per row (>= 1); fewer if fewer frames are selected.
        labels: Text per thumbnail. Either one per input frame
            (``len(frames)``; the selected ones are used) or one per selected
            frame. ``None``: frame index and time. Use ``""`` for no label.
        thumb: Thumbnail width in pixels; ``None`` keeps the first frame's size.
        gap: Pixels between thumbnails (>= 0); no border around the sheet.
        fps: Frame rate used for the default time labels, frames per second.

    Returns:
        ``uint8`` RGB array of shape
        ``(rows * th + (rows - 1) * gap, c * tw + (c - 1) * gap, 3)`` where
        ``n = ceil(len(frames) / every)``, ``c = min(cols, n)``,
        ``rows = ceil(n / c)``, ``tw = thumb`` (or the first frame's width) and
        ``th = round(tw * H0 / W0)`` (at least 1) for the first frame's
        ``(H0, W0)``.

    Raises:
        ValueError: no frames, ``every``/``cols``/``thumb`` < 1, ``gap`` < 0,
            a frame that is not a uint8 image, or ``labels`` of the wrong length.
    """
    if every < 1 or cols < 1:
        raise ValueError(f"every and cols must be >= 1, got every={every}, cols={cols}")
    if thumb is not None and thumb < 1:
        raise ValueError(f"thumb must be >= 1 pixel or None, got {thumb}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    if len(frames) == 0:
        raise ValueError("contact_sheet needs at least one frame")
    indices = list(range(0, len(frames), every))
    if labels is None:
        texts = [f"{i} {i / fps:.2f}s" for i in indices]
    elif len(labels) == len(frames):
        texts = [str(labels[i]) for i in indices]
    elif len(labels) == len(indices):
        texts = [str(t) for t in labels]
    else:
        raise ValueError(
            f"labels has {len(labels)} entries; expected {len(frames)} (one per frame) "
            f"or {len(indices)} (one per selected frame)"
        )

    first = _as_rgb(frames[0], 0)
    h0, w0 = first.shape[:2]
    tw = int(thumb) if thumb is not None else w0
    th = max(1, round(tw * h0 / w0))
    n = len(indices)
    c = min(cols, n)
    rows = math.ceil(n / c)
    sheet = np.full((rows * th + (rows - 1) * gap, c * tw + (c - 1) * gap, 3), _BACKGROUND, np.uint8)

    scale = max(0.3, min(1.0, tw / 320))
    thick = 1
    for pos, (i, text) in enumerate(zip(indices, texts, strict=True)):
        img = _as_rgb(frames[i], i)
        if img.shape[:2] != (th, tw):
            interp = cv2.INTER_AREA if img.shape[0] > th else cv2.INTER_LINEAR
            img = cv2.resize(img, (tw, th), interpolation=interp)
        else:
            img = img.copy()
        if text:
            (w_txt, h_txt), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
            x, y = 3, 3 + h_txt
            cv2.rectangle(img, (x - 2, y - h_txt - 2), (x + w_txt + 2, y + base), (0, 0, 0), -1)
            cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
        r, col = divmod(pos, c)
        y0, x0 = r * (th + gap), col * (tw + gap)
        sheet[y0 : y0 + th, x0 : x0 + tw] = img
    return sheet


def _as_rgb(frame: np.ndarray, index: int) -> np.ndarray:
    a = np.asarray(frame)
    if a.dtype != np.uint8:
        raise ValueError(f"frame {index} must be uint8, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"frame {index} must have shape (H, W, 3), got {np.asarray(frame).shape}")
    return np.ascontiguousarray(a)


def save_image(path: str | PathLike[str], rgb: np.ndarray, quality: int = 92) -> Path:
    """Save an RGB image atomically (temporary file next to ``path``, then
    :func:`os.replace`); the format follows the suffix (``.png``, ``.jpg``,
    ``.jpeg``, ``.webp``, ...).

    Args:
        path: Output file; its folder must exist.
        rgb: ``uint8`` array ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA (not for
            JPEG) or ``(H, W)`` grayscale.
        quality: JPEG/WebP quality, 1-100.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: unknown suffix, or ``rgb`` is not a uint8 image.
        OSError: the file cannot be written (the temporary file is removed).
    """
    p = Path(path)
    fmt = Image.registered_extensions().get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"Cannot tell the image format from {p.name!r}; use a .png or .jpg suffix")
    a = np.asarray(rgb)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ValueError(f"rgb must be a uint8 array of shape (H, W), (H, W, 3) or (H, W, 4), got {a.dtype} {a.shape}")
    img = Image.fromarray(np.ascontiguousarray(a))
    if fmt == "JPEG" and img.mode == "RGBA":
        img = img.convert("RGB")
    kwargs = {"quality": int(quality)} if fmt in ("JPEG", "WEBP") else {}
    with atomic_path(p) as tmp:
        img.save(tmp, format=fmt, **kwargs)
    return p
