"""Streaming speech -> motion: :class:`MotionGenerator`.

Audio of any sample rate arrives in chunks of any size; each 25 fps motion
frame is produced as soon as its audio and the audio encoder's look-ahead
(:attr:`MotionGenerator.latency_s`) have arrived. Per frame:

1. the audio encoder embeds the frame's audio (:mod:`teller_agent.fmlg.audio_stream`: by default the
   causal audio student distilled from Whisper, :mod:`teller_agent.audio.student`, incremental state),
2. the transformer takes ``audio embedding + previous frame's token embeddings``
   as one new position, attending over its sliding-window KV cache (bounded memory
   for endless streams; :class:`~teller_agent.fmlg.qwen2_step.Qwen2Stepper` runs the
   ``Qwen2Model`` weights one position at a time),
3. the depth head samples the frame's motion tokens coarse to fine with top-k
   sampling (Teller, sec. 4.1: k = 15) at one temperature for lips and another for
   head pose, blinks and brows; the sampled tokens are fed back as the next
   frame's input,
4. the RVQ decoders turn the tokens into a motion latent frame (incremental conv state).
   By default the lips are decoded from the *expected* code of each mouth RVQ
   level under the model's top-k distribution (given the sampled coarser levels)
   rather than from the sampled codes: the conditional mean instead of one draw,
   steadier from frame to frame and closer to the audio (the model card compares).
   It needs no extra look-ahead; the sampled tokens (fed back, and used for the
   head) are unchanged.
5. **Lip particles.** That expectation is still conditioned on one sampled token
   history. ``lip_particles`` = P chains are sampled side by side from the same
   audio (a batch of P in the transformer, each with its own KV cache and fed its
   own tokens back) and the lips are decoded from the mean of their P expected
   mouth latents: a Monte Carlo estimate of the lips' conditional mean given the
   audio alone. The head pose, blinks and brows come from the first chain, so
   they stay a single, lively sample. Particle 0 draws the same random numbers
   whatever P is, so P = 1 is exactly the single-chain generator.
6. **Lip readout.** Checkpoints with an audio student carry a ridge regression from
   the student's features of the frame to the mouth expression deltas, fitted on the
   training speakers' real clips (:data:`~teller_agent.fmlg.checkpoint.LIP_READOUT_FILE`;
   :func:`~teller_agent.train.student.save_lip_readout`). It is anchored at silence:
   the student's features of silence map to the rest face, and its ridge penalty
   shrinks toward that closed mouth, so a quiet frame never inherits speech's mean mouth.
   The lips are ``(1 - w)`` times the generator's plus ``w`` times the readout's
   (``lip_readout`` = w): two estimates of the lips from the same audio whose errors
   differ, so their average follows the voice more closely than either (the model
   card gives the validation figures per weight). The readout costs one matrix-vector
   product per frame, needs no look-ahead beyond the student's, and is not fed back
   to the transformer: the token chains, and so the head, are the same for any w.
   An average of two estimates moves less than either: the blended lips are scaled by
   the checkpoint's ``lip_readout_gain``, calibrated on the validation speakers at the
   default weight (for other weights the amplitude is approximate; the model card
   lists it per weight).
7. A conditional mean is smaller than any real mouth movement: the generator's mouth
   expression deltas are scaled by the checkpoint's ``mouth_gain`` around the rest
   face before any blend (:class:`~teller_agent.fmlg.model.GeneratorConfig`,
   :func:`~teller_agent.train.evaluate.calibrate_mouth_gain`).

Random draws are seeded per frame from ``(seed, frame index)``, and every
stage runs one frame at a time, so feeding a clip in 10 ms chunks or in one
call gives the same motion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..audio.features import MELS_PER_FRAME, N_MELS, SAMPLES_PER_FRAME, WIN_LENGTH, LogMelStream
from ..audio.resampler import StreamResampler, as_mono_float
from ..config import (
    DEFAULT_LIP_PARTICLES,
    DEFAULT_LIP_READOUT,
    DEFAULT_TEMPERATURE_HEAD,
    DEFAULT_TEMPERATURE_MOUTH,
    DEFAULT_TOP_K,
)
from ..errors import CheckpointError
from ..modules.causal_conv import ConvStackStepper
from ..motion.latent import MotionLatent
from .audio_stream import make_audio_stream
from .checkpoint import FMLGCheckpoint, load_checkpoint
from .qwen2_step import Qwen2Stepper
from .tokenizer import MOUTH_DIM, features_to_motion


class MotionGenerator:
    """Incremental audio -> ``face68`` motion at 25 fps.

    Args:
        checkpoint: an :class:`FMLGCheckpoint`, a checkpoint folder, or None for the shipped one.
        seed: seeds the sampling; the same seed and audio give the same motion.
        top_k: sample among the k most likely tokens (Teller, sec. 4.1: 15).
        temperature_mouth: sampling temperature of the lip/jaw tokens (lower = steadier lips).
        temperature_head: sampling temperature of head pose, blink and brow tokens.
        lip_mean: decode the lips from the expected mouth codes (see the module docstring) instead of
            the sampled ones (False: the sampled codes, as before).
        lip_mean_temperature: softmax temperature of the top-k logits for that expectation.
        lip_particles: P >= 1 token chains sampled side by side, each with its own KV cache; the lips
            are decoded from the mean of their mouth latents and the head from the first chain (see the
            module docstring). 1 = a single chain.
        lip_readout: weight in [0, 1] of the checkpoint's lip readout in the lips (module docstring,
            item 6); ignored (the generator's lips alone) for a checkpoint without one.

    Raises:
        CheckpointError: the checkpoint is missing or corrupt.
        ValueError: ``lip_particles`` < 1 or ``lip_readout`` outside [0, 1].
    """

    def __init__(
        self,
        checkpoint: FMLGCheckpoint | str | Path | None = None,
        seed: int = 0,
        top_k: int = DEFAULT_TOP_K,
        temperature_mouth: float = DEFAULT_TEMPERATURE_MOUTH,
        temperature_head: float = DEFAULT_TEMPERATURE_HEAD,
        lip_mean: bool = True,
        lip_mean_temperature: float = 1.0,
        lip_particles: int = DEFAULT_LIP_PARTICLES,
        lip_readout: float = DEFAULT_LIP_READOUT,
    ):
        ck = checkpoint if isinstance(checkpoint, FMLGCheckpoint) else load_checkpoint(checkpoint)
        self.tokenizer = ck.tokenizer
        self.model = ck.generator
        self.seed, self.top_k = seed, top_k
        cfg = self.model.cfg
        self._audio = make_audio_stream(self.model, ck.student, ck.teacher)
        self.lookahead = self._audio.wait_frames
        self.mel_lead = self._audio.mel_lead
        self._temps = [temperature_mouth] * cfg.mouth_tokens + [temperature_head] * (
            cfg.tokens_per_frame - cfg.mouth_tokens
        )
        self._depth = self.model.depth.sampler(self._temps, top_k)
        self.lip_mean, self.lip_mean_temperature = lip_mean, lip_mean_temperature
        if lip_particles < 1:
            raise ValueError(f"lip_particles must be >= 1, got {lip_particles}")
        self.lip_particles = int(lip_particles)
        if not 0.0 <= lip_readout <= 1.0:
            raise ValueError(f"lip_readout must be in [0, 1], got {lip_readout}")
        readout = ck.lip_readout if ck.student is not None else None
        #: weight of the lip readout actually applied (0 for a checkpoint without one)
        self.lip_readout = float(lip_readout) if readout is not None else 0.0
        self._readout = None
        if readout is not None and self.lip_readout > 0:
            if readout.context:
                raise CheckpointError("the lip readout must be per frame (context 0) to stream")
            # the readout as one affine map (D,) -> (MOUTH_DIM,) on the raw student features
            weight = readout.weight / readout.std[:, None]
            bias = readout.bias - (readout.mean / readout.std) @ readout.weight
            self._readout = (weight.astype(np.float32), bias.astype(np.float32))
        self._mouth_codebooks = self.tokenizer.mouth.rvq.codebooks.detach()  # (levels, V, C)
        # the RVQ decoders streamed in numpy (ConvStackStepper: same outputs, less per-frame overhead)
        self._decoders = {"mouth": ConvStackStepper(self.tokenizer.mouth.decoder),
                          "head": ConvStackStepper(self.tokenizer.head.decoder)}
        self._backbone = Qwen2Stepper(self.model.backbone)
        self.reset()

    @classmethod
    def from_settings(cls, settings, checkpoint: FMLGCheckpoint | str | Path | None = None,
                      seed: int | None = None) -> MotionGenerator:
        """The generator configured by :class:`~teller_agent.config.TellerSettings` (``model_dir``,
        ``seed``, ``top_k``, ``temperature_mouth``, ``temperature_head``, ``lip_particles``,
        ``lip_readout``); ``checkpoint`` and ``seed`` override the settings' ones.

        Raises:
            CheckpointError: the checkpoint is missing or corrupt.
        """
        return cls(checkpoint if checkpoint is not None else settings.model_dir,
                   seed=settings.seed if seed is None else seed, top_k=settings.top_k,
                   temperature_mouth=settings.temperature_mouth, temperature_head=settings.temperature_head,
                   lip_particles=settings.lip_particles, lip_readout=settings.lip_readout)

    # -- public API -------------------------------------------------------------

    @property
    def frame_index(self) -> int:
        """Frames produced since the last :meth:`reset`."""
        return self._frame

    @property
    def latency_s(self) -> float:
        """Audio a frame waits for beyond its own 40 ms, seconds: the look-ahead, plus the last mel
        window's tail for checkpoints without hop-aligned mel frames (``mel_lead = 0``)."""
        return self.model.cfg.lookahead_ms / 1000.0

    def reset(self) -> None:
        """Forget all audio and motion context: empty the KV cache and every buffer (call on interruption).
        The next frames are exactly those of a fresh generator."""
        self._backbone.reset()
        self._prev: torch.Tensor | None = None
        self._frame = 0
        self._dec_state: dict[str, list | None] = {"mouth": None, "head": None}
        self._new_segment()

    def push_audio(self, pcm: np.ndarray, sample_rate: int) -> MotionLatent:
        """Feed a chunk of audio; returns the motion frames it completed (possibly none).

        Args:
            pcm: (N,) or (N, channels) float in [-1, 1] or int16 samples.
            sample_rate: Hz; anything other than 16 kHz is resampled (stateful, chunk-invariant).

        Returns:
            :class:`MotionLatent` of 0 or more frames, continuing the previous ones.
        """
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        pcm = as_mono_float(pcm)
        if self._resampler is None or self._resampler.rate != sample_rate:
            tail = self._resampler.flush() if self._resampler is not None else np.zeros(0, np.float32)
            self._resampler = StreamResampler(sample_rate)
            pcm16 = np.concatenate([tail, self._resampler.push(pcm)])
        else:
            pcm16 = self._resampler.push(pcm)
        self._samples += len(pcm16)
        return self._advance(self._mel.push(pcm16))

    def flush(self) -> MotionLatent:
        """End of a speech segment: produce the frames of all audio pushed so far (the missing
        look-ahead is taken as silence), ``round(samples / 640)`` frames in the segment in all.
        Motion context (KV cache) is kept; the next audio starts a new segment."""
        pcm16 = self._resampler.flush() if self._resampler is not None else np.zeros(0, np.float32)
        self._samples += len(pcm16)
        target = self._segment_start + int(self._samples / SAMPLES_PER_FRAME + 0.5)
        parts = [self._advance(self._mel.push(pcm16))]
        if self._frame < target:
            need = (target - self._frame + self.lookahead + 1) * SAMPLES_PER_FRAME + WIN_LENGTH
            parts.append(self._advance(self._mel.push(np.zeros(need, np.float32)), limit=target))
        self._new_segment()
        return MotionLatent.concatenate(parts)

    def generate(self, pcm: np.ndarray, sample_rate: int) -> MotionLatent:
        """Motion for a whole clip: :meth:`reset`, :meth:`push_audio`, :meth:`flush`."""
        self.reset()
        return MotionLatent.concatenate([self.push_audio(pcm, sample_rate), self.flush()])

    # -- internals -------------------------------------------------------------

    def _new_segment(self) -> None:
        self._resampler: StreamResampler | None = None
        self._mel = LogMelStream(self.mel_lead)
        self._mel_pending = np.zeros((0, N_MELS), np.float32)
        self._audio.reset()
        self._samples = 0
        self._segment_start = self._frame

    @torch.inference_mode()
    def _advance(self, mel: np.ndarray, limit: int | None = None) -> MotionLatent:
        pending = np.concatenate([self._mel_pending, mel]) if len(mel) else self._mel_pending
        mouth_q, head_q = [], []
        # every whole video frame of mel in one encoder call, and the frames' codes in one decoder call
        # (both causal: the same features as frame by frame); a frame is made as soon as its audio
        # and look-ahead are in
        usable = len(pending) - len(pending) % MELS_PER_FRAME
        if usable and (limit is None or self._frame < limit):
            embs = self._audio.push(pending[:usable])
            raw = self._audio.features
            pending = pending[usable:]
            for emb in embs:
                if limit is not None and self._frame >= limit:
                    break
                tokens, mouth = self._sample_tokens(emb)
                mouth_q.append(mouth)
                head_q.append(_code_sum(self.tokenizer.head.rvq.codebooks, tokens[self.tokenizer.cfg.levels :]))
        self._mel_pending = pending
        if not mouth_q:
            return MotionLatent.neutral(0, 68)
        features = self._decode(torch.stack(mouth_q), torch.stack(head_q))
        if self._readout is not None:
            w, b = self._readout
            lips = torch.from_numpy(raw[: len(features)] @ w + b)
            features[:, :MOUTH_DIM] += self.lip_readout * (lips - features[:, :MOUTH_DIM])
            features[:, :MOUTH_DIM] *= self.model.cfg.lip_readout_gain
        return features_to_motion(features.numpy())

    def _sample_tokens(self, audio_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One AR step: the frame's (K,) tokens of particle 0 and its (C,) mouth latent, the mean over
        the particles (see the module docstring)."""
        model = self.model
        p = self.lip_particles
        emb = audio_emb.expand(p, 1, -1)  # every particle hears the same audio
        x = model.frame_inputs(emb, None if self._prev is None else self._prev[:, None])
        h = self._backbone(x[:, 0])  # (P, D): Qwen2Model's last hidden state per particle (sliding-window KV)
        # Gumbel-max over the top-k logits = sampling from their softmax; one seeded draw per frame
        # (particle 0 gets the same draws whatever the number of particles).
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self._frame)
        uniform = torch.rand(p, model.cfg.tokens_per_frame, self.top_k, generator=gen)
        if self.lip_mean:
            tokens, q = self._depth(h, uniform, self._mouth_codebooks, self.lip_mean_temperature)
        else:
            tokens = self._depth(h, uniform)
            q = _code_sum(self._mouth_codebooks, tokens[:, : self.tokenizer.cfg.levels])  # (P, C) sampled mouth latents
        self._prev = tokens
        self._frame += 1
        return tokens[0], q.mean(0)

    def _decode(self, mouth_q: torch.Tensor, head_q: torch.Tensor) -> torch.Tensor:
        """(n, C) mouth latents (the particles' mean, see the module docstring) and (n, C) head latents
        (the sampled head codes' sum) of the next n frames -> (n, FEATURE_DIM) float32 features."""
        tok = self.tokenizer
        out = []
        for name, q in (("mouth", mouth_q), ("head", head_q)):
            y, self._dec_state[name] = self._decoders[name].step(q.numpy(), self._dec_state[name])
            out.append(torch.from_numpy(y))
        features = torch.cat(out, -1) * tok.std + tok.mean
        gain = self.model.cfg.mouth_gain
        if gain != 1.0:  # calibrated amplitude of the lips around the rest face (GeneratorConfig.mouth_gain)
            features[:, :MOUTH_DIM] *= gain
        return features


def _code_sum(codebooks: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Quantised latent of RVQ codes: the sum over levels of each level's chosen code vector.

    ``codebooks`` (L, V, C) and ``codes`` (..., L) int64 -> (..., C). The same as
    ``ResidualVQ.get_output_from_indices`` without its per-call einx overhead (the RVQ here has no
    output projection)."""
    return codebooks[torch.arange(codes.shape[-1]), codes].sum(-2)
