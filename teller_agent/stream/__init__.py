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

from importlib import import_module

from .stamp import SPEAKING, read_stamp, stamp

#: Imported on first use (PEP 562), so that reading frame stamps (``teller_agent.live.viewer``, in
#: its own process) does not load torch and the motion model's modules.
_LAZY = {"INTERRUPT_SETTLE": ".engine", "AvatarEngine": ".engine", "AvatarFrame": ".engine",
         "SpeechGate": ".gate", "IdleMotion": ".idle"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "INTERRUPT_SETTLE",
    "SPEAKING",
    "AvatarEngine",
    "AvatarFrame",
    "IdleMotion",
    "SpeechGate",
    "read_stamp",
    "stamp",
]
