"""The agent's audio output: to the avatar runner in the agent's process (local mode), or to the avatar
worker (worker mode)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

from livekit import rtc
from livekit.agents.voice.avatar import AudioReceiver, AudioSegmentEnd, DataStreamAudioOutput
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities

from .log import logger
from .metrics import PING_RPC


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


#: Seconds after its last heartbeat (its metrics attribute, updated every :data:`~.metrics.HEARTBEAT_S`)
#: within which a crashed avatar worker is taken as gone: a heartbeat late by :data:`PROBE_AFTER_S` is
#: followed by a :data:`~.metrics.PING_RPC` probe, and a probe not acknowledged within the rest of
#: this time means the worker's process is gone. LiveKit itself keeps a participant whose process
#: died in the room for about 20 s (its reconnection window).
HEARTBEAT_TIMEOUT_S = 2.5
#: Seconds a heartbeat may be late before the worker is probed.
PROBE_AFTER_S = 1.5
#: Seconds without a heartbeat after which a worker whose process still acknowledges probes is taken
#: as hung (a deadlocked or wedged event loop) and its pending segments are answered.
HUNG_TIMEOUT_S = 10.0
_WATCH_S = 0.25  # seconds between looks at the heartbeat
#: Most audio (seconds) sent to the avatar worker in one data-stream write. Only audio that arrives
#: :data:`COALESCE_LEAD_S` ahead of real time is gathered: a burst of small frames (an OpenAI
#: Realtime model's audio deltas, a TTS running ahead) costs one write per gathered chunk, not
#: one per frame; speech streamed as it is spoken is sent frame by frame, without delay.
COALESCE_S = 0.1
#: Seconds of lead over real-time playback (audio sent in the segment minus the time since its
#: first frame) above which frames are gathered for :data:`COALESCE_S`.
COALESCE_LEAD_S = 0.15
#: RPC errors that mean the request never reached a live client (no acknowledgement).
_UNREACHED = frozenset({rtc.RpcError.ErrorCode.CONNECTION_TIMEOUT, rtc.RpcError.ErrorCode.RECIPIENT_DISCONNECTED,
                        rtc.RpcError.ErrorCode.RECIPIENT_NOT_FOUND, rtc.RpcError.ErrorCode.SEND_FAILED})


class WorkerAudioOutput(DataStreamAudioOutput):
    """The agent's audio output in worker mode: livekit-agents' ``DataStreamAudioOutput`` to the
    avatar worker, which does not wait forever for a worker that is gone.

    The stock output waits for the worker's ``playback_finished`` of each segment; a worker that
    crashed or lost its connection never sends it, and the agent's speech never ends. Here the
    avatar is taken as lost when its participant leaves the room, when its heartbeat (its metrics
    attribute) is late by :data:`PROBE_AFTER_S` and a :data:`~.metrics.PING_RPC` probe then gets no
    acknowledgement (its process is gone; decided :data:`HEARTBEAT_TIMEOUT_S` after the last
    heartbeat), or when it sends no heartbeat for :data:`HUNG_TIMEOUT_S` although its process
    acknowledges probes (hung). A worker that is only slow, its event loop held up on a loaded
    machine, still acknowledges the probe (LiveKit's native client does that before any Python
    runs) and keeps its turns. When the avatar is lost, every pending segment is
    answered as interrupted (the first at the audio the avatar had time to play: the segment's
    wall-clock age, at most the audio sent), so the agent's turn ends and it goes on. When the
    participant has left (LiveKit drops one whose process died after its reconnection window,
    about 20 s), ``on_avatar_lost`` is called: ``AvatarSession`` dispatches a new avatar worker
    under the same identity. The avatar is tracked by participant SID, so a stale participant
    leaving after its replacement joined is not a loss.

    Audio that arrives well ahead of real time (a burst) is written to the worker in chunks of
    :data:`COALESCE_S` instead of frame by frame (see :data:`COALESCE_LEAD_S`): every write costs
    both processes and the server CPU, which a 2-core machine running the agent beside its avatar
    does not have to spare at a turn's start.

    Args:
        room, destination_identity, sample_rate: as ``DataStreamAudioOutput``.
        on_avatar_lost: called (no arguments) after the pending segments were answered.
    """

    def __init__(self, room: rtc.Room, *, destination_identity: str, sample_rate: int,
                 on_avatar_lost: Callable[[], None] | None = None) -> None:
        super().__init__(room, destination_identity=destination_identity, sample_rate=sample_rate,
                         wait_remote_track=rtc.TrackKind.KIND_VIDEO)
        self._avatar = destination_identity
        self._lost_callback = on_avatar_lost
        self._answered = 0  # segments answered with playback_finished (by the worker or here)
        self._segment_t0: float | None = None  # perf_counter of the current segment's first frame
        self._segment_sent = 0.0  # seconds of audio sent in the current segment
        self._avatar_sid: str | None = None  # the avatar participant we hear from
        self._last_beat: float | None = None  # perf_counter of its last heartbeat
        self._last_ack: float | None = None  # perf_counter of its process's last acknowledged probe
        self._probe: asyncio.Task | None = None  # a probe in flight
        self._avatar_lost = False
        self._held: list[rtc.AudioFrame] = []  # frames gathered for one write (see COALESCE_S)
        self._in_segment = False  # a frame of the current segment went out (its bookkeeping is done)
        self._segment_start = 0.0  # perf_counter of the current segment's first frame
        self._segment_out = 0.0  # seconds of audio captured in the current segment
        self._flushing: asyncio.Task | None = None  # a flush waiting for the gathered frames' write
        self._watched_room = room
        room.on("participant_connected", self._on_participant_joined)
        room.on("participant_attributes_changed", self._on_attributes)
        room.on("participant_disconnected", self._on_participant_left)
        self._watchdog = asyncio.create_task(self._watch())

    @property
    def pending_segments(self) -> int:
        """Segments sent to the avatar and not yet answered."""
        return self.captured_playout_segments - self._answered

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if self._flushing is not None:  # the last segment's end goes out first
            await asyncio.shield(self._flushing)
        if self._segment_t0 is None:
            self._segment_t0, self._segment_sent = time.perf_counter(), 0.0
        self._segment_sent += frame.duration
        if not self._in_segment:  # a segment's first frame goes out at once: the segment count
            self._in_segment = True  # and the stream to the worker start with it
            self._segment_start, self._segment_out = time.perf_counter(), frame.duration
            await super().capture_frame(frame)
            return
        self._segment_out += frame.duration
        if self._held and (frame.sample_rate, frame.num_channels) != (self._held[0].sample_rate,
                                                                     self._held[0].num_channels):
            await self._send_held()  # (it starts a new list: read self._held after it, not before)
        lead = self._segment_out - (time.perf_counter() - self._segment_start)
        if lead < COALESCE_LEAD_S and not self._held:
            await super().capture_frame(frame)
            return
        self._held.append(frame)
        if lead < COALESCE_LEAD_S or sum(f.duration for f in self._held) >= COALESCE_S - 1e-6:
            await self._send_held()

    async def _send_held(self) -> None:
        """Write the gathered frames to the worker as one frame."""
        if self._held:
            frames, self._held = self._held, []
            await super().capture_frame(frames[0] if len(frames) == 1 else rtc.combine_audio_frames(frames))

    def flush(self) -> None:
        self._in_segment = False
        if not self._held:
            super().flush()
            return

        async def _flush_after_write() -> None:
            try:
                await self._send_held()
            except Exception as e:  # the worker went away meanwhile: the watchdog answers the segment
                logger.warning("could not send the end of a segment to the avatar worker: %s", e)
            finally:
                DataStreamAudioOutput.flush(self)
                self._flushing = None

        # frames still gathered: written before the segment's stream is closed (and before the next
        # segment's first frame, which waits for this)
        self._flushing = asyncio.create_task(_flush_after_write())

    def clear_buffer(self) -> None:
        self._held = []  # never sent: nothing for the worker to play or cut
        super().clear_buffer()

    def on_playback_finished(self, *, playback_position: float, interrupted: bool,
                             synchronized_transcript: str | None = None) -> None:
        if self.pending_segments > 0:
            self._answered += 1
            self._segment_t0 = None
        super().on_playback_finished(playback_position=playback_position, interrupted=interrupted,
                                     synchronized_transcript=synchronized_transcript)

    def _on_participant_joined(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity == self._avatar:
            # a (new) avatar: heard from, but its heartbeat starts once its engine runs (seconds later)
            self._avatar_sid, self._last_beat, self._last_ack, self._avatar_lost = participant.sid, None, None, False

    def _on_attributes(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        if participant.identity == self._avatar:
            self._avatar_sid, self._last_beat, self._avatar_lost = participant.sid, time.perf_counter(), False

    def _on_participant_left(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity == self._avatar and participant.sid == self._avatar_sid:
            self._lose("left the room", gone=True)

    async def _watch(self) -> None:
        checked = time.perf_counter()
        while True:
            await asyncio.sleep(_WATCH_S)
            now = time.perf_counter()
            # this process's own event loop was held up (a busy agent, GC, a loaded machine): a
            # heartbeat may be among the events queued meanwhile, so they are handled before the next look
            stalled, checked = now - checked > 2 * _WATCH_S, now
            beat = self._last_beat
            if stalled or self._avatar_lost or beat is None:
                continue
            if now - beat > HUNG_TIMEOUT_S:
                self._lose(f"sent no heartbeat for {now - beat:.1f} s, although its process answers (hung)", gone=False)
            elif now - max(beat, self._last_ack or beat) > PROBE_AFTER_S and self._probe is None:
                self._probe = asyncio.create_task(self._probe_avatar(beat))

    async def _probe_avatar(self, beat: float) -> None:
        """Ask the avatar's process whether it is there (the heartbeat ``beat`` is late)."""
        t0 = time.perf_counter()
        try:
            await self._watched_room.local_participant.perform_rpc(
                destination_identity=self._avatar, method=PING_RPC, payload="",
                response_timeout=HEARTBEAT_TIMEOUT_S - PROBE_AFTER_S,
                max_round_trip_latency=HEARTBEAT_TIMEOUT_S - PROBE_AFTER_S)
        except rtc.RpcError as e:
            if e.code in _UNREACHED:
                if self._last_beat == beat:  # no heartbeat meanwhile either
                    self._lose(f"sent no heartbeat for {time.perf_counter() - beat:.1f} s and did not "
                               f"acknowledge a probe ({e.message})", gone=False)
                return
            # acknowledged (its Python answered late, or with an error): the process is there
        except Exception as e:  # the agent's own room is closing
            logger.debug("avatar probe failed: %s", e)
            return
        finally:
            self._probe = None
        self._last_ack = t0

    def _lose(self, reason: str, gone: bool) -> None:
        """Answer the pending segments (once per loss); when the avatar has left the room (``gone``),
        also call ``on_avatar_lost``. A silent avatar may only be slow: it is not replaced."""
        if gone and self._lost_callback is not None:
            self._lost_callback()
        if self._avatar_lost:
            return
        self._avatar_lost = True
        pending = self.pending_segments
        logger.warning("the avatar worker %s; answering %d pending segment(s) as interrupted", reason, pending,
                       extra={"avatar_identity": self._avatar})
        if pending:
            played = 0.0
            if self._segment_t0 is not None:
                played = min(self._segment_sent, time.perf_counter() - self._segment_t0)
            for i in range(pending):
                self.on_playback_finished(playback_position=played if i == 0 else 0.0, interrupted=True)

    def detach(self) -> None:
        """Stop watching the avatar (the session is closing)."""
        self._watchdog.cancel()
        if self._probe is not None:
            self._probe.cancel()
        room = self._watched_room
        room.off("participant_connected", self._on_participant_joined)
        room.off("participant_attributes_changed", self._on_attributes)
        room.off("participant_disconnected", self._on_participant_left)
