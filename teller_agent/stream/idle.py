"""Endless idle motion, one frame at a time: the face while nobody is speaking.

Same ingredients as :func:`teller_agent.motion.procedural.procedural_motion`
with ``talking=False`` (Poisson blinks, slow head sway, breathing, a closed
mouth), but stateful and unbounded so a live session can run for hours: the
sway is a sum of sinusoids of absolute time and blinks are drawn frame by frame.
"""

from __future__ import annotations

import numpy as np

from ..config import FPS
from ..motion.articulation import expression
from ..motion.latent import MotionLatent
from ..motion.procedural import BLINK_PROFILE, BLINK_RATE_PER_MIN
from ..motion.space import FACE68

# (amplitude, frequencies Hz range) of each idle channel: a little less than while talking.
_SWAY = {"pitch": 1.2, "yaw": 2.5, "roll": 1.0, "tx": 0.004, "ty": 0.003, "scale": 0.004}


class IdleMotion:
    """Stateful ``face68`` idle motion at :data:`FPS` frames per second.

    Args:
        seed: seeds the sway frequencies and the blink process.
        blink_rate_per_min: mean blink rate (adults at rest blink about 15-20 times a minute).

    Each :meth:`next_frame` call advances time by one frame (40 ms).
    """

    def __init__(self, seed: int = 0, blink_rate_per_min: float = BLINK_RATE_PER_MIN):
        self._rng = np.random.default_rng(seed)
        self._freqs = {k: self._rng.uniform(0.05, 0.3, 3) for k in _SWAY}
        self._phases = {k: self._rng.uniform(0, 2 * np.pi, 3) for k in _SWAY}
        self._breath_phase = self._rng.uniform(0, 2 * np.pi)
        self._mean_gap = 60.0 * FPS / blink_rate_per_min
        self._frame = 0
        self._blink_at = -1
        self._next_blink = int(self._rng.uniform(0.3, 1.0) * self._mean_gap)

    @property
    def frame_index(self) -> int:
        """Frames produced so far."""
        return self._frame

    def _sway(self, key: str, t: float) -> float:
        w = np.array([0.6, 0.3, 0.2])
        return float(_SWAY[key] * (w * np.sin(2 * np.pi * self._freqs[key] * t + self._phases[key])).sum())

    def _blink(self) -> float:
        if self._frame >= self._next_blink and self._blink_at < 0:
            self._blink_at = self._frame
            self._next_blink = self._frame + FPS + int(self._rng.exponential(self._mean_gap - FPS))
        if self._blink_at < 0:
            return 0.0
        i = self._frame - self._blink_at
        if i >= len(BLINK_PROFILE):
            self._blink_at = -1
            return 0.0
        return float(BLINK_PROFILE[i])

    def next_frame(self) -> MotionLatent:
        """The next frame: a one-frame :class:`MotionLatent` with a closed, neutral mouth."""
        t = self._frame / FPS
        blink = self._blink()
        exp = expression(blink_left=blink, blink_right=blink)
        breathing = 0.004 * np.sin(2 * np.pi * 0.25 * t + self._breath_phase)
        motion = MotionLatent(
            exp=exp,
            pitch=[self._sway("pitch", t)],
            yaw=[self._sway("yaw", t)],
            roll=[self._sway("roll", t)],
            t=[[self._sway("tx", t), breathing + self._sway("ty", t), 0.0]],
            scale=[1.0 + self._sway("scale", t)],
            space=FACE68.name,
        )
        self._frame += 1
        return motion
