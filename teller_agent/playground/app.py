"""``teller-agent playground``: see and talk to the avatar in a browser.

One process runs three things and stops all of them on Ctrl-C:

1. the LiveKit server at ``LIVEKIT_URL``, or a local ``livekit-server --dev`` on loopback
   (:func:`teller_agent.live.demo.livekit_endpoint`), with an avatar worker for ``--worker``;
2. an agent in room :data:`PLAYGROUND_ROOM`: a livekit-agents ``AgentSession`` wearing the
   Teller avatar (``livekit.plugins.teller.AvatarSession``). It says typed text through the normal
   agent audio path (``session.say``): eSpeak NG audio, or the session's OpenAI TTS; with
   ``OPENAI_API_KEY`` set the session's LLM is an OpenAI Realtime model that answers the page's
   microphone (the ``examples/openai_realtime_agent.py`` set-up, barge-in included);
3. a web server (aiohttp, ``127.0.0.1`` unless told otherwise) serving the page in
   ``static/`` (``livekit-client`` vendored, see :mod:`.vendor`) and a small JSON API:

   ``GET /api/config``        room, avatar identity, frame size, mouth box (pixels), OpenAI on/off
   ``POST /api/token``        a join token for a new page participant (minted here: the page never
                              sees an API secret)
   ``POST /api/say``          ``{"text": str, "voice": "espeak:<lang>" | "openai:<voice>"}``
   ``POST /api/interrupt``    ``session.interrupt()``
   ``POST /api/portrait``     multipart field ``photo``: switch the face (``AvatarSession.set_avatar_image``);
                              a photo that cannot be used answers 400 with the named error, the old face stays

Errors answer ``{"error": message}`` with a 4xx/5xx status. The avatar's metrics reach the page
through the avatar participant's ``teller.metrics`` attribute, as any LiveKit client would read them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import TellerSettings
from ..errors import TellerError
from ..face.face68 import LIPS

logger = logging.getLogger("teller_agent.playground")

#: Room the playground's agent and pages meet in.
PLAYGROUND_ROOM = "teller-playground"
DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"
#: Identity of the playground's agent participant.
AGENT_IDENTITY = "playground-agent"
#: Longest text one ``/api/say`` accepts, characters.
MAX_SAY_CHARS = 1000
#: Largest portrait upload, bytes.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: OpenAI TTS voices offered on the page when ``OPENAI_API_KEY`` is set.
OPENAI_VOICES = ("alloy", "echo", "fable", "nova", "onyx", "shimmer")
#: Seconds to wait for the avatar's video track after the avatar session started.
AVATAR_VIDEO_TIMEOUT_S = 90.0
STATIC_DIR = Path(__file__).parent / "static"


@dataclass
class PlaygroundOptions:
    """What ``teller-agent playground`` was asked for.

    Attributes:
        port: TCP port of the web page (0: any free one).
        host: interface the web server listens on (loopback unless told otherwise).
        worker: render on an avatar worker (agent dispatch) instead of in this process.
        image: portrait photo (None: ``TELLER_AVATAR_IMAGE`` or the bundled default).
        room: room name.
        openai: use OpenAI (Realtime for the microphone, TTS as a voice); default: when
            ``OPENAI_API_KEY`` is set.
    """

    port: int = DEFAULT_PORT
    host: str = DEFAULT_HOST
    worker: bool = False
    image: Path | None = None
    room: str = PLAYGROUND_ROOM
    openai: bool | None = None


def mouth_box(landmarks: np.ndarray, size: int) -> list[int]:
    """The region the mouth moves in, ``[x0, y0, x1, y1]`` in frame pixels: the lips' bounding box
    (dlib 68 points 48-67 of a (68, 2) float array) widened by 30% of its width on each side and
    extended down by its height (the jaw drops when the mouth opens), clipped to ``size``."""
    lips = np.asarray(landmarks, np.float32)[list(LIPS)]
    (x0, y0), (x1, y1) = lips.min(0), lips.max(0)
    w, h = x1 - x0, y1 - y0
    box = [x0 - 0.3 * w, y0 - 0.3 * h, x1 + 0.3 * w, y1 + 1.0 * h]
    return [int(np.clip(round(v), 0, size)) for v in box]


class Playground:
    """The playground's agent (in room ``options.room`` of ``endpoint``) and web server.

    Args:
        endpoint: a :class:`~teller_agent.live.demo.Endpoint`.
        options: :class:`PlaygroundOptions`.
        settings: engine settings (portrait, frame size, ...).

    ``await start()`` returns the page's URL once the avatar's video is in the room; ``await
    aclose()`` stops the web server, the avatar and the agent and deletes uploaded photos.
    """

    def __init__(self, endpoint, options: PlaygroundOptions, settings: TellerSettings | None = None):
        self.endpoint = endpoint
        self.options = options
        self.settings = settings or TellerSettings()
        if options.image is not None:
            self.settings = self.settings.model_copy(update={"avatar_image": options.image})
        self.openai = bool(os.environ.get("OPENAI_API_KEY")) if options.openai is None else options.openai
        self.room = self.session = self.avatar = self._tts = None
        self._runner = None
        self._uploads = tempfile.TemporaryDirectory(prefix="teller-playground-")
        self._mouth_box: list[int] = []
        self._frame_size = 0
        self._portrait_lock = asyncio.Lock()
        self.url = ""

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> str:
        """Start the agent with its avatar, then the web server; returns the page's URL.

        Raises:
            NoFaceError, ImageLoadError, ...: the portrait cannot be used.
            TellerError: ``openai`` is on but livekit-plugins-openai is not installed.
            TimeoutError: the avatar's video did not appear in the room.
            OSError: the web port is taken.
        """
        from livekit import rtc
        from livekit.agents import Agent, AgentSession
        from livekit.plugins import teller

        self._set_portrait_geometry(await asyncio.to_thread(self._prepare, self.settings.avatar_image))
        kwargs = {"turn_handling": teller.AVATAR_TURN_HANDLING}  # an avatar's audio output cannot pause
        if self.openai:
            try:
                from livekit.plugins import openai
            except ImportError as e:
                raise TellerError("OPENAI_API_KEY is set but livekit-plugins-openai is not installed: "
                                  "`pip install livekit-plugins-openai` (or unset OPENAI_API_KEY)") from e
            self._tts = openai.TTS(voice=OPENAI_VOICES[0])
            kwargs.update(llm=openai.realtime.RealtimeModel(voice="alloy"), tts=self._tts)
        self.room = rtc.Room()
        await self.room.connect(self.endpoint.url, self._token(AGENT_IDENTITY, agent=True))
        self.session = AgentSession(**kwargs)
        ep = self.endpoint
        if self.options.worker:
            self.avatar = teller.AvatarSession(mode="worker", settings=self.settings, livekit_url=ep.url,
                                               api_key=ep.api_key, api_secret=ep.api_secret)
        else:
            self.avatar = teller.AvatarSession(settings=self.settings)
        await self.avatar.start(self.session, self.room)
        await self.session.start(agent=Agent(instructions=(
            "You are a friendly assistant with a face, shown in the teller-agent playground. Keep answers short.")),
            room=self.room)
        await self._wait_avatar_video()
        self.url = await self._serve()
        return self.url

    async def aclose(self) -> None:
        """Stop the web server, the avatar and the agent; delete uploaded photos. Idempotent."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.avatar is not None:
            await self.avatar.aclose()
            self.avatar = None
        if self.session is not None:
            await self.session.aclose()
            self.session = None
        if self.room is not None:
            await self.room.disconnect()
            self.room = None
        self._uploads.cleanup()

    async def _wait_avatar_video(self) -> None:
        from livekit import rtc

        identity = self.avatar.avatar_identity
        deadline = time.monotonic() + AVATAR_VIDEO_TIMEOUT_S
        while time.monotonic() < deadline:
            p = (self.room.local_participant if identity == self.room.local_participant.identity
                 else self.room.remote_participants.get(identity))
            if p is not None and any(pub.kind == rtc.TrackKind.KIND_VIDEO for pub in p.track_publications.values()):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the avatar ({identity}) published no video within {AVATAR_VIDEO_TIMEOUT_S:.0f} s")

    async def _serve(self) -> str:
        from aiohttp import web

        app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
        app.add_routes([
            web.get("/", self._index),
            web.get("/api/config", self._config),
            web.post("/api/token", self._new_token),
            web.post("/api/say", self._say),
            web.post("/api/interrupt", self._interrupt),
            web.post("/api/portrait", self._portrait),
            web.static("/static", STATIC_DIR),
        ])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.options.port)
        try:
            await site.start()
        except OSError as e:
            raise TellerError(f"the playground cannot listen on {self.options.host}:{self.options.port} ({e}): "
                              "choose another port with --port") from e
        port = self._runner.addresses[0][1]
        host = "127.0.0.1" if self.options.host in ("127.0.0.1", "0.0.0.0", "localhost") else self.options.host
        return f"http://{host}:{port}/"

    # -- helpers ---------------------------------------------------------------------------------

    def _token(self, identity: str, *, agent: bool = False) -> str:
        from livekit import api

        grants = api.VideoGrants(room_join=True, room=self.options.room, agent=agent, can_publish=True,
                                 can_subscribe=True, can_publish_data=agent, can_update_own_metadata=agent)
        t = api.AccessToken(self.endpoint.api_key, self.endpoint.api_secret).with_identity(identity).with_grants(grants)
        return (t.with_kind("agent") if agent else t.with_name("playground page")).to_jwt()

    def _prepare(self, image):
        from ..face import prepare_avatar

        return prepare_avatar(image, self.settings)

    def _set_portrait_geometry(self, prepared) -> None:
        self._frame_size = int(prepared.image.shape[0])
        self._mouth_box = mouth_box(prepared.landmarks, self._frame_size)

    @staticmethod
    def _error(status: int, message: str):
        from aiohttp import web

        return web.json_response({"error": message}, status=status)

    # -- handlers --------------------------------------------------------------------------------

    async def _index(self, request):
        from aiohttp import web

        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def _config(self, request):
        from aiohttp import web

        return web.json_response({
            "room": self.options.room, "avatar_identity": self.avatar.avatar_identity, "mode": self.avatar.mode,
            "frame_size": self._frame_size, "mouth_box": self._mouth_box, "openai": self.openai,
            "openai_voices": list(OPENAI_VOICES) if self.openai else [], "max_say_chars": MAX_SAY_CHARS,
        })

    async def _new_token(self, request):
        from aiohttp import web

        identity = f"page-{secrets.token_hex(3)}"
        return web.json_response({"url": self.endpoint.url, "token": self._token(identity), "identity": identity})

    async def _say(self, request):
        from aiohttp import web

        from ..live.harness import audio_frames

        try:
            body = await request.json()
            text, voice = str(body.get("text", "")).strip(), str(body.get("voice", "espeak:en-us"))
        except (ValueError, AttributeError):
            return self._error(400, 'send JSON: {"text": "...", "voice": "espeak:en-us"}')
        if not text:
            return self._error(400, "nothing to say: the text is empty")
        if len(text) > MAX_SAY_CHARS:
            return self._error(400, f"the text is {len(text)} characters; at most {MAX_SAY_CHARS} at a time")
        engine, _, name = voice.partition(":")
        if engine == "openai":
            if not self.openai:
                return self._error(400, "OpenAI voices need OPENAI_API_KEY set when the playground starts")
            if name not in OPENAI_VOICES:
                return self._error(400, f"unknown OpenAI voice {name!r}; one of {', '.join(OPENAI_VOICES)}")
            self._tts.update_options(voice=name)
            self.session.say(text, add_to_chat_ctx=False)
            return web.json_response({"ok": True, "voice": voice})
        if engine != "espeak":
            return self._error(400, f"unknown voice {voice!r}: use espeak:<language> or openai:<voice>")
        from ..data.espeak import synthesize

        try:
            u = await asyncio.to_thread(synthesize, text, name or "en-us")
        except TellerError as e:
            return self._error(503, str(e))
        self.session.say(text, audio=audio_frames(u.pcm, u.sample_rate), add_to_chat_ctx=False)
        return web.json_response({"ok": True, "voice": voice, "seconds": round(len(u.pcm) / u.sample_rate, 3)})

    async def _interrupt(self, request):
        from aiohttp import web

        self.session.interrupt()
        return web.json_response({"ok": True})

    async def _portrait(self, request):
        from aiohttp import web

        try:
            form = await request.post()
        except ValueError as e:  # too large, malformed
            return self._error(400, f"could not read the upload ({e}); send one image under "
                                    f"{MAX_UPLOAD_BYTES // 2**20} MB as form field 'photo'")
        field = form.get("photo")
        if field is None or not hasattr(field, "file"):
            return self._error(400, "send the photo as multipart form field 'photo'")
        suffix = Path(field.filename or "photo").suffix.lower()[:8] or ".img"
        path = Path(self._uploads.name) / f"portrait-{secrets.token_hex(4)}{suffix}"
        path.write_bytes(field.file.read())
        async with self._portrait_lock:
            try:
                prepared = await self.avatar.set_avatar_image(path)
            except (TellerError, RuntimeError, ValueError) as e:
                path.unlink(missing_ok=True)
                return self._error(400, str(e))
            self._set_portrait_geometry(prepared)
        return web.json_response({"ok": True, "mouth_box": self._mouth_box, "frame_size": self._frame_size})


