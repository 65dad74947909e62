"""The avatar in a real LiveKit room (a local ``livekit-server --dev``), seen by a recording viewer.

Each scenario (a turn, interruptions, sample rates, a dispatched worker) is checked twice:

* functional checks, in the default run, with a busy-loop process hogging a core beside the room
  (as a shared CI machine or a busy agent host would): every turn reaches the viewer with all of
  its audio, the face speaks through it, playback positions match what the viewer heard, the
  intruder is ignored, the worker leaves. These read frame stamps and audio content, never arrival
  times, so a loaded machine may drop frames but cannot fail them;
* wall-clock thresholds (received fps, A/V offset, audio gaps, interruption tail and settle),
  marked ``realtime`` and run on their own without the hog: ``python -m pytest -m realtime``
  (``.ci/run`` runs them as a separate step).

The speed figures (first frame, latency percentiles) are printed by ``teller-agent demo`` and
``teller-agent bench room``.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("livekit.plugins.teller", reason="install plugins/livekit-plugins-teller")

from teller_agent.live import viewer as V  # noqa: E402
from teller_agent.live.demo import start_worker  # noqa: E402
from teller_agent.live.harness import AgentHarness  # noqa: E402
from teller_agent.live.server import LiveKitServerError, LocalLiveKitServer  # noqa: E402

#: Largest tolerated gap (seconds) in a turn's audio at the viewer. Continuous audio measures
#: 0-20 ms on loopback; an avatar whose audio waited for late frames reached 300-1500 ms.
MAX_AUDIO_GAPS_S = 0.15


@pytest.fixture(scope="module")
def server():
    try:
        srv = LocalLiveKitServer().start()
    except LiveKitServerError as e:
        pytest.fail(str(e))  # CI installs the server (.ci/run); locally: see the message
    yield srv
    srv.stop()


def test_the_server_starts_on_fresh_ports_when_a_chosen_port_is_taken_meanwhile(monkeypatch):
    """A port that was free when chosen can be taken before the server binds it (CI saw
    "bind: address already in use"): start() tries fresh ports instead of failing."""
    import socket

    from teller_agent.live import server as S

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken, real, picks = blocker.getsockname()[1], S.free_port, []

    def free_port(kind=socket.SOCK_STREAM):
        picks.append(kind)
        return taken if len(picks) == 1 else real(kind)  # the first pick is taken by the time the server binds

    monkeypatch.setattr(S, "free_port", free_port)
    try:
        srv = LocalLiveKitServer().start()
    except LiveKitServerError as e:
        pytest.fail(str(e))
    finally:
        blocker.close()
    try:
        assert srv.port != taken and len(picks) == 6  # two launches, three ports each
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def sentence():
    from teller_agent.data.espeak import synthesize

    u = synthesize("Hello! I am your avatar. I run on your own computer, and I move my lips as I speak.")
    return (np.clip(u.pcm, -1, 1) * 32767).astype(np.int16), u.sample_rate


@pytest.fixture
def cpu_hog():
    """A busy-loop process on one core for the length of a test."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield hog
    finally:
        hog.kill()
        hog.wait()


def spoke_through(turn: list[tuple[int, float]], seconds: float) -> bool:
    """The face spoke to the end of a ``seconds`` long turn: its last received speech frame
    (frame stamps count every frame of the turn, received or dropped) is within 10% of the end."""
    return bool(turn) and max(k for k, _ in turn) + 1 >= 0.9 * seconds * 25


def harness(server, room, **avatar_kwargs):
    avatar_kwargs.setdefault("stamp_frames", True)
    return AgentHarness(server.url, server.api_key, server.api_secret, room, avatar_kwargs=avatar_kwargs)



# ---------------------------------------------------------------- one turn, then idle


def run_turn(server, sentence, settings, room):
    pcm, sr = sentence

    async def main():
        async with harness(server, room, settings=settings) as h:
            await h.start_avatar()
            first = await h.wait_first_frame(timeout=30)
            await asyncio.sleep(1.0)
            t_say = time.perf_counter()
            await h.say(pcm, sr)
            await asyncio.sleep(max(1.0, 10.5 - (time.perf_counter() - t_say)))
            return h, first, t_say

    h, first, t_say = asyncio.run(main())
    rec = h.viewer.rec
    print(f"first frame at the viewer {first:.2f} s after AvatarSession.start")
    turns = V.speech_turns(rec)
    return SimpleNamespace(h=h, rec=rec, t_say=t_say, turns=turns, seconds=len(pcm) / sr,
                           heard=V.turn_audio(rec, pcm, sr, after=t_say), aligned=V.align_audio(rec, pcm, sr, after=t_say))


