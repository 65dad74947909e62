"""Concurrent avatar sessions: how many sustain 25 fps each on this machine (``teller-agent bench --sessions N``).

Each session is its own process (LiveKit's agent workers run every job in its own
process by default), with one core's worth of threads: ``torch.set_num_threads(1)``
and one OpenCV thread. All ``max_sessions`` workers start and warm up once; then
rounds of ``n = 1, 2, ...`` sessions run at the same moment, each pushing
``seconds`` of audio in 20 ms chunks through the generator and the renderer as
fast as it can (no video encoding: a live session streams raw frames). A round
*sustains* 25 fps when its slowest session makes at least 25 frames per second.
The search stops at the first round that does not.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

from ..config import FPS

#: Frames per second every session must make.
TARGET_FPS = float(FPS)


def _session_worker(conn, size: int, seconds: float, model_dir, image, threads: int) -> None:
    """Worker process: set up, warm up, say ``"ready"``; then run a round per ``("run", start_at)`` message."""
    try:
        from .common import bench_audio
        from .pipeline import _setup, _warm_up

        generator, renderer = _setup(size, model_dir, image, threads)
        _warm_up(generator, renderer)
        pcm = bench_audio(seconds)
        conn.send(("ready", None))
        while True:
            msg, start_at = conn.recv()
            if msg != "run":
                break
            time.sleep(max(0.0, start_at - time.time()))
            generator.reset()
            frames = 0
            t0 = time.perf_counter()
            for i in range(0, len(pcm), 320):
                for _ in renderer.render(generator.push_audio(pcm[i : i + 320], 16000)):
                    frames += 1
            wall = time.perf_counter() - t0
            conn.send(("done", {"frames": frames, "wall_s": wall}))
    except Exception as exc:  # reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def bench_sessions(
    max_sessions: int = 4,
    seconds: float = 10.0,
    size: int = 512,
    model_dir=None,
    image=None,
    threads: int = 1,
    progress: bool = True,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """The largest number of concurrent sessions, up to ``max_sessions``, that each sustain 25 fps.

    Args:
        max_sessions: most sessions tried (>= 1); that many worker processes are started.
        seconds: audio per session per round.
        size, model_dir, image, threads: as :func:`~teller_agent.bench.pipeline.bench_pipeline`.
        progress: progress bar on stderr.
        timeout_s: give up on a worker that says nothing for this long.

    Returns:
        dict: ``max_sessions`` (tried), ``seconds``, ``target_fps`` (25), ``sustained_sessions`` (the
        largest n whose slowest session made >= 25 fps; 0 if even one session could not), and
        ``rounds``: per n, ``sessions``, ``fps_min``, ``fps_mean``, ``fps_each`` (frames per wall
        second of each session) and ``sustained``.

    Raises:
        ValueError: ``max_sessions`` < 1.
        RuntimeError: a worker failed or timed out (its error is in the message).
    """
    from tqdm import tqdm

    if max_sessions < 1:
        raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
    ctx = mp.get_context("spawn")
    conns, procs = [], []
    for _ in range(max_sessions):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_session_worker, args=(child, size, seconds, model_dir, image, threads),
                           daemon=True)
        proc.start()
        child.close()
        conns.append(parent)
        procs.append(proc)

    def receive(conn) -> Any:
        if not conn.poll(timeout_s):
            raise RuntimeError(f"a session worker said nothing for {timeout_s:.0f} s")
        kind, payload = conn.recv()
        if kind == "error":
            raise RuntimeError(f"a session worker failed: {payload}")
        return payload

    rounds: list[dict[str, Any]] = []
    bar = tqdm(total=max_sessions, desc="bench sessions", unit="round", disable=not progress)
    try:
        for conn in conns:
            receive(conn)  # ready
        for n in range(1, max_sessions + 1):
            start_at = time.time() + 0.3
            for conn in conns[:n]:
                conn.send(("run", start_at))
            results = [receive(conn) for conn in conns[:n]]
            fps = [r["frames"] / r["wall_s"] if r["wall_s"] > 0 else 0.0 for r in results]
            ok = min(fps) >= TARGET_FPS
            rounds.append({"sessions": n, "fps_min": round(min(fps), 1), "fps_mean": round(sum(fps) / n, 1),
                           "fps_each": [round(f, 1) for f in fps], "sustained": ok})
            bar.update(1)
            bar.set_postfix_str(f"{n} sessions: slowest {min(fps):.0f} fps")
            if not ok:
                break
    finally:
        bar.close()
        for conn in conns:
            try:
                conn.send(("stop", 0.0))
            except (BrokenPipeError, OSError):
                pass
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
    sustained = max((r["sessions"] for r in rounds if r["sustained"]), default=0)
    return {"max_sessions": max_sessions, "seconds": seconds, "target_fps": TARGET_FPS,
            "sustained_sessions": sustained, "rounds": rounds}
