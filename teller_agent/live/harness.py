"""An agent with a Teller avatar in a real room, plus a recording viewer: what the demo,
the LiveKit tests and ``bench room`` all run.

The agent is a plain livekit-agents ``AgentSession`` with no STT/LLM/TTS: it speaks
given audio through ``session.say(text, audio=...)``, exactly the path TTS audio
takes, so the avatar sees what it would see in production.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np

from .viewer_process import ViewerProcess


@dataclass
class Playback:
    """A ``playback_finished`` event as the agent saw it."""

    t: float  # perf_counter seconds
    position: float  # seconds of the turn's audio played
    interrupted: bool


@dataclass
class AgentRun:
    """Timestamps (perf_counter seconds) of one harness run."""

    started: float = 0.0  # AvatarSession.start called
    avatar_ready: float = 0.0  # AvatarSession.start returned
    playbacks: list[Playback] = field(default_factory=list)


def audio_frames(pcm: np.ndarray, sample_rate: int, chunk_ms: int = 20, realtime: bool = False):
    """An async iterator of ``rtc.AudioFrame`` of ``chunk_ms`` each over (N,) int16 or float ``pcm``:
    all at once (a TTS running ahead of playback), or paced at real time with ``realtime``
    (speech streamed as it is spoken: the worst case for audio-to-frame latency)."""
    from livekit import rtc

    a = np.asarray(pcm)
    if a.dtype != np.int16:
        a = (np.clip(a, -1.0, 1.0) * 32767).astype(np.int16)
    n = max(1, sample_rate * chunk_ms // 1000)

    async def gen():
        t0 = time.perf_counter()
        for i in range(0, len(a), n):
            if realtime:
                await asyncio.sleep(max(0.0, t0 + i / sample_rate - time.perf_counter()))
            c = a[i : i + n]
            yield rtc.AudioFrame(c.tobytes(), sample_rate, 1, len(c))

    return gen()


class AgentHarness:
    """Async context manager: an agent participant with a Teller avatar and a viewer in ``room``.

    Args:
        url, api_key, api_secret: the LiveKit server.
        room: room name.
        avatar_kwargs: passed to ``livekit.plugins.teller.AvatarSession``.
        record_mp4: on exit, the viewer writes what it received there (``RoomViewer.save_mp4``).

    Attributes:
        viewer: the :class:`~teller_agent.live.viewer_process.ViewerProcess` (a recording viewer in
            its own process, as a remote viewer would be; its ``rec`` is filled on exit).
        avatar, session, room: the plugin's AvatarSession, the AgentSession and the agent's rtc.Room.
        run: :class:`AgentRun` timestamps.
    """

    def __init__(self, url: str, api_key: str, api_secret: str, room: str = "teller-demo", *,
                 avatar_kwargs: dict | None = None, record_mp4=None, agent_identity: str = "agent"):
        self.url, self.api_key, self.api_secret, self.room_name = url, api_key, api_secret, room
        self.avatar_kwargs = dict(avatar_kwargs or {})
        self.record_mp4 = record_mp4
        self.agent_identity = agent_identity
        self.run = AgentRun()
        self.viewer: ViewerProcess | None = None
        self.avatar = self.session = self.room = None

    def token(self, identity: str, *, agent: bool = False) -> str:
        from livekit import api

        t = api.AccessToken(self.api_key, self.api_secret).with_identity(identity).with_grants(
            api.VideoGrants(room_join=True, room=self.room_name, agent=agent, can_update_own_metadata=True))
        if agent:
            t = t.with_kind("agent")
        return t.to_jwt()

    async def __aenter__(self) -> AgentHarness:
        from livekit import rtc

        self.viewer = ViewerProcess(self.url, self.token("viewer"), keep_frames=self.record_mp4 is not None)
        await self.viewer.start()
        try:
            self.room = rtc.Room()
            await self.room.connect(self.url, self.token(self.agent_identity, agent=True))
        except BaseException:
            await self.viewer.stop()  # leave no viewer process behind
            raise
        return self

    async def start_avatar(self) -> None:
        """Start the AvatarSession and the AgentSession (timed in :attr:`run`)."""
        from livekit.agents import Agent, AgentSession
        from livekit.plugins import teller

        self.session = AgentSession(turn_handling=teller.AVATAR_TURN_HANDLING)
        self.avatar = teller.AvatarSession(
            livekit_url=self.url, api_key=self.api_key, api_secret=self.api_secret, **self.avatar_kwargs
        ) if self.avatar_kwargs.get("mode") == "worker" else teller.AvatarSession(**self.avatar_kwargs)
        self.run.started = time.perf_counter()
        await self.avatar.start(self.session, self.room)
        self.run.avatar_ready = time.perf_counter()
        await self.session.start(agent=Agent(instructions="You are a demo avatar."), room=self.room)

        @self.session.output.audio.on("playback_finished")
        def _finished(ev) -> None:
            self.run.playbacks.append(Playback(time.perf_counter(), ev.playback_position, ev.interrupted))

    def say(self, pcm: np.ndarray, sample_rate: int, text: str = "...", realtime: bool = False):
        """Speak ``pcm`` as the agent (see :func:`audio_frames` for ``realtime``); returns the
        ``SpeechHandle``."""
        return self.session.say(text, audio=audio_frames(pcm, sample_rate, realtime=realtime),
                                add_to_chat_ctx=False)

    def interrupt(self) -> float:
        """Interrupt the agent's speech now; returns the perf_counter time of the call."""
        t = time.perf_counter()
        self.session.interrupt()
        return t

    async def wait_first_frame(self, timeout: float = 10.0) -> float:
        """Seconds from ``start_avatar`` to the first video frame at the viewer.

        Raises:
            asyncio.TimeoutError: none within ``timeout`` seconds.
        """
        await asyncio.wait_for(self.viewer.first_frame.wait(), timeout)
        return self.viewer.first_frame_t - self.run.started

    async def __aexit__(self, *exc) -> None:
        try:
            if self.viewer is not None:
                await self.viewer.stop(self.record_mp4)
        finally:
            await self._close_agent()

    async def _close_agent(self) -> None:
        if self.avatar is not None:
            await self.avatar.aclose()
        if self.session is not None:
            await self.session.aclose()
        if self.room is not None:
            await self.room.disconnect()
