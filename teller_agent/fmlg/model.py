"""The autoregressive motion-token generator (Teller's FMLG, arXiv 2503.18429, sec. 3.2).

Per video frame ``t`` the input embedding is

    x_t = audio_embedding_t + sum_k E[k, token_{t-1, k}]      (a learned BOS at t = 0)

and a decoder-only transformer from ``transformers`` (Qwen2 architecture,
small and randomly initialised) turns ``x_1..x_t`` into ``h_t``. Causal
attention with a sliding window (Meta, arXiv 2510.01176, sec. 3: windowed
attention with RoPE, no future audio) keeps the KV cache bounded, so an
hour-long stream runs in constant memory.

A depth head predicts the ``K`` motion tokens of frame ``t`` coarse to fine
(mouth RVQ levels, then head levels): token ``k`` is predicted from ``h_t``
plus the embeddings of tokens ``0..k-1`` of the same frame, as in RQ-Transformer
(Lee et al., CVPR 2022), so the levels of one frame are sampled jointly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import Qwen2Config, Qwen2Model

from ..audio.encoder import CausalAudioEncoder


@dataclass
class GeneratorConfig:
    """Hyper-parameters of :class:`MotionTokenGenerator` (saved next to its weights)."""

    d_model: int = 256
    layers: int = 3
    heads: int = 4
    kv_heads: int = 2
    ffn: int = 768
    window: int = 100  # frames of attention (4 s at 25 fps)
    tokens_per_frame: int = 8
    mouth_tokens: int = 4
    codebook_size: int = 256
    audio_hidden: int = 256
    lookahead: int = 1  # video frames of future audio (40 ms)
    dropout: float = 0.1
    # Training only: chance that a previous-frame token is replaced by a mask embedding, so the
    # lips must be predicted from the audio rather than copied from the last frame.
    prev_mask_mouth: float = 0.6
    prev_mask_head: float = 0.15

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        return cls(**d)

    def backbone_config(self) -> Qwen2Config:
        return Qwen2Config(
            vocab_size=1,  # inputs are embeddings; the token embedding table is unused
            hidden_size=self.d_model,
            intermediate_size=self.ffn,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads,
            max_position_embeddings=1 << 20,
            use_sliding_window=True,
            sliding_window=self.window,
            max_window_layers=0,
            attention_dropout=self.dropout,
            tie_word_embeddings=False,
        )


class DepthHead(nn.Module):
    """Predicts the K tokens of one frame from ``h`` (B, T, D) coarse to fine (teacher-forced in training)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        k, v, d = cfg.tokens_per_frame, cfg.codebook_size, cfg.d_model
        self.embed = nn.Embedding(k * v, d)
        self.norm = nn.LayerNorm(d)
        self.hidden = nn.ModuleList(nn.Linear(d, d) for _ in range(k))
        self.out = nn.ModuleList(nn.Linear(d, v) for _ in range(k))
        self.register_buffer("offsets", torch.arange(k) * v, persistent=False)

    def level_logits(self, h: torch.Tensor, level: int) -> torch.Tensor:
        return self.out[level](F.gelu(self.hidden[level](self.norm(h))))

    def forward(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, K, V) for target ``tokens`` (B, T, K)."""
        emb = self.embed(tokens + self.offsets)  # (B, T, K, D)
        prefix = torch.cumsum(emb, dim=2) - emb  # sum of the embeddings of earlier levels
        return torch.stack([self.level_logits(h + prefix[:, :, k], k) for k in range(tokens.shape[-1])], 2)


class MotionTokenGenerator(nn.Module):
    """Audio log-mel -> motion token logits, autoregressive over video frames."""

    def __init__(self, cfg: GeneratorConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or GeneratorConfig()
        self.audio = CausalAudioEncoder(cfg.d_model, cfg.audio_hidden, cfg.lookahead)
        self.token_embed = nn.Embedding(cfg.tokens_per_frame * cfg.codebook_size, cfg.d_model)
        self.bos = nn.Parameter(torch.zeros(cfg.d_model))
        self.prev_mask = nn.Parameter(torch.zeros(cfg.tokens_per_frame, cfg.d_model))
        self.backbone = Qwen2Model(cfg.backbone_config())
        self.depth = DepthHead(cfg)
        self.register_buffer("offsets", torch.arange(cfg.tokens_per_frame) * cfg.codebook_size, persistent=False)

    def frame_inputs(self, audio_emb: torch.Tensor, prev_tokens: torch.Tensor | None) -> torch.Tensor:
        """``x_t`` (B, T, D) from audio embeddings (B, T, D) and the previous frames' tokens
        (B, T, K); None means BOS for every frame (only used for a lone first frame)."""
        if prev_tokens is None:
            return audio_emb + self.bos
        return audio_emb + self.token_embed(prev_tokens + self.offsets).sum(2)

    def forward(self, mel: torch.Tensor, tokens: torch.Tensor, first_is_bos: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits.

        Args:
            mel: (B, 4 (T + lookahead + context), 80) log-mel; the first ``context`` frames
                (``mel.shape[1] // 4 - T - lookahead``) only warm up the causal audio encoder.
            tokens: (B, T + 1, K) int64: the frame before the window, then the T target frames.
            first_is_bos: (B,) bool: the window starts the clip (the frame before is BOS).

        Returns:
            (B, T, K, V) float32 logits for ``tokens[:, 1:]``.
        """
        t = tokens.shape[1] - 1
        audio_emb = self.audio(mel)[:, -t:]
        prev = self.token_embed(tokens[:, :-1] + self.offsets)  # (B, T, K, D)
        if self.training:
            cfg = self.cfg
            p = torch.full((cfg.tokens_per_frame,), cfg.prev_mask_head, device=mel.device)
            p[: cfg.mouth_tokens] = cfg.prev_mask_mouth
            masked = torch.rand(prev.shape[:3], device=mel.device) < p
            prev = torch.where(masked[..., None], self.prev_mask, prev)
        prev = prev.sum(2)
        bos_rows = first_is_bos[:, None, None] & (torch.arange(t, device=mel.device) == 0)[None, :, None]
        x = audio_emb + torch.where(bos_rows, self.bos.expand_as(prev), prev)
        h = self.backbone(inputs_embeds=x, use_cache=False).last_hidden_state
        return self.depth(h, tokens[:, 1:])
