"""AudioClockedSynchronizer: each video frame leaves when its own audio plays out (no room needed:
the audio source is a stand-in that plays its queue in real time, like ``rtc.AudioSource``)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("livekit.plugins.teller", reason="install plugins/livekit-plugins-teller")

from livekit import rtc  # noqa: E402
from livekit.plugins.teller.sync import AudioClockedSynchronizer  # noqa: E402

RATE = 24000


class RealTimeAudioSource:
    """Plays its queue at real time; ``capture_frame`` waits while more than ``queue_s`` is queued."""

    sample_rate, num_channels = RATE, 1

    def __init__(self, queue_s: float = 0.1):
        self.queue_s = queue_s
        self.capturing = False  # like rtc.AudioSource, one capture at a time (InvalidState otherwise)
        self.captured: list[tuple[int, bool]] = []  # (samples, all zero) of each captured frame
        self.end = 0.0  # perf_counter when the queued audio has played
        self.starts: list[float] = []  # play-out start of each captured frame

    @property
    def queued_duration(self) -> float:
        return max(0.0, self.end - time.perf_counter())

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if self.capturing:
            raise RuntimeError("InvalidState - failed to capture frame")
        self.capturing = True
        try:
            while self.queued_duration > self.queue_s:
                await asyncio.sleep(0.002)
        finally:
            self.capturing = False
        self.captured.append((frame.samples_per_channel, not any(frame.data)))
        now = time.perf_counter()
        self.starts.append(max(now, self.end))
        self.end = self.starts[-1] + frame.samples_per_channel / frame.sample_rate

    def clear_queue(self) -> None:
        self.end = 0.0

    async def wait_for_playout(self) -> None:
        await asyncio.sleep(self.queued_duration)


class RecordingVideoSource:
    def __init__(self):
        self.captured: list[tuple[float, int]] = []

    def capture_frame(self, frame: rtc.VideoFrame) -> None:
        self.captured.append((time.perf_counter(), frame.data[0]))


def _video(i: int) -> rtc.VideoFrame:
    return rtc.VideoFrame(2, 2, rtc.VideoBufferType.RGB24, bytes([i]) * 12)


def _audio(ms: int) -> rtc.AudioFrame:
    n = RATE * ms // 1000
    return rtc.AudioFrame(np.zeros(n, np.int16).tobytes(), RATE, 1, n)


def _run(delay_ms: float, body):
    async def main():
        # as in the runner, the source's own queue is twice the synchronizer's 100 ms
        audio, video = RealTimeAudioSource(queue_s=0.2), RecordingVideoSource()
        sync = AudioClockedSynchronizer(audio_source=audio, video_source=video, video_fps=25,
                                        video_delay_ms=delay_ms)
        try:
            await body(sync, audio)
        finally:
            await sync.aclose()
        return audio, video

    return asyncio.run(main())


@pytest.mark.parametrize("delay_ms", [0, 24])
def test_each_speech_frame_leaves_when_its_audio_plays(delay_ms):
    async def body(sync, audio):
        for i in range(15):  # as the video generator hands them out: the frame's audio, then the frame
            await sync.push(_audio(20))
            await sync.push(_audio(20))
            await sync.push(_video(i))
        await asyncio.sleep(0.25)

    audio, video = _run(delay_ms, body)
    assert [code for _, code in video.captured] == list(range(15))
    due = np.array(audio.starts[::2]) + delay_ms / 1000  # each frame's audio starts with its first piece
    late = np.array([t for t, _ in video.captured]) - due
    assert np.all(late > -0.002), late  # never before its audio (plus the delay)
    assert np.median(late) < 0.006 and late.max() < 0.03, late


def test_idle_frames_keep_a_25_fps_grid():
    async def body(sync, audio):
        for i in range(10):  # no audio: frames handed out at once
            await sync.push(_video(i))
        await asyncio.sleep(0.5)

    _, video = _run(24, body)
    gaps = np.diff([t for t, _ in video.captured])
    assert len(gaps) == 9 and np.all(gaps > 0.035) and np.median(gaps) < 0.045, gaps


def test_clear_drops_the_frame_waiting_for_its_audio():
    async def body(sync, audio):
        for i in range(2):
            await sync.push(_audio(40))
            await sync.push(_video(i))  # due 0 and 40 ms (+ delay) from now
        await asyncio.sleep(0.01)
        await sync.clear_queue()
        await asyncio.sleep(0.2)

    _, video = _run(24, body)
    assert [code for _, code in video.captured] == []  # the first frame was still waiting for its time


def test_a_dropped_frame_plays_its_audio_and_the_next_frame_keeps_its_own_audio_time():
    async def body(sync, audio):
        for i in range(6):
            await sync.push(_audio(20))
            await sync.push(_audio(20))
            if i == 2:  # the generator could not draw frame 2 in time: only its audio is published
                sync.skip_frame()
                continue
            await sync.push(_video(i))
        await asyncio.sleep(0.25)

    audio, video = _run(0, body)
    assert [code for _, code in video.captured] == [0, 1, 3, 4, 5]
    due = np.array(audio.starts[::2])[[0, 1, 3, 4, 5]]  # frame 3 is timed from its own audio, not frame 2's
    late = np.array([t for t, _ in video.captured]) - due
    assert np.all(late > -0.002) and late.max() < 0.03, late


def test_video_delay_is_bounded():
    with pytest.raises(ValueError, match="video_delay_ms"):
        _run(900, None)


def test_the_video_generator_drops_pictures_not_audio_when_it_falls_behind(avatar):
    """With the audio queue empty (the publisher is starved) and frames waiting, the generator
    hands out those frames' audio without their pictures; every sample of the turn still comes out."""
    import torch

    from livekit.agents.voice.avatar import AudioSegmentEnd

    from livekit.plugins.teller.video_generator import TellerVideoGenerator
    from teller_agent.fmlg.generator import MotionGenerator
    from teller_agent.stream import AvatarEngine

    torch.set_num_threads(1)
    engine = AvatarEngine(avatar, MotionGenerator(), sample_rate=RATE, vad=False)
    pcm = (np.random.default_rng(0).standard_normal(RATE) * 3000).astype(np.int16)  # 1 s: 25 frames

    async def main():
        audio, video = RealTimeAudioSource(), RecordingVideoSource()
        sync = AudioClockedSynchronizer(audio_source=audio, video_source=video, video_fps=25)
        gen = TellerVideoGenerator(engine)
        gen.set_av_sync(sync)  # nothing is pushed to it: its audio queue stays empty
        await gen.push_audio(rtc.AudioFrame(pcm.tobytes(), RATE, 1, len(pcm)))
        await gen.push_audio(AudioSegmentEnd())
        items = []
        async for item in gen:
            if isinstance(item, AudioSegmentEnd):
                break
            items.append(item)
        await gen.aclose()
        await sync.aclose()
        return items, gen.metrics()

    items, metrics = asyncio.run(main())
    played = np.concatenate([np.frombuffer(a.data, np.int16) for a in items if isinstance(a, rtc.AudioFrame)])
    np.testing.assert_array_equal(played[: len(pcm)], pcm)
    assert metrics.frames_dropped >= 1 and metrics.speech_frames + metrics.frames_dropped == 25


