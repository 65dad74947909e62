"""Helpers shared by the benchmarks: the machine, memory, test audio, percentiles."""

from __future__ import annotations

import os
import platform
import resource
import sys

import numpy as np


def machine() -> str:
    """CPU model and logical core count of this machine, e.g. ``"AMD EPYC, 2 logical cores"``."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} logical cores"


def software() -> dict[str, str]:
    """Versions that move the numbers: Python, torch, OpenCV, numpy."""
    import cv2
    import torch

    return {"python": sys.version.split()[0], "torch": torch.__version__, "opencv": cv2.__version__,
            "numpy": np.__version__}


def code_version() -> str | None:
    """The git commit of the code measured, e.g. ``"1d82084"``, with ``"-dirty"`` when ``teller_agent/``
    or ``models/`` differ from it; None outside a git checkout."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "teller_agent"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit or None


def load_average() -> float | None:
    """The 1-minute load average of the machine (runnable processes; None where unknown).

    Above the core count, other work competes with the benchmark and its numbers are pessimistic.
    """
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``getrusage``; never decreases)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    """Current resident set size of this process in MiB (``/proc/self/statm``; the peak where that is absent)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def speech_like(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Synthetic speech-like audio: a 150 Hz buzz gated at 3 Hz (syllables) plus a little noise.

    The generator's cost does not depend on what is said, so this stands in for speech in
    the benchmarks (pass real speech to the bench commands with ``--audio``).

    Returns:
        (round(seconds * sample_rate),) float32 mono PCM in [-1, 1].
    """
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    rng = np.random.default_rng(seed)
    pcm = 0.2 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 3 * t) > 0) + 0.01 * rng.normal(size=len(t))
    return pcm.astype(np.float32)


def bench_audio(seconds: float, path=None, sample_rate: int = 16000) -> np.ndarray:
    """``seconds`` of 16 kHz mono audio: ``path`` decoded and looped to length, or :func:`speech_like`.

    Raises:
        AudioLoadError: ``path`` cannot be decoded.
    """
    if path is None:
        return speech_like(seconds, sample_rate)
    from ..media import load_audio

    pcm, _ = load_audio(path, sample_rate)
    n = int(round(seconds * sample_rate))
    return np.resize(pcm, n).astype(np.float32)


def percentiles(values_ms, *qs: float) -> list[float]:
    """Percentiles (e.g. 50, 95) of a list of milliseconds, rounded to 0.001 ms; 0.0 for no values."""
    a = np.asarray(values_ms, np.float64)
    if a.size == 0:
        return [0.0 for _ in qs]
    return [round(float(np.percentile(a, q)), 3) for q in qs]