def test_local_avatar_speaks_a_whole_turn_and_stays_alive(server, sentence, settings, cpu_hog):
    r = run_turn(server, sentence, settings, "local")
    assert len(r.turns) == 1, f"{len(r.turns)} speech turns at the viewer"
    assert spoke_through(r.turns[0], r.seconds), f"speech frames stopped at {max(k for k, _ in r.turns[0])}"
    assert r.heard.whole(r.seconds), f"the turn's audio did not reach the viewer in full: {r.heard}"
    assert r.h.run.playbacks and not r.h.run.playbacks[-1].interrupted
    assert abs(r.h.run.playbacks[-1].position - r.seconds) < 0.1
    # idle after the turn: video still flows to the end and is not frozen
    end = r.heard.start + r.seconds
    idle = [v for v in r.rec.video if v.code is not None and not v.code & 0x8000 and v.t > end + 1]
    assert len(idle) >= 10 and r.rec.video[-1].t > r.rec.video[0].t + 10, "the video stopped after the turn"
    thumbs = np.stack([v.thumb for v in idle]).astype(np.int16)
    assert np.abs(np.diff(thumbs, axis=0)).mean(axis=(1, 2, 3)).max() > 0.5, "the idle face is frozen"


@pytest.mark.realtime
def test_local_avatar_keeps_25_fps_and_av_sync(server, sentence, settings):
    r = run_turn(server, sentence, settings, "local-rt")
    t0 = r.rec.video[0].t
    fps = V.received_fps(r.rec, t0 + 0.5, t0 + 10.5)
    assert fps >= 24.0, f"viewer received {fps:.1f} fps"
    assert len(r.turns) == 1 and len(r.turns[0]) >= 0.9 * r.seconds * 25
    assert r.aligned is not None
    offset = np.median(V.av_offsets(r.turns[0], r.aligned))
    print(f"A/V offset at the viewer: {offset * 1000:+.1f} ms (median over the turn); "
          f"audio gaps {r.aligned.stretch_s * 1000:.0f} ms")
    assert abs(offset) <= 0.040
    assert r.aligned.stretch_s <= MAX_AUDIO_GAPS_S, f"the turn's audio arrived with {r.aligned.stretch_s:.3f} s of gaps"
    start = float(r.aligned.arrival_of(0.0))
    idle = [v for v in r.rec.video if v.code is not None and not v.code & 0x8000 and v.t > start + r.seconds + 1]
    assert len(idle) >= 60


# ---------------------------------------------------------------- interruptions


def run_interruptions(server, sentence, settings, room):
    pcm, sr = sentence

    async def main():
        async with harness(server, room, settings=settings) as h:
            await h.start_avatar()
            await h.wait_first_frame(timeout=30)
            await asyncio.sleep(0.5)
            t_say = time.perf_counter()
            h.say(pcm, sr)
            await asyncio.sleep(1.6)
            t_clear = h.interrupt()
            await asyncio.sleep(0.6)
            t_storm = time.perf_counter()
            for _ in range(3):  # three interruptions within one second
                h.say(pcm, sr)
                await asyncio.sleep(0.3)
                h.interrupt()
            await asyncio.sleep(0.5)
            t_last_turn = time.perf_counter()
            await asyncio.wait_for(h.say(pcm, sr), len(pcm) / sr + 10)  # the turn after the storm completes
            await asyncio.sleep(1.0)
            return h, t_say, t_clear, t_storm, t_last_turn

    h, t_say, t_clear, t_storm, t_last_turn = asyncio.run(main())
    rec = h.viewer.rec
    return SimpleNamespace(h=h, rec=rec, pcm=pcm, sr=sr, seconds=len(pcm) / sr, t_say=t_say, t_clear=t_clear,
                           t_storm=t_storm, t_last_turn=t_last_turn,
                           interrupted=[p for p in h.run.playbacks if p.interrupted])


def test_interruptions_cut_the_turn_where_the_viewer_stopped_hearing_it(server, sentence, settings, cpu_hog):
    r = run_interruptions(server, sentence, settings, "interrupt")
    first = V.turn_audio(r.rec, r.pcm, r.sr, after=r.t_say, before=r.t_storm)
    assert first.start is not None and first.heard is not None, "the first turn did not reach the viewer"
    assert len(r.interrupted) >= 4, r.h.run.playbacks  # every interrupted turn was answered
    heard = first.heard
    print(f"playback_finished position {r.interrupted[0].position:.3f} s, heard at the viewer {heard:.3f} s "
          f"(then silence in the turn until {first.heard_quiet_until:.3f} s)")
    # the position the agent is told (it truncates its transcript there) is what the listener heard
    assert first.heard_to(r.interrupted[0].position, 0.060)
    assert heard < r.seconds - 0.5, "the interrupted turn played on to its end"
    # the turn after the storm plays in full, face and audio
    last = V.turn_audio(r.rec, r.pcm, r.sr, after=r.t_last_turn)
    assert last.whole(r.seconds), f"the turn after the interruptions did not reach the viewer in full: {last}"
    assert spoke_through(V.speech_turns(r.rec)[-1], r.seconds)
    assert r.h.run.playbacks[-1].interrupted is False
    assert abs(r.h.run.playbacks[-1].position - r.seconds) < 0.1


