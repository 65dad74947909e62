"""Log-mel features with Whisper's settings, computable incrementally.

80 mel bins, 25 ms Hann window (400 samples), 10 ms hop (160 samples) at
16 kHz: the front-end of Whisper (Radford et al. 2022, sec. 2.2) that Teller
(arXiv 2503.18429, sec. 3.2) feeds its audio encoder with. Computed with
``transformers.audio_utils`` (``spectrogram`` and ``mel_filter_bank``).

Two choices differ from Whisper so that streaming gives exactly the same
features as a whole clip:

* no centre padding: mel frame ``i`` covers samples ``[160 i, 160 i + 400)``
  and so depends on no future audio beyond its own window; with a *lead* of
  240 samples (``WIN_LENGTH - HOP_LENGTH``, see :func:`log_mel`) the audio is
  preceded by that much silence, so mel frame ``i`` covers
  ``[160 i - 240, 160 i + 160)`` and ends on its hop: the 4 mel frames of a
  40 ms video frame then end exactly at the video frame's last sample;
* a fixed floor and scale instead of Whisper's per-clip maximum:
  ``(max(log10(mel), -8) + 4) / 4``.
"""

from __future__ import annotations

import numpy as np
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

#: Sample rate of the whole audio front-end, Hz.
SAMPLE_RATE = 16_000
#: Mel bins, window and hop (samples) of Whisper's front-end.
N_MELS, WIN_LENGTH, HOP_LENGTH = 80, 400, 160
#: Mel frames per 25 fps video frame (40 ms / 10 ms).
MELS_PER_FRAME = 4
#: Samples of 16 kHz audio per 25 fps video frame.
SAMPLES_PER_FRAME = MELS_PER_FRAME * HOP_LENGTH
#: Silence put before the audio so that every mel frame ends on its hop (see the module docstring).
HOP_ALIGNED_LEAD = WIN_LENGTH - HOP_LENGTH
_LOG_FLOOR = -8.0

_WINDOW = window_function(WIN_LENGTH, "hann")
_MEL_FILTERS = mel_filter_bank(
    num_frequency_bins=1 + WIN_LENGTH // 2,
    num_mel_filters=N_MELS,
    min_frequency=0.0,
    max_frequency=SAMPLE_RATE / 2,
    sampling_rate=SAMPLE_RATE,
    norm="slaney",
    mel_scale="slaney",
)


def num_mel_frames(num_samples: int) -> int:
    """Complete mel frames in ``num_samples`` samples."""
    return max(0, (num_samples - WIN_LENGTH) // HOP_LENGTH + 1)


def log_mel(pcm: np.ndarray, lead: int = 0) -> np.ndarray:
    """Log-mel frames of 16 kHz mono audio.

    Args:
        pcm: (N,) float mono samples in [-1, 1] at :data:`SAMPLE_RATE`.
        lead: samples of silence put before ``pcm`` (0, or :data:`HOP_ALIGNED_LEAD` so that
            frame ``i`` ends at sample ``160 (i + 1)``).

    Returns:
        (num_mel_frames(N + lead), 80) float32, roughly in [-1, 1.5].
    """
    pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
    if lead:
        pcm = np.concatenate([np.zeros(lead, np.float32), pcm])
    n = num_mel_frames(len(pcm))
    if n == 0:
        return np.zeros((0, N_MELS), np.float32)
    spec = spectrogram(
        pcm[: (n - 1) * HOP_LENGTH + WIN_LENGTH], _WINDOW, frame_length=WIN_LENGTH, hop_length=HOP_LENGTH,
        power=2.0, center=False, mel_filters=_MEL_FILTERS, log_mel="log10",
    )
    return ((np.maximum(spec, _LOG_FLOOR) + 4.0) / 4.0).T.astype(np.float32)


class LogMelStream:
    """Incremental :func:`log_mel`: push samples of any chunk size, get new mel frames.

    The concatenation of everything :meth:`push` returns equals ``log_mel(x, lead)`` of
    the concatenated input ``x``, whatever the chunking.

    Args:
        lead: samples of silence before the first pushed sample (see :func:`log_mel`).
    """

    def __init__(self, lead: int = 0) -> None:
        self.lead = lead
        self._buffer = np.zeros(lead, np.float32)

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """Add (N,) float32 samples at 16 kHz; returns the (M, 80) mel frames completed by them."""
        self._buffer = np.concatenate([self._buffer, np.asarray(pcm, np.float32).reshape(-1)])
        n = num_mel_frames(len(self._buffer))
        if n == 0:
            return np.zeros((0, N_MELS), np.float32)
        frames = log_mel(self._buffer[: (n - 1) * HOP_LENGTH + WIN_LENGTH])
        self._buffer = self._buffer[n * HOP_LENGTH :]
        return frames

    def reset(self) -> None:
        """Forget buffered samples (the stream starts again with its lead of silence)."""
        self._buffer = np.zeros(self.lead, np.float32)
