"""Live streaming: speech audio in, paired video frames and audio slices out at 25 fps.

Public API::

    AvatarEngine(avatar, generator, sample_rate=24000, vad=True, stamp_frames=False)
    AvatarEngine.from_settings(settings, image=None, **kwargs)
        .push_audio(pcm, sample_rate) -> list[AvatarFrame]   # = feed + render
        .end_turn() -> list[AvatarFrame]                     # = finish + render
        .feed(pcm, sample_rate) -> int; .finish() -> int      # motion only, frames left pending
        .render(max_frames=None, draw=True) -> list[AvatarFrame]  # draw=False: dropped (no pixels)
        .interrupt()
        .idle_frame() -> AvatarFrame
    IdleMotion(seed).next_frame() -> MotionLatent
    SpeechGate().push(pcm16k); .frame_probability(frame)
    stamp(frame, code) / read_stamp(frame) -> int | None
"""

from .engine import INTERRUPT_SETTLE, AvatarEngine, AvatarFrame, mouth_opening
from .gate import SpeechGate
from .idle import IdleMotion
from .stamp import SPEAKING, read_stamp, stamp

__all__ = [
    "INTERRUPT_SETTLE",
    "SPEAKING",
    "AvatarEngine",
    "AvatarFrame",
    "IdleMotion",
    "SpeechGate",
    "mouth_opening",
    "read_stamp",
    "stamp",
]