@pytest.mark.realtime
def test_interruptions_cut_audio_and_face_within_their_time_targets(server, sentence, settings):
    r = run_interruptions(server, sentence, settings, "interrupt-rt")
    start = V.locate(r.rec, r.pcm, r.sr, after=r.t_say, before=r.t_clear + 0.5)
    assert start is not None, "the first turn did not reach the viewer"
    last = V.last_loud_audio(r.rec, after=start, before=r.t_storm)
    assert last is not None
    tail = max(0.0, last - r.t_clear)
    print(f"agent audio reached the viewer until {tail * 1000:.0f} ms after the clear")
    # target 60 ms; what is already on its way at the clear (an Opus packet, the viewer's 30-50 ms jitter
    # buffer) still plays. 15 interruptions in one session on the 2-core VM: median 52 ms, max 83 ms; single
    # runs of this test and of bench room (which records the figure): 43-111 ms, above 100 ms in 3 of about
    # 40, when the viewer's jitter buffer had grown. Fail clearly above 120 ms
    assert tail <= 0.120
    # the face: no speech frame of the cut turn arrives after the frames already in flight, and the
    # third frame after the clear (the engine's settle is done by then) arrives within 250 ms
    after = [v for v in r.rec.video if v.t > r.t_clear and v.code is not None]
    late_speech = [v.t - r.t_clear for v in after if v.code & 0x8000 and v.t < r.t_storm]
    assert not late_speech or max(late_speech) <= 0.080, late_speech
    idle_after = [v.t for v in after if not v.code & 0x8000]
    print(f"third idle frame at the viewer {(idle_after[2] - r.t_clear) * 1000:.0f} ms after the clear")
    assert idle_after[2] - r.t_clear <= 0.250
    heard = last - start
    assert abs(r.interrupted[0].position - heard) <= 0.060
    assert len(V.speech_turns(r.rec)[-1]) >= 0.9 * r.seconds * 25


# ---------------------------------------------------------------- sample rates


def test_tts_audio_at_any_sample_rate_plays(server, sentence, settings, cpu_hog):
    """Agent audio at 8, 16, 24 and 48 kHz: each turn reaches the viewer in full, with its frames."""
    from teller_agent.media import resample

    pcm, sr = sentence
    x = pcm[: int(sr * 1.5)].astype(np.float32) / 32768.0
    rates = (8000, 16000, 24000, 48000)
    clips = {r: (np.clip(resample(x, sr, r), -1, 1) * 32767).astype(np.int16) for r in rates}

    async def main():
        async with harness(server, "rates", settings=settings) as h:
            await h.start_avatar()
            await h.wait_first_frame(timeout=30)
            starts = {}
            for r in rates:
                await asyncio.sleep(0.4)
                starts[r] = time.perf_counter()
                await h.say(clips[r], r)
            await asyncio.sleep(0.6)
            return h, starts

    h, starts = asyncio.run(main())
    rec = h.viewer.rec
    turns = V.speech_turns(rec)
    assert len(turns) == len(rates), f"{len(turns)} speech turns at the viewer"
    ends = [starts[r] for r in rates[1:]] + [None]
    for r, turn, end in zip(rates, turns, ends):
        assert spoke_through(turn, 1.5), f"{r} Hz: speech frames stopped at {max(k for k, _ in turn)}"
        heard = V.turn_audio(rec, clips[r], r, after=starts[r], before=end)
        assert heard.whole(len(clips[r]) / r), f"{r} Hz audio did not reach the viewer in full: {heard}"
    finished = [p for p in h.run.playbacks if not p.interrupted]
    assert len(finished) == len(rates)
    for p in finished:
        assert abs(p.position - 1.5) < 0.1


def test_portrait_without_a_face_fails_before_joining(server, tmp_path, settings):
    from PIL import Image

    from teller_agent.errors import NoFaceError

    path = tmp_path / "wall.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (400, 1))).convert("RGB").save(path)

    async def main():
        async with harness(server, "noface", settings=settings, avatar_image=path, stamp_frames=False) as h:
            with pytest.raises(NoFaceError, match="wall.png"):
                await h.start_avatar()
            await asyncio.sleep(0.5)
            return h, len(h.room.local_participant.track_publications)

    h, published = asyncio.run(main())
    assert published == 0
    assert not h.viewer.rec.video


# ---------------------------------------------------------------- a dispatched avatar worker


@contextlib.contextmanager
def avatar_worker(server, settings, extra_env: dict[str, str] | None = None):
    """An avatar worker process registered with ``server`` (``extra_env`` added to its environment);
    stopped on exit, when its last log lines are left in ``worker.log_text``."""
    env = {**server.env(), "TELLER_CACHE_DIR": str(settings.cache_dir), "TELLER_WORKER_LOAD": "sessions",
           **(extra_env or {})}
    try:
        worker = start_worker(env, timeout=90)
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        time.sleep(0.2)  # the log thread reads the last lines
        worker.log_text = "".join(worker.log_tail)