def test_cut_audio_drops_a_push_waiting_for_room_and_times_the_next_turn_after_the_silence():
    speech = rtc.AudioFrame(np.ones(RATE // 25, np.int16).tobytes(), RATE, 1, RATE // 25)  # 40 ms, not silent

    async def body(sync, audio):
        for _ in range(2):  # 80 ms queued: a third push waits for room in the 100 ms queue
            await sync.push(speech)
        pushing = asyncio.create_task(sync.push(speech))  # the forwarder, inside a push of the cut turn
        await asyncio.sleep(0.005)
        assert not pushing.done() and not audio.capturing  # it waits in the synchronizer, not in the source
        await sync.cut_audio(0.04)
        await pushing
        await sync.push(speech)  # the next turn
        await sync.push(_video(7))
        await asyncio.sleep(0.2)

    audio, video = _run(0, body)
    # the waiting push never reached the source: a capture waiting inside the source would land in
    # the emptied queue after the cut, and the listener would hear it
    assert audio.captured == [(RATE // 25, False)] * 2 + [(RATE // 25, True), (RATE // 25, False)]
    silence_start, turn_start = audio.starts[-2:]
    assert silence_start < audio.starts[-3]  # the cut turn's queued audio was dropped before it played
    assert turn_start - silence_start == pytest.approx(0.04, abs=0.003)  # the next turn plays after the silence
    assert [code for _, code in video.captured] == [7]
    assert video.captured[0][0] - turn_start == pytest.approx(0.0, abs=0.01)  # and its frame with it


def test_a_clear_drops_the_audio_waiting_for_room_and_pushing_waits_only_for_the_queue():
    async def body(sync, audio):
        for _ in range(5):
            await sync.push(_audio(20))  # 100 ms: the queue is full
        t0 = time.perf_counter()
        await sync.push(_audio(20))  # waits about 20 ms for room, in the synchronizer
        waited = time.perf_counter() - t0
        pushing = asyncio.create_task(sync.push(_audio(20)))
        await asyncio.sleep(0.005)
        assert not audio.capturing
        await sync.clear_queue()
        await asyncio.wait_for(pushing, 0.05)  # it gives up at the clear, not when room comes
        await asyncio.sleep(0.05)
        return waited

    waited = []

    async def run(sync, audio):
        waited.append(await body(sync, audio))

    audio, _ = _run(0, run)
    assert len(audio.captured) == 6  # the push waiting at the clear never reached the source
    assert 0.01 < waited[0] < 0.04, waited  # the sixth push waited for the first one to play, no longer


def test_queued_audio_follows_the_queue_through_an_underrun_and_a_clear():
    """The synchronizer's playout clock (what interrupted turns report as heard) matches a queue that
    plays at real time: after the queue ran dry, while full, and after a clear."""
    readings = []

    async def body(sync, audio):
        await sync.push(_audio(40))
        await asyncio.sleep(0.3)  # the queue runs dry
        for _ in range(4):  # 160 ms more: the last push waits for room in the synchronizer's 100 ms queue
            await sync.push(_audio(40))
        readings.append((sync.queued_audio_s, audio.queued_duration))
        await asyncio.sleep(0.05)
        readings.append((sync.queued_audio_s, audio.queued_duration))
        sync.drop_audio()
        readings.append((sync.queued_audio_s, audio.queued_duration))

    _run(0, body)
    assert 0.09 < readings[0][1] <= 0.14  # the fake queue really holds audio here
    for ours, real in readings:
        assert ours == pytest.approx(real, abs=0.004)
