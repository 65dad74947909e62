"""Speech/silence gate on the agent's audio with Silero VAD.

The generator moves the lips whenever it hears audio; pauses inside a sentence
should close the mouth. :class:`SpeechGate` runs ``silero-vad`` (bundled
weights, no download) on 32 ms windows at 16 kHz and answers, per 40 ms video
frame, how likely that frame and its neighbours are speech.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch

from ..audio.features import SAMPLE_RATE
from ..config import FPS

WINDOW = 512  # samples at 16 kHz per VAD decision (Silero v5+ requires exactly 512)
_FRAME = SAMPLE_RATE // FPS

_TEMPLATE = None


def silero_template():
    """The Silero VAD model as loaded from the ``silero-vad`` package (loaded once per process,
    never run itself: each :class:`SpeechGate` runs its own copy, whose recurrent state is then
    its stream's alone). Call it early to load the weights before the first session."""
    global _TEMPLATE
    if _TEMPLATE is None:
        from silero_vad import load_silero_vad

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load deprecation inside silero_vad
            _TEMPLATE = load_silero_vad()
    return _TEMPLATE


class SpeechGate:
    """Per-frame speech probability of a 16 kHz stream.

    Args:
        margin_s: seconds of context on each side of a frame that count towards it
            (a frame is speech if any window overlapping ``[start - margin, end + margin)`` is).

    The Silero model keeps recurrent state: every gate runs its own copy of it, so the gates
    of concurrent sessions never mix their streams; one gate serves one audio stream.
    """

    def __init__(self, margin_s: float = 0.02):
        self._model = copy.deepcopy(silero_template())
        self._margin = int(margin_s * SAMPLE_RATE)
        self.reset()

    def reset(self) -> None:
        """Forget the stream (new segment or interruption)."""
        self._model.reset_states()
        self._pending = np.zeros(0, np.float32)
        self._probs: list[float] = []

    @property
    def samples(self) -> int:
        """16 kHz samples analysed so far (a multiple of :data:`WINDOW`)."""
        return len(self._probs) * WINDOW

    @torch.inference_mode()
    def push(self, pcm16k: np.ndarray) -> None:
        """Analyse more audio: (N,) float32 at 16 kHz, any N."""
        buf = np.concatenate([self._pending, np.asarray(pcm16k, np.float32)])
        n = len(buf) // WINDOW
        for i in range(n):
            window = torch.from_numpy(buf[i * WINDOW : (i + 1) * WINDOW].copy())
            self._probs.append(float(self._model(window, SAMPLE_RATE)))
        self._pending = buf[n * WINDOW :]

    def frame_probability(self, frame: int) -> float:
        """Speech probability in [0, 1] of video frame ``frame`` (0 = first frame of the stream):
        the largest over the analysed windows near it; 0 when none has been analysed yet."""
        start = max(0, frame * _FRAME - self._margin)
        end = (frame + 1) * _FRAME + self._margin
        lo, hi = start // WINDOW, min(len(self._probs), -(-end // WINDOW))
        return max(self._probs[lo:hi], default=0.0)
