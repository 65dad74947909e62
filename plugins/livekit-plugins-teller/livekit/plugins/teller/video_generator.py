"""The ``VideoGenerator`` of livekit-agents' avatar API, backed by a Teller :class:`AvatarEngine`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator

from teller_agent.config import FPS
from teller_agent.stream import AvatarEngine, AvatarFrame

from .log import logger
from .metrics import MetricsRecorder, TellerMetrics
from .sync import AudioClockedSynchronizer, check_video_delay_ms

_FRAME_S = 1.0 / FPS
_AUDIO_PIECE_MS = 20
_FEED_MS = 80  # most audio the engine takes in one call (about 10 ms of work)
# The measurements behind these three constants are in docs/results/design_measurements.md.
#: Audio left in the ``AudioSource`` queue below which, with the next frame's motion already
#: waiting, a speech frame is dropped instead of drawn (seconds). Well under a frame: at a whole
#: frame it fired whenever the worker's audio arrived in clumps.
_DRY_S = 0.012
#: How much later than its audio each speech frame is sent (see :mod:`.sync`), compensating the
#: receiving side's longer audio path (Opus packetisation, jitter buffer): the value that centres
#: the A/V offset measured at a viewer on loopback.
DEFAULT_VIDEO_DELAY_MS = 24
#: A turn's first frame is published once this many frames of its motion are ready (or the turn
#: is complete), so its audio starts with ``PREROLL_FRAMES - 1`` frames of audio queued behind
#: it: a playout cushion that absorbs a frame computed late. Without it, speech streamed in real
#: time reached the ``AudioSource`` just in time, every late frame was a gap in the published
#: audio, and the listener's jitter buffer grew over the first seconds of a turn. Costs
#: ``40 * (PREROLL_FRAMES - 1)`` ms at the start of a turn whose audio arrives in real time;
#: nothing when it arrives faster.
PREROLL_FRAMES = 2
#: Frames of motion the engine may hold ahead of the frame being drawn; the rest of a TTS burst
#: waits as audio until drawing catches up. Generating a whole burst at once took the CPU from
#: drawing, and the first seconds of a turn were drawn below 25 fps.
AHEAD_FRAMES = 8


class TellerVideoGenerator(VideoGenerator):
    """Turns the agent's TTS audio into avatar video at a steady 25 fps.

    * Speech: audio frames (any sample rate) go through the engine; each video frame is
      preceded by the exact 40 ms of audio it shows, and the synchronizer publishes the frame
      when that audio plays out. ``AudioSegmentEnd`` flushes the turn and is passed on once its frames are out.
    * Idle: with no audio, idle frames (blinks, breathing, head sway) at 25 fps on a
      wall clock, keeping the AVSynchronizer's video queue short so the next turn starts
      without lag. They go on at the start of a turn until its first frame's motion is ready
      (it waits for its look-ahead audio), so the face never freezes between the two.
    * Interruption: :meth:`clear_buffer` drops queued audio (here and in the
      AVSynchronizer), empties the generator's KV cache and settles the face to idle in
      3 frames. Frames computed for the old turn are discarded.

    * Overload: audio is the master clock. When the machine cannot render 25 fps (the next
      frame's motion is already waiting and the ``AudioSource`` queue is about to run dry),
      a speech frame is dropped: its audio is published, its pixels are
      never drawn, and ``frames_dropped`` counts it. The audio stays continuous and the next
      drawn frame is still captured with its own audio; without this, each late frame delayed
      its audio too, the listener's jitter buffer stretched the gaps, and the received audio
      fell behind the video by more and more over a sentence on an overloaded avatar worker.

    The engine runs on one worker thread so rendering never blocks the event loop.

    Audio is fed to the engine's motion generator as soon as it arrives, until
    :data:`AHEAD_FRAMES` frames of motion wait to be drawn; frames are rendered one at a time
    when the publisher takes the next one, so a long TTS burst is neither generated nor rendered
    far ahead of playout and an interruption wastes no work.

    Audio/video alignment: each speech frame is handed out right after its own audio (in 20 ms
    pieces); :class:`~.sync.AudioClockedSynchronizer` captures it when that audio plays out,
    ``video_delay_ms`` later.

    Args:
        engine: the session's :class:`~teller_agent.stream.AvatarEngine`.
        video_delay_ms: milliseconds, within +-500 (0 sends each frame with its audio).

    Raises:
        ValueError: ``video_delay_ms`` out of range.
    """

    def __init__(self, engine: AvatarEngine, *, video_delay_ms: int = DEFAULT_VIDEO_DELAY_MS):
        self._engine = engine
        self._delay_ms = check_video_delay_ms(video_delay_ms)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="teller-engine")
        # (epoch, item, perf_counter arrival)
        self._input: asyncio.Queue[tuple[int, rtc.AudioFrame | AudioSegmentEnd, float]] = asyncio.Queue()
        self._wake = asyncio.Event()  # new input was fed, or a clear
        self._drawn = asyncio.Event()  # a frame was rendered (the feeder may be waiting for room)
        self._fed_until = 0.0  # perf_counter when the engine finished the last feed
        self._owed_end: AudioSegmentEnd | None = None  # handed out once the turn's last frame is out
        self._epoch = 0  # bumped by each clear; what was made for an older epoch is not handed out
        self._engine_epoch = 0  # the epoch the engine holds motion for (it holds the cut turn's until interrupted)
        self._av_sync: AudioClockedSynchronizer | None = None
        self._metrics = MetricsRecorder()
        self._closed = False

    @property
    def engine(self) -> AvatarEngine:
        return self._engine

    @property
    def video_delay_ms(self) -> int:
        """How much later than its audio each speech frame is sent, ms."""
        return self._delay_ms

    def set_av_sync(self, av_sync: AudioClockedSynchronizer | None) -> None:
        """The runner's synchronizer: cleared on interruption, and its measured fps is reported."""
        self._av_sync = av_sync

    def metrics(self) -> TellerMetrics:
        """Numbers of this session so far."""
        return self._metrics.snapshot(self._av_sync.actual_fps if self._av_sync else 0.0)

    async def set_avatar(self, avatar) -> None:
        """Render from another prepared portrait (a :class:`~teller_agent.face.PreparedAvatar`)
        from the next frame on; the switch runs on the engine's thread between two frames.

        Raises:
            ValueError: its frame size differs from the published video's.
        """
        await self._run(self._engine.set_avatar, avatar)

    # -- VideoGenerator ------------------------------------------------------------

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        self._input.put_nowait((self._epoch, frame, time.perf_counter()))

    def begin_clear(self) -> None:
        """First, synchronous half of an interruption: from now on nothing of the current
        turn is handed out (the runner calls this before it clears its queues). No frame is
        handed out until :meth:`clear_buffer`, the second half, has interrupted the engine."""
        self._epoch += 1
        self._owed_end = None
        while not self._input.empty():
            self._input.get_nowait()

    async def clear_buffer(self) -> None:
        """Drop everything of the current turn and settle the face to idle."""
        self.begin_clear()
        epoch = self._epoch
        self._metrics.counts.interruptions += 1
        if self._av_sync is not None:
            await self._av_sync.clear_queue()
        await self._run(self._engine.interrupt)
        self._engine_epoch = max(self._engine_epoch, epoch)
        self._wake.set()  # the stream may be waiting for turn audio, or for this interrupt

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._stream()

    async def aclose(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- internals -----------------------------------------------------------------

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _wait_wake(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for new input or a clear; True if woken."""
        if timeout > 0 and not self._wake.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                return False
        woken = self._wake.is_set()
        self._wake.clear()
        return woken

    async def _feed_loop(self) -> None:
        """Feeds audio to the engine as soon as it arrives (motion only; frames are rendered by
        :meth:`_stream` when their output slot is free), so a frame's look-ahead audio is never
        stuck behind the output pacing."""
        carry = None  # an input item taken while coalescing that belongs to the next round
        while not self._closed:
            if carry is not None:
                (epoch, data, arrival), carry = carry, None
            else:
                epoch, data, arrival = await self._input.get()
            if epoch != self._epoch:
                continue
            if isinstance(data, AudioSegmentEnd):
                await self._run(self._engine.finish)
                if epoch == self._epoch:
                    self._owed_end = data
                self._wake.set()
                continue
            while self._engine.finishing and epoch == self._epoch:  # the previous turn's last frames
                await asyncio.sleep(_FRAME_S / 4)
            pcm = np.frombuffer(data.data, dtype=np.int16).reshape(-1, data.num_channels)
            step = data.sample_rate * _FEED_MS // 1000
            # a burst queues many small frames (20 ms from an avatar worker's receiver): feed them
            # together, up to _FEED_MS per call; latency still counts from the first one's arrival
            parts, total = [pcm], len(pcm)
            while total < step and not self._input.empty():
                item = self._input.get_nowait()
                nxt = item[1]
                if (item[0] != epoch or not isinstance(nxt, rtc.AudioFrame) or nxt.sample_rate != data.sample_rate
                        or nxt.num_channels != data.num_channels):
                    carry = item
                    break
                parts.append(np.frombuffer(nxt.data, dtype=np.int16).reshape(-1, nxt.num_channels))
                total += len(parts[-1])
            if len(parts) > 1:
                pcm = np.concatenate(parts)
            for start in range(0, len(pcm), step):  # short executor calls: renders and a clear get in
                if epoch != self._epoch:
                    break
                # latency counts from when the audio arrived, or from when the motion generator was
                # done with the audio before it (a TTS burst queues here, as it would for any player)
                since = max(arrival, self._fed_until)
                held = 0.0
                if self._engine.pending >= AHEAD_FRAMES:  # a burst: wait until drawing catches up
                    hold = time.perf_counter()
                    while epoch == self._epoch and not self._closed and self._engine.pending >= AHEAD_FRAMES:
                        self._drawn.clear()
                        try:
                            await asyncio.wait_for(self._drawn.wait(), _FRAME_S)
                        except asyncio.TimeoutError:
                            pass
                    if epoch != self._epoch or self._closed:
                        break
                    held = time.perf_counter() - hold  # slack, not latency (AvatarEngine.feed)
                await self._run(self._engine.feed, pcm[start : start + step], data.sample_rate, since, held)
                self._fed_until = time.perf_counter()
                self._wake.set()

    async def _stream(self):
        feeder = asyncio.create_task(self._feed_loop())
        next_idle: float | None = None
        try:
            while not self._closed:
                if feeder.done():
                    feeder.result()  # raise what stopped the feeder
                self._wake.clear()
                epoch = self._epoch
                if self._engine_epoch != epoch:  # cleared: the engine's motion is the cut turn's until
                    await self._wait_wake(_FRAME_S)  # clear_buffer has interrupted it; none of it goes out
                    continue
                if self._engine.pending:
                    frames = await self._run(self._engine.render, 1, not self._behind())
                    self._drawn.set()
                    if frames and frames[0].speaking and frames[0].index == 0:
                        await self._preroll(epoch)
                    for out in self._emit(frames, epoch):
                        yield out
                    next_idle = None
                    continue
                if self._owed_end is not None and not self._engine.speaking:
                    end, self._owed_end = self._owed_end, None
                    yield end
                    continue
                if self._engine.speaking and self._engine.turn_frames:  # mid-turn, waiting for more audio
                    await self._wait_wake(0.5)
                    continue
                # idle; or a turn whose first frame still waits for its look-ahead audio: the idle
                # face goes on until then (the turn's first frames blend from it), no frozen frame
                now = time.perf_counter()
                if next_idle is None:
                    next_idle = now
                if await self._wait_wake(next_idle - now - 0.002):
                    continue  # new audio or a clear: look again
                frame = await self._run(self._engine.idle_frame)
                now = time.perf_counter()
                next_idle += _FRAME_S
                if next_idle < now - _FRAME_S:  # fell behind: skip the missed slots
                    missed = int((now - next_idle) / _FRAME_S)
                    self._metrics.counts.frames_dropped += missed
                    next_idle += missed * _FRAME_S
                yield self._video(frame)
        finally:
            feeder.cancel()

    async def _preroll(self, epoch: int) -> None:
        """Hold a turn's first frame until :data:`PREROLL_FRAMES` frames of motion are ready, the
        turn is complete, or as long as that much audio lasts (a stalled TTS is not waited for)."""
        deadline = time.perf_counter() + PREROLL_FRAMES * _FRAME_S
        engine = self._engine
        while (epoch == self._epoch and engine.speaking and not engine.finishing
               and engine.pending < PREROLL_FRAMES - 1):
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            await self._wait_wake(left)

    def _behind(self) -> bool:
        """Rendering has fallen behind the audio (see the class docstring, *Overload*)."""
        sync = self._av_sync
        return sync is not None and self._engine.pending >= 2 and sync.queued_audio_s < _DRY_S

    def _emit(self, frames: list[AvatarFrame], epoch: int):
        """Hand out each of ``frames`` right after its audio (see the class docstring)."""
        rate = self._engine.sample_rate
        piece = rate * _AUDIO_PIECE_MS // 1000
        for i, f in enumerate(frames):
            audio = f.audio if f.audio is not None else np.zeros(0, np.int16)
            # pieces of _AUDIO_PIECE_MS, the last one up to twice that (no short tail piece)
            pieces = np.split(audio, range(piece, len(audio) - piece + 1, piece)) if len(audio) else []
            for chunk in pieces:
                if self._cut(epoch, len(frames) - i):
                    return
                yield rtc.AudioFrame(data=chunk.tobytes(), sample_rate=rate, num_channels=1,
                                     samples_per_channel=len(chunk))
            if self._cut(epoch, len(frames) - i):
                return
            if f.image is None:  # dropped to keep up (see _behind): its audio is out, no picture
                self._metrics.counts.frames_dropped += 1
                if self._av_sync is not None:
                    self._av_sync.skip_frame()
                continue
            yield self._video(f)

    def _cut(self, epoch: int, left: int) -> bool:
        """A clear came since ``epoch``'s frames were made, or while the previous item was pushed:
        the ``left`` frames not handed out in full are discarded (counted), none of them goes on."""
        if epoch == self._epoch:
            return False
        self._metrics.counts.frames_discarded += left
        return True

    def _video(self, f: AvatarFrame) -> rtc.VideoFrame:
        self._metrics.frame(f.speaking, f.generate_ms, f.render_ms, f.latency_s)
        h, w = f.image.shape[:2]
        return rtc.VideoFrame(w, h, rtc.VideoBufferType.RGB24, f.image.tobytes())


__all__ = ["TellerVideoGenerator", "logger"]
