"""The agent's audio output in local mode: what the agent speaks goes to the avatar runner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Literal

from livekit import rtc
from livekit.agents.voice.avatar import AudioReceiver, AudioSegmentEnd
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities


class TellerAudioOutput(AudioOutput, AudioReceiver, rtc.EventEmitter[Literal["clear_buffer"]]):
    """The agent session's audio output (``session.output.audio``) and the runner's audio receiver
    in one, as livekit-agents' ``QueueAudioOutput``, plus :attr:`pending_segments`: how many
    segments the agent still waits on, so that an interruption answers each of them (one cut
    before its first frame reached the runner included).

    Args:
        sample_rate: Hz the agent's TTS audio is resampled to before it gets here.
    """

    def __init__(self, *, sample_rate: int) -> None:
        super().__init__(label="TellerAvatar", next_in_chain=None, sample_rate=sample_rate,
                         capabilities=AudioOutputCapabilities(pause=False))
        self._frames: asyncio.Queue[rtc.AudioFrame | AudioSegmentEnd] = asyncio.Queue()
        self._capturing = False
        self._finished = 0  # segments answered with playback_finished

    @property
    def pending_segments(self) -> int:
        """Segments captured from the agent and not yet answered with ``playback_finished``."""
        return self.captured_playout_segments - self._finished

    # -- AudioOutput: the agent side ------------------------------------------------

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self._capturing:
            self._capturing = True
            self.on_playback_started(created_at=time.time())
        self._frames.put_nowait(frame)

    def flush(self) -> None:
        super().flush()
        if self._capturing:
            self._capturing = False
            self._frames.put_nowait(AudioSegmentEnd())

    def clear_buffer(self) -> None:
        while not self._frames.empty():
            self._frames.get_nowait()
        self.emit("clear_buffer")

    # -- AudioReceiver: the runner side ---------------------------------------------

    async def start(self) -> None:
        return None

    def notify_playback_started(self) -> None:
        return None  # reported when the agent's first frame of a segment arrives (capture_frame)

    def notify_playback_finished(self, playback_position: float, interrupted: bool) -> None:
        if self.pending_segments <= 0:
            return
        self._finished += 1
        self.on_playback_finished(playback_position=playback_position, interrupted=interrupted)

    async def _iterate(self) -> AsyncIterator[rtc.AudioFrame | AudioSegmentEnd]:
        while True:
            yield await self._frames.get()

    def __aiter__(self) -> AsyncIterator[rtc.AudioFrame | AudioSegmentEnd]:
        return self._iterate()

    async def aclose(self) -> None:
        return None
