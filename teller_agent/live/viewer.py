"""A headless viewer: joins a LiveKit room, records what it receives, and measures it.

:class:`RoomViewer` subscribes to the avatar's video and audio tracks and keeps,
for every received frame, its arrival time (``time.perf_counter`` seconds), the
frame code of :mod:`teller_agent.stream.stamp` when the sender stamps frames,
and a small thumbnail (full frames too with ``keep_frames``). The analysis
functions below turn those records into the numbers a user cares about:
received fps, audio/video offset, and when agent audio stops after an interruption.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..config import FPS
from ..stream.stamp import SPEAKING, read_stamp

THUMB = 96  # thumbnail side in pixels
#: Loudness (10 ms RMS, full scale 1.0; -40 dBFS) above which received or sent audio counts as
#: sound rather than silence; also the silence bound of :func:`align_audio`'s pieces.
LOUD_RMS = 0.01
OPUS_RATE = 48000.0  # Hz: the rate WebRTC counts received audio samples in


@dataclass
class VideoRecord:
    t: float  # arrival, perf_counter seconds
    code: int | None
    thumb: np.ndarray  # (THUMB, THUMB, 3) uint8
    frame: np.ndarray | None = None


@dataclass
class AudioRecord:
    t: float  # arrival of the frame's last sample, perf_counter seconds
    pcm: np.ndarray  # (N,) int16 mono


@dataclass
class Recording:
    video: list[VideoRecord] = field(default_factory=list)
    audio: list[AudioRecord] = field(default_factory=list)
    sample_rate: int = 24000
    started: float = 0.0  # perf_counter when the viewer joined

    def audio_pcm(self) -> np.ndarray:
        """(N,) int16: all received audio, concatenated."""
        return np.concatenate([a.pcm for a in self.audio]) if self.audio else np.zeros(0, np.int16)

    def audio_times(self) -> np.ndarray:
        """(N,) float64 arrival time of each sample of :meth:`audio_pcm` (a frame's samples are spread
        evenly over the frame's duration, ending at its arrival)."""
        parts = [a.t - (len(a.pcm) - 1 - np.arange(len(a.pcm))) / self.sample_rate for a in self.audio]
        return np.concatenate(parts) if parts else np.zeros(0)


class RoomViewer:
    """Joins ``url`` with ``token`` and records the first remote video track (from ``identity``
    if given) and the audio track of the same participant.

    Args:
        url, token: server URL and a join token for the viewer.
        identity: only record this participant's tracks (default: the first that publishes video).
        sample_rate: Hz of the recorded audio.
        keep_frames: also keep every full frame (for :meth:`save_mp4`).
    """

    def __init__(self, url: str, token: str, *, identity: str | None = None, sample_rate: int = 24000,
                 keep_frames: bool = False):
        from livekit import rtc

        self._rtc = rtc
        self.url, self.token, self.identity = url, token, identity
        self.keep_frames = keep_frames
        self.room = rtc.Room()
        self.rec = Recording(sample_rate=sample_rate)
        self.first_frame = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._source: str | None = None
        self.audio_track = None  # the recorded remote audio track, once subscribed
        self._audio_generation = 0  # bumped per subscribed audio track: only the newest is recorded

    async def start(self) -> None:
        rtc = self._rtc

        @self.room.on("track_subscribed")
        def _on_track(track, publication, participant):
            if self.identity and participant.identity != self.identity:
                return
            if track.kind == rtc.TrackKind.KIND_VIDEO and self._source in (None, participant.identity):
                self._source = participant.identity
                self._tasks.append(asyncio.create_task(self._read_video(track)))
            elif track.kind == rtc.TrackKind.KIND_AUDIO and (self.identity or participant.kind ==
                                                             rtc.ParticipantKind.PARTICIPANT_KIND_AGENT):
                self._tasks.append(asyncio.create_task(self._read_audio(track)))

        self.rec.started = time.perf_counter()
        await self.room.connect(self.url, self.token)

    @property
    def first_frame_t(self) -> float | None:
        """Arrival of the first video frame, ``time.perf_counter`` seconds (None before)."""
        return self.rec.video[0].t if self.rec.video else None

    async def _read_video(self, track) -> None:
        stream = self._rtc.VideoStream(track, format=self._rtc.VideoBufferType.RGB24)
        try:
            async for ev in stream:
                t = time.perf_counter()
                f = ev.frame
                img = np.frombuffer(f.data, np.uint8).reshape(f.height, f.width, 3)
                rec = VideoRecord(t, read_stamp(img), cv2.resize(img, (THUMB, THUMB), interpolation=cv2.INTER_AREA),
                                  img.copy() if self.keep_frames else None)
                self.rec.video.append(rec)
                self.first_frame.set()
        finally:
            await stream.aclose()

    async def _read_audio(self, track) -> None:
        # a listener hears the avatar's current track: when a new one arrives (an avatar worker that
        # replaced a crashed one), the previous track's reader stops recording
        self.audio_track = track
        self._audio_generation = generation = self._audio_generation + 1
        stream = self._rtc.AudioStream(track, sample_rate=self.rec.sample_rate, num_channels=1)
        try:
            async for ev in stream:
                if generation != self._audio_generation:
                    break
                pcm = np.frombuffer(ev.frame.data, np.int16).copy()
                self.rec.audio.append(AudioRecord(time.perf_counter(), pcm))
        finally:
            await stream.aclose()

    async def audio_stats(self) -> dict[str, float]:
        """The receiving side's WebRTC statistics of the recorded audio track (``inbound-rtp``):
        ``jitter_buffer_delay_ms`` (mean time a sample waited in the jitter buffer),
        ``concealed_ms`` (non-silent audio the jitter buffer invented because packets were missing
        or late),
        ``inserted_ms`` / ``removed_ms`` (time stretching to grow / shrink the buffer). Empty
        before the track is subscribed."""
        if self.audio_track is None:
            return {}
        for st in await self.audio_track.get_stats():
            if st.WhichOneof("stats") != "inbound_rtp":
                continue
            inbound = st.inbound_rtp.inbound
            emitted = max(1.0, float(inbound.jitter_buffer_emitted_count))
            return {
                "jitter_buffer_delay_ms": 1000.0 * inbound.jitter_buffer_delay / emitted,
                "concealed_ms": 1000.0 * (inbound.concealed_samples - inbound.silent_concealed_samples) / OPUS_RATE,
                "inserted_ms": 1000.0 * inbound.inserted_samples_for_deceleration / OPUS_RATE,
                "removed_ms": 1000.0 * inbound.removed_samples_for_acceleration / OPUS_RATE,
            }
        return {}

    async def stop(self) -> Recording:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.room.disconnect()
        return self.rec

    def save_mp4(self, path: str | Path) -> Path:
        """Write what was received: video resampled onto a 25 fps grid by arrival time (the latest
        frame at each tick, as a player would show it) and the received audio, both from the
        first video frame on.

        Raises:
            RuntimeError: no video was received, or the viewer ran without ``keep_frames``.
        """
        from ..media import VideoWriter

        video = [v for v in self.rec.video if v.frame is not None]
        if not video:
            raise RuntimeError("no video frames recorded (received none, or keep_frames was off)")
        t0, t1 = video[0].t, video[-1].t
        pcm, times = self.rec.audio_pcm(), self.rec.audio_times()
        audio = pcm[times >= t0 - 0.5 / self.rec.sample_rate] if len(pcm) else np.zeros(1, np.int16)
        ticks = t0 + np.arange(int((t1 - t0) * FPS) + 1) / FPS
        arrivals = np.array([v.t for v in video])
        idx = np.searchsorted(arrivals, ticks, side="right") - 1
        h, w = video[0].frame.shape[:2]
        with VideoWriter(path, size=(w - w % 2, h - h % 2), audio=(audio, self.rec.sample_rate)) as writer:
            for i in idx:
                writer.write(np.ascontiguousarray(video[max(i, 0)].frame[: h - h % 2, : w - w % 2]))
        return Path(path)


# -- analysis -----------------------------------------------------------------------------------


def rms_10ms(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """(K,) RMS of each whole 10 ms hop of ``x`` ((N,) float, full scale 1.0); the last partial hop
    is left out."""
    hop = sample_rate // 100
    k = len(x) // hop
    return np.sqrt((x[: k * hop].reshape(k, hop) ** 2).mean(axis=1))


def received_fps(rec: Recording, start: float | None = None, end: float | None = None) -> float:
    """Video frames per second that arrived in ``[start, end]`` (perf_counter seconds; default: all)."""
    t = np.array([v.t for v in rec.video])
    if start is not None:
        t = t[t >= start]
    if end is not None:
        t = t[t <= end]
    if len(t) < 2:
        return 0.0
    return (len(t) - 1) / (t[-1] - t[0])


def speech_turns(rec: Recording) -> list[list[tuple[int, float]]]:
    """Received speech frames grouped by turn: lists of (frame index in turn, arrival time).
    Needs stamped frames; a turn starts where the index goes back down."""
    turns: list[list[tuple[int, float]]] = []
    last = None
    for v in rec.video:
        if v.code is None or not v.code & SPEAKING:
            last = None if v.code is not None else last
            continue
        k = v.code & 0x7FFF
        if last is None or k <= last:
            turns.append([])
        turns[-1].append((k, v.t))
        last = k
    return turns


def _received_and_sent(rec: Recording, sent: np.ndarray, sent_rate: int, after: float | None,
                       before: float | None, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The received audio that arrived in ``[after, before]`` (full scale 1.0, ``dtype``) with each
    sample's arrival time, and ``sent`` (int16 or float) as ``dtype`` at the recording's rate."""
    from ..media import resample

    x = rec.audio_pcm().astype(dtype) / 32768.0
    times = rec.audio_times()
    keep = np.ones(len(x), bool)
    if after is not None:
        keep &= times >= after
    if before is not None:
        keep &= times <= before
    s = np.asarray(sent)
    s = s.astype(np.float32) / 32768.0 if s.dtype == np.int16 else s.astype(np.float32)
    if sent_rate != rec.sample_rate:
        s = resample(s, sent_rate, rec.sample_rate)
    return x[keep], times[keep], s.astype(dtype)


def locate(rec: Recording, sent: np.ndarray, sent_rate: int, after: float | None = None,
           before: float | None = None) -> float | None:
    """Arrival time at the viewer of the first sample of ``sent`` audio (the agent's turn),
    found by cross-correlating the received audio with it; None when it is not found
    (normalised correlation peak below 0.3; Opus and an occasional playout gap keep a true
    match above 0.6, unrelated audio stays below 0.1).

    Args:
        sent: (N,) int16 or float audio the agent played.
        sent_rate: its sample rate in Hz.
        after, before: only search audio that arrived in this window (perf_counter seconds).
    """
    from scipy.signal import correlate

    x, times, s = _received_and_sent(rec, sent, sent_rate, after, before, np.float32)
    n = min(len(s), rec.sample_rate, len(x))  # the first second is distinctive enough
    s = s[:n]
    if len(x) < n or not np.any(s):
        return None
    c = correlate(x, s, mode="valid", method="fft")
    received = np.sqrt(np.convolve(x * x, np.ones(n), mode="valid"))
    score = c / np.maximum(received * np.sqrt((s * s).sum()), 1e-9)
    score[received < 1e-3 * np.sqrt(n)] = 0.0  # silence (below -60 dBFS): rounding noise, not a match
    i = int(np.argmax(score))
    if score[i] < 0.3:
        return None
    return float(times[i])


@dataclass
class AudioAlignment:
    """Where the pieces of the agent's audio arrived at the viewer (see :func:`align_audio`).

    Attributes:
        sent_s: (P,) start of each located piece in the sent audio, seconds.
        arrival: (P,) arrival time at the viewer of that piece's first sample, perf_counter seconds.
        score: (P,) normalised correlation of each match (0..1).
    """

    sent_s: np.ndarray
    arrival: np.ndarray
    score: np.ndarray

    def arrival_of(self, sent_s: float | np.ndarray) -> np.ndarray:
        """Arrival time at the viewer of sent-audio time ``sent_s`` (seconds), interpolated between
        the located pieces (held constant beyond the first and last)."""
        return np.asarray(sent_s) + np.interp(sent_s, self.sent_s, self.arrival - self.sent_s)

    @property
    def stretch_s(self) -> float:
        """Seconds by which the located audio took longer to arrive than it lasts: the gaps the
        listener heard inside the turn (0 for audio played without a break)."""
        if len(self.sent_s) < 2:
            return 0.0
        return float((self.arrival[-1] - self.arrival[0]) - (self.sent_s[-1] - self.sent_s[0]))


#: Seconds by which a piece of the agent's audio may arrive earlier, relative to the turn's first
#: located piece, than real-time playout allows (a jitter buffer catching up after a gap squeezes
#: the audio a little); a match earlier than that is a look-alike, not the piece.
FASTEST_ARRIVAL_LEAD_S = 0.25


def align_audio(rec: Recording, sent: np.ndarray, sent_rate: int, after: float | None = None,
                before: float | None = None, window: float = 0.2, min_score: float = 0.5) -> AudioAlignment | None:
    """Locate every ``window``-second piece of the agent's ``sent`` audio in the received audio,
    in order (each piece is searched after the previous one), so that gaps inserted on the way
    (an audio source that ran dry, a jitter buffer stretching) show up as a growing delay
    instead of shifting everything after them. Silent pieces, matches scoring below
    ``min_score`` and matches that would have arrived faster than real-time playout allows
    (:data:`FASTEST_ARRIVAL_LEAD_S`) are left out. None when no piece is found.

    Args:
        sent: (N,) int16 or float audio the agent played; sent_rate: its rate in Hz.
        after, before: only search audio that arrived in this window (perf_counter seconds).
    """
    x, times, s = _received_and_sent(rec, sent, sent_rate, after, before, np.float64)
    n = int(window * rec.sample_rate)
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    found, lo = [], 0
    for i in range(0, len(s) - n + 1, n):
        piece = s[i : i + n]
        norm = np.sqrt((piece * piece).sum())
        if norm < LOUD_RMS * np.sqrt(n):  # quieter than -40 dBFS: silence matches anything
            continue
        hi = min(len(x), lo + n + 3 * rec.sample_rate)  # gaps of up to 3 s between pieces
        if hi - lo < n:
            break
        c = np.correlate(x[lo:hi], piece, mode="valid")
        e = np.sqrt(energy[lo + n : hi + 1] - energy[lo : hi - n + 1]).clip(1e-9) * norm
        score = c / e
        j = int(np.argmax(score))
        if score[j] < min_score:
            continue
        sent_at, arrived = i / rec.sample_rate, times[lo + j]
        if found and arrived - found[0][1] < sent_at - found[0][0] - FASTEST_ARRIVAL_LEAD_S:
            # audio plays out in real time: this piece cannot have arrived that early after the first
            # one, so the match is a look-alike (e.g. the tail of a cut turn resembling a later word)
            continue
        found.append((sent_at, arrived, float(score[j])))
        lo = lo + j + n // 2
    if not found:
        return None
    a = np.array(found)
    return AudioAlignment(a[:, 0], a[:, 1], a[:, 2])


def av_offsets(turn: list[tuple[int, float]], audio: AudioAlignment | float) -> np.ndarray:
    """(F,) seconds by which each received speech frame of ``turn`` trails the received audio it
    shows (positive: video late). Frame k shows sent audio from k / 25 s; its arrival comes from
    ``audio``: an :func:`align_audio` alignment (exact even when the audio arrived with gaps), or
    the arrival time of the turn's first sample (:func:`locate`; assumes audio without gaps)."""
    k = np.array([k for k, _ in turn], np.float64) / FPS
    t = np.array([t for _, t in turn])
    start = audio.arrival_of(k) if isinstance(audio, AudioAlignment) else audio + k
    return t - start


def heard_until(rec: Recording, sent: np.ndarray, sent_rate: int, after: float, before: float | None = None,
                threshold: float = LOUD_RMS, window: float = 0.08, search: float = 0.15,
                aligned: AudioAlignment | None = None) -> float | None:
    """How far into ``sent`` (seconds) the viewer heard it: the sent-audio time of the last received
    sample louder than ``threshold`` (10 ms RMS, full scale 1.0) that arrived in ``(after, before]``.

    Read from the audio's content, so late or bunched arrivals on a loaded machine do not change
    it (unlike arrival times): the last piece :func:`align_audio` located maps received samples to
    sent ones; counting on from it gives an estimate of where the loud audio ended, refined by
    matching the ``window`` seconds that end there against ``sent`` within ``search`` seconds of
    the estimate (the receiver's jitter buffer may have stretched or squeezed the audio a little
    since that piece, and the cut's last few ms are too short to match alone). None when nothing
    of ``sent`` was located. ``aligned``: that :func:`align_audio` result, when already computed.
    """
    from scipy.signal import correlate

    if aligned is None:
        aligned = align_audio(rec, sent, sent_rate, after, before)
    if aligned is None:
        return None
    x, times, s = _received_and_sent(rec, sent, sent_rate, after, before, np.float64)
    rate = rec.sample_rate
    hop = rate // 100
    loud = np.nonzero(rms_10ms(x, rate) > threshold)[0]
    piece_at = int(np.searchsorted(times, aligned.arrival[-1]))  # received index of the last piece
    end = (int(loud[-1]) + 1) * hop if len(loud) else piece_at
    estimate = aligned.sent_s[-1] + max(0, end - piece_at) / rate
    n = min(int(window * rate), end)
    seg = x[end - n : end]
    lo = max(0, int((estimate - search) * rate) - n)
    hi = min(len(s), int((estimate + search) * rate))
    if n == 0 or hi - lo < n or not np.any(seg):
        return float(estimate)
    c = correlate(s[lo:hi], seg, mode="valid", method="fft")
    energy = np.concatenate([[0.0], np.cumsum(s[lo:hi] ** 2)])
    score = c / (np.sqrt(energy[n:] - energy[:-n]).clip(1e-9) * np.sqrt((seg * seg).sum()))
    j = int(np.argmax(score))
    return (lo + j + n) / rate if score[j] >= 0.5 else float(estimate)


def loud_seconds(pcm: np.ndarray, sample_rate: int, threshold: float = LOUD_RMS) -> float:
    """Seconds of ``pcm`` ((N,) int16 or float, full scale 1.0) louder than ``threshold`` in 10 ms RMS."""
    x = np.asarray(pcm)
    x = x.astype(np.float64) / 32768.0 if x.dtype == np.int16 else x.astype(np.float64)
    return float((rms_10ms(x, sample_rate) > threshold).sum()) / 100.0


@dataclass
class TurnAudio:
    """What the viewer heard of one turn, read from the audio's content (see :func:`turn_audio`).

    Attributes:
        start: arrival of the turn's first sample (perf_counter seconds), None if not found.
        heard: how far into the turn the viewer heard it (seconds of sent audio): its last loud
            sample; None if not found.
        heard_quiet_until: the first loud sample of the sent audio after ``heard`` (seconds): a turn
            cut inside a pause was heard to somewhere between the two, as silence cannot tell.
        loud_ratio: loud seconds received / loud seconds sent (1.0: nothing lost or repeated).
    """

    start: float | None
    heard: float | None
    loud_ratio: float
    heard_quiet_until: float | None = None

    def heard_to(self, position: float, tolerance: float) -> bool:
        """A playback position (seconds into the turn) agrees with what the viewer heard: it lies
        between ``heard`` and ``heard_quiet_until``, give or take ``tolerance`` seconds."""
        if self.heard is None:
            return False
        return self.heard - tolerance <= position <= max(self.heard, self.heard_quiet_until or 0.0) + tolerance

    def whole(self, seconds: float, tolerance: float = 0.1) -> bool:
        """The whole ``seconds`` long turn was heard: its start was found, its end heard (within
        ``tolerance`` seconds), none of its loud audio lost (ratio at least ``1 - tolerance``) and
        none played twice (ratio below 1.5; a jitter buffer concealing gaps in a stream that ran
        dry adds a few loud tens of ms per gap, a turn played twice doubles it)."""
        return (self.start is not None and self.heard is not None and self.heard >= seconds - tolerance
                and 1.0 - tolerance <= self.loud_ratio < 1.5)


def turn_audio(rec: Recording, sent: np.ndarray, sent_rate: int, after: float, before: float | None = None) -> TurnAudio:
    """How much of ``sent`` (the agent's turn) reached the viewer in ``(after, before]``.

    Robust to a loaded machine: gaps in the stream and the receiver's jitter buffer stretching
    or squeezing the audio (which defeats sample-exact matching of every piece) change arrival
    times, not these figures.
    """
    x, times, s = _received_and_sent(rec, sent, sent_rate, after, before, np.float64)
    rate = rec.sample_rate
    sent_loud = loud_seconds(s, rate)
    ratio = loud_seconds(x, rate) / sent_loud if sent_loud else 0.0
    aligned = align_audio(rec, sent, sent_rate, after, before)
    if aligned is None:
        return TurnAudio(None, None, ratio)
    # the start was heard when the first located piece is one of the sent audio's first two non-silent
    # ones (pieces and silence as in align_audio), or when the loud audio received before that piece
    # accounts for the sent audio before it (a turn that starts while the receiver conceals a gap can
    # arrive too warped to match sample by sample); the start is then that piece's arrival counted
    # back to sample 0
    n = int(0.2 * rate)
    first_loud = next((i / rate for i in range(0, len(s) - n + 1, n)
                       if np.sqrt((s[i : i + n] ** 2).sum()) >= LOUD_RMS * np.sqrt(n)), None)
    head_sent = loud_seconds(s[: int(aligned.sent_s[0] * rate)], rate)
    head_received = loud_seconds(x[: int(np.searchsorted(times, aligned.arrival[0]))], rate)
    matched = first_loud is not None and aligned.sent_s[0] <= first_loud + 0.2 + 1e-9
    start = float(aligned.arrival_of(0.0)) if matched or head_received >= 0.8 * head_sent else None
    heard = heard_until(rec, sent, sent_rate, after, before, aligned=aligned)
    quiet_until = None
    if heard is not None:
        hop = rate // 100
        loud = rms_10ms(s, rate) > LOUD_RMS
        later = np.nonzero(loud & (np.arange(len(loud)) * hop >= heard * rate))[0]
        quiet_until = float(later[0] * hop / rate) if len(later) else len(s) / rate
    return TurnAudio(start, heard, ratio, quiet_until)


def last_loud_audio(rec: Recording, after: float, threshold: float = LOUD_RMS, before: float | None = None) -> float | None:
    """Arrival time of the last received sample louder than ``threshold`` (full scale 1.0,
    10 ms RMS) in ``(after, before]``; None if there is none."""
    x = rec.audio_pcm().astype(np.float32) / 32768.0
    times = rec.audio_times()
    hop = rec.sample_rate // 100
    n = len(x) // hop
    if n == 0:
        return None
    rms = rms_10ms(x, rec.sample_rate)
    ends = times[hop - 1 : n * hop : hop]
    window = (ends > after) & (ends <= before if before is not None else True)
    loud = np.nonzero((rms > threshold) & window)[0]
    return float(ends[loud[-1]]) if len(loud) else None
