"""The live streaming engine: audio pairing, sample rates, VAD mouth gate, interruption settle, idle."""

from __future__ import annotations

import numpy as np
import pytest

from teller_agent.stream import INTERRUPT_SETTLE, AvatarEngine, IdleMotion, read_stamp, stamp


@pytest.fixture(scope="module")
def engine(avatar):
    import torch

    from teller_agent.fmlg.generator import MotionGenerator

    torch.set_num_threads(1)
    return AvatarEngine(avatar, MotionGenerator(), sample_rate=24000, stamp_frames=True)


@pytest.fixture(scope="module")
def speech():
    """(pcm float32, 22050 Hz): a spoken sentence from espeak-ng."""
    from teller_agent.data.espeak import synthesize

    u = synthesize("Hello there. I am the avatar, and this is a test sentence.")
    return u.pcm.astype(np.float32), u.sample_rate


def run_turn(engine, pcm, sr, chunk_ms=20):
    n = max(1, sr * chunk_ms // 1000)
    frames = []
    for i in range(0, len(pcm), n):
        frames += engine.push_audio(pcm[i : i + n], sr)
    return frames + engine.end_turn()


def test_each_frame_carries_its_own_40ms_of_audio(engine):
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal(24000 * 2 + 500) * 3000).astype(np.int16)  # 2.02 s at the output rate
    frames = run_turn(engine, pcm, 24000, chunk_ms=30)
    assert all(f.speaking for f in frames)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert len(frames) == round(len(pcm) / 960)
    assert all(len(f.audio) == 960 for f in frames[:-1])
    played = np.concatenate([f.audio for f in frames])
    np.testing.assert_array_equal(played[: len(pcm)], pcm)  # nothing lost, nothing reordered
    assert not played[len(pcm):].any()


def test_a_frame_rendered_without_drawing_still_advances_the_turn(engine):
    rng = np.random.default_rng(1)
    pcm = (rng.standard_normal(24000) * 3000).astype(np.int16)  # 1 s: 25 frames
    engine.feed(pcm, 24000)
    engine.finish()
    frames = engine.render(3) + engine.render(2, draw=False) + engine.render()
    assert [f.index for f in frames] == list(range(25))
    assert [f.image is None for f in frames] == [i in (3, 4) for i in range(25)]
    np.testing.assert_array_equal(np.concatenate([f.audio for f in frames])[: len(pcm)], pcm)  # its audio is kept
    assert not engine.speaking


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_any_input_rate_gives_the_same_timeline(engine, speech, rate):
    from teller_agent.media import resample

    pcm, sr = speech
    x = resample(pcm, sr, rate)
    frames = run_turn(engine, x, rate)
    seconds = len(x) / rate
    assert abs(len(frames) - seconds * 25) <= 1
    played = sum(len(f.audio) for f in frames) / 24000
    assert abs(played - seconds) <= 0.04
    assert max(f.mouth for f in frames) > 0.01  # it talked


def test_pauses_inside_a_sentence_close_the_mouth(engine, speech):
    pcm, sr = speech
    gap = np.zeros(sr, np.float32)  # 1 s pause mid-turn
    frames = run_turn(engine, np.concatenate([pcm, gap, pcm]), sr)
    n1 = round(len(pcm) / sr * 25)
    pause = [f.mouth for f in frames[n1 + 8 : n1 + 25 - 8]]  # the middle of the pause
    talk = [f.mouth for f in frames[5:n1]]
    assert max(pause) < 0.002, pause
    assert np.mean(talk) > 5 * max(max(pause), 1e-4)


