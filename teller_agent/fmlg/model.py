"""The autoregressive motion-token generator (Teller's FMLG, arXiv 2503.18429, sec. 3.2).

Per video frame ``t`` the input embedding is

    x_t = audio_embedding_t + sum_k E[k, token_{t-1, k}]      (a learned BOS at t = 0)

and a decoder-only transformer from ``transformers`` (Qwen2 architecture,
small and randomly initialised) turns ``x_1..x_t`` into ``h_t``. Causal
attention with a sliding window (Meta, arXiv 2510.01176, sec. 3: windowed
attention with RoPE, no future audio) keeps the KV cache bounded, so an
hour-long stream runs in constant memory.

A depth head predicts the ``K`` motion tokens of frame ``t`` coarse to fine, as
in RQ-Transformer (Lee et al., CVPR 2022): each token is predicted from ``h_t``
plus the embeddings of the coarser tokens of the same frame. With
``depth_streams = 2`` (the default) the mouth and head streams are two chains
side by side: mouth level ``j`` sees mouth levels ``< j``, head level ``j``
head levels ``< j``, so level ``j`` of both streams is computed in one batched
step (``K / 2`` sequential steps per frame instead of ``K``). With
``depth_streams = 1`` (checkpoints made before this option) one chain runs over
all ``K`` tokens (mouth levels, then head levels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from transformers import Qwen2Config, Qwen2Model

from ..audio.encoder import CausalAudioEncoder
from ..audio.features import HOP_LENGTH, SAMPLE_RATE, WIN_LENGTH


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
    # Samples of silence before each segment's audio. 0: the last mel window of the look-ahead reaches
    # 15 ms further (55 ms of look-ahead with lookahead 1). HOP_ALIGNED_LEAD (240): every mel frame ends
    # on its hop, so the look-ahead is exactly 40 ms x lookahead (15 ms less live latency; the one run
    # of the shipped recipe with it lost held-out lip sync, see the model card).
    mel_lead: int = 0
    dropout: float = 0.1
    # Training only: chance that a previous-frame token is replaced by a mask embedding, so the
    # lips must be predicted from the audio rather than copied from the last frame.
    prev_mask_mouth: float = 0.6
    prev_mask_head: float = 0.15
    # Depth head: 1 = one coarse-to-fine chain over all K tokens, 2 = mouth and head chains side by side.
    depth_streams: int = 2
    # Audio encoder (see AUDIO_ENCODERS): "student" (Whisper features from the causal student distilled
    # from Whisper, teller_agent.audio.student; its weights ship in the checkpoint), "whisper" (the Whisper
    # encoder itself on slices, teller_agent.audio.whisper) or "conv" (a causal conv encoder on log-mel
    # trained with the generator; checkpoints before the Whisper features).
    audio_encoder: str = "student"
    # Width of the audio features of "student" and "whisper" (Whisper base: 512).
    audio_dim: int = 512
    # "whisper" only: the teacher's SliceConfig as a dict.
    whisper_slices: dict = field(default_factory=dict)
    # Inference calibration (not trained): the decoded mouth expression deltas (jaw + lips, face widths) are
    # multiplied by this around the rest face. Decoding the lips from the conditional mean (expected codes,
    # lip particles) shrinks their amplitude toward the rest face; the gain restores the real speakers'
    # amplitude, measured on the validation speakers (train.evaluate.calibrate_mouth_gain).
    mouth_gain: float = 1.0
    # Scale of the lips blended with the lip readout (MotionGenerator, lip_readout > 0), calibrated on the
    # validation speakers at the default weight (train.evaluate.calibrate_mouth_gain(..., blend=True)).
    lip_readout_gain: float = 1.0

    @property
    def lookahead_ms(self) -> float:
        """Future audio a frame waits for before it can be made, milliseconds (the most over frames).

        ``"conv"``: ``lookahead`` frames of 40 ms plus what the last mel window reaches past them (15 ms
        without a lead); ``"student"``: ``40 lookahead`` (hop-aligned mel frames); ``"whisper"``: the first
        frame of a slice waits for the rest of its slice and the slice's look-ahead."""
        if self.audio_encoder == "whisper":
            sl = self.whisper_slices
            return 40.0 * (sl.get("slice_frames", 5) - 1 + sl.get("lookahead_frames", 5))
        if self.audio_encoder == "student":
            return 40.0 * self.lookahead
        return 40.0 * self.lookahead + (WIN_LENGTH - HOP_LENGTH - self.mel_lead) / SAMPLE_RATE * 1000.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        d = dict(d)
        d.setdefault("depth_streams", 1)  # checkpoints written before the option had one chain
        d.pop("whisper_window", None)  # the per-frame transformers Whisper windows (replaced by slices)
        d.setdefault("audio_encoder", "conv")  # checkpoints written before the Whisper features
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
    """Predicts the K tokens of one frame from ``h`` (B, T, D) coarse to fine (teacher-forced in training).

    Token ``k``'s logits are ``out_k(gelu(hidden_k(LayerNorm(h + prefix_k))))`` where ``prefix_k`` sums the
    embeddings of the tokens before ``k`` in its chain (see the module docstring for ``depth_streams``).
    """

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        k, v, d = cfg.tokens_per_frame, cfg.codebook_size, cfg.d_model
        if cfg.depth_streams not in (1, 2):
            raise ValueError(f"depth_streams must be 1 or 2, got {cfg.depth_streams}")
        if cfg.depth_streams == 2 and 2 * cfg.mouth_tokens != k:
            raise ValueError(f"depth_streams = 2 needs as many mouth as head tokens, got {cfg.mouth_tokens} of {k}")
        self.streams, self.mouth_tokens = cfg.depth_streams, cfg.mouth_tokens
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
        if self.streams == 1:
            prefix = torch.cumsum(emb, dim=2) - emb  # sum of the embeddings of earlier levels
        else:
            m = self.mouth_tokens
            prefix = torch.cat([torch.cumsum(emb[:, :, :m], 2), torch.cumsum(emb[:, :, m:], 2)], 2) - emb
        return torch.stack([self.level_logits(h + prefix[:, :, k], k) for k in range(tokens.shape[-1])], 2)

    def sampler(self, temperatures: list[float], top_k: int) -> DepthSampler:
        """A :class:`DepthSampler` over a snapshot of the current weights (inference)."""
        return DepthSampler(self, temperatures, top_k)


