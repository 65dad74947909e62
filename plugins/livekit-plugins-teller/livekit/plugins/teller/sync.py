"""Audio-clocked A/V synchronizer: each video frame is captured when its own audio is played out.

``rtc.AVSynchronizer`` captures video on a free-running 25 fps clock and audio whenever the
``AudioSource`` queue has room, so the audio/video offset at the sender is whatever the
audio queue depth happens to be, and it differs between sessions (measurements:
``docs/results/design_measurements.md``). This synchronizer closes the loop on the audio clock instead:

* The video generator hands out each frame's audio first, then the frame.
* When the audio is captured, the synchronizer's own playout clock says when the last
  pushed sample will reach WebRTC, so the start of the frame's audio plays out at
  ``now + queued audio - audio pushed since the previous frame``. (``rtc.AudioSource``'s
  ``queued_duration`` is not used: an event-loop timer resets it when the queue should be
  empty, and on a loaded machine that timer fires late, after the next push, so it reads 0
  while that audio still waits; interrupted turns then reported more audio than the listener
  had heard.)
* The frame is captured at that instant plus ``video_delay_ms`` (how much later than its
  audio the video is sent; positive values compensate the receiver's longer audio path:
  Opus packetisation and the jitter buffer).
* Frames without audio (idle) are captured on a 25 fps grid continuing the last capture.
* A speech frame the generator could not draw in time (see :meth:`AudioClockedSynchronizer.skip_frame`)
  only has its audio published, so the audio never waits for a late picture.
* Audio is handed to the ``AudioSource`` only when the playout clock says it has room (at most
  ``audio_queue_s`` queued), so a capture never waits inside the source. A capture waiting there
  for room is in flight where a clear cannot reach it: it lands in the emptied queue right after
  the clear, and the listener hears a blip of the cut turn from a queue's length further on
  (``docs/results/design_measurements.md``). Audio waiting for room here is dropped by a clear
  instead.

It is built from ``rtc.AudioSource`` and ``rtc.VideoSource`` alone (public API; no subclass of
``rtc.AVSynchronizer``), with that class's method names (``push``, ``clear_queue``,
``wait_for_playout``, ``actual_fps``, ``aclose``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from livekit import rtc

from .log import logger

#: Video frames the synchronizer may hold ahead of their capture time: the AudioSource queue
#: (100 ms in ``AvatarRunner``) plus the video delay, in frames, with margin.
VIDEO_QUEUE_FRAMES = 8


def check_video_delay_ms(video_delay_ms: float) -> float:
    """``video_delay_ms`` if within +-500 ms.

    Raises:
        ValueError: it is not.
    """
    if abs(video_delay_ms) > 500:
        raise ValueError(f"video_delay_ms must be within +-500 ms, got {video_delay_ms}")
    return video_delay_ms


class AudioClockedSynchronizer:
    """Captures each video frame when its audio is played out (see the module docstring).

    Args:
        audio_source, video_source: the runner's sources. The audio source's own queue should
            hold more than ``audio_queue_s``, so that it never makes a capture wait.
        video_fps: frame rate, Hz.
        video_delay_ms: capture each speech frame this many ms after the start of its audio
            leaves the audio queue (milliseconds, any sign within +-500).
        audio_queue_s: the most audio (seconds) queued ahead of playout; a push waits for room.

    Must be created inside a running event loop.
    """

    def __init__(self, *, audio_source: rtc.AudioSource, video_source: rtc.VideoSource, video_fps: float,
                 video_delay_ms: float = 0.0, audio_queue_s: float = 0.1):
        self._delay = check_video_delay_ms(video_delay_ms) / 1000.0
        self._queue_s = audio_queue_s
        self._dropped = asyncio.get_running_loop().create_future()  # resolved (and renewed) by drop_audio
        self._interval = 1.0 / video_fps
        self._pending_audio = 0.0  # seconds of audio pushed since the last video frame
        self._last_due = 0.0  # perf_counter capture time of the last queued frame
        self._captures: deque[float] = deque(maxlen=max(2, int(video_fps)))
        self._epoch = 0  # bumped by clear_queue: a frame waiting for its capture time is dropped
        self._capture_lock = asyncio.Lock()
        self._play_end = 0.0  # perf_counter when the last accepted audio sample leaves the queue
        self._audio_source, self._video_source = audio_source, video_source
        self._video_queue: asyncio.Queue[tuple[rtc.VideoFrame, float]] = asyncio.Queue(maxsize=VIDEO_QUEUE_FRAMES)
        self._stopped = False
        self._capture_task = asyncio.create_task(self._capture_video())

    async def push(self, frame: rtc.VideoFrame | rtc.AudioFrame, timestamp: float | None = None) -> bool:
        """Queue an audio frame (waiting for room in the audio queue) or a video frame (captured when
        the audio pushed since the previous video frame plays out).

        Returns:
            False for an audio frame still waiting for room when the queued audio was dropped
            (:meth:`drop_audio`, :meth:`clear_queue`, :meth:`cut_audio`): it is dropped with it.
        """
        if isinstance(frame, rtc.AudioFrame):
            duration = frame.samples_per_channel / frame.sample_rate
            async with self._capture_lock:
                if not await self._wait_for_room(duration):
                    return False
                handed = time.perf_counter()
                await self._audio_source.capture_frame(frame)
                # accepted: it plays after what is queued, or, if the queue ran dry, from when it was
                # handed over (not from when this coroutine resumed: on a busy loop that is tens of
                # ms later, and the clock would then count audio already heard as still queued)
                self._play_end = max(self._play_end, handed) + duration
            self._pending_audio += duration
            return True
        now = time.perf_counter()
        if self._pending_audio > 0:
            audio_start = now + self.queued_audio_s - self._pending_audio
            due = audio_start + self._delay
        else:
            due = max(now, self._last_due + self._interval)
        self._pending_audio = 0.0
        self._last_due = due
        await self._video_queue.put((frame, due))
        return True

    async def _wait_for_room(self, duration: float) -> bool:
        """Wait until ``duration`` more seconds of audio fit in the queue; False if the queued audio
        was dropped meanwhile."""
        dropped = self._dropped
        while (wait := self.queued_audio_s + duration - self._queue_s) > 0 and not dropped.done():
            await asyncio.wait({dropped}, timeout=wait)
        return not dropped.done()

    @property
    def queued_audio_s(self) -> float:
        """Seconds of accepted audio waiting in the ``AudioSource`` queue (what plays before a newly
        pushed sample), from the synchronizer's playout clock (a push in progress is not counted:
        it is not in the queue yet); near 0 in a speech turn means the audio is about to run dry."""
        return max(0.0, self._play_end - time.perf_counter())

    def drop_audio(self) -> None:
        """Drop the queued audio now (synchronously: every ms after an interruption is heard), and
        the audio frame waiting for room, if any."""
        self._audio_source.clear_queue()
        self._play_end = 0.0
        self._dropped.set_result(None)
        self._dropped = asyncio.get_running_loop().create_future()

    async def cut_audio(self, silence_s: float) -> None:
        """End the audio now: once a push in progress has landed, drop all queued audio (that push's
        too) and publish ``silence_s`` seconds of digital silence, counted as no frame's audio.

        Used on interruption: the listener's jitter buffer then plays silence where the cut speech
        stopped, instead of concealing the gap (extrapolating the speech for tens of ms). A failed
        capture is logged, not raised: the interruption goes on without the silence."""
        source = self._audio_source
        silence = rtc.AudioFrame.create(source.sample_rate, source.num_channels, int(source.sample_rate * silence_s))
        self.drop_audio()  # a push waiting for room gives up now and lets go of the lock
        async with self._capture_lock:  # the AudioSource takes one capture at a time
            self.drop_audio()
            self._pending_audio = 0.0
            try:
                await source.capture_frame(silence)
                self._play_end = time.perf_counter() + silence_s
            except Exception as e:  # noqa: BLE001 - the audio source may be closing with the room
                logger.debug("could not publish the silence after a clear: %s", e)

    def skip_frame(self) -> None:
        """The audio pushed since the last video frame belonged to a frame that was dropped (not
        drawn): the next frame is timed from its own audio only."""
        self._pending_audio = 0.0

    async def clear_queue(self) -> None:
        """Drop the queued audio and every video frame not captured yet."""
        self._pending_audio = 0.0
        self._last_due = 0.0
        self._epoch += 1
        self.drop_audio()
        while not self._video_queue.empty():
            self._video_queue.get_nowait()
            self._video_queue.task_done()

    async def wait_for_playout(self) -> None:
        """Wait until the queued audio has played and every queued frame was captured."""
        await asyncio.sleep(self.queued_audio_s)
        await self._video_queue.join()

    async def aclose(self) -> None:
        self._stopped = True
        self._capture_task.cancel()
        try:
            await self._capture_task
        except asyncio.CancelledError:
            pass

    async def _capture_video(self) -> None:
        while not self._stopped:
            frame, due = await self._video_queue.get()
            epoch = self._epoch
            try:
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                elif wait < -0.3:
                    logger.debug("video frame captured %.0f ms after its due time", -wait * 1000)
                if epoch == self._epoch:
                    self._video_source.capture_frame(frame)
                    self._captures.append(time.perf_counter())
            finally:
                self._video_queue.task_done()

    @property
    def actual_fps(self) -> float:
        if len(self._captures) < 2:
            return 0.0
        return (len(self._captures) - 1) / (self._captures[-1] - self._captures[0])
