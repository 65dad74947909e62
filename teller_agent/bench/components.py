"""Single-component benchmarks: ``teller-agent bench render`` and ``teller-agent bench generator``."""

from __future__ import annotations

import time

import numpy as np

from ..config import TellerSettings
from ..face import prepare_avatar
from ..motion import procedural_motion
from ..render import WarpRenderer, set_render_threads
from .common import machine, peak_rss_mb, speech_like


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


def bench_generator(seconds: float = 20.0, chunk_ms: float = 40.0, model_dir=None, threads: int = 1) -> dict:
    """FMLG generator cost per 25 fps frame on streamed audio (audio features, AR step, RVQ decode).

    Speech-like audio (a 150 Hz buzz gated at 3 Hz plus noise) is pushed in ``chunk_ms`` chunks as fast
    as possible; each chunk's wall time is divided by the frames it produced.

    Returns:
        dict with ``frames``, ``median_ms`` / ``p95_ms`` per frame, ``fps`` and ``rtf``
        (generator seconds per second of audio), ``threads``, ``peak_rss_mb``, ``machine``.
    """
    import torch

    from ..fmlg import MotionGenerator

    torch.set_num_threads(threads)
    gen = MotionGenerator(model_dir)
    sr = 16000
    pcm = speech_like(seconds, sr)
    gen.push_audio(pcm[: sr // 2], sr)  # warm-up
    gen.reset()
    step = int(sr * chunk_ms / 1000)
    per_frame, total, frames = [], 0.0, 0
    for i in range(0, len(pcm), step):
        start = time.perf_counter()
        n = len(gen.push_audio(pcm[i : i + step], sr))
        dt = time.perf_counter() - start
        total += dt
        frames += n
        if n:
            per_frame.extend([dt / n * 1000.0] * n)
    ms = np.array(per_frame)
    return {
        "frames": frames,
        "threads": threads,
        "median_ms": round(float(np.median(ms)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "fps": round(frames / total, 1),
        "rtf": round(total / seconds, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "machine": machine(),
    }