class DepthSampler:
    """Samples one frame's K tokens from ``h`` (D,) with the depth head, coarse to fine.

    The weights are snapshotted (stacked per step) when it is made, so make a new one after training
    changes them. Sampling is Gumbel-max over the ``top_k`` logits divided by the token's temperature
    (= sampling from their softmax), driven by the caller's uniform draws, so it is deterministic.
    With ``depth_streams = 2`` the mouth and head levels ``j`` run as one batched step.
    """

    def __init__(self, head: DepthHead, temperatures: list[float], top_k: int):
        k = len(head.hidden)
        self.k, self.top_k, self.codebook = k, top_k, head.out[0].out_features
        self.embed = head.embed.weight.detach()
        self.ln = (head.norm.normalized_shape, head.norm.weight.detach(), head.norm.bias.detach(), head.norm.eps)
        chains = [list(range(k))] if head.streams == 1 else [list(range(head.mouth_tokens)),
                                                              list(range(head.mouth_tokens, k))]
        self.chains = chains
        self.steps = []
        for j in range(len(chains[0])):
            lv = [c[j] for c in chains]  # the levels computed together at step j
            self.steps.append((
                torch.tensor(lv),
                torch.stack([head.hidden[i].weight.detach().T for i in lv]),  # (S, D, D)
                torch.stack([head.hidden[i].bias.detach()[None] for i in lv]),  # (S, 1, D)
                torch.stack([head.out[i].weight.detach().T for i in lv]),  # (S, D, V)
                torch.stack([head.out[i].bias.detach()[None] for i in lv]),  # (S, 1, V)
                torch.tensor([temperatures[i] for i in lv])[:, None],  # (S, 1)
                torch.tensor(lv) * self.codebook,
            ))

    def __call__(self, h: torch.Tensor, uniform: torch.Tensor, mean_codebooks: torch.Tensor | None = None,
                 mean_temperature: float = 1.0) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Tokens (K,) int64 of one frame from ``h`` (D,) and uniform draws ``uniform`` (K, top_k) in (0, 1].
        Batched: ``h`` (P, D) and ``uniform`` (P, K, top_k) give tokens (P, K) (independent rows).

        With ``mean_codebooks`` (L, V, C), the RVQ codebooks of the first chain's L levels (the mouth
        stream with two chains), also returns the expected quantised latent (C,) (batched: (P, C)) of that
        chain: the sum over its levels of the codebook vectors averaged under the softmax of the ``top_k``
        logits at ``mean_temperature``, each level conditioned on the sampled tokens of the coarser ones.
        Decoding this conditional mean instead of the sampled codes removes most of the sampling jitter."""
        single = h.dim() == 1
        if single:
            h, uniform = h[None], uniform[None]
        p = h.shape[0]
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0))).transpose(0, 1)  # (K, P, top_k)
        s = len(self.chains)
        x = h[None].expand(s, p, -1)  # (S, P, D)
        tokens = torch.empty(self.k, p, dtype=torch.long)
        mean = None if mean_codebooks is None else torch.zeros(p, mean_codebooks.shape[-1])
        for j, (lv, w1, b1, w2, b2, temp, off) in enumerate(self.steps):
            y = F.gelu(torch.baddbmm(b1, F.layer_norm(x, *self.ln), w1))
            top, idx = torch.baddbmm(b2, y, w2).topk(self.top_k)  # (S, P, top_k)
            pick = (top / temp[:, :, None] + gumbel[lv]).argmax(-1, keepdim=True)
            choice = idx.gather(-1, pick)[..., 0]  # (S, P)
            tokens[lv] = choice
            if mean is not None and j < len(mean_codebooks):
                probs = torch.softmax(top[0] / mean_temperature, -1)  # (P, top_k)
                mean += torch.bmm(probs[:, None], mean_codebooks[j][idx[0]])[:, 0]
            x = x + self.embed[choice + off[:, None]]
        tokens = tokens.T  # (P, K)
        if single:
            return tokens[0] if mean is None else (tokens[0], mean[0])
        return tokens if mean is None else (tokens, mean)


#: The audio encoders a generator can be trained on (:attr:`GeneratorConfig.audio_encoder`).
AUDIO_ENCODERS = ("student", "whisper", "conv")


class FeatureProjection(nn.Module):
    """Per-frame Whisper features (B, T, audio_dim) -> audio embeddings (B, T, d_model):
    LayerNorm, Linear, GELU, Linear (the features' temporal context comes from the encoder that made them)."""

    def __init__(self, audio_dim: int, d_model: int):
        super().__init__()
        self.norm = nn.LayerNorm(audio_dim)
        self.inp = nn.Linear(audio_dim, d_model)
        self.out = nn.Linear(d_model, d_model)
        #: Frames of audio input before the first embedded frame that :meth:`forward` needs (none).
        self.receptive_field = 0

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.inp(self.norm(features))))


