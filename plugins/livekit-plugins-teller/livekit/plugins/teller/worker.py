"""The avatar worker: a LiveKit agent worker that renders Teller avatars for other agents.

Run it like any LiveKit agent (``LIVEKIT_URL``, ``LIVEKIT_API_KEY``, ``LIVEKIT_API_SECRET``)::

    python -m livekit.plugins.teller.worker start     # or dev

It registers under the agent name ``teller-avatar`` (explicit dispatch only). An agent
using ``teller.AvatarSession(mode="worker")`` dispatches it to its room with job
metadata naming the agent; the worker joins as ``avatar_identity`` with
``lk.publish_on_behalf`` set to that agent, accepts audio data streams from that agent
only (``DataStreamAudioReceiver(sender_identity=...)``), publishes the avatar's video and
audio, publishes its :class:`TellerMetrics` as the participant attribute
``teller.metrics`` every :data:`~.metrics.HEARTBEAT_S` (the agent side takes its absence as a dead
worker), and leaves when the agent does.

Load: each session needs one real-time stream of frames; the worker reports
``max(CPU load, sessions / max_sessions)`` so LiveKit stops dispatching to a
full machine. Its settings are fields of :class:`teller_agent.TellerSettings` (``TELLER_*``
environment variables or ``.env``, listed in the README): ``worker_max_sessions``,
``worker_load`` (``cpu`` or ``sessions``), ``worker_load_threshold``, ``worker_http_port``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque

import psutil

from livekit import rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobProcess, JobRequest, cli
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
from livekit.agents.voice.avatar import AvatarOptions, DataStreamAudioReceiver

from teller_agent.config import FPS, TellerSettings

from .avatar import DEFAULT_SAMPLE_RATE, DEFAULT_WORKER_AGENT_NAME, SET_AVATAR_IMAGE_RPC
from .log import logger
from .metrics import HEARTBEAT_S, METRICS_ATTRIBUTE, PING_RPC
from .runner import TellerAvatarRunner
from .video_generator import DEFAULT_VIDEO_DELAY_MS, TellerVideoGenerator

#: Audio frame length handed on by the worker's ``DataStreamAudioReceiver``, ms. Its default,
#: 100 ms, makes each frame wait for up to 100 ms of look-ahead audio; 20 ms matches the agent's.
RECEIVE_FRAME_MS = 20

class AgentAudioReceiver(DataStreamAudioReceiver):
    """The agent's audio, as ``DataStreamAudioReceiver``, without ``lk.playback_started`` calls:
    ``AvatarSession`` does not register that RPC on the agent side (its ``DataStreamAudioOutput``
    approximates the playback start when it sends the audio), and the stock receiver logs an
    error for every turn when the RPC is missing."""

    def notify_playback_started(self) -> None:
        return None


_worker_settings: TellerSettings | None = None


def _settings() -> TellerSettings:
    """The worker's settings, read once (the load is asked for about twice a second)."""
    global _worker_settings
    if _worker_settings is None:
        _worker_settings = TellerSettings()
    return _worker_settings


def _max_sessions(settings: TellerSettings) -> int:
    return settings.worker_max_sessions or os.cpu_count() or 1


class CpuLoad:
    """The machine's CPU use in [0, 1] (``psutil``), averaged over the last ``samples`` calls:
    LiveKit asks for the load about twice a second, so the default covers about 2.5 s."""

    def __init__(self, samples: int = 5) -> None:
        self._samples: deque[float] = deque(maxlen=samples)
        psutil.cpu_percent(interval=None)  # starts the measurement: the first call returns 0

    def __call__(self) -> float:
        self._samples.append(psutil.cpu_percent(interval=None) / 100.0)
        return sum(self._samples) / len(self._samples)


_cpu_load: CpuLoad | None = None


def worker_load(server: AgentServer) -> float:
    """The load this worker reports to LiveKit, in [0, 1]: the larger of the machine's CPU use and
    the share of its session capacity in use. Sessions are counted from ``server.active_jobs``:
    each session runs in its own job process, so nothing the sessions themselves count is
    visible here, in the worker's main process."""
    global _cpu_load
    settings = _settings()
    sessions = min(1.0, len(server.active_jobs) / _max_sessions(settings))
    if settings.worker_load == "sessions":
        return sessions
    if _cpu_load is None:
        _cpu_load = CpuLoad()
    return max(_cpu_load(), sessions)


def _prewarm(proc: JobProcess) -> None:
    """Load the motion model and the VAD once per job process, before any job arrives."""
    import torch

    from teller_agent.fmlg.checkpoint import load_checkpoint
    from teller_agent.stream.gate import silero_template

    torch.set_num_threads(1)
    proc.userdata["checkpoint"] = load_checkpoint(TellerSettings().model_dir)
    silero_template()


async def _on_request(req: JobRequest) -> None:
    try:
        meta = json.loads(req.job.metadata or "{}")
        agent_identity, identity = meta["agent_identity"], meta["avatar_identity"]
    except (ValueError, KeyError):
        logger.error("rejecting a dispatch without agent_identity/avatar_identity metadata; "
                     "dispatch the avatar with livekit.plugins.teller.AvatarSession(mode='worker')")
        await req.reject()
        return
    await req.accept(name="Teller avatar", identity=identity,
                     attributes={ATTRIBUTE_PUBLISH_ON_BEHALF: agent_identity})


