"""The viewer's analysis: audio located piece by piece, A/V offsets against the audio each frame shows."""

from __future__ import annotations

import numpy as np

from teller_agent.live import viewer as V

RATE = 24000


def _received(sent: np.ndarray, gaps: dict[int, float], t0: float = 100.0) -> V.Recording:
    """A recording of ``sent`` arriving in 10 ms frames from ``t0``, with silence of ``gaps[i]``
    seconds inserted before sample ``i``."""
    parts, at = [], 0
    for i in sorted(gaps):
        parts += [sent[at:i], np.zeros(int(gaps[i] * RATE), np.int16)]
        at = i
    parts.append(sent[at:])
    x = np.concatenate(parts)
    hop = RATE // 100
    rec = V.Recording(sample_rate=RATE)
    for k in range(0, len(x) - hop + 1, hop):
        rec.audio.append(V.AudioRecord(t0 + (k + hop) / RATE, x[k : k + hop]))
    return rec


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    envelope = 0.5 + 0.5 * np.sin(np.arange(n) / RATE * 2 * np.pi * 3)  # syllable-like loudness
    return (rng.standard_normal(n) * 4000 * envelope).clip(-32768, 32767).astype(np.int16)


def test_audio_gaps_are_measured_and_offsets_follow_the_audio_each_frame_shows():
    sent = _speech(3.0)
    rec = _received(sent, {RATE: 0.3})  # 300 ms of silence inserted 1 s into the turn
    aligned = V.align_audio(rec, sent, RATE)
    assert aligned is not None
    assert abs(aligned.stretch_s - 0.3) < 0.005
    # frames arriving exactly with their audio: offset 0 on both sides of the gap
    turn = [(k, float(aligned.arrival_of(k / 25))) for k in range(75)]
    np.testing.assert_allclose(V.av_offsets(turn, aligned), 0.0, atol=1e-6)
    assert abs(float(aligned.arrival_of(2.0)) - (100.0 + 2.3)) < 0.005
    # assuming gap-free audio from the first sample instead blames the gap on the video
    start = V.locate(rec, sent, RATE)
    assert abs(start - 100.0) < 0.005
    late = V.av_offsets(turn, start)
    assert abs(late[10]) < 0.005 and abs(late[60] - 0.3) < 0.005


def test_continuous_audio_has_no_gaps_and_unrelated_audio_is_not_found():
    sent = _speech(2.0)
    aligned = V.align_audio(_received(sent, {}), sent, RATE)
    assert aligned is not None and abs(aligned.stretch_s) < 0.002 and len(aligned.sent_s) == 10
    assert V.align_audio(_received(_speech(2.0, seed=1), {}), sent, RATE) is None


def test_heard_until_reads_the_cut_from_the_content_not_the_arrival_times():
    sent = _speech(3.0)
    cut = int(1.37 * RATE)
    heard = np.concatenate([sent[:cut], np.zeros(RATE, np.int16)])
    # 400 ms of gaps inside what was heard: arrival times stretch, the content does not
    rec = _received(heard, {int(0.5 * RATE): 0.2, int(1.0 * RATE): 0.2})
    assert abs(V.heard_until(rec, sent, RATE, after=0.0) - 1.37) < 0.011
    assert abs(V.last_loud_audio(rec, after=0.0) - 100.0 - 1.77) < 0.011  # arrival: 1.37 s + the gaps
    turn = V.turn_audio(rec, sent, RATE, after=0.0)
    assert abs(turn.start - 100.0) < 0.005 and abs(turn.heard - 1.37) < 0.011
    assert abs(turn.loud_ratio - 1.37 / 3.0) < 0.02 and not turn.whole(3.0)
    whole = V.turn_audio(_received(sent, {RATE: 0.3}), sent, RATE, after=0.0)
    assert whole.whole(3.0) and abs(whole.heard - 3.0) < 0.011 and abs(whole.loud_ratio - 1) < 0.01
    assert V.heard_until(_received(_speech(2.0, seed=1), {}), sent, RATE, after=0.0) is None


def test_a_turn_cut_inside_a_pause_was_heard_anywhere_in_that_pause():
    sent = _speech(3.0)
    sent[int(1.0 * RATE) : int(1.4 * RATE)] = 0  # a pause between words, 1.0-1.4 s
    cut = int(1.2 * RATE)
    rec = _received(np.concatenate([sent[:cut], np.zeros(RATE, np.int16)]), {})
    turn = V.turn_audio(rec, sent, RATE, after=0.0)
    assert abs(turn.heard - 1.0) < 0.011 and abs(turn.heard_quiet_until - 1.4) < 0.011
    assert turn.heard_to(1.2, 0.06) and turn.heard_to(1.45, 0.06) and turn.heard_to(0.95, 0.06)
    assert not turn.heard_to(1.5, 0.06) and not turn.heard_to(0.9, 0.06)  # past the next word, or short of the pause


def test_a_turn_whose_start_arrived_warped_counts_as_heard_one_whose_start_was_lost_does_not():
    sent = _speech(3.0)
    head = int(0.5 * RATE)
    warped = sent.copy()
    warped[:head] = _speech(0.5, seed=7)  # as loud, but no longer sample-matchable (concealment, stretching)
    turn = V.turn_audio(_received(warped, {}), sent, RATE, after=0.0)
    assert turn.start is not None and abs(turn.start - 100.0) < 0.005 and turn.whole(3.0)
    lost = sent.copy()
    lost[:head] = 0
    assert V.turn_audio(_received(lost, {}), sent, RATE, after=0.0).start is None


def test_viewer_process_that_cannot_join_raises_and_leaves_no_process():
    import asyncio
    import multiprocessing as mp
    import socket

    import pytest

    pytest.importorskip("livekit.rtc")
    from teller_agent.live.viewer_process import ViewerProcess

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main():
        viewer = ViewerProcess(f"ws://127.0.0.1:{port}", "not-a-token")
        with pytest.raises(RuntimeError, match="could not join the room"):
            await viewer.start()
        return viewer

    viewer = asyncio.run(main())
    assert viewer.rec.video == [] and viewer.first_frame_t is None
    assert not [p for p in mp.active_children() if p.name == "teller-viewer"]


def test_a_look_alike_of_a_later_piece_arriving_too_early_is_not_located():
    """A turn cut after 1 s, then (0.2 s later) a copy of the sent audio's 4.0-4.2 s: real-time
    playout cannot deliver that piece so soon, so the alignment must stop at the cut (a located
    look-alike made an interrupted turn look heard to 4.25 s in a room test)."""
    sent = _speech(5.0)
    cut = sent[:RATE]
    x = np.concatenate([cut, np.zeros(int(0.2 * RATE), np.int16), sent[4 * RATE : int(4.2 * RATE)],
                        np.zeros(RATE, np.int16)])
    rec = _received(x, {})
    aligned = V.align_audio(rec, sent, RATE)
    assert aligned is not None and aligned.sent_s.max() < 1.0, aligned.sent_s
