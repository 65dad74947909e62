"""Benchmarks that print numbers: ``teller-agent bench render``.

Speed targets are checked by running these commands, never by timed tests.
"""

from __future__ import annotations

import platform
import resource
import time

import numpy as np

from .config import TellerSettings
from .face import prepare_avatar
from .motion import procedural_motion
from .render import WarpRenderer, set_render_threads


def machine() -> str:
    """CPU model and logical core count of this machine."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import os

    return f"{model}, {os.cpu_count()} logical cores"


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_render(
    size: int = 512, frames: int = 300, warmup: int = 20, threads: int = 1, image=None, grid: int | None = None
) -> dict:
    """Render-only speed: the median over ``frames`` timed frames after ``warmup``.

    Motion is procedural (talking mouth, blinks, head sway) so every frame
    exercises the warp, the eyelids and the mouth fill.

    Returns:
        dict with ``size`` (pixels), ``frames``, ``threads``, ``median_ms``,
        ``p95_ms`` (milliseconds per frame), ``fps`` (1000 / median_ms),
        ``peak_rss_mb`` (MiB) and ``machine``.
    """
    settings = TellerSettings(frame_size=size, **({"render_grid": grid} if grid else {}))
    set_render_threads(threads)
    avatar = prepare_avatar(image, settings)
    renderer = WarpRenderer(avatar, grid=settings.render_grid)
    motion = procedural_motion(frames + warmup, seed=settings.seed)
    times = []
    start = time.perf_counter()
    for i, _ in enumerate(renderer.render(motion)):
        now = time.perf_counter()
        if i >= warmup:
            times.append(now - start)
        start = now
    ms = np.array(times) * 1000.0
    median = float(np.median(ms))
    return {
        "size": size,
        "frames": len(ms),
        "threads": threads,
        "grid": settings.render_grid,
        "median_ms": round(median, 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "fps": round(1000.0 / median, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "machine": machine(),
    }
