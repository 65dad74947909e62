"""Benchmarks that print numbers (``teller-agent bench ...``).

Speed targets are checked by running these commands, never by timed tests.

* :func:`run_bench` (``teller-agent bench``): the full benchmark: per-stage cost
  (:mod:`.pipeline`), streaming latency, concurrent sessions (:mod:`.sessions`)
  and memory over the run.
* :func:`bench_render`, :func:`bench_generator` (``bench render``, ``bench generator``):
  one component each (:mod:`.components`).
* ``bench room`` (a LiveKit room end to end) belongs in ``room.py`` here, next to these.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from .common import code_version, load_average, machine, peak_rss_mb, rss_mb, software
from .components import bench_generator, bench_render

__all__ = ["bench_generator", "bench_render", "machine", "peak_rss_mb", "rss_mb", "run_bench", "RESULT_VERSION",
           "SHORT"]

#: Format version of :func:`run_bench`'s result.
RESULT_VERSION = 1
#: The ``--short`` settings (CI: a few seconds of work).
SHORT = {"seconds": 2.0, "stream_seconds": 1.0, "sessions": 1, "session_seconds": 1.0}


def run_bench(
    seconds: float = 20.0,
    size: int = 512,
    sessions: int = 4,
    fast: bool = False,
    encode: bool | None = None,
    stream_seconds: float | None = None,
    session_seconds: float = 10.0,
    audio=None,
    model_dir=None,
    image=None,
    threads: int = 1,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """The full benchmark.

    1. ``pipeline``: :func:`~teller_agent.bench.pipeline.bench_pipeline` over ``seconds`` of audio,
       as fast as possible: ms per frame per stage, frames per second, real-time factor, RSS at the
       start and end of the run and the peak.
    2. ``streaming``: :func:`~teller_agent.bench.pipeline.bench_streaming`, 20 ms chunks in real
       time for ``stream_seconds`` (default: ``seconds``, at most 20): latency p50/p95.
    3. ``sessions``: :func:`~teller_agent.bench.sessions.bench_sessions` with up to ``sessions``
       concurrent sessions of ``session_seconds`` each (0: skipped).

    Args:
        fast: only step 1, without video encoding (e.g. ``seconds=3600`` for the memory check:
            an hour of audio as fast as possible; RSS must stay flat since the KV cache is bounded).
        encode: include H.264 encoding in step 1 (default: not ``fast``).
        audio: a speech file looped to length (None: synthetic speech-like audio).
        model_dir, image, size, threads: checkpoint, portrait, frame side (pixels), OpenCV threads.
        progress: progress bars on stderr.
        command: the command line, recorded in the result.

    Returns:
        dict with ``kind`` ("bench"), ``version``, ``command``, ``created`` (UTC), ``machine``,
        ``software`` (versions), ``code`` (git commit, see :func:`~.common.code_version`),
        ``load_average_start`` / ``load_average_end`` (the machine's 1-minute load average: other work
        competing for the cores), ``settings`` (the arguments), ``pipeline``,
        ``streaming`` and ``sessions`` (the latter two None when skipped). See each function for its fields.
    """
    from .pipeline import _setup, bench_pipeline, bench_streaming
    from .sessions import bench_sessions

    encode = (not fast) if encode is None else encode
    stream_seconds = min(seconds, 20.0) if stream_seconds is None else stream_seconds
    common = {"size": size, "model_dir": model_dir, "image": image, "threads": threads, "progress": progress}
    result: dict[str, Any] = {
        "kind": "bench",
        "version": RESULT_VERSION,
        "command": command,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "software": software(),
        "code": code_version(),
        "load_average_start": load_average(),
        "settings": {"seconds": seconds, "size": size, "fast": fast, "encode": encode,
                     "stream_seconds": None if fast else stream_seconds,
                     "sessions": 0 if fast else sessions, "session_seconds": None if fast else session_seconds,
                     "audio": str(audio) if audio else "synthetic speech-like",
                     "model": str(model_dir) if model_dir else "teller_agent/models/fmlg-face68 (shipped)",
                     "threads": threads, "torch_threads": 1},
    }
    built = _setup(size, model_dir, image, threads)  # one generator and renderer for steps 1 and 2
    result["pipeline"] = bench_pipeline(seconds=seconds, encode=encode, audio=audio, components=built, **common)
    result["streaming"] = None if fast else bench_streaming(seconds=stream_seconds, audio=audio, components=built,
                                                            **common)
    del built
    result["sessions"] = None if fast or sessions < 1 else bench_sessions(sessions, session_seconds, **common)
    result["load_average_end"] = load_average()
    return result
