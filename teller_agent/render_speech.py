"""The main job: a portrait and speech audio -> a lip-synced talking video.

Speech -> :class:`~teller_agent.fmlg.MotionGenerator` (FMLG motion tokens ->
motion latent) -> :class:`~teller_agent.render.WarpRenderer` -> H.264 + AAC mp4.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .animate import animate
from .config import TellerSettings
from .data.espeak import synthesize
from .fmlg.generator import MotionGenerator
from .media import load_audio


@dataclass
class RenderResult:
    """What :func:`render_speech` wrote, with its real-time factor (wall seconds / video seconds)."""

    video: Path
    frames: int
    seconds: float
    contact_sheet: Path | None
    rtf: float


def render_speech(
    output: str | Path,
    audio: str | Path | None = None,
    image: str | Path | np.ndarray | None = None,
    say: str | None = None,
    voice: str = "en-us",
    settings: TellerSettings | None = None,
    contact_sheet_path: str | Path | None = None,
    every: int = 10,
    motion_out: str | Path | None = None,
    progress: bool = True,
) -> RenderResult:
    """Render ``image`` speaking ``audio`` to ``output``; the video lasts as long as the audio (to a frame).

    Args:
        audio: speech file; or give ``say`` instead: text spoken by eSpeak NG in ``voice``.

    Raises:
        AudioLoadError, ImageLoadError, NoFaceError, CheckpointError, ... (each names the fix).
    """
    if (audio is None) == (say is None):
        raise ValueError("give exactly one of audio (a speech file) or say (text to speak)")
    start = time.perf_counter()
    if say is not None:
        utterance = synthesize(say, voice=voice)
        pcm, sr = utterance.pcm, utterance.sample_rate
    else:
        pcm, sr = load_audio(audio, sample_rate=None)
    settings = settings or TellerSettings()
    torch.set_num_threads(1)
    generator = MotionGenerator.from_settings(settings)
    motion = generator.generate(pcm, sr)  # resampled to 16 kHz inside
    if motion_out is not None:
        motion.save(motion_out)
    result = animate(output, image=image, motion=motion, audio=(pcm, sr), contact_sheet_path=contact_sheet_path,
                     every=every, settings=settings, progress=progress)
    elapsed = time.perf_counter() - start
    return RenderResult(result.video, result.frames, result.seconds, result.contact_sheet,
                        elapsed / max(result.seconds, 1e-9))
