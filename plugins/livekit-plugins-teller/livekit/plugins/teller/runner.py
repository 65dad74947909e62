"""The avatar runner: the agent's audio in, the avatar's audio and video tracks out.

It plays the part of livekit-agents' ``AvatarRunner`` and is built from public parts only
(``rtc.AudioSource``/``VideoSource``, the ``AudioReceiver`` and ``VideoGenerator`` interfaces of
``livekit.agents.voice.avatar``), because the stock runner's accounting is wrong for an avatar
that must cut off exactly on interruption:

* it counts audio as played when it is *queued* (up to the queue's length ahead of what
  listeners have heard), and a frame the forwarder is already pushing can slip into the queue
  right after it is cleared;
* it stays silent when a segment is interrupted before its first frame reached the runner, and
  the agent then waits for that playout forever (the failure behind livekit/agents issue 3434
  with rapid interruptions).

This runner:

0. publishes through an audio-clocked synchronizer (:mod:`.sync`), so every frame leaves with
   its own audio;
1. on interruption, stops the video generator handing out frames of the interrupted turn
   (synchronously; nothing is handed out until the engine has been interrupted, which starts at
   once), drops the queued audio at once, clears the synchronizer's queues, lets the forwarder
   finish the push it was in, and clears again;
2. reports ``playback_finished(interrupted=True)`` with the audio actually published (accepted
   minus still queued at the clear) for *every* segment the agent is waiting on.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from livekit import rtc
from livekit.agents.utils import log_exceptions
from livekit.agents.voice.avatar import AudioReceiver, AudioSegmentEnd, AvatarOptions

from .io import TellerAudioOutput
from .log import logger
from .sync import AudioClockedSynchronizer
from .video_generator import TellerVideoGenerator

#: Video encoding of the avatar track: one layer (no simulcast: a 512x512 face gains nothing
#: from lower layers) at the full 25 fps. Left to defaults, the publisher's encoder drops frames
#: at this size (``docs/results/design_measurements.md``).
VIDEO_MAX_BITRATE = 1_500_000  # bits per second

#: Audio held ahead of playout, ms (as the stock runner): the synchronizer's limit. The
#: ``AudioSource``'s own queue is twice that, so that a capture never waits inside it (see
#: :mod:`.sync`: a waiting capture lands after a clear and is heard).
AUDIO_QUEUE_MS = 100

#: Silence published right after an interruption's clear, seconds. The cut turn's audio then ends
#: in silence at the listener instead of in a gap: a gap makes the listener's jitter buffer
#: conceal (extrapolate the cut speech for tens of ms, and stretch its delay for what follows).
END_SILENCE_S = 0.04


class TellerAvatarRunner:
    """Publishes a :class:`TellerVideoGenerator`'s frames and audio in ``room`` (see the module
    docstring); the same arguments as livekit-agents' ``AvatarRunner``.

    Args:
        room: a connected room; the avatar's tracks are published as its local participant.
        audio_recv: where the agent's audio comes from: a :class:`~.io.TellerAudioOutput` in the
            agent's process, a ``DataStreamAudioReceiver`` on an avatar worker.
        video_gen: the session's video generator.
        options: video size and fps, audio rate and channels.
    """

    def __init__(self, room: rtc.Room, *, audio_recv: AudioReceiver, video_gen: TellerVideoGenerator,
                 options: AvatarOptions) -> None:
        self._room = room
        self._audio_recv = audio_recv
        self._video_gen = video_gen
        self._options = options
        self._audio_source = rtc.AudioSource(options.audio_sample_rate, options.audio_channels,
                                             queue_size_ms=2 * AUDIO_QUEUE_MS)
        self._video_source = rtc.VideoSource(options.video_width, options.video_height)
        self._av_sync: AudioClockedSynchronizer | None = None
        self._published = False
        self._playback_position = 0.0  # seconds of the current segment accepted by the audio source
        self._audio_playing = False  # a segment has started and not been answered yet
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: list[asyncio.Task[None]] = []

    @property
    def av_sync(self) -> AudioClockedSynchronizer | None:
        """The synchronizer (None before :meth:`start`)."""
        return self._av_sync

    async def start(self) -> None:
        """Start receiving audio and publishing frames.

        Raises:
            RuntimeError: the room is not connected.
        """
        if not self._room.isconnected():
            raise RuntimeError("connect to the room before starting the avatar runner")
        self._av_sync = AudioClockedSynchronizer(
            audio_source=self._audio_source, video_source=self._video_source,
            video_fps=self._options.video_fps, video_delay_ms=self._video_gen.video_delay_ms,
            audio_queue_s=AUDIO_QUEUE_MS / 1000,
        )
        self._video_gen.set_av_sync(self._av_sync)
        await self._audio_recv.start()
        self._audio_recv.on("clear_buffer", self._on_clear_buffer)
        self._main = [asyncio.create_task(self._read_audio()), asyncio.create_task(self._forward_video())]

    async def _publish_tracks(self) -> None:
        participant = self._room.local_participant
        audio_track = rtc.LocalAudioTrack.create_audio_track("avatar_audio", self._audio_source)
        await participant.publish_track(audio_track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        video_track = rtc.LocalVideoTrack.create_video_track("avatar_video", self._video_source)
        options = rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_CAMERA,
            simulcast=False,
            video_encoding=rtc.VideoEncoding(max_framerate=self._options.video_fps, max_bitrate=VIDEO_MAX_BITRATE),
        )
        await participant.publish_track(video_track, options)
        self._published = True

    @log_exceptions(logger=logger)
    async def _read_audio(self) -> None:
        async for frame in self._audio_recv:
            if not self._audio_playing and isinstance(frame, rtc.AudioFrame):
                self._audio_playing = True
            await self._video_gen.push_audio(frame)

    @log_exceptions(logger=logger)
    async def _forward_video(self) -> None:
        assert self._av_sync is not None
        async for frame in self._video_gen:
            if isinstance(frame, AudioSegmentEnd):
                if self._audio_playing:
                    self._audio_playing = False
                    position, self._playback_position = self._playback_position, 0.0
                    # do not hold up the frames behind it while the agent handles the event
                    self._spawn(self._answer(position, interrupted=False))
                continue
            if not self._published:
                await self._publish_tracks()
            queued = await self._av_sync.push(frame)
            if queued and isinstance(frame, rtc.AudioFrame):
                if self._playback_position == 0.0 and frame.duration > 0.0:
                    self._spawn(self._started())
                self._playback_position += frame.duration

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @log_exceptions(logger=logger)
    async def _started(self) -> None:
        notify = self._audio_recv.notify_playback_started()
        if asyncio.iscoroutine(notify):
            await notify

    @log_exceptions(logger=logger)
    async def _answer(self, position: float, *, interrupted: bool, segments: int = 1) -> None:
        for i in range(segments):
            notify = self._audio_recv.notify_playback_finished(playback_position=position if i == 0 else 0.0,
                                                               interrupted=interrupted)
            if asyncio.iscoroutine(notify):
                await notify

    def _on_clear_buffer(self) -> None:
        sync = self._av_sync
        assert sync is not None
        audio_playing, self._audio_playing = self._audio_playing, False
        self._video_gen.begin_clear()
        # what has left the audio queue by now is what listeners hear: accepted minus still queued
        # (a push in progress is in neither); taken before the clear, as the clear resets the clock
        position = max(0.0, self._playback_position - sync.queued_audio_s)
        sync.drop_audio()  # now, not a loop iteration later: every ms here is heard
        recv = self._audio_recv
        # in the agent's process the receiver knows how many segments the agent waits on (one may
        # have been cut before its first frame got here); a worker's receiver answers one per clear
        pending = recv.pending_segments if isinstance(recv, TellerAudioOutput) else 1

        @log_exceptions(logger=logger)
        async def _handle() -> None:
            # the engine's interrupt waits for the frame being drawn: start it now, beside the audio's
            # clear (its first step clears the synchronizer too, before the silence below goes in)
            settle = asyncio.ensure_future(self._video_gen.clear_buffer())
            await sync.clear_queue()
            for _ in range(3):  # the forwarder may be inside a push of an old frame: let it land, drop it
                await asyncio.sleep(0)
            await sync.clear_queue()
            await sync.cut_audio(END_SILENCE_S)
            self._playback_position = 0.0
            await settle
            await self._answer(position if audio_playing else 0.0, interrupted=True, segments=pending)

        self._spawn(_handle())

    async def aclose(self) -> None:
        """Stop publishing and release the sources (the tracks end with them)."""
        self._audio_recv.off("clear_buffer", self._on_clear_buffer)
        await self._audio_recv.aclose()
        for task in [*self._main, *self._tasks]:
            task.cancel()
        for task in [*self._main, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._av_sync is not None:
            await self._av_sync.aclose()
        await self._audio_source.aclose()
        await self._video_source.aclose()