def run_worker(server, sentence, settings, room):
    pcm, sr = sentence
    with avatar_worker(server, settings) as worker:
        async def main():
            from livekit import rtc

            async with harness(server, room, mode="worker") as h:
                await h.start_avatar()
                first = await h.wait_first_frame(timeout=60)
                avatar = h.room.remote_participants[h.avatar.avatar_identity]
                behalf = avatar.attributes.get("lk.publish_on_behalf")
                # an intruder streams audio to the avatar: it must be ignored
                intruder = rtc.Room()
                await intruder.connect(server.url, h.token("intruder"))
                t_intrude = time.perf_counter()
                writer = await intruder.local_participant.stream_bytes(
                    name="x", topic="lk.audio_stream", destination_identities=[h.avatar.avatar_identity],
                    attributes={"sample_rate": str(sr), "num_channels": "1"})
                await writer.write(pcm[: sr * 2].tobytes())
                await writer.aclose()
                # ... and tries to switch its portrait: refused
                from livekit.plugins.teller.avatar import SET_AVATAR_IMAGE_RPC

                try:
                    await intruder.local_participant.perform_rpc(
                        destination_identity=h.avatar.avatar_identity, method=SET_AVATAR_IMAGE_RPC,
                        payload='{"avatar_image": "/nonexistent.jpg"}', response_timeout=10)
                    intruder_rpc = "accepted"
                except rtc.RpcError as e:
                    intruder_rpc = e.message
                await asyncio.sleep(2.5)
                await intruder.disconnect()
                t_say = time.perf_counter()
                # streamed in real time, as a live TTS speaks (the in-process test sends a burst)
                await h.say(pcm, sr, realtime=True)
                await asyncio.sleep(max(1.0, 11.0 - (time.perf_counter() - h.viewer.first_frame_t)))
                metrics = h.avatar.metrics()
                # switch portraits through the worker: a photo without a face fails on the agent side
                # (nothing sent), a good one is switched by the worker (RPC)
                from PIL import Image
                from skimage import data

                from teller_agent.errors import NoFaceError

                blank, mirrored = Path(settings.cache_dir) / "blank.png", Path(settings.cache_dir) / "mirrored.png"
                Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(blank)
                Image.fromarray(np.ascontiguousarray(data.astronaut()[:, ::-1])).save(mirrored)
                with pytest.raises(NoFaceError):
                    await h.avatar.set_avatar_image(blank)
                t_switch = time.perf_counter()
                await h.avatar.set_avatar_image(mirrored)
                switch_s = time.perf_counter() - t_switch
                await h.room.disconnect()  # the agent leaves
                h.room = None
                t_left = time.perf_counter()
                gone = None
                while time.perf_counter() - t_left < 15:
                    if h.avatar.avatar_identity not in await h.viewer.participants():
                        gone = time.perf_counter() - t_left
                        break
                    await asyncio.sleep(0.2)
                return h, first, behalf, t_intrude, t_say, metrics, gone, intruder_rpc, switch_s

        h, first, behalf, t_intrude, t_say, metrics, gone, intruder_rpc, switch_s = asyncio.run(main())
    out = worker.log_text
    print(f"worker mode: first frame {first:.2f} s after AvatarSession.start; portrait switched in "
          f"{switch_s:.2f} s; metrics {metrics}")
    rec = h.viewer.rec
    return SimpleNamespace(h=h, rec=rec, behalf=behalf, t_intrude=t_intrude, t_say=t_say, metrics=metrics,
                           gone=gone, out=out, intruder_rpc=intruder_rpc, switch_s=switch_s, seconds=len(pcm) / sr, turns=V.speech_turns(rec),
                           heard=V.turn_audio(rec, pcm, sr, after=t_say), aligned=V.align_audio(rec, pcm, sr, after=t_say))


def test_avatar_worker_is_dispatched_serves_only_its_agent_and_leaves_with_it(server, sentence, settings, cpu_hog):
    r = run_worker(server, sentence, settings, "worker")
    assert r.behalf == "agent"
    intruded = [v for v in r.rec.video if r.t_intrude < v.t < r.t_say and v.code is not None and v.code & 0x8000]
    assert not intruded, "the avatar spoke audio from a participant that is not its agent"
    assert r.turns and spoke_through(r.turns[-1], r.seconds)
    assert r.heard.whole(r.seconds), f"the turn did not reach the viewer in full through the worker: {r.heard}"
    assert r.metrics is not None and r.metrics.frames_rendered > 0
    assert r.gone is not None, f"the avatar worker stayed in the room after its agent left:\n{r.out[-3000:]}"
    assert "only agent may switch" in r.intruder_rpc, r.intruder_rpc
    assert "switched portrait" in r.out, f"the worker did not switch to the new portrait:\n{r.out[-3000:]}"


