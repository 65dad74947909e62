"""The whole avatar pipeline, timed stage by stage: ``teller-agent bench``.

Audio -> :class:`~teller_agent.fmlg.MotionGenerator` (audio features, AR step,
RVQ decode) -> :class:`~teller_agent.render.WarpRenderer` -> optionally
:class:`~teller_agent.media.VideoWriter` (H.264), on one core
(``torch.set_num_threads(1)``, one OpenCV thread).

The generator's internal stages are timed from outside (:class:`StageClock`
wraps the methods of one generator instance; the generator's code is not
changed). Where its internals change and the wrap no longer fits, only the
generator's total is reported.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import FPS, TellerSettings
from .common import bench_audio, peak_rss_mb, percentiles, rss_mb

#: Stages of one frame, in pipeline order: milliseconds per frame each.
STAGES = ("audio_features", "ar_step", "rvq_decode", "render", "video_encode")
#: What each stage covers.
STAGE_NOTES = {
    "audio_features": "resampling, log-mel and the audio encoder (the student distilled from Whisper)",
    "ar_step": "one transformer step over the KV cache and the depth head sampling 8 tokens",
    "rvq_decode": "RVQ codes -> motion latent (causal conv decoders)",
    "render": "the warp renderer: one RGB frame",
    "video_encode": "H.264 encoding into an mp4 (only when writing a file)",
}
#: Frames at the start of a timed run left out of the medians (caches, allocator, encoder look-ahead).
SKIP_FRAMES = 10


class StageClock:
    """Per-frame cost of a :class:`~teller_agent.fmlg.MotionGenerator`'s stages, timed from outside.

    Wraps, on this one instance only, ``_advance`` (everything after the log-mel),
    ``_audio.push`` (the audio encoder: the student, or Whisper on slices), ``_sample_tokens`` (the AR step) and
    ``_decode`` (RVQ decode). :meth:`push` then splits each ``push_audio`` call into
    ``audio_features`` (resampling + log-mel + encoder), ``ar_step`` and ``rvq_decode``
    (the decoders plus the rest of the frame loop), which add up to the call's wall time.
    Time spent in calls that complete no frame is carried over to the next frame.

    Attributes:
        available: False when the generator's internals do not have those methods
            (then only ``generator`` totals are known).
    """

    _HOOKS = (("", "_advance", "advance"), ("_audio", "push", "encoder"), ("", "_sample_tokens", "ar"),
              ("", "_decode", "decode"))

    def __init__(self, generator):
        self.generator = generator
        self._acc = dict.fromkeys(("push", "advance", "encoder", "ar", "decode"), 0.0)
        self._wrapped: list[tuple[Any, str]] = []
        self.available = True
        try:
            for owner_path, attr, key in self._HOOKS:
                owner = generator
                for part in filter(None, owner_path.split(".")):
                    owner = getattr(owner, part)
                self._wrap(owner, attr, key)
        except AttributeError:
            self.restore()
            self.available = False

    def _wrap(self, owner, attr: str, key: str) -> None:
        fn = getattr(owner, attr)
        if not callable(fn):
            raise AttributeError(attr)
        acc = self._acc

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                acc[key] += time.perf_counter() - t

        setattr(owner, attr, timed)
        self._wrapped.append((owner, attr))

    def restore(self) -> None:
        """Remove the wrappers (the instance's methods are the class's again)."""
        for owner, attr in reversed(self._wrapped):
            delattr(owner, attr)
        self._wrapped.clear()

    def push(self, pcm: np.ndarray, sample_rate: int):
        """``generator.push_audio(pcm, sample_rate)``, timed.

        Returns:
            ``(motion, per_frame)``: the frames produced and, when at least one was, a dict
            ``{stage: ms per frame}`` (stages ``audio_features``, ``ar_step``, ``rvq_decode``
            and their sum ``generator``; only ``generator`` when not :attr:`available`),
            else None (the time is carried over).
        """
        t = time.perf_counter()
        motion = self.generator.push_audio(pcm, sample_rate)
        self._acc["push"] += time.perf_counter() - t
        n = len(motion)
        if n == 0:
            return motion, None
        a = self._acc
        per = {"generator": a["push"] / n * 1000.0}
        if self.available:
            per["audio_features"] = (a["push"] - a["advance"] + a["encoder"]) / n * 1000.0
            per["ar_step"] = a["ar"] / n * 1000.0
            per["rvq_decode"] = (a["advance"] - a["encoder"] - a["ar"]) / n * 1000.0
        for k in a:
            a[k] = 0.0
        return motion, per


def _setup(size: int, model_dir, image, threads: int, grid: int | None = None):
    """A generator and a renderer on one core; returns ``(generator, renderer)``."""
    import torch

    from ..face import prepare_avatar
    from ..fmlg import MotionGenerator
    from ..render import WarpRenderer, set_render_threads

    torch.set_num_threads(1)
    set_render_threads(threads)
    settings = TellerSettings(frame_size=size, **({"render_grid": grid} if grid else {}))
    generator = MotionGenerator.from_settings(settings, model_dir)
    renderer = WarpRenderer(prepare_avatar(image, settings), grid=settings.render_grid)
    return generator, renderer


def _warm_up(generator, renderer, seconds: float = 1.0) -> None:
    """Run ``seconds`` of audio through generator and renderer, then reset the generator."""
    pcm = bench_audio(seconds)
    for _ in renderer.render(generator.push_audio(pcm, 16000)):
        pass
    generator.reset()


class _Series:
    """Per-frame milliseconds in a preallocated float64 array, written in full up front so that the
    measurement itself does not grow the RSS during the run (a Python list of floats costs ~32 bytes a
    value: ~26 MB over an hour of frames for all stages, which would read as a leak)."""

    def __init__(self, capacity: int):
        self.values = np.full(max(int(capacity), 1), np.nan)
        self.n = 0

    def append(self, value: float) -> None:
        if self.n == len(self.values):  # more frames than planned: grow (rare; only then the RSS moves)
            self.values = np.concatenate([self.values, np.full(len(self.values), np.nan)])
        self.values[self.n] = value
        self.n += 1

    def __len__(self) -> int:
        return self.n

    def data(self) -> np.ndarray:
        return self.values[: self.n]


def _stats(values_ms) -> dict[str, float]:
    p50, p95 = percentiles(values_ms, 50, 95)
    values = np.asarray(values_ms, np.float64)
    return {"median": p50, "p95": p95, "mean": round(float(values.mean()), 3) if values.size else 0.0}


def _downsample(samples: list, limit: int = 60) -> list:
    if len(samples) <= limit:
        return samples
    idx = np.unique(np.linspace(0, len(samples) - 1, limit).round().astype(int))
    return [samples[i] for i in idx]


def bench_pipeline(
    seconds: float = 20.0,
    size: int = 512,
    chunk_ms: float = 20.0,
    encode: bool = True,
    audio: str | Path | None = None,
    model_dir=None,
    image=None,
    threads: int = 1,
    rss_every: int = 250,
    progress: bool = True,
    components: tuple | None = None,
) -> dict[str, Any]:
    """Cost per frame of every stage, as fast as possible over ``seconds`` of audio.

    Audio is pushed in ``chunk_ms`` chunks; every frame the generator returns is rendered and,
    with ``encode``, written to a temporary mp4 (deleted afterwards). A 1 s warm-up runs first.

    Args:
        seconds: audio length (the run has ``seconds * 25`` frames).
        size: frame side in pixels.
        chunk_ms: audio chunk length in milliseconds.
        encode: include H.264 encoding (the ``video_encode`` stage).
        audio: a speech file, looped to length (None: synthetic speech-like audio).
        model_dir: FMLG checkpoint folder (None: the shipped one).
        image: portrait (None: the bundled default).
        threads: OpenCV and numpy BLAS threads for rendering.
        rss_every: sample the current RSS every this many frames.
        progress: progress bar on stderr.
        components: ``(generator, renderer)`` to reuse (then ``size``, ``model_dir``, ``image`` and
            ``threads`` are theirs); None builds them.

    Returns:
        dict: ``audio_seconds``, ``frames``, ``chunk_ms``, ``size``, ``encode``, ``stage_breakdown``
        (bool), ``stages_ms`` (per stage of :data:`STAGES`: ``median``/``p95``/``mean`` ms per frame,
        None when not measured), ``generator_ms`` and ``frame_ms`` (generator + render, the live path)
        and ``frame_with_encode_ms`` (None without ``encode``) as the same stats; ``fps`` (frames per
        wall second over the whole run, everything included), ``fps_median`` (1000 / median
        ``frame_with_encode_ms`` or ``frame_ms``), ``rtf`` (wall seconds per audio second),
        ``rss_start_mb`` / ``rss_end_mb`` / ``rss_max_mb`` (current RSS after warm-up, at the end,
        largest sample), ``rss_growth_mb`` (end - start), ``rss_samples`` ([frame, MiB] pairs, at
        most 60) and ``peak_rss_mb`` (the process's peak).
    """
    from tqdm import tqdm

    from ..media import VideoWriter

    generator, renderer = components or _setup(size, model_dir, image, threads)
    pcm = bench_audio(seconds, audio)
    _warm_up(generator, renderer)
    clock = StageClock(generator)
    step = max(1, int(round(16000 * chunk_ms / 1000)))
    total_frames = int(round(seconds * FPS))
    per_frame = {k: _Series(total_frames + 1) for k in (*STAGES, "generator", "frame", "frame_with_encode")}
    rss_samples = [[0, round(rss_mb(), 1)]]
    frames = 0
    with tempfile.TemporaryDirectory(prefix="teller-bench-") as tmp:
        writer = VideoWriter(Path(tmp) / "bench.mp4", size=(renderer.size, renderer.size)) if encode else None
        bar = tqdm(total=total_frames, desc="bench pipeline", unit="frame", disable=not progress)
        start = time.perf_counter()
        try:
            for i in range(0, len(pcm), step):
                motion, gen_ms = clock.push(pcm[i : i + step], 16000)
                if gen_ms is None:
                    continue
                frame_iter = renderer.render(motion)
                for _ in range(len(motion)):
                    t0 = time.perf_counter()
                    frame = next(frame_iter)
                    t1 = time.perf_counter()
                    if writer is not None:
                        writer.write(frame)
                    t2 = time.perf_counter()
                    frames += 1
                    if frames > SKIP_FRAMES:
                        for k, v in gen_ms.items():
                            per_frame[k].append(v)
                        render_ms, encode_ms = (t1 - t0) * 1000.0, (t2 - t1) * 1000.0
                        per_frame["render"].append(render_ms)
                        per_frame["frame"].append(gen_ms["generator"] + render_ms)
                        if writer is not None:
                            per_frame["video_encode"].append(encode_ms)
                            per_frame["frame_with_encode"].append(gen_ms["generator"] + render_ms + encode_ms)
                    if frames % rss_every == 0:
                        rss_samples.append([frames, round(rss_mb(), 1)])
                bar.update(len(motion))
            wall = time.perf_counter() - start
        finally:
            bar.close()
            clock.restore()
            if writer is not None:
                writer.close()
    rss_samples.append([frames, round(rss_mb(), 1)])
    per_frame = {k: v.data() for k, v in per_frame.items()}
    stages = {k: (_stats(per_frame[k]) if len(per_frame[k]) else None) for k in STAGES}
    main = per_frame["frame_with_encode"] if encode else per_frame["frame"]
    median_main = float(np.median(main)) if len(main) else 0.0
    rss_max = max(s[1] for s in rss_samples)
    return {
        "audio_seconds": round(len(pcm) / 16000, 3),
        "frames": frames,
        "chunk_ms": chunk_ms,
        "size": renderer.size,
        "encode": encode,
        "stage_breakdown": clock.available,
        "stages_ms": stages,
        "generator_ms": _stats(per_frame["generator"]),
        "frame_ms": _stats(per_frame["frame"]),
        "frame_with_encode_ms": _stats(per_frame["frame_with_encode"]) if encode else None,
        "fps": round(frames / wall, 1) if wall > 0 else 0.0,
        "fps_median": round(1000.0 / median_main, 1) if median_main > 0 else 0.0,
        "rtf": round(wall / (len(pcm) / 16000), 4) if len(pcm) else 0.0,
        "rss_start_mb": rss_samples[0][1],
        "rss_end_mb": rss_samples[-1][1],
        "rss_max_mb": rss_max,
        "rss_growth_mb": round(rss_samples[-1][1] - rss_samples[0][1], 1),
        "rss_samples": _downsample(rss_samples),
        # getrusage's high-water mark can trail a /proc sample taken a moment before by a page
        "peak_rss_mb": round(max(peak_rss_mb(), rss_max), 1),
    }


def bench_streaming(
    seconds: float = 10.0,
    size: int = 512,
    chunk_ms: float = 20.0,
    audio: str | Path | None = None,
    model_dir=None,
    image=None,
    threads: int = 1,
    progress: bool = True,
    components: tuple | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Latency of live use: audio arrives in ``chunk_ms`` chunks in real time; each frame is rendered at once.

    Chunk ``k`` "arrives" when its last sample would have been captured, at ``start + (k + 1) * chunk``;
    the loop sleeps until then and pushes it (if processing falls behind, it pushes at once and the
    latency grows, as it would live). Two delays are measured per frame:

    * ``chunk_to_frame``: from the arrival of the chunk that completed the frame to the rendered
      frame: the processing delay;
    * ``audio_to_frame``: from the end of the frame's own 40 ms of audio to the rendered frame: the
      delay a viewer sees, including the generator's look-ahead (``lookahead_ms``) and the chunking.

    Args:
        seconds, size, chunk_ms, audio, model_dir, image, threads, progress, components:
            as :func:`bench_pipeline`.
        clock: the time source (seconds).

    Returns:
        dict: ``audio_seconds``, ``frames``, ``chunk_ms``, ``lookahead_ms``, ``chunk_to_frame_ms`` and
        ``audio_to_frame_ms`` (each ``p50``/``p95``/``max`` in ms), ``late_chunks`` (chunks pushed more
        than one chunk length after their arrival: the loop fell behind real time).
    """
    from tqdm import tqdm

    generator, renderer = components or _setup(size, model_dir, image, threads)
    pcm = bench_audio(seconds, audio)
    _warm_up(generator, renderer)
    chunk_s = chunk_ms / 1000.0
    step = max(1, int(round(16000 * chunk_s)))
    chunk_lat, audio_lat = [], []
    late, frame_index = 0, 0
    bar = tqdm(total=int(round(seconds * FPS)), desc="bench streaming (real time)", unit="frame",
               disable=not progress)
    start = clock() + 0.05
    for k, i in enumerate(range(0, len(pcm), step)):
        arrival = start + (k + 1) * chunk_s
        wait = arrival - clock()
        if wait > 0:
            time.sleep(wait)
        elif -wait > chunk_s:
            late += 1
        motion = generator.push_audio(pcm[i : i + step], 16000)
        for _ in renderer.render(motion):
            ready = clock()
            chunk_lat.append((ready - arrival) * 1000.0)
            audio_lat.append((ready - (start + (frame_index + 1) / FPS)) * 1000.0)
            frame_index += 1
        bar.update(len(motion))
    bar.close()

    def stats(v: list[float]) -> dict[str, float]:
        p50, p95, p100 = percentiles(v, 50, 95, 100)
        return {"p50": p50, "p95": p95, "max": p100}

    return {
        "audio_seconds": round(len(pcm) / 16000, 3),
        "frames": frame_index,
        "chunk_ms": chunk_ms,
        "lookahead_ms": round(generator.latency_s * 1000.0, 1),
        "chunk_to_frame_ms": stats(chunk_lat),
        "audio_to_frame_ms": stats(audio_lat),
        "late_chunks": late,
    }
