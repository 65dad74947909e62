"""``AvatarSession``: a Teller avatar for a LiveKit ``AgentSession``, in-process or on an avatar worker."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Literal

from livekit import api, rtc
from livekit.agents import NOT_GIVEN, AgentSession, NotGivenOr, utils
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
from livekit.agents.voice.avatar import AvatarOptions
from livekit.agents.voice.avatar import (
    AvatarSession as _BaseAvatarSession,
)

from teller_agent.config import FPS, TellerSettings
from teller_agent.stream import AvatarEngine

from .io import TellerAudioOutput, WorkerAudioOutput
from .log import logger
from .metrics import HEARTBEAT_S, METRICS_ATTRIBUTE, TellerMetrics
from .runner import TellerAvatarRunner
from .sync import check_video_delay_ms
from .video_generator import DEFAULT_VIDEO_DELAY_MS, TellerVideoGenerator

#: Most avatar workers one session dispatches again after its worker left the room.
MAX_REDISPATCHES = 3
#: Agent name the avatar worker registers under (explicit dispatch).
DEFAULT_WORKER_AGENT_NAME = "teller-avatar"
DEFAULT_SAMPLE_RATE = 24000
#: ``AgentSession(turn_handling=...)`` for a session wearing an avatar: the avatar's audio output
#: cannot pause, so a false interruption must not try to resume the speech (merge your own
#: ``turn_handling`` keys into a copy of it).
AVATAR_TURN_HANDLING = {"interruption": {"resume_false_interruption": False}}
#: RPC method the agent calls on its avatar worker to switch portraits (payload: JSON
#: ``{"avatar_image": "<absolute path on the worker's filesystem>"}``).
SET_AVATAR_IMAGE_RPC = "teller.set_avatar_image"
#: Seconds an avatar worker has to prepare a new portrait and answer :data:`SET_AVATAR_IMAGE_RPC`.
SET_AVATAR_IMAGE_TIMEOUT_S = 30.0


class AvatarSession(_BaseAvatarSession):
    """A talking face for a LiveKit voice agent, from one portrait photo.

    Args:
        avatar_image: portrait photo (path). Unset: ``TELLER_AVATAR_IMAGE``, else the bundled default.
        mode: ``"local"`` renders in this process and publishes video and audio as the agent
            participant (:class:`~.runner.TellerAvatarRunner` fed by a :class:`~.io.TellerAudioOutput`). ``"worker"`` dispatches a
            separate avatar worker (agent name ``worker_agent_name``) to the room through
            LiveKit's agent dispatch and streams the TTS audio to it with
            ``DataStreamAudioOutput``; the worker joins with ``lk.publish_on_behalf`` set to
            this agent, so its tracks stand for the agent.
        settings: engine options (frame size, model, seed, ...); defaults from ``TELLER_*``.
        sample_rate: Hz of the published audio (TTS audio of any rate is converted).
        vad: close the mouth in pauses (Silero VAD on the agent audio).
        stamp_frames: draw a frame counter on the bottom edge (measurement aid, see
            ``teller_agent.stream.stamp``).
        publish_metrics: in local mode, publish :class:`~.metrics.TellerMetrics` as the agent
            participant's attribute ``teller.metrics`` (JSON) every second, as an avatar worker
            does, so viewers can show them.
        video_delay_ms: how much later than its audio each frame is sent, ms (see
            :mod:`livekit.plugins.teller.sync`): the default centres the A/V offset measured
            at a LiveKit SDK viewer on loopback (``docs/results/design_measurements.md``); raise it if your
            viewers see lips early.
        avatar_identity: identity of the avatar participant in worker mode
            (default ``teller-avatar-<agent identity>``).
        worker_agent_name: agent name the avatar worker registered with.
        livekit_url, api_key, api_secret: server credentials for the dispatch in worker mode
            (default: the job's API client inside a job, else ``LIVEKIT_URL`` / ``LIVEKIT_API_KEY``
            / ``LIVEKIT_API_SECRET``).

    ``start()`` prepares the portrait first, so a photo without a face fails with
    :class:`teller_agent.errors.NoFaceError` before anything joins the room.
    """

    def __init__(
        self,
        *,
        avatar_image: NotGivenOr[str | Path | None] = NOT_GIVEN,
        mode: Literal["local", "worker"] = "local",
        settings: TellerSettings | None = None,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        vad: bool = True,
        stamp_frames: bool = False,
        publish_metrics: bool = True,
        video_delay_ms: int = DEFAULT_VIDEO_DELAY_MS,
        avatar_identity: NotGivenOr[str] = NOT_GIVEN,
        worker_agent_name: str = DEFAULT_WORKER_AGENT_NAME,
        livekit_url: NotGivenOr[str] = NOT_GIVEN,
        api_key: NotGivenOr[str] = NOT_GIVEN,
        api_secret: NotGivenOr[str] = NOT_GIVEN,
    ) -> None:
        super().__init__()
        if mode not in ("local", "worker"):
            raise ValueError(f"mode must be 'local' or 'worker', got {mode!r}")
        self._settings = settings or TellerSettings()
        if utils.is_given(avatar_image):
            self._settings = self._settings.model_copy(update={"avatar_image": avatar_image})
        self._mode = mode
        self._sample_rate = sample_rate
        self._vad = vad
        self._stamp = stamp_frames
        self._publish_metrics = publish_metrics
        self._video_delay_ms = check_video_delay_ms(video_delay_ms)  # fails here, not on the worker
        self._identity = avatar_identity if utils.is_given(avatar_identity) else ""
        self._worker_agent_name = worker_agent_name
        self._url, self._api_key, self._api_secret = livekit_url, api_key, api_secret
        self._runner: TellerAvatarRunner | None = None
        self._video_gen: TellerVideoGenerator | None = None
        self._engine: AvatarEngine | None = None
        self._dispatch_id: str | None = None
        self._room_ref: rtc.Room | None = None
        self._dispatch_request: api.CreateAgentDispatchRequest | None = None
        self._worker_output: WorkerAudioOutput | None = None
        self._redispatches = 0
        self._closing = False
        self._background: set[asyncio.Task] = set()

    @property
    def avatar_identity(self) -> str:
        """The participant whose video track is the avatar (the agent itself in local mode)."""
        return self._identity

    @property
    def provider(self) -> str:
        return "teller"

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def engine(self) -> AvatarEngine | None:
        """The local-mode engine (None in worker mode or before ``start``)."""
        return self._engine

    async def start(self, agent_session: AgentSession, room: rtc.Room) -> None:
        """Attach the avatar to ``agent_session`` in ``room`` (call before ``agent_session.start``).

        Raises:
            NoFaceError, ImageLoadError, FaceTooSmallError: the portrait cannot be used.
            CheckpointError: the motion model is missing or corrupt (local mode).
        """
        if self._mode == "local":
            await self._start_local(agent_session, room)
        else:
            await self._start_worker(agent_session, room)
        self._room_ref = room

    async def _start_local(self, agent_session: AgentSession, room: rtc.Room) -> None:
        from livekit.agents import get_job_context

        self._engine = await asyncio.to_thread(
            AvatarEngine.from_settings, self._settings, sample_rate=self._sample_rate, vad=self._vad,
            stamp_frames=self._stamp,
        )
        if not room.isconnected():
            raise RuntimeError("connect to the room before starting the avatar (await ctx.connect())")
        self._identity = room.local_participant.identity
        # The avatar is the agent participant itself here: the base class's start/aclose (which wait
        # for a separate avatar participant and remove it from the room on close) are not used.
        job = get_job_context(required=False)
        if job is not None:
            job.add_shutdown_callback(self.aclose)
        size = self._engine.renderer.size
        options = AvatarOptions(video_width=size, video_height=size, video_fps=FPS,
                                audio_sample_rate=self._sample_rate, audio_channels=1)
        audio_out = TellerAudioOutput(sample_rate=self._sample_rate)
        self._video_gen = TellerVideoGenerator(self._engine, video_delay_ms=self._video_delay_ms)
        self._runner = TellerAvatarRunner(room, audio_recv=audio_out, video_gen=self._video_gen, options=options)
        await self._runner.start()
        agent_session.output.replace_audio_tail(audio_out)
        room.on("reconnecting", self._on_reconnecting)
        room.on("reconnected", self._on_reconnected)
        room.on("disconnected", self._on_disconnected)
        if self._publish_metrics:
            self._spawn(self._metrics_loop(room))
        logger.info("teller avatar started in-process", extra={"size": size, "sample_rate": self._sample_rate})

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _metrics_loop(self, room: rtc.Room) -> None:
        """Local mode: the agent participant's ``teller.metrics`` attribute, every HEARTBEAT_S."""
        while not self._closing:
            await asyncio.sleep(HEARTBEAT_S)
            metrics = self.metrics()
            if metrics is None or self._closing or not room.isconnected():
                continue
            try:
                await room.local_participant.set_attributes({METRICS_ATTRIBUTE: metrics.to_json()})
            except Exception as e:  # noqa: BLE001 - a missed update is harmless; the next one follows
                logger.debug("could not publish the avatar's metrics: %s", e)

    async def set_avatar_image(self, image: str | Path):
        """Switch the face to another portrait photo while the session runs. The photo is prepared
        first; if it cannot be used the old face stays and the error is raised. In worker mode the
        path is sent to the avatar worker (:data:`SET_AVATAR_IMAGE_RPC`), which must see the same
        filesystem (as for ``avatar_image``).

        Returns:
            The photo as prepared here (a :class:`teller_agent.face.PreparedAvatar`: frame and
            landmarks in pixels).

        Raises:
            NoFaceError, ImageLoadError, FaceTooSmallError: the photo cannot be used (nothing changed).
            RuntimeError: the session is not started, or the avatar worker refused the photo or did
                not answer within SET_AVATAR_IMAGE_TIMEOUT_S seconds.
        """
        from teller_agent.face import prepare_avatar

        if self._room_ref is None:
            raise RuntimeError("start the avatar session before switching its portrait")
        avatar = await asyncio.to_thread(prepare_avatar, image, self._settings)
        if self._mode == "local":
            assert self._video_gen is not None
            await self._video_gen.set_avatar(avatar)
        else:
            payload = json.dumps({"avatar_image": str(Path(image).resolve())})
            try:
                await self._room_ref.local_participant.perform_rpc(
                    destination_identity=self._identity, method=SET_AVATAR_IMAGE_RPC, payload=payload,
                    response_timeout=SET_AVATAR_IMAGE_TIMEOUT_S)
            except rtc.RpcError as e:
                raise RuntimeError(f"the avatar worker did not switch to {image}: {e.message}") from e
        self._settings = self._settings.model_copy(update={"avatar_image": image})
        logger.info("teller avatar switched portrait", extra={"avatar_image": str(image)})
        return avatar

    # The room's connection (local mode): the SDK resumes or rejoins after a network drop or a server
    # restart and republishes the avatar's tracks; if it gives up, the avatar stops rendering.

    def _on_reconnecting(self) -> None:
        logger.warning("the room connection dropped; the LiveKit SDK is reconnecting (the avatar keeps rendering)")

    def _on_reconnected(self) -> None:
        logger.info("the room connection is back; the avatar's tracks are published again")

    def _on_disconnected(self, reason=None) -> None:
        if self._closing:
            return
        logger.warning("the room disconnected (%s): stopping the in-process avatar", reason)
        self._spawn(self.aclose())

    async def _start_worker(self, agent_session: AgentSession, room: rtc.Room) -> None:
        image = self._settings.avatar_image
        if image is not None:  # fail here, before dispatching anything, if the photo has no usable face
            from teller_agent.face import prepare_avatar

            await asyncio.to_thread(prepare_avatar, image, self._settings)
        agent_identity = room.local_participant.identity
        if not self._identity:
            self._identity = f"teller-avatar-{agent_identity}"
        metadata = {
            "agent_identity": agent_identity,
            "avatar_identity": self._identity,
            "avatar_image": str(Path(image).resolve()) if image is not None else None,
            "sample_rate": self._sample_rate,
            "vad": self._vad,
            "stamp_frames": self._stamp,
            "video_delay_ms": self._video_delay_ms,
        }
        self._dispatch_request = api.CreateAgentDispatchRequest(
            agent_name=self._worker_agent_name, room=room.name, metadata=json.dumps(metadata))
        self._dispatch_id = await self._dispatch()
        await super().start(agent_session, room)
        self._worker_output = WorkerAudioOutput(room, destination_identity=self._identity,
                                                sample_rate=self._sample_rate, on_avatar_lost=self._on_avatar_lost)
        agent_session.output.replace_audio_tail(self._worker_output)
        logger.info("teller avatar worker dispatched",
                    extra={"agent_name": self._worker_agent_name, "avatar_identity": self._identity})

    async def _dispatch(self) -> str:
        """Dispatch the avatar worker to the room; returns the dispatch id."""
        assert self._dispatch_request is not None
        job_api = self._job_api()
        if job_api is not None:
            return (await job_api.agent_dispatch.create_dispatch(self._dispatch_request)).id
        async with api.LiveKitAPI(*self._credentials()) as lkapi:
            return (await lkapi.agent_dispatch.create_dispatch(self._dispatch_request)).id

    def _on_avatar_lost(self) -> None:
        """The avatar worker left the room while this session is open: dispatch a new one (same
        identity, so the agent's audio output finds it again), at most
        :data:`MAX_REDISPATCHES` times per session."""
        if self._closing or self._room_ref is None or not self._room_ref.isconnected():
            return
        if self._redispatches >= MAX_REDISPATCHES:
            logger.error("the avatar worker left again; not dispatching another (%d already): the agent "
                         "goes on without a face", self._redispatches)
            return
        self._redispatches += 1
        logger.warning("the avatar worker left the room; dispatching a new one",
                       extra={"avatar_identity": self._identity, "attempt": self._redispatches})

        async def redispatch() -> None:
            try:
                self._dispatch_id = await self._dispatch()
            except Exception as e:  # noqa: BLE001 - logged; the agent goes on without a face
                logger.error("could not dispatch a new avatar worker: %s", e)

        self._spawn(redispatch())

    def _job_api(self) -> api.LiveKitAPI | None:
        """The job's own API client, when running in a job and no credentials were passed."""
        from livekit.agents import get_job_context

        if utils.is_given(self._url) or utils.is_given(self._api_key) or utils.is_given(self._api_secret):
            return None
        job = get_job_context(required=False)
        return job.api if job is not None else None

    def _credentials(self) -> tuple[str, str, str]:
        url = self._url if utils.is_given(self._url) else os.environ.get("LIVEKIT_URL")
        key = self._api_key if utils.is_given(self._api_key) else os.environ.get("LIVEKIT_API_KEY")
        secret = self._api_secret if utils.is_given(self._api_secret) else os.environ.get("LIVEKIT_API_SECRET")
        if not (url and key and secret):
            raise ValueError("worker mode dispatches the avatar worker through the LiveKit API: set LIVEKIT_URL, "
                             "LIVEKIT_API_KEY and LIVEKIT_API_SECRET or pass livekit_url/api_key/api_secret")
        url = url.replace("ws://", "http://").replace("wss://", "https://")
        return url, key, secret

    def metrics(self) -> TellerMetrics | None:
        """This session's numbers: from the local engine, or as last published by the avatar worker
        (participant attribute ``teller.metrics``); None when there are none yet."""
        if self._video_gen is not None:
            return self._video_gen.metrics()
        if self._room_ref is not None and self._identity:
            p = self._room_ref.remote_participants.get(self._identity)
            if p is not None and METRICS_ATTRIBUTE in p.attributes:
                return TellerMetrics.from_json(p.attributes[METRICS_ATTRIBUTE])
        return None

    async def aclose(self) -> None:
        """Stop rendering (local) or remove the avatar worker from the room (worker). Idempotent."""
        if self._closing:
            return
        self._closing = True
        current = asyncio.current_task()
        for task in list(self._background):
            if task is not current:
                task.cancel()
        room = self._room_ref
        if self._mode == "local" and room is not None:
            room.off("reconnecting", self._on_reconnecting)
            room.off("reconnected", self._on_reconnected)
            room.off("disconnected", self._on_disconnected)
        if self._runner is not None:
            await self._runner.aclose()
            self._runner = None
        if self._video_gen is not None:
            await self._video_gen.aclose()
        if self._worker_output is not None:
            self._worker_output.detach()
        self._room_ref = None
        if self._mode == "worker":
            await super().aclose()  # removes the avatar worker's participant from the room


__all__ = ["ATTRIBUTE_PUBLISH_ON_BEHALF", "AVATAR_TURN_HANDLING", "AvatarSession", "DEFAULT_WORKER_AGENT_NAME", "SET_AVATAR_IMAGE_RPC"]
