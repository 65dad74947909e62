"""Frame stamps: a 16-bit counter drawn as black/white blocks on the bottom edge.

A measurement aid, off by default. With stamps on, a viewer that receives the
compressed video can tell exactly which engine frame it is looking at, and so
measure audio/video offset and latency end to end (``teller-agent demo``, the
LiveKit tests). Layout: a white and a black guard block, then 16 data blocks,
most significant bit first; each block is ``size // 64`` pixels wide (8 px at
512x512) and as tall, along the bottom-left edge.

Code: bit 15 is set while the avatar speaks; bits 0-14 count frames within the
speech segment (from 0) or, while idle, idle frames.
"""

from __future__ import annotations

import numpy as np

BITS = 16
SPEAKING = 1 << 15


def _block(size: int) -> int:
    return max(4, size // 64)


def stamp(frame: np.ndarray, code: int) -> None:
    """Draw ``code`` (0..65535) into an (S, S, 3) uint8 frame, in place."""
    b = _block(frame.shape[0])
    y = frame.shape[0] - b
    values = [255, 0] + [255 if (code >> (BITS - 1 - i)) & 1 else 0 for i in range(BITS)]
    for i, v in enumerate(values):
        frame[y:, i * b : (i + 1) * b] = v


def read_stamp(frame: np.ndarray) -> int | None:
    """The code stamped into an (S, S, 3) or (S, S) frame, or None when the guard blocks are absent."""
    b = _block(frame.shape[0])
    if frame.shape[1] < (BITS + 2) * b:  # too narrow to hold a stamp (a received frame of another shape)
        return None
    strip = frame[frame.shape[0] - b :]  # only the bottom strip: this runs on every received frame
    gray = strip if strip.ndim == 2 else strip[..., :3].mean(axis=2)
    m = max(1, b // 4)  # sample block centres, away from compression ringing at the edges
    levels = [float(gray[m : -m or None, i * b + m : (i + 1) * b - m].mean()) for i in range(BITS + 2)]
    if levels[0] < 170 or levels[1] > 85:
        return None
    code = 0
    for v in levels[2:]:
        code = (code << 1) | int(v > 127)
    return code
