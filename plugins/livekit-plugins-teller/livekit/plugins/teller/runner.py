"""``AvatarRunner`` with exact interruption accounting.

livekit-agents' ``AvatarRunner`` counts audio as played when it is *queued* into the
``AudioSource`` (up to ``queue_size_ms`` ahead of what listeners have heard), and a frame
the forwarder is already pushing can slip into the queue right after it is cleared. This runner:

0. publishes through an audio-clocked synchronizer (:mod:`.sync`) instead of the stock
   free-running one, so every frame leaves with its own audio;
1. stops the video generator handing out frames of the interrupted turn (synchronously);
2. clears the AVSynchronizer's queues, lets the forwarder finish the push it was in,
   and clears again;
3. reports ``playback_finished(interrupted=True)`` with the audio actually published:
   everything pushed minus what was still queued at the clear, for *every* segment the agent is
   waiting on, including one interrupted before its first frame reached the runner
   (the stock runner stays silent then, and the agent waits for that playout forever:
   the failure behind livekit/agents issue 3434 with rapid interruptions).
"""

from __future__ import annotations

import asyncio

from livekit import rtc
from livekit.agents.utils import log_exceptions
from livekit.agents.voice.avatar import AvatarRunner

from .log import logger
from .sync import AudioClockedSynchronizer
from .video_generator import TellerVideoGenerator


#: Video encoding of the avatar track: one layer (no simulcast: a 512x512 face gains nothing
#: from lower layers) at the full 25 fps. Left to defaults, the publisher's encoder drops to
#: about 20 fps at this size (measured at a viewer).
VIDEO_MAX_BITRATE = 1_500_000  # bits per second

#: Silence published right after an interruption's clear, seconds. The cut turn's audio then ends
#: in silence at the listener instead of in a gap: a gap makes the listener's jitter buffer
#: conceal (extrapolate the cut speech for tens of ms, and stretch its delay for what follows).
END_SILENCE_S = 0.04


class TellerAvatarRunner(AvatarRunner):
    """An ``AvatarRunner`` (same arguments) for a :class:`TellerVideoGenerator`, publishing
    through an :class:`~.sync.AudioClockedSynchronizer` (each frame captured when its audio
    plays out, ``video_gen.video_delay_ms`` later)."""

    def __init__(self, room: rtc.Room, *, audio_recv, video_gen: TellerVideoGenerator, options, **kwargs) -> None:
        super().__init__(room, audio_recv=audio_recv, video_gen=video_gen, options=options, **kwargs)
        stock = self._av_sync
        stock._stopped = True
        stock._capture_video_task.cancel()  # the stock synchronizer's free-running capture loop
        self._av_sync = AudioClockedSynchronizer(
            audio_source=self._audio_source, video_source=self._video_source,
            video_fps=options.video_fps, video_delay_ms=video_gen.video_delay_ms,
        )
        video_gen.set_av_sync(self._av_sync)

    async def _publish_track(self) -> None:
        async with self._lock:
            await self._room_connected_fut
            audio_track = rtc.LocalAudioTrack.create_audio_track("avatar_audio", self._audio_source)
            self._audio_publication = await self._room.local_participant.publish_track(
                audio_track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            )
            video_track = rtc.LocalVideoTrack.create_video_track("avatar_video", self._video_source)
            options = rtc.TrackPublishOptions(
                source=rtc.TrackSource.SOURCE_CAMERA,
                simulcast=False,
                video_encoding=rtc.VideoEncoding(max_framerate=self._options.video_fps,
                                                 max_bitrate=VIDEO_MAX_BITRATE),
            )
            self._video_publication = await self._room.local_participant.publish_track(video_track, options)

    def _on_clear_buffer(self) -> None:
        video_gen = self._video_gen
        assert isinstance(video_gen, TellerVideoGenerator)
        audio_playing = self._audio_playing
        self._audio_playing = False
        video_gen.begin_clear()
        # what has left the audio queue by now is what listeners hear: accepted minus still queued
        # (a push in progress is in neither); taken before the clear, as the clear resets the clock
        position = max(0.0, self._playback_position - self._av_sync.queued_audio_s)
        self._av_sync.drop_audio()  # now, not a loop iteration later: every ms here is heard

        @log_exceptions(logger=logger)
        async def _handle() -> None:
            await self._av_sync.clear_queue()
            for _ in range(3):  # the forwarder may be inside a push of an old frame: let it land, drop it
                await asyncio.sleep(0)
            await self._av_sync.clear_queue()
            await self._av_sync.cut_audio(END_SILENCE_S)
            self._playback_position = 0.0
            await video_gen.clear_buffer()
            await self._notify_interrupted(position if audio_playing else 0.0)

        task = asyncio.create_task(_handle())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify_interrupted(self, position: float) -> None:
        from livekit.agents.voice.io import AudioOutput

        recv = self._audio_recv
        # In-process the receiver is the agent's AudioOutput and knows how many segments are pending;
        # a worker's receiver does not, and the agent side expects one answer per clear it sent.
        pending = recv._pending_playback_count if isinstance(recv, AudioOutput) else 1
        for i in range(pending):
            notify = recv.notify_playback_finished(playback_position=position if i == 0 else 0.0, interrupted=True)
            if asyncio.iscoroutine(notify):
                await notify