def port_forwarding_hint(page_port: int, endpoint) -> str | None:
    """The ``ssh -L`` line that opens a remote playground from a laptop, or None for a remote
    LiveKit server (then only the page's port needs forwarding)."""
    if not endpoint.local:
        return None
    signal_port = int(endpoint.url.rsplit(":", 1)[1])
    ports = [page_port, signal_port] + ([endpoint.rtc_tcp_port] if endpoint.rtc_tcp_port else [])
    return "ssh " + " ".join(f"-L {p}:127.0.0.1:{p}" for p in ports) + " <this machine>"


def _seconds_since_process_start() -> float:
    """Seconds since this process was created (imports included: what a user waits for)."""
    import psutil

    return time.time() - psutil.Process().create_time()


async def _serve_until_stopped(endpoint, options: PlaygroundOptions, log) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pg = Playground(endpoint, options)
    try:
        log("starting the agent and its avatar ...")
        url = await pg.start()
        log(f"the avatar is in room {options.room!r} ({pg.avatar.mode} mode), "
            f"{_seconds_since_process_start():.1f} s after the command started; open the page:")
        log(url)
        hint = port_forwarding_hint(int(url.rstrip("/").rsplit(":", 1)[1]), endpoint)
        if hint:
            log(f"from another machine, forward the page and the LiveKit ports first: {hint}")
        log("Ctrl-C stops the playground and everything it started")
        await stop.wait()
        log("stopping ...")
    finally:
        await pg.aclose()


