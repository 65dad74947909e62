"""The recording viewer in its own process, as a real viewer (a browser on another machine) would be.

In the agent's process the viewer's work (decoding every received frame to RGB, reading its
stamp, keeping thumbnails and audio) shares the agent's event loop and GIL, and every delay
there shifts both what is measured and the timestamps it is measured with. :class:`ViewerProcess`
runs a :class:`~teller_agent.live.viewer.RoomViewer` in a child process (``spawn``: the parent
has LiveKit and torch threads) and hands its :class:`~teller_agent.live.viewer.Recording` back
when it stops. Arrival times stay comparable with the parent's: ``time.perf_counter`` is the
system-wide monotonic clock on Linux and macOS.

Child protocol (a ``multiprocessing`` pipe of ``(kind, value)`` tuples): the child says
``("connected", None)`` or ``("error", text)``, then ``("first_frame", t)``; it answers
``participants``, ``audio_stats`` and ``stop`` (the last with the recording, after writing the
mp4 it was asked for).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading
from pathlib import Path

from .viewer import Recording, RoomViewer

#: Seconds to wait for the child to join the room (a spawned interpreter imports numpy, OpenCV
#: and the LiveKit SDK first) and to hand back its recording.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 120.0


def _child(conn, url: str, token: str, identity: str | None, sample_rate: int, keep_frames: bool) -> None:
    asyncio.run(_serve(conn, url, token, identity, sample_rate, keep_frames))


async def _serve(conn, url: str, token: str, identity: str | None, sample_rate: int, keep_frames: bool) -> None:
    loop = asyncio.get_running_loop()
    viewer = RoomViewer(url, token, identity=identity, sample_rate=sample_rate, keep_frames=keep_frames)  # on this loop
    requests: asyncio.Queue = asyncio.Queue()

    def read() -> None:  # the pipe blocks: read it on a thread
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):  # the parent is gone
                msg = ("stop", None)
            loop.call_soon_threadsafe(requests.put_nowait, msg)
            if msg[0] == "stop":
                return

    threading.Thread(target=read, daemon=True, name="viewer-pipe").start()
    try:
        await viewer.start()
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("connected", None))

    async def first_frame() -> None:
        await viewer.first_frame.wait()
        conn.send(("first_frame", viewer.first_frame_t))

    notify = asyncio.create_task(first_frame())
    while True:
        kind, value = await requests.get()
        if kind == "participants":
            conn.send((kind, sorted(viewer.room.remote_participants)))
        elif kind == "audio_stats":
            conn.send((kind, await viewer.audio_stats()))
        elif kind == "stop":
            notify.cancel()
            rec = await viewer.stop()
            error = None
            if value is not None:
                try:
                    viewer.save_mp4(value)
                except Exception as e:  # noqa: BLE001 - reported to the parent
                    error = f"{type(e).__name__}: {e}"
            for v in rec.video:
                v.frame = None  # full frames stay here: they were for the mp4
            try:
                conn.send((kind, (rec, error)))
            except (BrokenPipeError, OSError):
                pass
            return


class ViewerProcess:
    """A :class:`~teller_agent.live.viewer.RoomViewer` (same arguments) in a child process.

    Attributes:
        first_frame: an ``asyncio.Event`` set when the first video frame arrived.
        first_frame_t: its arrival, ``time.perf_counter`` seconds (None before).
        rec: the :class:`~teller_agent.live.viewer.Recording`, empty until :meth:`stop`.

    Raises (from :meth:`start`):
        RuntimeError: the child could not join the room, or did not within ``START_TIMEOUT_S``.
    """

    def __init__(self, url: str, token: str, *, identity: str | None = None, sample_rate: int = 24000,
                 keep_frames: bool = False):
        self._args = (url, token, identity, sample_rate, keep_frames)
        self.rec = Recording(sample_rate=sample_rate)
        self.first_frame = asyncio.Event()
        self.first_frame_t: float | None = None
        self._proc = None
        self._conn = None
        self._replies: asyncio.Queue | None = None
        self._lock = asyncio.Lock()  # one request at a time

    async def start(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child_conn, *self._args), name="teller-viewer", daemon=True)
        self._proc.start()
        child_conn.close()
        self._replies = asyncio.Queue()
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._read, args=(loop,), daemon=True, name="viewer-replies").start()
        try:
            kind, value = await asyncio.wait_for(self._replies.get(), START_TIMEOUT_S)
        except asyncio.TimeoutError:
            self._kill()
            raise RuntimeError(f"the viewer process did not join the room within {START_TIMEOUT_S:.0f} s") from None
        if kind != "connected":
            self._kill()
            raise RuntimeError(f"the viewer could not join the room: {value or 'its process exited'}")

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                msg = ("exited", None)
            try:
                loop.call_soon_threadsafe(self._dispatch, msg)
            except RuntimeError:  # the parent's loop is closed
                return
            if msg[0] in ("exited", "stop"):
                return

    def _dispatch(self, msg) -> None:
        kind, value = msg
        if kind == "first_frame":
            self.first_frame_t = value
            self.first_frame.set()
        else:
            self._replies.put_nowait(msg)

    async def _ask(self, kind: str, value=None, timeout: float = 10.0):
        if self._proc is None:
            raise RuntimeError("the viewer is not running")
        async with self._lock:
            self._conn.send((kind, value))
            got, answer = await asyncio.wait_for(self._replies.get(), timeout)
        if got != kind:
            raise RuntimeError(f"the viewer process exited (asked {kind!r})")
        return answer

    async def participants(self) -> set[str]:
        """Identities of the remote participants the viewer sees in the room now."""
        return set(await self._ask("participants"))

    async def audio_stats(self) -> dict[str, float]:
        """See :meth:`RoomViewer.audio_stats`."""
        return await self._ask("audio_stats")

    async def stop(self, mp4: str | Path | None = None) -> Recording:
        """Leave the room, end the child and return what it recorded; with ``mp4``, the child first
        writes it there (:meth:`RoomViewer.save_mp4`; needs ``keep_frames``).

        Raises:
            RuntimeError: the mp4 could not be written, or the child did not answer in time
                (it is killed; nothing is left running).
        """
        if self._proc is None:
            return self.rec
        try:
            rec, error = await self._ask("stop", str(mp4) if mp4 is not None else None, STOP_TIMEOUT_S)
            self.rec = rec
        finally:
            await asyncio.to_thread(self._proc.join, 10)
            self._kill()
        if error is not None:
            raise RuntimeError(f"could not write {mp4}: {error}")
        return self.rec

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(5)
        if self._conn is not None:
            self._conn.close()
