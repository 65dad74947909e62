"""The main job: a portrait and speech audio -> a lip-synced talking video.

Speech -> :class:`~teller_agent.fmlg.MotionGenerator` (FMLG motion tokens ->
motion latent) -> :class:`~teller_agent.render.WarpRenderer` -> H.264 + AAC mp4.
The generator runs in a child process (:class:`~teller_agent.fmlg.worker.BackgroundGeneration`)
while this one prepares the portrait, renders the frames already generated and encodes them
(in a thread): on two cores the three stages overlap instead of taking turns.
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
from .fmlg.worker import BackgroundGeneration
from .media import load_audio
from .motion import MotionLatent


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
    received = []

    def kept(chunks):
        for chunk in chunks:
            received.append(chunk)
            yield chunk

    with BackgroundGeneration(lambda: MotionGenerator.from_settings(settings), pcm, sr) as chunks:  # resampled to 16 kHz inside
        result = animate(output, image=image, motion=kept(chunks) if motion_out is not None else chunks,
                         audio=(pcm, sr), contact_sheet_path=contact_sheet_path, every=every,
                         settings=settings, progress=progress)
    if motion_out is not None:
        MotionLatent.concatenate(received).save(motion_out)
    elapsed = time.perf_counter() - start
    return RenderResult(result.video, result.frames, result.seconds, result.contact_sheet,
                        elapsed / max(result.seconds, 1e-9))
