"""The ``VideoGenerator`` of livekit-agents' avatar API, backed by a Teller :class:`AvatarEngine`."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator

from teller_agent.config import FPS
from teller_agent.stream import AvatarEngine, AvatarFrame

from .log import logger
from .metrics import MetricsRecorder, TellerMetrics

_FRAME_S = 1.0 / FPS
_FRAME_MS = 1000 // FPS
_AUDIO_PIECE_MS = 20
#: How far each frame's audio is pushed ahead of its video, compensating the receiving side's longer
#: audio path (Opus packetisation, jitter buffer). Chosen from viewer measurements on loopback
#: (``teller-agent bench room``): the median offset then varies between sessions by about +-30 ms.
DEFAULT_AUDIO_LEAD_MS = 60


class TellerVideoGenerator(VideoGenerator):
    """Turns the agent's TTS audio into avatar video at a steady 25 fps.

    * Speech: audio frames (any sample rate) go through the engine; each video frame is
      followed by the exact 40 ms of audio it shows, so ``AVSynchronizer`` publishes them
      in sync. ``AudioSegmentEnd`` flushes the turn and is passed on once its frames are out.
    * Idle: with no audio, idle frames (blinks, breathing, head sway) at 25 fps on a
      wall clock, keeping the AVSynchronizer's video queue short so the next turn starts
      without lag.
    * Interruption: :meth:`clear_buffer` drops queued audio (here and in the
      AVSynchronizer), empties the generator's KV cache and settles the face to idle in
      3 frames. Frames computed for the old turn are discarded.

    The engine runs on one worker thread so rendering never blocks the event loop.

    Audio/video alignment: each frame's audio is handed out ``audio_lead_ms`` before the frame
    (in 20 ms pieces), compensating the longer audio path at the receiver; a turn starts with
    ``ceil(audio_lead_ms / 40)`` idle frames so video never stalls while the lead builds up.

    Args:
        engine: the session's :class:`~teller_agent.stream.AvatarEngine`.
        audio_lead_ms: see above (0 pushes each frame with its own audio).
    """

    def __init__(self, engine: AvatarEngine, *, audio_lead_ms: int = DEFAULT_AUDIO_LEAD_MS):
        if abs(audio_lead_ms) > 500:
            raise ValueError(f"audio_lead_ms must be within +-500 ms, got {audio_lead_ms}")
        self._engine = engine
        self._lead_ms = audio_lead_ms
        self._held: deque[tuple[float, rtc.VideoFrame]] = deque()  # (release when turn audio >= ms, frame)
        self._turn_audio_ms = 0.0
        self._turn_frames = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="teller-engine")
        self._input: asyncio.Queue[tuple[int, rtc.AudioFrame | AudioSegmentEnd | None]] = asyncio.Queue()
        self._epoch = 0
        self._av_sync: rtc.AVSynchronizer | None = None
        self._metrics = MetricsRecorder()
        self._closed = False

    @property
    def engine(self) -> AvatarEngine:
        return self._engine

    def set_av_sync(self, av_sync: rtc.AVSynchronizer | None) -> None:
        """The runner's synchronizer: cleared on interruption, and its measured fps is reported."""
        self._av_sync = av_sync

    def metrics(self) -> TellerMetrics:
        """Numbers of this session so far."""
        return self._metrics.snapshot(self._av_sync.actual_fps if self._av_sync else 0.0)

    # -- VideoGenerator ------------------------------------------------------------

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        self._input.put_nowait((self._epoch, frame))

    def begin_clear(self) -> None:
        """First, synchronous half of an interruption: from now on nothing of the current
        turn is handed out (the runner calls this before it clears its queues)."""
        self._epoch += 1
        self._held.clear()
        while not self._input.empty():
            self._input.get_nowait()

    async def clear_buffer(self) -> None:
        """Drop everything of the current turn and settle the face to idle."""
        self.begin_clear()
        self._metrics.counts.interruptions += 1
        if self._av_sync is not None:
            await self._av_sync.clear_queue()
        await self._run(self._engine.interrupt)
        self._input.put_nowait((self._epoch, None))  # wake the stream if it is waiting for turn audio

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._stream()

    async def aclose(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- internals -----------------------------------------------------------------

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _next_input(self, timeout: float) -> tuple[int, rtc.AudioFrame | AudioSegmentEnd] | None:
        if not self._input.empty():
            return self._input.get_nowait()
        if timeout <= 0:
            return None
        try:
            return await asyncio.wait_for(self._input.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _stream(self):
        next_idle: float | None = None
        while not self._closed:
            now = time.perf_counter()
            if self._engine.speaking:
                item = await self._next_input(0.5)  # mid-turn: wait for more audio (TTS runs ahead)
            else:
                if next_idle is None:
                    next_idle = now
                item = await self._next_input(next_idle - now - 0.002)
            if item is None:
                if self._engine.speaking:
                    continue
                frame = await self._run(self._engine.idle_frame)
                now = time.perf_counter()
                # (an interruption during the wait above ends a turn without an idle clock yet)
                next_idle = (now if next_idle is None else next_idle) + _FRAME_S
                if next_idle < now - _FRAME_S:  # fell behind: skip the missed slots
                    missed = int((now - next_idle) / _FRAME_S)
                    self._metrics.counts.frames_dropped += missed
                    next_idle += missed * _FRAME_S
                yield self._video(frame)
                continue
            epoch, data = item
            if epoch != self._epoch or data is None:
                continue
            if isinstance(data, AudioSegmentEnd):
                frames = await self._run(self._engine.end_turn)
                for out in self._emit(frames, epoch, final=True):
                    yield out
                if epoch == self._epoch:
                    yield data
            else:
                if not self._engine.speaking:
                    await self._begin_turn()
                pcm = np.frombuffer(data.data, dtype=np.int16).reshape(-1, data.num_channels)
                frames = await self._run(self._engine.push_audio, pcm, data.sample_rate)
                for out in self._emit(frames, epoch):
                    yield out
            next_idle = None

    async def _begin_turn(self) -> None:
        self._held.clear()
        self._turn_audio_ms = 0.0
        self._turn_frames = 0
        fill = math.ceil(max(0, self._lead_ms) / _FRAME_MS)
        for j in range(-fill, 0):
            frame = await self._run(self._engine.idle_frame)
            self._held.append((j * _FRAME_MS + self._lead_ms, self._video(frame)))

    def _emit(self, frames: list[AvatarFrame], epoch: int, final: bool = False):
        """Hand out ``frames`` with their audio ``audio_lead_ms`` ahead (see the class docstring)."""
        rate = self._engine.sample_rate
        piece = rate * _AUDIO_PIECE_MS // 1000
        for i, f in enumerate(frames):
            if epoch != self._epoch:  # interrupted while these were being made
                self._metrics.counts.frames_discarded += len(frames) - i
                self._held.clear()
                return
            self._held.append((self._turn_frames * _FRAME_MS + self._lead_ms, self._video(f)))
            self._turn_frames += 1
            audio = f.audio if f.audio is not None else np.zeros(0, np.int16)
            for start in range(0, len(audio), piece):
                chunk = audio[start : start + piece if len(audio) - start >= 2 * piece else None]
                if len(chunk) == 0:
                    break
                while self._held and self._held[0][0] <= self._turn_audio_ms:
                    yield self._held.popleft()[1]
                yield rtc.AudioFrame(data=chunk.tobytes(), sample_rate=rate, num_channels=1,
                                     samples_per_channel=len(chunk))
                self._turn_audio_ms += 1000 * len(chunk) / rate
                if len(chunk) > piece:
                    break
        if final:
            while self._held and epoch == self._epoch:
                yield self._held.popleft()[1]

    def _video(self, f: AvatarFrame) -> rtc.VideoFrame:
        self._metrics.frame(f.speaking, f.generate_ms, f.render_ms, f.latency_s)
        h, w = f.image.shape[:2]
        return rtc.VideoFrame(w, h, rtc.VideoBufferType.RGB24, f.image.tobytes())


__all__ = ["TellerVideoGenerator", "logger"]
