"""Audio encoders: log-mel frames -> one embedding per 25 fps video frame.

Teller (arXiv 2503.18429, sec. 3.2) cuts audio into slices embedded by
Whisper. The default here is a small causal convolutional encoder trained
with the generator, so it runs on a CPU and streams: the embedding of video
frame ``t`` sees the audio up to the end of frame ``t + lookahead`` plus the
15 ms tail of the last mel window, i.e. a bounded look-ahead of
``40 * lookahead + 15`` ms past the frame (55 ms by default), and nothing later.
With hop-aligned mel frames (``GeneratorConfig.mel_lead = 240``, see
:mod:`~teller_agent.audio.features`) the tail is gone: ``40 * lookahead`` ms
(``GeneratorConfig.lookahead_ms``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..modules.causal_conv import CausalConvStack
from .features import HOP_LENGTH, MELS_PER_FRAME, N_MELS, SAMPLES_PER_FRAME, WIN_LENGTH, log_mel


class CausalAudioEncoder(nn.Module):
    """Stacks the 4 mel frames of each video frame and runs a causal dilated conv stack.

    Args:
        dim: output embedding width.
        hidden: conv width.
        lookahead: video frames of future audio each embedding may see (40 ms each).
        dilations: dilations of the residual causal conv blocks (kernel 3).

    Input ``mel``: (B, 4 (T + lookahead), 80) float32 from :func:`~teller_agent.audio.features.log_mel`.
    Output: (B, T, dim) float32; row ``t`` depends on mel frames ``< 4 (t + lookahead + 1)`` only.
    """

    def __init__(self, dim: int = 256, hidden: int = 256, lookahead: int = 1, dilations: tuple[int, ...] = (1, 2, 4, 8)):
        super().__init__()
        self.lookahead = lookahead
        self.net = CausalConvStack(MELS_PER_FRAME * N_MELS, hidden, dim, dilations)
        #: Video frames of past audio (the current one included) an embedding depends on.
        self.receptive_field = self.net.receptive_field + lookahead

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.net(_stack(mel))[:, self.lookahead :]

    def step(self, mel: torch.Tensor, state: list | None) -> tuple[torch.Tensor, list]:
        """Incremental encoding for streams: ``mel`` (B, 4 n, 80) continues the mel frames
        summarised by ``state`` (None at the start). Returns (B, n, dim) *undelayed* outputs:
        output ``u`` of the stream is the embedding of video frame ``u - lookahead``."""
        return self.net.step(_stack(mel), state)


def _stack(mel: torch.Tensor) -> torch.Tensor:
    """(B, M, 80) mel -> (B, M // 4, 320): the 4 mel frames of each video frame side by side."""
    b, m, c = mel.shape
    frames = m // MELS_PER_FRAME
    return mel[:, : frames * MELS_PER_FRAME].reshape(b, frames, MELS_PER_FRAME * c)


def clip_mel(pcm: np.ndarray, num_frames: int, lookahead: int, lead: int = 0) -> np.ndarray:
    """Mel frames covering exactly ``num_frames + lookahead`` video frames of a whole clip.

    The audio is padded with silence at the end (what :meth:`MotionGenerator.flush`
    does for a stream) or trimmed.

    Args:
        pcm: (N,) float32 16 kHz mono.
        num_frames: T video frames wanted.
        lookahead: the encoder's look-ahead in video frames.
        lead: samples of silence before the audio (:func:`~teller_agent.audio.features.log_mel`).

    Returns:
        (4 (T + lookahead), 80) float32.
    """
    need = (num_frames + lookahead) * SAMPLES_PER_FRAME + WIN_LENGTH - HOP_LENGTH - lead
    pcm = np.asarray(pcm, np.float32).reshape(-1)[:need]
    pcm = np.pad(pcm, (0, need - len(pcm)))
    return log_mel(pcm, lead)
