"""Frame-rate loudness envelope of speech.

Used for the procedural mouth when no motion model is involved, and as the
"mouth opening proportional to loudness" baseline of the lip-sync evaluation.
"""

from __future__ import annotations

import numpy as np

from ..config import FPS


def loudness_envelope(pcm: np.ndarray, sample_rate: int, fps: int = FPS, floor_db: float = -40.0) -> np.ndarray:
    """Loudness per video frame, mapped to [0, 1].

    RMS over each frame's 1/fps seconds of audio, in dB relative to the clip's
    95th-percentile frame; ``floor_db`` and below map to 0, the reference to 1.

    Args:
        pcm: (N,) float mono samples in [-1, 1].
        sample_rate: Hz.
        fps: video frames per second.
        floor_db: level (dB below the reference) that counts as silence.

    Returns:
        (ceil(N * fps / sample_rate),) float32 in [0, 1]; empty for empty input.
    """
    pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
    hop = sample_rate / fps
    n = int(np.ceil(len(pcm) / hop))
    if n == 0:
        return np.zeros(0, np.float32)
    edges = np.round(np.arange(n + 1) * hop).astype(int)
    edges[-1] = len(pcm)
    energy = np.add.reduceat(pcm.astype(np.float64) ** 2, edges[:-1]) / np.maximum(np.diff(edges), 1)
    db = 10.0 * np.log10(energy + 1e-10)
    ref = np.percentile(db, 95)
    return np.clip((db - ref - floor_db) / -floor_db, 0.0, 1.0).astype(np.float32)