@pytest.mark.realtime
def test_avatar_worker_keeps_25_fps_and_av_sync(server, sentence, settings):
    r = run_worker(server, sentence, settings, "worker-rt")
    t0 = r.rec.video[0].t
    fps = V.received_fps(r.rec, t0 + 0.5, t0 + 10.5)
    assert fps >= 24.0, f"viewer received {fps:.1f} fps from the avatar worker"
    assert r.turns and len(r.turns[-1]) >= 0.9 * r.seconds * 25
    assert r.aligned is not None
    offset = np.median(V.av_offsets(r.turns[-1], r.aligned))
    print(f"worker mode: {fps:.1f} fps, A/V offset {offset * 1000:+.1f} ms, audio gaps {r.aligned.stretch_s * 1000:.0f} ms")
    assert abs(offset) <= 0.040
    assert r.aligned.stretch_s <= MAX_AUDIO_GAPS_S, f"the turn's audio arrived with {r.aligned.stretch_s:.3f} s of gaps"


def test_two_avatar_workers_share_four_rooms_two_each(server, settings):
    """Load spread: two workers of two sessions each, four rooms dispatched one after another: each
    worker serves two (each worker counts its running jobs, reported to LiveKit as its load; a
    full worker takes no more). Functional only: four avatars on this machine drop frames."""
    env = {"TELLER_WORKER_MAX_SESSIONS": "2", "TELLER_WORKER_LOAD": "sessions"}
    rooms = [f"spread-{i}" for i in range(4)]
    with avatar_worker(server, settings, env) as w1, avatar_worker(server, settings, env) as w2:
        async def main():
            async with contextlib.AsyncExitStack() as stack:
                for room in rooms:
                    h = await stack.enter_async_context(harness(server, room, mode="worker"))
                    await h.start_avatar()
                    await h.wait_first_frame(timeout=120)
                    await asyncio.sleep(3.0)  # the worker's new load reaches the server (updated every 2.5 s)

        asyncio.run(main())
    served = [sorted(r for r in rooms if f"serving room {r} " in w.log_text) for w in (w1, w2)]
    assert sorted(map(len, served)) == [2, 2] and sorted(served[0] + served[1]) == rooms, (
        served, w1.log_text[-2000:], w2.log_text[-2000:])


def test_a_burst_of_small_frames_reaches_the_worker_whole_in_fewer_writes(server, monkeypatch):
    """``WorkerAudioOutput`` gathers the frames of a burst (audio arriving well ahead of real time)
    into writes of :data:`COALESCE_S`, sends frames streamed in real time one by one, and the
    worker's receiver gets every sample of every segment, in order, each segment ended once."""
    from livekit import rtc
    from livekit.agents.voice.avatar import AudioSegmentEnd, DataStreamAudioOutput, DataStreamAudioReceiver
    from livekit.plugins.teller.io import COALESCE_S, WorkerAudioOutput

    writes = []
    plain_capture = DataStreamAudioOutput.capture_frame

    async def counted(self, frame):
        writes.append(frame.duration)
        await plain_capture(self, frame)

    monkeypatch.setattr(DataStreamAudioOutput, "capture_frame", counted)
    rate, n = 16000, 320  # 20 ms frames
    rng = np.random.default_rng(0)

    def frames(count: int) -> list[rtc.AudioFrame]:
        pcm = rng.integers(-3000, 3000, count * n, dtype=np.int16)
        return [rtc.AudioFrame(pcm[i * n : (i + 1) * n].tobytes(), rate, 1, n) for i in range(count)]

    async def main():
        agent, avatar = rtc.Room(), rtc.Room()
        await agent.connect(server.url, server.token("agent", "coalesce", agent=True))
        await avatar.connect(server.url, server.token("avatar", "coalesce"))
        source = rtc.VideoSource(64, 64)
        await avatar.local_participant.publish_track(rtc.LocalVideoTrack.create_video_track("v", source))
        receiver = DataStreamAudioReceiver(avatar, sender_identity="agent")
        await receiver.start()
        out = WorkerAudioOutput(agent, destination_identity="avatar", sample_rate=rate)
        got: list[bytes | None] = []

        async def receive():
            async for f in receiver:
                got.append(None if isinstance(f, AudioSegmentEnd) else bytes(f.data))

        reading = asyncio.create_task(receive())
        try:
            burst, second = frames(150), frames(10)
            for f in burst:  # 3 s of audio, all at once
                await out.capture_frame(f)
            out.flush()
            for f in second:  # the next segment right after
                await out.capture_frame(f)
            out.flush()
            await asyncio.sleep(0.5)  # the second segment's flush writes what it gathered
            burst_writes = len(writes)
            streamed = frames(25)
            t0 = time.perf_counter()
            for i, f in enumerate(streamed):  # 0.5 s spoken in real time
                await asyncio.sleep(max(0.0, t0 + i * 0.02 - time.perf_counter()))
                await out.capture_frame(f)
            out.flush()
            deadline = time.perf_counter() + 10
            while got.count(None) < 3 and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
        finally:
            reading.cancel()
            out.detach()
            await receiver.aclose()
            await agent.disconnect()
            await avatar.disconnect()
        return burst, second, streamed, burst_writes, got

    burst, second, streamed, burst_writes, got = asyncio.run(main())
    ends = [i for i, g in enumerate(got) if g is None]
    assert len(ends) == 3, f"segments ended {len(ends)} times, expected 3"
    segments = [b"".join(got[a + 1 : b]) for a, b in zip([-1] + ends[:-1], ends)]
    for name, sent, seg in zip(("burst", "next segment", "streamed"), (burst, second, streamed), segments):
        assert seg == b"".join(bytes(f.data) for f in sent), f"the {name} did not arrive sample for sample"
    # the burst (3 s in 20 ms frames, all at once): sent frame by frame until it leads real time, then
    # gathered; from then on every write but the segment's last carries COALESCE_S
    sizes = np.round(np.array(writes[:burst_writes]) / 0.02).astype(int)
    first_gathered = int(np.argmax(sizes > 1))
    assert sizes[first_gathered] > 1, "the burst was never gathered"
    split = int(np.searchsorted(np.cumsum(sizes), 150)) + 1  # writes of the first segment
    assert (sizes[first_gathered : split - 1] == round(COALESCE_S / 0.02)).all(), sizes[:split]
    assert split <= first_gathered + 150 // round(COALESCE_S / 0.02) + 1
    assert np.allclose(writes[burst_writes:], 0.02) and len(writes) - burst_writes == 25, \
        f"frames streamed in real time were held back: {writes[burst_writes:]}"