def check_port_free(host: str, port: int) -> None:
    """Fail before anything starts when the page's port is taken (port 0: any free one).

    Raises:
        TellerError: ``host:port`` cannot be bound (names the fix: ``--port``).
    """
    import socket

    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise TellerError(f"the playground cannot listen on {host}:{port} ({e.strerror}): "
                              "choose another port with --port") from e


def run_playground(options: PlaygroundOptions | None = None, log=print) -> None:
    """Run the playground until SIGINT/SIGTERM (see the module docstring), then stop everything
    it started.

    Raises:
        LiveKitServerError: ``LIVEKIT_URL`` is unset and no server binary is installed.
        NoFaceError, ImageLoadError, ...: the portrait cannot be used.
        OSError: the web port is taken (choose another with ``--port``).
    """
    import torch

    from ..live.demo import livekit_endpoint
    from .vendor import check_vendored

    options = options or PlaygroundOptions()
    check_vendored()
    check_port_free(options.host, options.port)
    torch.set_num_threads(1)
    with livekit_endpoint(options.worker, log) as ep:
        asyncio.run(_serve_until_stopped(ep, options, log))


__all__ = ["DEFAULT_PORT", "PLAYGROUND_ROOM", "Playground", "PlaygroundOptions", "mouth_box", "run_playground"]
