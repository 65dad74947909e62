"""Motion tokenizer: Residual VQ codes of the facial motion latent (Teller, arXiv 2503.18429, sec. 3.1).

A motion latent frame (``face68``: expression deltas, pitch/yaw/roll,
translation, scale) becomes a feature vector, normalised with dataset
statistics and split into two streams:

* **mouth**: expression deltas (x, y) of the jaw contour and lips (37 keypoints),
* **head**: head pose and the remaining keypoints (eyes, brows, nose).

Each stream has a small causal temporal conv encoder, a ``ResidualVQ`` from
``vector-quantize-pytorch`` and a causal conv decoder. Every frame gets
``levels`` codes per stream, coarse to fine; the two streams together give
:attr:`MotionTokenizer.tokens_per_frame` motion tokens per frame (8 by
default: 32 tokens per 4 frames, the rate Teller uses). Splitting the streams
lets the generator sample lips and head pose/blinks at separate temperatures.
RVQ is trained with quantizer dropout, so decoding from the first ``k`` levels
only is meaningful (used to report the error per level count).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from vector_quantize_pytorch import ResidualVQ

from ..motion.latent import MotionLatent
from ..motion.space import FACE68
from ..modules.causal_conv import CausalConvStack

MOUTH_KEYPOINTS = tuple(range(0, 17)) + tuple(range(48, 68))
HEAD_KEYPOINTS = tuple(i for i in range(68) if i not in MOUTH_KEYPOINTS)
#: Widths of the feature vector parts: mouth exp (x, y), head exp (x, y), pose (pitch, yaw, roll, tx, ty, scale - 1).
MOUTH_DIM = 2 * len(MOUTH_KEYPOINTS)
HEAD_DIM = 2 * len(HEAD_KEYPOINTS) + 6
FEATURE_DIM = MOUTH_DIM + HEAD_DIM


def motion_to_features(motion: MotionLatent) -> np.ndarray:
    """(T, FEATURE_DIM) float32 model features of a ``face68`` latent (z deltas and tz are dropped:
    they are not observable from 2D landmarks)."""
    if motion.space != FACE68.name:
        raise ValueError(f"the motion tokenizer models face68 motion, got {motion.space!r}")
    pose = np.stack([motion.pitch, motion.yaw, motion.roll, motion.t[:, 0], motion.t[:, 1], motion.scale - 1], 1)
    return np.concatenate(
        [motion.exp[:, MOUTH_KEYPOINTS, :2].reshape(len(motion), -1),
         motion.exp[:, HEAD_KEYPOINTS, :2].reshape(len(motion), -1), pose], axis=1
    ).astype(np.float32)


def features_to_motion(features: np.ndarray) -> MotionLatent:
    """Inverse of :func:`motion_to_features` (dropped parts come back as zero)."""
    f = np.asarray(features, np.float32)
    n = len(f)
    motion = FACE68.neutral(n)
    motion.exp[:, MOUTH_KEYPOINTS, :2] = f[:, :MOUTH_DIM].reshape(n, -1, 2)
    motion.exp[:, HEAD_KEYPOINTS, :2] = f[:, MOUTH_DIM : MOUTH_DIM + HEAD_DIM - 6].reshape(n, -1, 2)
    pose = f[:, -6:]
    motion.pitch[:], motion.yaw[:], motion.roll[:] = pose[:, 0], pose[:, 1], pose[:, 2]
    motion.t[:, 0], motion.t[:, 1] = pose[:, 3], pose[:, 4]
    motion.scale[:] = 1 + pose[:, 5]
    return motion


@dataclass
class TokenizerConfig:
    """Hyper-parameters of :class:`MotionTokenizer` (saved next to its weights)."""

    latent_dim: int = 64
    hidden: int = 192
    levels: int = 4
    codebook_size: int = 256
    dilations: tuple[int, ...] = (1, 2)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TokenizerConfig:
        d = dict(d)
        d["dilations"] = tuple(d.get("dilations", (1, 2)))
        return cls(**d)


class StreamCodec(nn.Module):
    """Causal conv encoder -> ResidualVQ -> causal conv decoder for one feature stream, on (B, T, C)."""

    def __init__(self, in_dim: int, cfg: TokenizerConfig):
        super().__init__()
        self.encoder = CausalConvStack(in_dim, cfg.hidden, cfg.latent_dim, cfg.dilations)
        self.rvq = ResidualVQ(
            dim=cfg.latent_dim, num_quantizers=cfg.levels, codebook_size=cfg.codebook_size,
            kmeans_init=True, kmeans_iters=10, decay=0.95, commitment_weight=0.25,
            quantize_dropout=cfg.levels > 1, threshold_ema_dead_code=2,
        )
        self.decoder = CausalConvStack(cfg.latent_dim, cfg.hidden, in_dim, cfg.dilations)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quantized, codes, commit = self.rvq(self.encoder(x))
        return self.decoder(quantized), codes, commit.sum()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        _, codes, _ = self.rvq(self.encoder(x))
        return codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.rvq.get_output_from_indices(codes))


class MotionTokenizer(nn.Module):
    """Motion features <-> motion tokens, ``(B, T, FEATURE_DIM)`` <-> ``(B, T, 2 * levels)`` int64.

    Token ``k < levels`` of a frame is mouth RVQ level ``k``; token ``levels + k`` is head level ``k``.
    Features are normalised inside with the ``mean``/``std`` buffers (set from the training data).
    """

    def __init__(self, cfg: TokenizerConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or TokenizerConfig()
        self.mouth = StreamCodec(MOUTH_DIM, cfg)
        self.head = StreamCodec(HEAD_DIM, cfg)
        self.register_buffer("mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("std", torch.ones(FEATURE_DIM))
        #: Frames of past codes the decoder needs to decode one frame.
        self.receptive_field = self.mouth.decoder.receptive_field

    @property
    def tokens_per_frame(self) -> int:
        return 2 * self.cfg.levels

    def set_stats(self, features: np.ndarray) -> None:
        """Normalisation statistics from (N, FEATURE_DIM) training features."""
        f = torch.as_tensor(features, dtype=torch.float32)
        self.mean.copy_(f.mean(0))
        self.std.copy_(f.std(0).clamp_min(1e-4))

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct normalised features. Returns (recon normalised (B,T,F), tokens (B,T,2L), commitment loss)."""
        x = self.normalize(features)
        rm, cm, lm = self.mouth(x[..., :MOUTH_DIM])
        rh, ch, lh = self.head(x[..., MOUTH_DIM:])
        return torch.cat([rm, rh], -1), torch.cat([cm, ch], -1), lm + lh

    @torch.no_grad()
    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, FEATURE_DIM) float -> (B, T, 2L) int64 motion tokens."""
        x = self.normalize(features)
        return torch.cat([self.mouth.encode(x[..., :MOUTH_DIM]), self.head.encode(x[..., MOUTH_DIM:])], -1)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """(B, T, 2L) tokens -> (B, T, FEATURE_DIM) features; ``levels`` < L decodes from the coarse levels only."""
        n = self.cfg.levels
        k = levels or n
        mouth = self.mouth.decode(tokens[..., :k])
        head = self.head.decode(tokens[..., n : n + k])
        return torch.cat([mouth, head], -1) * self.std + self.mean