async def _entrypoint(ctx: JobContext) -> None:
    from teller_agent.stream import AvatarEngine

    meta = json.loads(ctx.job.metadata or "{}")
    agent_identity = meta["agent_identity"]
    settings = TellerSettings()
    if meta.get("avatar_image"):
        settings = settings.model_copy(update={"avatar_image": meta["avatar_image"]})
    sample_rate = int(meta.get("sample_rate") or DEFAULT_SAMPLE_RATE)

    def build() -> AvatarEngine:
        return AvatarEngine.from_settings(settings, checkpoint=ctx.proc.userdata.get("checkpoint"),
                                          sample_rate=sample_rate, vad=bool(meta.get("vad", True)),
                                          stamp_frames=bool(meta.get("stamp_frames", False)))

    # join while the engine is built: the agent side already checked the portrait for a face, and a
    # failure here (corrupt checkpoint, ...) fails the job, which leaves the room with nothing published
    engine, _ = await asyncio.gather(asyncio.to_thread(build),
                                     ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE))
    size = engine.renderer.size
    video_gen = TellerVideoGenerator(engine, video_delay_ms=int(meta.get("video_delay_ms", DEFAULT_VIDEO_DELAY_MS)))
    runner = TellerAvatarRunner(
        ctx.room,
        audio_recv=AgentAudioReceiver(ctx.room, sender_identity=agent_identity, frame_size_ms=RECEIVE_FRAME_MS),
        video_gen=video_gen,
        options=AvatarOptions(video_width=size, video_height=size, video_fps=FPS,
                              audio_sample_rate=sample_rate, audio_channels=1),
    )
    done = asyncio.Event()

    def _on_left(p: rtc.RemoteParticipant) -> None:
        if p.identity == agent_identity:
            logger.info("agent left the room, stopping the avatar", extra={"agent": agent_identity})
            done.set()

    async def _set_avatar_image(data: rtc.RpcInvocationData) -> str:
        """The agent's ``AvatarSession.set_avatar_image``: prepare the photo here, then switch."""
        from teller_agent.errors import TellerError
        from teller_agent.face import prepare_avatar

        if data.caller_identity != agent_identity:
            raise rtc.RpcError(rtc.RpcError.ErrorCode.APPLICATION_ERROR,
                               f"only {agent_identity} may switch this avatar's portrait")
        try:
            image = json.loads(data.payload)["avatar_image"]
            avatar = await asyncio.to_thread(prepare_avatar, image, settings)
            await video_gen.set_avatar(avatar)
        except (TellerError, ValueError, KeyError, OSError) as e:
            raise rtc.RpcError(rtc.RpcError.ErrorCode.APPLICATION_ERROR, str(e)) from e
        logger.info("switched portrait", extra={"avatar_image": image})
        return "ok"

    ctx.room.local_participant.register_rpc_method(SET_AVATAR_IMAGE_RPC, _set_avatar_image)
    ctx.room.local_participant.register_rpc_method(PING_RPC, lambda _data: "ok")
    ctx.room.on("participant_disconnected", _on_left)
    ctx.room.on("disconnected", lambda *_: done.set())
    if agent_identity not in ctx.room.remote_participants:
        logger.warning("the agent is not in the room (yet)", extra={"agent": agent_identity})
    logger.info("serving room %s for agent %s", ctx.room.name, agent_identity)
    try:
        await runner.start()
        beat = time.perf_counter()
        while not done.is_set():
            # a fixed beat: a slow acknowledgement of one update does not delay the next
            beat += HEARTBEAT_S
            try:
                await asyncio.wait_for(done.wait(), max(0.0, beat - time.perf_counter()))
            except asyncio.TimeoutError:
                await ctx.room.local_participant.set_attributes({METRICS_ATTRIBUTE: video_gen.metrics().to_json()})
                beat = max(beat, time.perf_counter() - HEARTBEAT_S / 2)  # after a long stall, no burst of updates
    finally:
        await runner.aclose()
        await video_gen.aclose()
        ctx.shutdown("agent left")


def build_server(agent_name: str = DEFAULT_WORKER_AGENT_NAME, **server_kwargs) -> AgentServer:
    """An ``AgentServer`` for the avatar worker (``server_kwargs`` go to ``AgentServer``)."""
    server_kwargs.setdefault("setup_fnc", _prewarm)
    server_kwargs.setdefault("load_fnc", worker_load)
    server_kwargs.setdefault("num_idle_processes", 1)
    settings = _settings()
    server_kwargs.setdefault("load_threshold", settings.worker_load_threshold)
    server_kwargs.setdefault("port", settings.worker_http_port)
    server = AgentServer(**server_kwargs)
    server.rtc_session(_entrypoint, agent_name=agent_name, on_request=_on_request)
    return server


def main() -> None:
    """``python -m livekit.plugins.teller.worker start|dev|...`` (the livekit-agents CLI)."""
    cli.run_app(build_server())


if __name__ == "__main__":
    main()