def test_interruption_settles_to_neutral_in_three_frames_without_a_jump(engine, speech):
    pcm, sr = speech
    frames = []
    for i in range(0, len(pcm) // 2, sr // 50):
        frames += engine.push_audio(pcm[i : i + sr // 50], sr)
    talking = [f for f in frames if f.mouth > 0.02]
    assert talking, "the sentence never opened the mouth"
    # interrupt on an open-mouth frame: feed until the last frame is open
    last = frames[-1].mouth
    engine.interrupt()
    assert not engine.speaking and engine.buffered_s == 0
    after = [engine.idle_frame() for _ in range(6)]
    assert not any(f.speaking for f in after)
    assert abs(after[2].mouth) < 1e-6  # neutral by the third frame (120 ms)
    steps = np.abs(np.diff([last] + [f.mouth for f in after]))
    assert steps.max() <= abs(last) * max(1 - INTERRUPT_SETTLE[0], INTERRUPT_SETTLE[0] - INTERRUPT_SETTLE[1]) + 1e-4
    # the next turn plays normally
    again = run_turn(engine, pcm, sr)
    assert abs(len(again) - len(pcm) / sr * 25) <= 1 and max(f.mouth for f in again) > 0.01


def test_three_interruptions_in_a_second_do_not_break_the_next_turn(engine, speech):
    pcm, sr = speech
    for _ in range(3):
        for i in range(0, sr // 3, sr // 50):
            engine.push_audio(pcm[i : i + sr // 50], sr)
        engine.interrupt()
    frames = run_turn(engine, pcm, sr)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert abs(len(frames) - len(pcm) / sr * 25) <= 1


def test_idle_is_alive_and_closed_mouthed(engine):
    frames = [engine.idle_frame() for _ in range(125 + 4)][4:]  # 5 s, after any settle of the last turn
    assert all(abs(f.mouth) < 1e-6 and f.audio is None for f in frames)
    diffs = [np.abs(a.image.astype(int) - b.image.astype(int)).mean() for a, b in zip(frames, frames[1:])]
    assert min(diffs) > 0 or np.count_nonzero(diffs) > 100  # not a frozen picture
    motion = IdleMotion(0)
    blinks = [float(motion.next_frame().exp[0, 37, 1]) for _ in range(25 * 60)]
    assert 5 <= sum(1 for a, b in zip(blinks, blinks[1:]) if a <= 0 < b or (a == 0 and b > 0)) <= 40


def test_frame_stamp_round_trips_through_jpeg():
    import cv2

    rng = np.random.default_rng(1)
    for code in (0, 1, 0x8000, 0x8123, 0xFFFF, 12345):
        img = rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)
        stamp(img, code)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 60])
        assert read_stamp(cv2.imdecode(buf, cv2.IMREAD_COLOR)) == code
    assert read_stamp(np.full((512, 512, 3), 128, np.uint8)) is None


def test_nan_infinite_and_loud_tts_audio_become_silence_with_one_warning_per_turn(engine, caplog):
    rng = np.random.default_rng(2)
    pcm = (rng.standard_normal(24000) * 0.1).astype(np.float32)  # 1 s: 25 frames
    pcm[2400:4800] = np.nan
    pcm[9600:9700] = np.inf
    pcm[12000:12100] = 30.0
    with caplog.at_level("WARNING", logger="teller_agent.stream.engine"):
        frames = run_turn(engine, pcm, 24000)  # 50 chunks of 20 ms, three of them bad
        again = run_turn(engine, pcm, 24000)  # the next turn warns again, once
    warnings = [r for r in caplog.records if "NaN/infinite" in r.getMessage()]
    assert len(warnings) == 2
    for turn in (frames, again):
        assert len(turn) == 25 and all(f.image is not None for f in turn)
        played = np.concatenate([f.audio for f in turn])[:24000].astype(np.int32)
        assert not played[2400:4800].any() and not played[9600:9700].any()  # silence where it was NaN / inf
        assert np.abs(played[12000:12100]).max() >= 32767 and played.max() <= 32767  # clipped, not wrapped
        assert np.abs(played[:2400] - pcm[:2400] * 32767).max() <= 1.5  # the good audio untouched


def test_bad_sample_rate_is_rejected(avatar):
    from teller_agent.fmlg.generator import MotionGenerator

    with pytest.raises(ValueError, match="multiple of 25"):
        AvatarEngine(avatar, MotionGenerator(), sample_rate=22049)


def test_two_speech_gates_interleaved_give_what_each_gives_alone(speech):
    from teller_agent.media import resample
    from teller_agent.stream.gate import SpeechGate

    pcm, sr = speech
    a = resample(pcm, sr, 16000)
    b = (np.random.default_rng(3).standard_normal(len(a)) * 0.05).astype(np.float32)  # noise, not speech

    def alone(x):
        gate = SpeechGate()
        for i in range(0, len(x), 640):
            gate.push(x[i : i + 640])
        return [gate.frame_probability(k) for k in range(len(x) // 640)]

    ga, gb = SpeechGate(), SpeechGate()
    for i in range(0, len(a), 640):  # two sessions, 40 ms each in turn
        ga.push(a[i : i + 640])
        gb.push(b[i : i + 640])
    n = len(a) // 640
    assert [ga.frame_probability(k) for k in range(n)] == pytest.approx(alone(a), abs=1e-6)
    assert [gb.frame_probability(k) for k in range(n)] == pytest.approx(alone(b), abs=1e-6)
    assert max(alone(a)) > 0.9  # the sentence is heard as speech


def test_switching_the_portrait_mid_turn_keeps_the_turn_and_changes_the_face(avatar, settings, speech):
    from PIL import Image
    from skimage import data

    from teller_agent.face import prepare_avatar
    from teller_agent.fmlg.generator import MotionGenerator
    from teller_agent.stream import AvatarEngine

    eng = AvatarEngine(avatar, MotionGenerator.from_settings(settings), vad=False)
    pcm, sr = speech
    half = len(pcm) // 2
    before = eng.push_audio(pcm[:half], sr)
    mirrored = prepare_avatar(np.ascontiguousarray(data.astronaut()[:, ::-1]), settings)
    eng.set_avatar(mirrored)
    after = eng.push_audio(pcm[half:], sr) + eng.end_turn()
    assert before and after and all(f.speaking for f in after)
    assert after[0].index == before[-1].index + 1  # the same turn goes on
    # the new face: the frame is closer to the mirrored portrait than to the old one
    img = after[0].image.astype(np.float32)
    assert np.abs(img - mirrored.image).mean() < np.abs(img - avatar.image).mean()
    small = prepare_avatar(np.asarray(Image.fromarray(data.astronaut()).resize((400, 400))),
                           settings.model_copy(update={"frame_size": 256}))
    with pytest.raises(ValueError, match="256x256"):
        eng.set_avatar(small)


def test_audio_held_back_by_the_publisher_is_slack_not_latency(engine, speech):
    """A publisher that holds a TTS burst until drawing catches up passes ``held``: latency is
    counted on a clock that stands still while audio is held, so holding adds none."""
    import time

    pcm, sr = speech
    pcm = pcm[: 2 * sr]
    n = sr * 80 // 1000

    def turn(held_s: float) -> list[float]:
        engine.interrupt()
        engine.render()  # the settle frames after the interrupt are idle; nothing pending
        frames = []
        assert engine.turn_frames == 0
        for i in range(0, len(pcm), n):
            arrival = time.perf_counter()
            if held_s:
                time.sleep(held_s)  # the publisher holds this piece before feeding it
            engine.feed(pcm[i : i + n], sr, arrival=arrival, held=held_s)
            frames += engine.render()
        engine.finish()
        frames += engine.render()
        assert engine.turn_frames == 0 and not engine.speaking  # the turn ended with its last frame
        return [f.latency_s for f in frames if f.latency_s is not None]

    plain, held = turn(0.0), turn(0.1)
    assert len(plain) == len(held) == round(2 * 25)
    # counting the holds, a frame would wait its own piece's 0.1 s and its look-ahead piece's 0.1 s more
    assert np.median(held) < np.median(plain) + 0.1
    assert max(held) < max(plain) + 0.1
