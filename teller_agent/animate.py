"""Offline animation: a portrait + motion (+ audio) -> an mp4 and an optional contact sheet.

Used by ``teller-agent animate``. Motion is either procedural (blinks, head
sway and a mouth that follows the audio's loudness, or a syllable pattern
without audio) or read from a motion ``.npz``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .audio import loudness_envelope
from .config import FPS, TellerSettings
from .face import prepare_avatar
from .media import VideoWriter, contact_sheet, load_audio, save_image
from .motion import FACE68, MotionLatent, procedural_motion
from .render import WarpRenderer, set_render_threads


class _Progress(tqdm):
    """tqdm without its monitor thread, so a process that renders again forks its next generator
    (:class:`~teller_agent.fmlg.worker.BackgroundGeneration`) from a single thread."""

    monitor_interval = 0


@dataclass
class AnimateResult:
    """What :func:`animate` wrote: the video, the frame count and its duration in seconds."""

    video: Path
    frames: int
    seconds: float
    contact_sheet: Path | None


def fit_length(motion: MotionLatent, num_frames: int) -> MotionLatent:
    """Trim ``motion`` to ``num_frames``, or hold its last frame to reach it."""
    if len(motion) >= num_frames:
        return motion[:num_frames]
    flat = motion.flat()
    pad = np.repeat(flat[-1:] if len(flat) else FACE68.neutral(1).flat(), num_frames - len(motion), axis=0)
    return MotionLatent.from_flat(np.concatenate([flat, pad]), motion.num_keypoints, motion.space)


def fit_stream(chunks: Iterable[MotionLatent], num_frames: int) -> Iterator[MotionLatent]:
    """:func:`fit_length` for motion arriving in chunks: yields them trimmed to ``num_frames`` frames in
    all, then holds the last frame (or the neutral face) for any frames still missing."""
    done, last = 0, None
    for chunk in chunks:
        if done >= num_frames:
            break
        chunk = chunk[: num_frames - done]
        if len(chunk):
            done += len(chunk)
            last = chunk
            yield chunk
    if done < num_frames:
        yield fit_length(last[len(last) - 1 :] if last is not None else FACE68.neutral(0), num_frames - done)


def animate(
    output: str | Path,
    image: str | Path | np.ndarray | None = None,
    motion: MotionLatent | Iterable[MotionLatent] | str | Path | None = None,
    audio: str | Path | tuple[np.ndarray, int] | None = None,
    seconds: float = 5.0,
    contact_sheet_path: str | Path | None = None,
    every: int = 10,
    settings: TellerSettings | None = None,
    progress: bool = True,
) -> AnimateResult:
    """Render an animated portrait to ``output`` (H.264 at 25 fps, AAC audio if given).

    Args:
        output: the ``.mp4`` to write (atomically: a failure leaves no file).
        image: portrait path or (H, W, 3) uint8 RGB array; None: ``settings.avatar_image``
            or the bundled default portrait.
        motion: a :class:`MotionLatent`, a motion ``.npz`` path, None for procedural motion, or an
            iterable of :class:`MotionLatent` chunks rendered as they arrive (e.g. from
            :class:`~teller_agent.fmlg.worker.BackgroundGeneration`; then ``audio`` sets the length).
        audio: optional audio file (WAV/MP3/M4A/OGG...) or decoded ``(pcm (N,) float32, sample_rate)``.
            The video lasts as long as the audio (to the nearest frame); procedural mouth
            motion follows its loudness.
        seconds: length without audio and without a motion file.
        contact_sheet_path: optional PNG with every ``every``-th frame.
        settings: frame size, render grid, seed, threads; None reads the environment.
        progress: show a progress bar on stderr.

    Raises:
        TellerError subclasses for bad photos, audio or motion files (each names the fix).
    """
    settings = settings or TellerSettings()
    set_render_threads(settings.render_threads)
    if isinstance(motion, (str, Path)):
        motion = MotionLatent.load(motion, space=FACE68.name)
    streamed = motion is not None and not isinstance(motion, MotionLatent)
    if streamed and audio is None:
        raise ValueError("motion given in chunks needs the audio to know the video's length")
    if audio is None:
        pcm, sr = None, 0
    elif isinstance(audio, tuple):
        pcm, sr = audio
    else:
        pcm, sr = load_audio(audio, sample_rate=None)
    if pcm is not None:
        num_frames = max(1, int(len(pcm) / sr * FPS + 0.5))
    elif motion is not None:
        num_frames = len(motion)
    else:
        num_frames = max(1, int(seconds * FPS + 0.5))
    if motion is None:
        mouth = loudness_envelope(pcm, sr)[:num_frames] if pcm is not None else None
        motion = procedural_motion(num_frames, seed=settings.seed, mouth=mouth)
    chunks = fit_stream(motion if streamed else [motion], num_frames)

    avatar = prepare_avatar(image, settings)
    renderer = WarpRenderer(avatar, grid=settings.render_grid)
    output = Path(output)
    sheet_frames: list[np.ndarray] = []
    # background: the next frame renders while this one is encoded
    with VideoWriter(output, size=(avatar.size, avatar.size), audio=(pcm, sr) if pcm is not None else None,
                     background=True) as writer:
        frames = (frame for chunk in chunks for frame in renderer.render(chunk))
        for i, frame in enumerate(_Progress(frames, total=num_frames, desc="animate", unit="frame", disable=not progress)):
            writer.write(frame)
            if contact_sheet_path is not None and i % every == 0:
                sheet_frames.append(frame)
    sheet = None
    if contact_sheet_path is not None:
        labels = [f"{i * every} {i * every / FPS:.1f}s" for i in range(len(sheet_frames))]
        sheet = save_image(contact_sheet_path, contact_sheet(sheet_frames, labels=labels))
    return AnimateResult(output, num_frames, num_frames / FPS, sheet)
