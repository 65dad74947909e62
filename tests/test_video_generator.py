"""``TellerVideoGenerator`` on its own (no room): how it paces a TTS burst.

The room behaviour (fps, A/V sync at a viewer) is tested against a real server in test_livekit.py.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("livekit.plugins.teller", reason="install plugins/livekit-plugins-teller")

from livekit import rtc  # noqa: E402
from livekit.agents.voice.avatar import AudioSegmentEnd  # noqa: E402
from livekit.plugins.teller.video_generator import AHEAD_FRAMES, TellerVideoGenerator  # noqa: E402

from teller_agent.stream import AvatarEngine, read_stamp  # noqa: E402
from teller_agent.stream.stamp import SPEAKING  # noqa: E402

SR = 24000


def _burst(seconds: float) -> list[rtc.AudioFrame]:
    """A TTS burst: 20 ms int16 frames of a voiced sound, all handed over at once."""
    t = np.arange(int(seconds * SR)) / SR
    pcm = (0.3 * np.sin(2 * np.pi * 160 * t) * (np.sin(2 * np.pi * 3 * t) > 0) * 32767).astype(np.int16)
    n = SR // 50
    return [rtc.AudioFrame(data=pcm[i : i + n].tobytes(), sample_rate=SR, num_channels=1, samples_per_channel=n)
            for i in range(0, len(pcm) - n + 1, n)]


@pytest.fixture(scope="module")
def engine(avatar):
    import torch

    from teller_agent.fmlg.generator import MotionGenerator

    torch.set_num_threads(1)
    return AvatarEngine(avatar, MotionGenerator(), sample_rate=SR, stamp_frames=True)


def test_a_burst_is_generated_only_a_few_frames_ahead_of_drawing(engine):
    async def main():
        gen = TellerVideoGenerator(engine)
        stream = gen.__aiter__()
        first = await stream.__anext__()  # idle before the turn
        assert isinstance(first, rtc.VideoFrame)
        for frame in _burst(3.0):
            await gen.push_audio(frame)
        await gen.push_audio(AudioSegmentEnd())
        waiting, kinds = [], []
        async for item in stream:
            if isinstance(item, rtc.VideoFrame):
                image = np.frombuffer(item.data, np.uint8).reshape(item.height, item.width, 3)
                kinds.append(bool(read_stamp(image) & SPEAKING))
                waiting.append(engine.pending)
            if isinstance(item, AudioSegmentEnd):
                break
        await gen.aclose()
        return waiting, kinds

    waiting, speech = asyncio.run(asyncio.wait_for(main(), 60))
    assert sum(speech) == 3 * 25  # every frame of the turn came out
    # motion never ran far ahead of drawing: the burst waited as audio. A feed (80 ms) adds up to
    # 2 frames, the turn's end the frames that waited for look-ahead audio; without the pacing
    # the whole burst (75 frames) would wait at once.
    assert max(waiting) <= AHEAD_FRAMES + 2 + engine.generator.lookahead


def test_nothing_of_a_cut_turn_is_handed_out_after_the_clear_begins(engine):
    """Between the clear's synchronous half and the engine's interrupt, the engine still holds motion
    of the cut turn: none of it may come out (its audio would reach the listener after the cut)."""

    async def main():
        gen = TellerVideoGenerator(engine)
        stream = gen.__aiter__()
        await stream.__anext__()  # idle before the turn
        for frame in _burst(3.0):
            await gen.push_audio(frame)
        speech_frames = 0
        while speech_frames < 10:  # well into the turn, with motion waiting to be drawn
            item = await stream.__anext__()
            speech_frames += isinstance(item, rtc.VideoFrame)
        assert engine.pending > 0
        gen.begin_clear()

        async def second_half():  # as the runner: its queues first, then the engine
            await asyncio.sleep(0.2)
            await gen.clear_buffer()

        clearing = asyncio.create_task(second_half())
        after = []
        while not clearing.done() or not after or not isinstance(after[-1], rtc.VideoFrame):
            after.append(await stream.__anext__())
        await gen.aclose()
        return after

    after = asyncio.run(asyncio.wait_for(main(), 60))
    assert not any(isinstance(item, rtc.AudioFrame) for item in after), [type(i).__name__ for i in after]
    for item in after:
        image = np.frombuffer(item.data, np.uint8).reshape(item.height, item.width, 3)
        assert not read_stamp(image) & SPEAKING
