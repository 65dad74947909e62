"""Procedural motion: a living face without any learned model.

Blinks at a natural rate, a slow head sway with breathing, and a mouth that
opens and closes (to a given per-frame amount, e.g. an audio loudness
envelope, or to a speech-like syllable pattern). Used by ``teller-agent
animate --procedural`` and as the idle layer.
"""

from __future__ import annotations

import numpy as np

from ..config import FPS
from .articulation import expression
from .latent import MotionLatent
from .space import FACE68

#: Mean blink rate at rest, blinks per minute (adult spontaneous rate is ~15-20/min).
BLINK_RATE_PER_MIN = 17.0
#: Lid closure over the frames of one blink at 25 fps (~280 ms: fast close, slower open).
BLINK_PROFILE = np.array([0.35, 0.8, 1.0, 1.0, 0.7, 0.4, 0.15], np.float32)


def blink_track(num_frames: int, rng: np.random.Generator, rate_per_min: float = BLINK_RATE_PER_MIN) -> np.ndarray:
    """(T,) float32 lid closure in [0, 1]: blinks as a Poisson process with a 1 s refractory gap."""
    out = np.zeros(num_frames, np.float32)
    mean_gap = 60.0 * FPS / rate_per_min
    frame = int(rng.uniform(0.3, 1.0) * mean_gap)
    while frame < num_frames:
        end = min(frame + len(BLINK_PROFILE), num_frames)
        out[frame:end] = BLINK_PROFILE[: end - frame]
        frame += FPS + int(rng.exponential(mean_gap - FPS))
    return out


def sway_track(num_frames: int, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """(T,) float32 smooth random motion: three sinusoids of 0.05-0.35 Hz, peak about ``amplitude``."""
    t = np.arange(num_frames) / FPS
    freqs = rng.uniform(0.05, 0.35, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    weights = np.array([0.6, 0.3, 0.2])
    return (amplitude * (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0)).astype(
        np.float32
    )


def syllable_pattern(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) float32 mouth opening in [0, 1]: ~4 syllables/s in phrases of 1.5-3 s with 0.4-0.9 s pauses."""
    out = np.zeros(num_frames, np.float32)
    frame = int(0.3 * FPS)
    while frame < num_frames:
        phrase = int(rng.uniform(1.5, 3.0) * FPS)
        t = np.arange(phrase) / FPS
        rate = rng.uniform(3.5, 5.0)
        depth = rng.uniform(0.35, 0.8, size=int(t[-1] * rate) + 2)
        syll = depth[(t * rate).astype(int)] * np.sin(np.pi * ((t * rate) % 1.0)) ** 2
        end = min(frame + phrase, num_frames)
        out[frame:end] = syll[: end - frame]
        frame = end + int(rng.uniform(0.4, 0.9) * FPS)
    return out


def procedural_motion(
    num_frames: int,
    seed: int = 0,
    mouth: np.ndarray | None = None,
    talking: bool = True,
) -> MotionLatent:
    """A ``face68`` latent of ``num_frames`` frames of natural-looking motion.

    Args:
        num_frames: T, at :data:`FPS` frames per second.
        seed: seeds every random choice; the same seed gives the same motion.
        mouth: optional (T,) jaw opening in [0, 1] (1 = wide open). When None,
            a speech-like syllable pattern is used if ``talking``, else a closed mouth.
        talking: with no ``mouth``, whether to move the mouth at all.

    Returns:
        :class:`MotionLatent` in the ``face68`` space.
    """
    rng = np.random.default_rng(seed)
    if mouth is None:
        mouth = syllable_pattern(num_frames, rng) if talking else np.zeros(num_frames, np.float32)
    mouth = np.clip(np.asarray(mouth, np.float32).reshape(-1)[:num_frames], 0.0, 1.0)
    if len(mouth) < num_frames:
        mouth = np.pad(mouth, (0, num_frames - len(mouth)))
    blink = blink_track(num_frames, rng)
    # Speech pulls the lips a little round/spread at random; brows lift with loud syllables.
    round_ = np.clip(sway_track(num_frames, rng, 0.8), 0, None) * mouth
    exp = expression(
        jaw_open=0.65 * mouth, lip_round=0.5 * round_, blink_left=blink, blink_right=blink,
        brow_raise=0.25 * np.convolve(mouth, np.ones(9) / 9, mode="same"),
    ) if num_frames else np.zeros((0, 68, 3), np.float32)
    t = np.arange(num_frames) / FPS
    breathing = 0.004 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 2 * np.pi))
    nod = 1.5 * np.convolve(mouth, np.ones(5) / 5, mode="same") if num_frames else mouth
    trans = np.zeros((num_frames, 3), np.float32)
    trans[:, 0] = sway_track(num_frames, rng, 0.006)
    trans[:, 1] = breathing + sway_track(num_frames, rng, 0.004)
    return MotionLatent(
        exp=exp,
        pitch=sway_track(num_frames, rng, 2.0) - nod,
        yaw=sway_track(num_frames, rng, 3.5),
        roll=sway_track(num_frames, rng, 1.5),
        t=trans,
        scale=1.0 + sway_track(num_frames, rng, 0.006),
        space=FACE68.name,
    )
