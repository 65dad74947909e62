"""A local LiveKit server in ``--dev`` mode on loopback, for the demo and the tests.

The server is the real one (``go install github.com/livekit/livekit-server/cmd/server@v1.13.5``);
:class:`LocalLiveKitServer` starts it on free loopback ports with a local key pair
(:data:`DEV_API_KEY` / :data:`DEV_API_SECRET`), waits until it answers, and stops it on exit.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from ..errors import TellerError

DEV_API_KEY = "devkey"
DEV_API_SECRET = "teller-local-dev-secret-not-for-production"  # >= 32 bytes for HS256
SERVER_VERSION = "v1.13.5"
INSTALL_HINT = (
    f"install it with `go install github.com/livekit/livekit-server/cmd/server@{SERVER_VERSION}` "
    "(the binary lands in $(go env GOPATH)/bin/server) or set TELLER_LIVEKIT_SERVER to its path"
)


class LiveKitServerError(TellerError):
    """The local LiveKit server is missing or did not start."""


class PortTakenError(LiveKitServerError):
    """The server could not bind a port: another process took it between choosing and binding."""


#: What the server logs when one of its ports is taken.
_PORT_TAKEN_LOG = "address already in use"


def find_server_binary() -> Path:
    """The ``livekit-server`` binary: ``$TELLER_LIVEKIT_SERVER``, then ``livekit-server`` on PATH,
    then ``server`` in ``$GOBIN`` / ``$GOPATH/bin`` / ``~/go/bin``.

    Raises:
        LiveKitServerError: none found (the message says how to install it).
    """
    env = os.environ.get("TELLER_LIVEKIT_SERVER")
    if env:
        if not Path(env).is_file():
            raise LiveKitServerError(f"TELLER_LIVEKIT_SERVER={env} is not a file; {INSTALL_HINT}")
        return Path(env)
    on_path = shutil.which("livekit-server")
    if on_path:
        return Path(on_path)
    dirs = [os.environ.get("GOBIN"), os.environ.get("GOPATH") and str(Path(os.environ["GOPATH"]) / "bin"),
            str(Path.home() / "go" / "bin")]
    for d in filter(None, dirs):
        candidate = Path(d) / "server"
        if candidate.is_file():
            return candidate
    raise LiveKitServerError(f"no LiveKit server binary found; {INSTALL_HINT}")


#: Launches :meth:`LocalLiveKitServer.start` tries when a chosen port is taken before the server binds it.
START_ATTEMPTS = 3


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free right now (TCP by default)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalLiveKitServer:
    """A ``livekit-server --dev`` process on loopback.

    Use as a context manager (or call :meth:`start` / :meth:`stop`)::

        with LocalLiveKitServer() as server:
            print(server.url, server.api_key, server.api_secret)

    Raises:
        LiveKitServerError: the binary is missing or the server does not answer within ``timeout`` s.
    """

    def __init__(self, binary: str | Path | None = None, timeout: float = 20.0):
        self.binary = Path(binary) if binary else None
        self.timeout = timeout
        self.api_key, self.api_secret = DEV_API_KEY, DEV_API_SECRET
        self.port = 0
        self._rtc_ports = (0, 0)  # (TCP, UDP) media ports
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        """WebSocket URL for clients, e.g. ``ws://127.0.0.1:40123``."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rtc_tcp_port(self) -> int:
        """TCP port of the server's WebRTC media (ICE over TCP); 0 before :meth:`start`."""
        return self._rtc_ports[0]

    def start(self) -> LocalLiveKitServer:
        """Start on free loopback ports. A port is free when chosen but may be taken before the server
        binds it (another process's connection or server): then fresh ports are tried, up to
        :data:`START_ATTEMPTS` times in all.

        Raises:
            LiveKitServerError: the binary is missing or the server did not come up (its log is in the message).
        """
        for attempt in range(START_ATTEMPTS):
            self.port, self._rtc_ports = free_port(), (free_port(), free_port(socket.SOCK_DGRAM))
            try:
                return self._launch()
            except PortTakenError:
                if attempt == START_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def restart(self) -> LocalLiveKitServer:
        """Stop the server and start a fresh one (no rooms) on the same ports: what clients see when
        the server is restarted under them.

        Raises:
            LiveKitServerError: it did not come back up.
        """
        self.stop()
        return self._launch()

    def _launch(self) -> LocalLiveKitServer:
        binary = self.binary or find_server_binary()
        rtc_tcp, udp = self._rtc_ports
        config = (
            f"port: {self.port}\n"
            "bind_addresses: [127.0.0.1]\n"
            f"rtc:\n  tcp_port: {rtc_tcp}\n  udp_port: {udp}\n  use_external_ip: false\n"
            "  node_ip: 127.0.0.1\n"
            f"keys:\n  {self.api_key}: {self.api_secret}\n"
            "logging:\n  level: warn\n"
        )
        self._log = tempfile.NamedTemporaryFile("w+", prefix="livekit-server-", suffix=".log", delete=False)
        self._proc = subprocess.Popen(
            [str(binary), "--dev", "--config-body", config],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None or _PORT_TAKEN_LOG in self.log_tail():
                break  # exited, or cannot bind a port (it may stay up without serving)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        log = self.log_tail()
        self.stop()
        if _PORT_TAKEN_LOG in log:
            raise PortTakenError(f"the LiveKit server ({binary}) could not bind its port; log:\n{log}")
        raise LiveKitServerError(f"the LiveKit server ({binary}) did not start within {self.timeout:.0f} s; log:\n{log}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        if self._log is None:
            return ""
        self._log.flush()
        return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and delete its log."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
            self._log = None

    def token(self, identity: str, room: str, *, name: str = "", kind: str | None = None,
              attributes: dict[str, str] | None = None, agent: bool = False) -> str:
        """A join token for ``room`` signed with the dev keys (``kind="agent"`` for agent participants)."""
        from livekit import api

        grants = api.VideoGrants(room_join=True, room=room, agent=agent, can_update_own_metadata=True)
        t = api.AccessToken(self.api_key, self.api_secret).with_identity(identity).with_grants(grants)
        if name:
            t = t.with_name(name)
        if kind:
            t = t.with_kind(kind)
        if attributes:
            t = t.with_attributes(attributes)
        return t.to_jwt()

    def env(self) -> dict[str, str]:
        """``LIVEKIT_URL``, ``LIVEKIT_API_KEY``, ``LIVEKIT_API_SECRET`` for this server."""
        return {"LIVEKIT_URL": self.url, "LIVEKIT_API_KEY": self.api_key, "LIVEKIT_API_SECRET": self.api_secret}

    def __enter__(self) -> LocalLiveKitServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
