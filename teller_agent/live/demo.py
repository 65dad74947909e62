"""``teller-agent demo``: the avatar end to end in a real LiveKit room, no API key needed.

1. Uses the LiveKit server at ``LIVEKIT_URL`` (with ``LIVEKIT_API_KEY`` / ``LIVEKIT_API_SECRET``),
   or starts a local ``livekit-server --dev`` on loopback when it is unset.
2. Starts an agent whose ``AgentSession`` has the Teller avatar (in-process, or on an avatar
   worker started here with ``--worker``), with the bundled portrait and shipped checkpoint.
3. Makes it say a sentence (espeak-ng, or ``--audio FILE``).
4. A headless viewer records exactly what it receives to ``demo.mp4``.
5. Prints received fps, A/V offset, time from start to the first video frame and
   audio-to-frame latency.

Frames are stamped with a 16-bit counter on the bottom edge (see
:mod:`teller_agent.stream.stamp`) so the viewer can match each received frame to the audio
it shows; ``--no-stamp`` turns that (and the offset figure) off.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import viewer as V
from .harness import AgentHarness
from .server import LocalLiveKitServer

DEFAULT_SENTENCE = "Hello! I am your avatar. I run on your own computer, and I move my lips as I speak."


@dataclass
class DemoResult:
    """Numbers of one demo run (seconds unless named otherwise)."""

    video: str
    mode: str
    first_frame_s: float  # AvatarSession.start called -> first video frame at the viewer
    received_fps: float  # at the viewer, whole recording
    av_offset_ms: float | None  # median over the turn, + = video late
    av_offset_abs_p95_ms: float | None
    latency_ms_p50: float | None  # audio-to-frame, from the avatar's metrics
    latency_ms_p95: float | None
    generate_ms_p50: float | None
    render_ms_p50: float | None
    frames_received: int
    speech_seconds: float

    def lines(self) -> list[str]:
        def ms(v):
            return "n/a" if v is None or v != v else f"{v:.1f} ms"

        return [
            f"recorded {self.video} ({self.frames_received} frames, {self.mode} mode)",
            f"start to first video frame at the viewer: {self.first_frame_s:.2f} s",
            f"received video: {self.received_fps:.1f} fps",
            f"audio/video offset at the viewer: {ms(self.av_offset_ms)} median (+ = video late), "
            f"|offset| p95 {ms(self.av_offset_abs_p95_ms)}",
            f"audio-to-frame latency: p50 {ms(self.latency_ms_p50)}, p95 {ms(self.latency_ms_p95)} "
            "(the sentence sent at once, like a TTS running ahead; `teller-agent bench room` also "
            "streams it in real time)",
            f"per frame: generator {ms(self.generate_ms_p50)}, render {ms(self.render_ms_p50)} (median)",
        ]


#: Hz of the agent's speech in the demo and the room benchmark: what OpenAI TTS and Realtime
#: deliver, and the avatar's output rate, so the agent passes it on in the frames it was given.
SPEECH_RATE = 24000


def _speech(say: str | None, audio: str | None) -> tuple[np.ndarray, int]:
    """(N,) int16 speech at :data:`SPEECH_RATE`: ``audio`` (a file) or espeak-ng saying ``say``."""
    from ..media import resample

    if audio is not None:
        from ..media import load_audio

        pcm, sr = load_audio(audio, sample_rate=None)
    else:
        from ..data.espeak import synthesize

        u = synthesize(say or DEFAULT_SENTENCE)
        pcm, sr = u.pcm, u.sample_rate
    pcm = resample(np.asarray(pcm, np.float32), sr, SPEECH_RATE) if sr != SPEECH_RATE else pcm
    return (np.clip(np.asarray(pcm, np.float32), -1, 1) * 32767).astype(np.int16), SPEECH_RATE


#: Lines of the avatar worker's output kept by :func:`start_worker`.
WORKER_LOG_LINES = 400


def start_worker(env: dict[str, str], timeout: float = 120.0) -> subprocess.Popen:
    """Start ``python -m livekit.plugins.teller.worker start`` with ``env`` added to this process's
    environment (health port: any free one) and return once it has registered with the server.

    The worker's output is drained by a daemon thread for as long as it runs (an undrained pipe
    fills after about 64 KiB of log lines and then blocks the worker's event loop in the middle
    of a session); its last :data:`WORKER_LOG_LINES` lines are kept in ``proc.log_tail``.

    Raises:
        RuntimeError: it exited or did not register within ``timeout`` s (the message has its last lines).
    """
    import threading
    from collections import deque

    proc = subprocess.Popen([sys.executable, "-m", "livekit.plugins.teller.worker", "start"],
                            env={**os.environ, **env, "TELLER_WORKER_HTTP_PORT": "0"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: deque[str] = deque(maxlen=WORKER_LOG_LINES)
    registered = threading.Event()

    def drain() -> None:
        for line in proc.stdout:
            tail.append(line)
            if "registered worker" in line:
                registered.set()

    threading.Thread(target=drain, name="teller-worker-log", daemon=True).start()
    proc.log_tail = tail
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if registered.wait(0.2):
            return proc
    proc.kill()
    proc.wait()
    raise RuntimeError("the avatar worker did not register with the LiveKit server:\n" + "".join(list(tail)[-20:]))


@dataclass
class Endpoint:
    """Where to connect: a LiveKit server's URL and key pair, and whether this run started it."""

    url: str
    api_key: str
    api_secret: str
    local: bool
    rtc_tcp_port: int | None = None  # a local server's ICE/TCP media port (what port forwarding needs)