class MotionTokenGenerator(nn.Module):
    """Audio -> motion token logits, autoregressive over video frames.

    Args:
        cfg: hyper-parameters (default :class:`GeneratorConfig`).

    The audio input of :meth:`forward` is log-mel for ``audio_encoder = "conv"`` and per-frame Whisper
    features (from the student or the teacher, computed outside this module) otherwise.

    Raises:
        ValueError: unknown ``cfg.audio_encoder``.
    """

    def __init__(self, cfg: GeneratorConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or GeneratorConfig()
        if cfg.audio_encoder == "conv":
            self.audio = CausalAudioEncoder(cfg.d_model, cfg.audio_hidden, cfg.lookahead)
        elif cfg.audio_encoder in ("student", "whisper"):
            self.audio = FeatureProjection(cfg.audio_dim, cfg.d_model)
        else:
            raise ValueError(f"audio_encoder must be one of {AUDIO_ENCODERS}, got {cfg.audio_encoder!r}")
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

    def forward(self, audio: torch.Tensor, tokens: torch.Tensor, first_is_bos: torch.Tensor,
                return_hidden: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced logits.

        Args:
            audio: ``"conv"``: (B, 4 (T + lookahead + context), 80) log-mel, whose first ``context`` frames
                (``mel.shape[1] // 4 - T - lookahead``) only warm up the causal audio encoder; otherwise
                (B, T', audio_dim) float32 Whisper features whose last T rows are the T frames' (T' >= T).
            tokens: (B, T + 1, K) int64: the frame before the window, then the T target frames.
            first_is_bos: (B,) bool: the window starts the clip (the frame before is BOS).
            return_hidden: also return the transformer output and the audio embeddings (training
                uses them for auxiliary regression losses).

        Returns:
            (B, T, K, V) float32 logits for ``tokens[:, 1:]``; with ``return_hidden``, the tuple
            ``(logits, h (B, T, D), audio_emb (B, T, D))``.
        """
        t = tokens.shape[1] - 1
        audio_emb = self.audio(audio if self.cfg.audio_encoder == "conv" else audio[:, -t:])[:, -t:]
        prev = self.token_embed(tokens[:, :-1] + self.offsets)  # (B, T, K, D)
        if self.training:
            cfg = self.cfg
            p = torch.full((cfg.tokens_per_frame,), cfg.prev_mask_head, device=audio.device)
            p[: cfg.mouth_tokens] = cfg.prev_mask_mouth
            masked = torch.rand(prev.shape[:3], device=audio.device) < p
            prev = torch.where(masked[..., None], self.prev_mask, prev)
        prev = prev.sum(2)
        bos_rows = first_is_bos[:, None, None] & (torch.arange(t, device=audio.device) == 0)[None, :, None]
        x = audio_emb + torch.where(bos_rows, self.bos.expand_as(prev), prev)
        h = self.backbone(inputs_embeds=x, use_cache=False).last_hidden_state
        logits = self.depth(h, tokens[:, 1:])
        return (logits, h, audio_emb) if return_hidden else logits