def test_a_format_change_inside_a_burst_loses_no_frame(server, monkeypatch):
    """Frames of another sample rate arriving while a burst is being gathered: the gathered ones
    are written first, then the new ones, none lost and none merged across rates."""
    from livekit import rtc
    from livekit.agents.voice.avatar import DataStreamAudioOutput
    from livekit.plugins.teller.io import WorkerAudioOutput

    written: list[rtc.AudioFrame] = []

    async def record(self, frame):  # what would go to the worker (no worker in this room)
        written.append(frame)

    monkeypatch.setattr(DataStreamAudioOutput, "capture_frame", record)
    rng = np.random.default_rng(1)

    def frames(count: int, rate: int) -> list[rtc.AudioFrame]:
        n = rate // 50
        return [rtc.AudioFrame(rng.integers(-3000, 3000, n, dtype=np.int16).tobytes(), rate, 1, n) for _ in range(count)]

    async def main():
        agent = rtc.Room()
        await agent.connect(server.url, server.token("agent", "formats", agent=True))
        out = WorkerAudioOutput(agent, destination_identity="avatar", sample_rate=16000)
        try:
            sent = frames(40, 16000) + frames(10, 8000)  # 1 s at once: gathered well before the change
            for f in sent:
                await out.capture_frame(f)
            out.flush()
            await asyncio.sleep(0.2)  # the flush writes what is still gathered
        finally:
            out.detach()
            await agent.disconnect()
        return sent

    sent = asyncio.run(main())
    assert any(f.duration > 0.021 for f in written), "nothing was gathered: the change was not tested"
    for rate in (16000, 8000):
        assert b"".join(bytes(f.data) for f in written if f.sample_rate == rate) == \
            b"".join(bytes(f.data) for f in sent if f.sample_rate == rate), f"{rate} Hz audio lost or reordered"
    assert [f.sample_rate for f in written] == sorted((f.sample_rate for f in written), reverse=True)


#: A stand-in avatar worker in its own process, so that it can be killed: it publishes a video track,
#: answers the ping RPC and sends the heartbeat every second; on stdin, ``block S`` holds its event
#: loop for S seconds, ``silent`` stops the heartbeat (the process stays and answers) and ``beat``
#: restarts it.
FAKE_AVATAR = r"""
import asyncio, sys, time
from livekit import rtc
from livekit.plugins.teller.metrics import METRICS_ATTRIBUTE, PING_RPC

async def main():
    room = rtc.Room()
    await room.connect(sys.argv[1], sys.argv[2])
    source = rtc.VideoSource(64, 64)
    await room.local_participant.publish_track(rtc.LocalVideoTrack.create_video_track("v", source))
    room.local_participant.register_rpc_method(PING_RPC, lambda data: "ok")
    beating = True

    async def heartbeat():
        n = 0
        while True:
            if beating:
                n += 1
                await room.local_participant.set_attributes({METRICS_ATTRIBUTE: str(n)})
            await asyncio.sleep(1.0)

    beats = asyncio.create_task(heartbeat())
    print("ready", flush=True)
    while True:
        line = (await asyncio.to_thread(sys.stdin.readline)).split()
        if not line:
            break
        if line[0] == "block":
            time.sleep(float(line[1]))
        beating = {"silent": False, "beat": True}.get(line[0], beating)
        print("done", flush=True)
    beats.cancel()
    await room.disconnect()

asyncio.run(main())
"""


