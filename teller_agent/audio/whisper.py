"""Optional audio encoder: a pretrained Whisper encoder (``transformers``) over short causal windows.

Teller (arXiv 2503.18429, sec. 3.2) embeds the audio with Whisper's encoder.
Whisper's encoder is bidirectional over a fixed 30 s input, so for streaming
each video frame ``t`` gets its own window: the last ``window`` video frames
of log-mel ending at frame ``t + lookahead`` (earlier audio padded with
silence), encoded by Whisper's convolutions, the first ``2 window`` position
embeddings and its transformer layers; the two encoder positions of frame
``t`` (Whisper's second conv has stride 2: 2 positions per 40 ms) are averaged
and projected to the generator width. The embedding therefore sees no audio
past the look-ahead (``GeneratorConfig.lookahead_ms``, as the conv encoder), whatever
Whisper's bidirectional attention does inside the window.

The Whisper weights stay frozen and are **not** stored in the FMLG checkpoint
(Whisper tiny alone is 16 MB in float16): they are loaded from a local folder
(``TellerSettings.whisper_model_dir``); only the projection is trained.

Cost: every frame runs the whole encoder on ``2 window`` positions, so this is
much slower than :class:`~teller_agent.audio.encoder.CausalAudioEncoder` on a CPU
and is not the default.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .features import MELS_PER_FRAME, N_MELS

#: Log-mel value of digital silence (the feature floor of :func:`~teller_agent.audio.features.log_mel`).
SILENCE_MEL = -1.0


def load_whisper_encoder(path: str | Path) -> nn.Module:
    """The encoder of a pretrained Whisper model saved in ``path`` (``transformers`` format: config.json
    and weights, e.g. a local copy of ``openai/whisper-tiny``); local files only, never a download.

    Raises:
        FileNotFoundError: ``path`` is not a folder with a ``config.json``.
        ValueError: the model is not a Whisper model or expects other than 80 mel bins.
    """
    from transformers import WhisperConfig, WhisperModel

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no Whisper model at {path} (config.json missing)")
    config = WhisperConfig.from_pretrained(path, local_files_only=True)
    if config.model_type != "whisper" or config.num_mel_bins != N_MELS:
        raise ValueError(f"{path} is not an {N_MELS}-mel Whisper model ({config.model_type}, "
                         f"{config.num_mel_bins} mel bins)")
    return WhisperModel.from_pretrained(path, local_files_only=True).get_encoder()


class WhisperAudioEncoder(nn.Module):
    """Whisper encoder over per-frame causal windows, same interface as ``CausalAudioEncoder``.

    Args:
        whisper: a ``transformers`` ``WhisperEncoder`` (80 mel bins); frozen here.
        dim: output embedding width.
        lookahead: video frames of future audio each embedding may see (40 ms each).
        window: video frames of audio per encoder window (the look-ahead included); at most
            Whisper's ``max_source_positions / 2``.

    Input ``mel``: (B, 4 (T + lookahead), 80) float32 from :func:`~teller_agent.audio.features.log_mel`.
    Output: (B, T, dim) float32; row ``t`` depends on mel frames ``[4 (t + lookahead + 1 - window),
    4 (t + lookahead + 1))`` only (silence before the start).

    Raises:
        ValueError: ``window`` is not larger than ``lookahead`` or exceeds Whisper's positions.
    """

    def __init__(self, whisper: nn.Module, dim: int, lookahead: int = 1, window: int = 25):
        super().__init__()
        positions = whisper.config.max_source_positions
        if not lookahead < window <= positions // 2:
            raise ValueError(f"window must be in ({lookahead}, {positions // 2}] video frames, got {window}")
        self.whisper = whisper.eval().requires_grad_(False)
        self.lookahead, self.window = lookahead, window
        self.proj = nn.Linear(whisper.config.d_model, dim)
        #: Video frames of past audio (the current one included) an embedding depends on.
        self.receptive_field = window

    def train(self, mode: bool = True) -> WhisperAudioEncoder:
        super().train(mode)
        self.whisper.eval()  # frozen: no dropout
        return self

    def _encode(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, 4 window, 80) mel windows -> (N, d_model): Whisper's encoding of the frame at
        index ``window - 1 - lookahead`` of each window (the mean of its 2 positions)."""
        w = self.whisper
        x = F.gelu(w.conv1(windows.transpose(1, 2)))
        x = F.gelu(w.conv2(x)).transpose(1, 2)  # (N, 2 window, d_model)
        x = x + w.embed_positions.weight[: x.shape[1]]
        for layer in w.layers:
            x = layer(x, None)
        x = w.layer_norm(x)
        j = 2 * (self.window - 1 - self.lookahead)
        return x[:, j : j + 2].mean(1)

    def _windows(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 4 (W - 1 + n), 80) -> (B, n, dim): one embedding per window ending at each of the n frames."""
        b = mel.shape[0]
        span = MELS_PER_FRAME * self.window
        win = mel.unfold(1, span, MELS_PER_FRAME).transpose(2, 3)  # (B, n, span, 80)
        n = win.shape[1]
        with torch.no_grad():
            enc = self._encode(win.reshape(b * n, span, N_MELS))
        return self.proj(enc).view(b, n, -1)

    def _pad(self, b: int, like: torch.Tensor) -> torch.Tensor:
        return like.new_full((b, MELS_PER_FRAME * (self.window - 1), N_MELS), SILENCE_MEL)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        frames = mel.shape[1] // MELS_PER_FRAME
        mel = torch.cat([self._pad(mel.shape[0], mel), mel[:, : frames * MELS_PER_FRAME]], 1)
        return self._windows(mel)[:, self.lookahead :]

    def step(self, mel: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Incremental encoding for streams: ``mel`` (B, 4 n, 80) continues the mel frames kept in
        ``state`` (None at the start). Returns (B, n, dim) *undelayed* outputs (output ``u`` of the
        stream is the embedding of video frame ``u - lookahead``) and the new state (the last
        ``4 (window - 1)`` mel frames)."""
        if state is None:
            state = self._pad(mel.shape[0], mel)
        buf = torch.cat([state, mel], 1)
        return self._windows(buf), buf[:, buf.shape[1] - state.shape[1] :]