@contextlib.contextmanager
def livekit_endpoint(worker: bool = False, log=lambda msg: None) -> Iterator[Endpoint]:
    """The LiveKit server at ``LIVEKIT_URL`` (with ``LIVEKIT_API_KEY`` / ``LIVEKIT_API_SECRET``), or a
    local ``--dev`` server started here when it is unset; with ``worker``, also an avatar worker
    registered with it. Everything started here is stopped on exit.

    Raises:
        LiveKitServerError: ``LIVEKIT_URL`` is unset and no server binary is installed.
        RuntimeError: the avatar worker did not register.
    """
    server = worker_proc = None
    try:
        if os.environ.get("LIVEKIT_URL"):
            ep = Endpoint(os.environ["LIVEKIT_URL"], os.environ.get("LIVEKIT_API_KEY", ""),
                          os.environ.get("LIVEKIT_API_SECRET", ""), local=False)
            log(f"using the LiveKit server at {ep.url}")
        else:
            server = LocalLiveKitServer().start()
            ep = Endpoint(server.url, server.api_key, server.api_secret, local=True, rtc_tcp_port=server.rtc_tcp_port)
            log(f"started a local LiveKit server (--dev) at {ep.url}")
        if worker:
            log("starting an avatar worker ...")
            worker_proc = start_worker({"LIVEKIT_URL": ep.url, "LIVEKIT_API_KEY": ep.api_key,
                                        "LIVEKIT_API_SECRET": ep.api_secret})
        yield ep
    finally:
        if worker_proc is not None:
            worker_proc.terminate()
            try:
                worker_proc.wait(15)
            except subprocess.TimeoutExpired:
                worker_proc.kill()
        if server is not None:
            server.stop()


async def _run(url: str, key: str, secret: str, pcm: np.ndarray, sr: int, output: Path, mode: str,
               image, stamp: bool) -> DemoResult:
    kwargs = {"stamp_frames": stamp, "mode": mode}
    if image is not None:
        kwargs["avatar_image"] = image
    async with AgentHarness(url, key, secret, f"teller-demo-{int(time.time())}", avatar_kwargs=kwargs,
                            record_mp4=output) as h:
        await h.start_avatar()
        first = await h.wait_first_frame(timeout=60)
        await asyncio.sleep(1.0)
        t_say = time.perf_counter()
        await h.say(pcm, sr, text="demo sentence")
        await asyncio.sleep(1.5)
        metrics = h.avatar.metrics()
    rec = h.viewer.rec  # the viewer wrote `output` as the harness closed
    offset = p95 = None
    turns = V.speech_turns(rec)
    aligned = V.align_audio(rec, pcm, sr, after=t_say)
    if stamp and turns and aligned is not None:
        off = V.av_offsets(turns[-1], aligned) * 1000
        offset, p95 = float(np.median(off)), float(np.percentile(np.abs(off), 95))
    get = (lambda name: getattr(metrics, name)) if metrics is not None else (lambda name: None)
    return DemoResult(
        video=str(output), mode=mode, first_frame_s=first, received_fps=V.received_fps(rec),
        av_offset_ms=offset, av_offset_abs_p95_ms=p95, latency_ms_p50=get("latency_ms_p50"),
        latency_ms_p95=get("latency_ms_p95"), generate_ms_p50=get("generate_ms_p50"),
        render_ms_p50=get("render_ms_p50"), frames_received=len(rec.video), speech_seconds=len(pcm) / sr,
    )


def run_demo(output: str | Path = "demo.mp4", *, say: str | None = None, audio: str | None = None,
             image=None, worker: bool = False, stamp: bool = True, log=print) -> DemoResult:
    """Run the demo (see the module docstring) and return its numbers.

    Raises:
        LiveKitServerError: ``LIVEKIT_URL`` is unset and no server binary is installed.
        EspeakUnavailableError, AudioLoadError: the sentence cannot be made or read.
        NoFaceError, ...: the portrait cannot be used.
    """
    import torch

    torch.set_num_threads(1)
    output = Path(output)
    pcm, sr = _speech(say, audio)
    with livekit_endpoint(worker, log) as ep:
        result = asyncio.run(_run(ep.url, ep.api_key, ep.api_secret, pcm, sr, output,
                                  "worker" if worker else "local", image, stamp))
    for line in result.lines():
        log(line)
    return result


__all__ = ["DEFAULT_SENTENCE", "DemoResult", "asdict", "run_demo"]