def test_a_slow_avatar_is_not_taken_for_a_lost_one_a_hung_or_killed_one_is(server):
    """The watchdog of an agent whose avatar runs as a worker (``WorkerAudioOutput``), against a
    stand-in avatar process (:data:`FAKE_AVATAR`), so that only the watchdog is under test:

    1. the agent's own event loop is held up for 3 s (a busy agent, a loaded machine) while the
       avatar keeps beating: the heartbeats queued meanwhile are heard first, the pending segment
       is not answered;
    2. the avatar's event loop is held up for 4 s, longer than :data:`HEARTBEAT_TIMEOUT_S`: its
       process still acknowledges the probe, the segment is not answered;
    3. the avatar stops beating but its process stays (hung): the segment is answered as
       interrupted after :data:`HUNG_TIMEOUT_S`;
    4. the avatar's process is killed: the segment is answered as interrupted within
       :data:`HEARTBEAT_TIMEOUT_S` of its last heartbeat (plus a watchdog look), long before
       LiveKit drops the participant."""
    from livekit import rtc
    from livekit.plugins.teller.io import HEARTBEAT_TIMEOUT_S, HUNG_TIMEOUT_S, WorkerAudioOutput

    async def main():
        agent = rtc.Room()
        await agent.connect(server.url, server.token("agent", "watchdog", agent=True))
        out = WorkerAudioOutput(agent, destination_identity="avatar", sample_rate=16000)
        avatar = subprocess.Popen([sys.executable, "-c", FAKE_AVATAR, server.url, server.token("avatar", "watchdog")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        answered = []
        out.on("playback_finished", lambda ev: answered.append((time.perf_counter(), ev.interrupted)))

        async def command(line: str) -> None:
            avatar.stdin.write(line + "\n")
            avatar.stdin.flush()

        async def segment() -> None:
            await out.capture_frame(rtc.AudioFrame(b"\0\0" * 1600, 16000, 1, 1600))
            out.flush()
            assert out.pending_segments == 1

        async def wait_answer(timeout: float) -> float | None:
            t0 = time.perf_counter()
            while not answered and time.perf_counter() - t0 < timeout:
                await asyncio.sleep(0.05)
            return answered[0][0] if answered else None

        try:
            assert (await asyncio.to_thread(avatar.stdout.readline)).strip() == "ready"
            await asyncio.sleep(1.5)
            await segment()
            # 1. the agent's loop is blocked; the avatar beats on
            time.sleep(HEARTBEAT_TIMEOUT_S + 0.5)
            await asyncio.sleep(1.5)
            assert not answered, "a stall of the agent's own loop was taken for a lost avatar"
            # 2. the avatar's loop is blocked: no heartbeat, but its process acknowledges the probe
            await command(f"block {HEARTBEAT_TIMEOUT_S + 1.5}")
            assert (await asyncio.to_thread(avatar.stdout.readline)).strip() == "done"
            await asyncio.sleep(1.5)
            assert not answered, "an avatar whose event loop was held up was taken for a lost one"
            # 3. hung: no heartbeat, the process answers
            await command("silent")
            t_silent = time.perf_counter()
            t = await wait_answer(HUNG_TIMEOUT_S + 5)
            assert t is not None and answered[0][1], "a hung avatar's segment was not answered as interrupted"
            assert HUNG_TIMEOUT_S - 1.0 <= t - t_silent <= HUNG_TIMEOUT_S + 1.5, t - t_silent
            # 4. killed: the probe goes unacknowledged
            await command("beat")
            await asyncio.sleep(2.0)
            answered.clear()
            await segment()
            await asyncio.sleep(0.5)
            avatar.kill()
            t_kill = time.perf_counter()
            t = await wait_answer(10)
            assert t is not None and answered[0][1], "a killed avatar's segment was not answered as interrupted"
            assert t - t_kill <= HEARTBEAT_TIMEOUT_S + 0.5, t - t_kill
            assert "avatar" in agent.remote_participants, "LiveKit dropped the killed avatar first: nothing tested"
        finally:
            out.detach()
            avatar.kill()
            avatar.wait()
            await agent.disconnect()

    asyncio.run(main())


def test_a_crashed_avatar_worker_does_not_hang_the_agent_and_is_replaced(server, sentence, settings, cpu_hog):
    """The avatar's job processes die mid-turn (the worker server lives on): the agent's turn is
    answered as interrupted within 3 s (its heartbeat stops) instead of never; once LiveKit drops
    the dead participant (its reconnection window, about 20 s) a new avatar worker is dispatched
    under the same identity, and the next turn reaches the viewer in full through it."""
    import psutil

    pcm, sr = sentence
    with avatar_worker(server, settings) as worker:
        async def main():
            async with harness(server, "crash", mode="worker") as h:
                await h.start_avatar()
                await h.wait_first_frame(timeout=60)
                turn = h.say(pcm, sr)  # a TTS burst: all of the turn is sent, the agent waits for its playout
                await asyncio.sleep(1.5)
                jobs = psutil.Process(worker.pid).children(recursive=True)
                t_kill = time.perf_counter()
                for p in jobs:  # the job processes (the one rendering and the idle ones): the server lives on
                    p.kill()
                # the replacement joins under the same identity and publishes its video
                t_gone = t_back = None
                while time.perf_counter() - t_kill < 60:
                    present = h.avatar.avatar_identity in h.room.remote_participants
                    if t_gone is None and not present:
                        t_gone = time.perf_counter()
                    if t_gone is not None and present:
                        t_back = time.perf_counter()
                        break
                    await asyncio.sleep(0.1)
                await asyncio.wait_for(turn, 5)
                answered = h.run.playbacks[-1]
                await asyncio.sleep(3.0)
                t_say = time.perf_counter()
                await asyncio.wait_for(h.say(pcm, sr, realtime=True), len(pcm) / sr + 15)
                await asyncio.sleep(1.0)
                return h, t_kill, t_gone, answered, t_back, t_say

        h, t_kill, t_gone, answered, t_back, t_say = asyncio.run(main())
    out = worker.log_text
    print(f"crash: avatar left the room {(t_gone - t_kill) if t_gone else float('nan'):.2f} s after the kill; "
          f"the agent's turn answered {answered.t - t_kill:.2f} s after the kill (interrupted {answered.interrupted}, "
          f"position {answered.position:.2f} s); avatar back after {(t_back - t_kill) if t_back else float('nan'):.1f} s")
    assert t_gone is not None, "the killed avatar never left the room"
    # answered within 3 s of the crash (heartbeat timeout 2.5 s), long before LiveKit drops the participant
    assert answered.interrupted and answered.t - t_kill <= 3.0, answered
    assert t_back is not None, f"no avatar worker came back:\n{out[-3000:]}"
    heard = V.turn_audio(h.viewer.rec, pcm, sr, after=t_say)
    assert heard.whole(len(pcm) / sr), f"the turn after the crash did not reach the viewer in full: {heard}"
    assert spoke_through(V.speech_turns(h.viewer.rec)[-1], len(pcm) / sr)


def test_a_server_restart_under_an_in_process_avatar_reconnects_or_ends_cleanly(sentence, settings, cpu_hog):
    """The LiveKit server restarts (a fresh process, no rooms) under a running in-process avatar:
    the agent's room rejoins and the next turn reaches the viewer in full, or the session ends and
    the avatar stops rendering; either way no process is left behind."""
    import psutil

    pcm, sr = sentence
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    srv = LocalLiveKitServer().start()
    try:
        async def main():
            async with harness(srv, "restart", settings=settings) as h:
                events = []
                h.room.on("reconnected", lambda: events.append(("reconnected", time.perf_counter())))
                h.room.on("disconnected", lambda *_: events.append(("disconnected", time.perf_counter())))
                await h.start_avatar()
                await h.wait_first_frame(timeout=30)
                t_restart = time.perf_counter()
                await asyncio.to_thread(srv.restart)
                while not events and time.perf_counter() - t_restart < 40:
                    await asyncio.sleep(0.1)
                outcome = events[0][0] if events else None
                t_say = None
                if outcome == "reconnected":
                    await asyncio.sleep(2.0)
                    t_say = time.perf_counter()
                    await asyncio.wait_for(h.say(pcm, sr), len(pcm) / sr + 15)
                    await asyncio.sleep(1.0)
                rendered = h.avatar.metrics().frames_rendered
                await asyncio.sleep(1.0)
                rendering = h.avatar.metrics().frames_rendered > rendered
                return h, outcome, (events[0][1] - t_restart) if events else None, t_say, rendering

        h, outcome, after_s, t_say, rendering = asyncio.run(main())
    finally:
        srv.stop()
    print(f"server restart: {outcome} {after_s} s after the restart began")
    assert outcome in ("reconnected", "disconnected"), "the room neither came back nor ended within 40 s"
    if outcome == "reconnected":
        heard = V.turn_audio(h.viewer.rec, pcm, sr, after=t_say)
        assert heard.whole(len(pcm) / sr), f"the turn after the restart did not reach the viewer in full: {heard}"
    else:
        assert not rendering, "the room ended but the avatar kept rendering"
    time.sleep(0.5)
    # (multiprocessing's resource tracker, started with the first viewer process, lives as long as pytest)
    left = [p for p in psutil.Process().children(recursive=True)
            if p.pid not in before and p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            and "multiprocessing.resource_tracker" not in " ".join(p.cmdline())]
    assert not left, f"processes left behind: {[(p.pid, p.cmdline()) for p in left]}"
