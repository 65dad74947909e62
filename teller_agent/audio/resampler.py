"""Streaming resampling to 16 kHz mono float (FFmpeg's swresample through PyAV)."""

from __future__ import annotations

import av
import numpy as np

from .features import SAMPLE_RATE


def as_mono_float(pcm: np.ndarray) -> np.ndarray:
    """Any (N,) or (N, C) int16/float array -> (N,) float32 mono in [-1, 1].

    Raises:
        ValueError: ``pcm`` is not one- or two-dimensional.
    """
    a = np.asarray(pcm)
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    a = a.astype(np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1)
    if a.ndim != 1:
        raise ValueError(f"audio must be (N,) or (N, channels), got shape {np.shape(pcm)}")
    return a


class StreamResampler:
    """Stateful conversion of float mono chunks at ``rate`` Hz to ``target`` Hz (default 16 kHz).

    Chunk-invariant: pushing a signal in pieces gives the same samples as one push
    (plus :meth:`flush` at the end). At ``rate == target`` it passes samples through.
    """

    def __init__(self, rate: int, target: int = SAMPLE_RATE):
        if rate <= 0:
            raise ValueError(f"sample rate must be positive, got {rate}")
        self.rate, self.target = rate, target
        self._swr = av.AudioResampler(format="flt", layout="mono", rate=target) if rate != target else None

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """(N,) float32 at ``rate`` -> (M,) float32 at ``target`` (M may lag by the filter delay)."""
        if self._swr is None or len(pcm) == 0:
            return pcm
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm, np.float32)[None, :], format="flt", layout="mono")
        frame.sample_rate = self.rate
        return self._collect(self._swr.resample(frame))

    def flush(self) -> np.ndarray:
        """The samples still inside the filter (call once at the end of a stream)."""
        return self._collect(self._swr.resample(None)) if self._swr is not None else np.zeros(0, np.float32)

    @staticmethod
    def _collect(frames) -> np.ndarray:
        parts = [f.to_ndarray().reshape(-1) for f in frames]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
