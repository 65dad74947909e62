"""A small causal audio encoder distilled from Whisper: the live audio encoder of the generator.

Whisper's encoder (:mod:`teller_agent.audio.whisper`) is what gives Teller
(arXiv 2503.18429, sec. 3.2; its ablation: Sync-C 7.70 with Whisper vs 4.29
with a codec encoder) its lip sync on unseen voices, but it is bidirectional
over a window, so streaming it costs a window per slice and up to a slice of
extra latency. The student here is a causal dilated convolution stack
(:class:`~teller_agent.modules.causal_conv.CausalConvStack`) over hop-aligned
log-mel that is trained to reproduce the teacher's per-frame features
(z-scored with the teacher corpus' statistics) from the audio up to
``lookahead`` frames past each frame, frame by frame, as in the online design
of Meta's arXiv 2510.01176 (sec. 3: causal encoder, bounded look-ahead).

Input ``mel``: (B, 4 (T + lookahead), 80) float32, hop-aligned log-mel
(:func:`~teller_agent.audio.features.log_mel` with ``lead = HOP_ALIGNED_LEAD``).
Output: (B, T, dim) float32 in the teacher's feature space; row ``t`` depends
on mel frames ``< 4 (t + lookahead + 1)`` only, i.e. on no audio later than
``40 * lookahead`` ms after the end of frame ``t``. Training compares outputs
and teacher features after :meth:`AudioStudent.normalize` (z-scored with the
teacher corpus' per-dimension statistics, so every dimension counts alike).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..modules.causal_conv import CausalConvStack, ConvStackStepper
from .features import MELS_PER_FRAME, N_MELS


@dataclass
class StudentConfig:
    """Hyper-parameters of :class:`AudioStudent` (saved with its weights).

    Attributes:
        dim: output width (the teacher's feature width, 512 for Whisper base).
        hidden: conv width.
        lookahead: video frames (40 ms each) of future audio each output may see.
        dilations: dilations of the residual causal conv blocks (kernel 3).
        teacher: name of the teacher's weights (e.g. ``"whisper-base"``).
        teacher_slices: the teacher's :class:`~teller_agent.audio.whisper.SliceConfig` as a dict.
    """

    dim: int = 512
    hidden: int = 256
    lookahead: int = 1
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2, 4, 8)
    teacher: str = "whisper-base"
    teacher_slices: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StudentConfig:
        d = dict(d)
        d["dilations"] = tuple(d.get("dilations", cls.dilations))
        return cls(**d)


class AudioStudent(nn.Module):
    """Causal log-mel -> Whisper-feature regressor (see the module docstring).

    Buffers ``mean`` and ``std`` (dim,) hold the teacher corpus' feature statistics; the network predicts
    z-scored features and the outputs are mapped back to the teacher's space.
    """

    def __init__(self, cfg: StudentConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or StudentConfig()
        self.lookahead = cfg.lookahead
        self.net = CausalConvStack(MELS_PER_FRAME * N_MELS, cfg.hidden, cfg.dim, cfg.dilations)
        self.register_buffer("mean", torch.zeros(cfg.dim))
        self.register_buffer("std", torch.ones(cfg.dim))
        #: Video frames of past audio (the current one included) an output depends on.
        self.receptive_field = self.net.receptive_field + cfg.lookahead

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        """Teacher-space features (..., dim) -> z-scored (the space of the training loss)."""
        return (features - self.mean) / self.std

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.net(stack_mel(mel))[:, self.lookahead :] * self.std + self.mean

    def step(self, mel: torch.Tensor, state: list | None) -> tuple[torch.Tensor, list]:
        """Incremental encoding: ``mel`` (B, 4 n, 80) continues the frames summarised by ``state`` (None at
        the start). Returns (B, n, dim) *undelayed* outputs (output ``u`` is the feature of frame
        ``u - lookahead``) and the new state; the same as :meth:`forward` on the whole stream."""
        y, state = self.net.step(stack_mel(mel), state)
        return y * self.std + self.mean, state

    def streamer(self):
        """:meth:`step` for live streaming, computed in numpy
        (:class:`~teller_agent.modules.causal_conv.ConvStackStepper`: the same outputs to float rounding,
        several times cheaper per frame). Returns ``step(mel, state) -> (features, state)`` with ``mel``
        (1, 4 n, 80) and ``features`` (1, n, dim) float32 tensors, like :meth:`step`; the weights are
        copied when it is made."""
        stepper = ConvStackStepper(self.net)
        mean, std = self.mean.detach().numpy(), self.std.detach().numpy()

        def step(mel: torch.Tensor, state: list | None) -> tuple[torch.Tensor, list]:
            y, state = stepper.step(stack_mel(mel)[0].numpy(), state)
            return torch.from_numpy(y * std + mean)[None], state

        return step


def stack_mel(mel: torch.Tensor) -> torch.Tensor:
    """(B, M, 80) mel -> (B, M // 4, 320): the 4 mel frames of each video frame side by side."""
    b, m, c = mel.shape
    frames = m // MELS_PER_FRAME
    return mel[:, : frames * MELS_PER_FRAME].reshape(b, frames, MELS_PER_FRAME * c)
