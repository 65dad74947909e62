"""``teller-agent train generator``: fit the autoregressive motion-token generator (teacher forcing)
on per-frame Whisper features (from the checkpoint's audio student, or from the Whisper teacher itself).

The audio features of every clip are computed once and cached in the dataset folder
(:func:`~teller_agent.train.dataset.clip_features`), so a training step only runs the
generator. Settings are chosen on the validation speakers (the in-training lip-sync
check and the figures written into the checkpoint are theirs); the held-out speakers
are only ever evaluated by ``teller-agent eval lipsync --heldout``.

The real clips are clean studio and broadcast speech. With ``noise_fraction`` > 0 each
real training clip also gets a *noisy twin* (:func:`noisy_twin_audio`: its speech under
babble or coloured noise at -5 to 20 dB SNR, fixed per clip) whose features replace the
clean ones in that share of its windows, with the same motion targets, so the generator
hears noisy speech too (``docs/results/design_measurements.md`` records what it changed;
the shipped checkpoint is trained without it).
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from ..eval.metrics import pearson
from ..fmlg.checkpoint import FMLGCheckpoint, load_checkpoint, load_student, save_checkpoint
from ..fmlg.generator import MotionGenerator
from ..fmlg.model import GeneratorConfig, MotionTokenGenerator
from ..fmlg.tokenizer import MOUTH_DIM
from .dataset import Clip, clip_features, features_key, load_clips, sample_clips
from .evaluate import calibrate_mouth_gain, clip_mouth_opening, evaluate_checkpoint, mouth_sync
from .plots import plot_curves


#: SNR range (dB, speech over noise) of the noisy twins of the real training clips.
NOISE_SNR_DB = (-5.0, 20.0)
#: Share of the noisy twins whose noise is babble (other voices); the rest get white, pink or brown noise.
BABBLE_SHARE = 0.6
#: Version of the noisy-twin recipe, part of the feature cache's name.
NOISY_TWIN_VERSION = 1


class _TokenizedClip:
    """A clip's motion tokens, mouth targets and audio features, frame-aligned."""

    def __init__(self, clip: Clip, tokens: np.ndarray, mouth: np.ndarray, audio: np.ndarray,
                 noisy: np.ndarray | None = None):
        n = min(len(tokens), len(audio))
        self.clip = clip
        self.tokens = tokens[:n]  # (T, K) int64
        self.mouth = mouth[:n]  # (T, MOUTH_DIM) float32 normalised mouth features (auxiliary regression target)
        self.audio = audio[:n]  # (T, D) float32 audio features
        self.noisy = noisy[:n] if noisy is not None and len(noisy) >= n else None  # the noisy twin's, or None


def noisy_twin_audio(clip: Clip, sources: list[np.ndarray], seed: int = 0) -> np.ndarray:
    """``clip``'s speech mixed with noise, the same for a given clip and ``seed`` (so its features can be
    cached): babble of other voices from ``sources`` (:func:`~teller_agent.data.augment.add_babble`) with
    probability :data:`BABBLE_SHARE`, else white, pink or brown noise, at an SNR drawn from
    :data:`NOISE_SNR_DB`.

    Returns:
        (N,) float32 at the clip's 16 kHz, as long as ``clip.audio``.
    """
    from ..data.augment import add_babble, add_noise

    rng = np.random.default_rng([zlib.crc32(clip.id.encode()), seed, NOISY_TWIN_VERSION])
    snr = float(rng.uniform(*NOISE_SNR_DB))
    if sources and rng.uniform() < BABBLE_SHARE:
        return add_babble(clip.audio, rng, snr, sources)
    return add_noise(clip.audio, rng, snr, str(rng.choice(["white", "pink", "brown"])))


def _batch(items: list[_TokenizedClip], length: int, batch: int, rng: np.random.Generator, real_fraction: float = 0.5,
           noise_fraction: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windows of ``length`` frames: audio features (B, L, D), tokens (B, L + 1, K) (the frame before the
    window first), ``first_is_bos`` (B,) and mouth targets (B, L, MOUTH_DIM). A window of a clip with a
    noisy twin takes the twin's audio features with probability ``noise_fraction``."""
    picks = sample_clips([len(it.tokens) for it in items], [it.clip.kind for it in items], batch, rng, real_fraction)
    s_len = min(length, min(len(items[i].tokens) for i in picks))
    k, d = items[0].tokens.shape[1], items[0].audio.shape[1]
    audio = np.zeros((batch, s_len, d), np.float32)
    tokens = np.zeros((batch, s_len + 1, k), np.int64)
    mouth = np.zeros((batch, s_len, MOUTH_DIM), np.float32)
    first = np.zeros(batch, bool)
    for b, i in enumerate(picks):
        it = items[i]
        s = int(rng.integers(0, len(it.tokens) - s_len + 1))
        noisy = noise_fraction > 0 and it.noisy is not None and rng.uniform() < noise_fraction
        audio[b] = (it.noisy if noisy else it.audio)[s : s + s_len]
        tokens[b, 1:] = it.tokens[s : s + s_len]
        mouth[b] = it.mouth[s : s + s_len]
        if s > 0:
            tokens[b, 0] = it.tokens[s - 1]
        first[b] = s == 0
    return torch.from_numpy(audio), torch.from_numpy(tokens), torch.from_numpy(first), torch.from_numpy(mouth)


def audio_feature_source(checkpoint: str | Path, cfg: GeneratorConfig, whisper_dir: str | Path | None = None):
    """``(cache key, compute(pcm, frames) -> (frames, D), student or None)`` of the audio features a generator
    with ``cfg.audio_encoder`` trains on: the checkpoint's student (``"student"``) or the Whisper teacher
    (``"whisper"``, on ``cfg.whisper_slices``).

    Raises:
        CheckpointError: ``"student"`` and the checkpoint holds no student; ValueError: ``"conv"``.
    """
    if cfg.audio_encoder == "student":
        import hashlib

        from ..fmlg.checkpoint import STUDENT_FILE
        from .student import student_features

        student = load_student(checkpoint)
        digest = hashlib.sha256((Path(checkpoint) / STUDENT_FILE).read_bytes()).hexdigest()[:10]

        def compute(pcm: np.ndarray, frames: int) -> np.ndarray:
            return student_features(student, pcm, frames)

        return f"student-{digest}", compute, student
    if cfg.audio_encoder == "whisper":
        from ..audio.whisper import SliceConfig, WHISPER_BASE, WhisperFeatures, load_whisper_encoder

        slices = SliceConfig(**cfg.whisper_slices)
        feats = None

        def compute(pcm: np.ndarray, frames: int) -> np.ndarray:
            nonlocal feats
            if feats is None:
                feats = WhisperFeatures(load_whisper_encoder(whisper_dir, slices.layers), slices)
            return feats.clip(pcm, frames)

        return features_key(WHISPER_BASE, slices.to_dict()), compute, None
    raise ValueError(f"training supports the 'student' and 'whisper' audio encoders, not {cfg.audio_encoder!r}")


def train_generator(
    dataset: str | Path,
    checkpoint: str | Path,
    steps: int = 4000,
    batch: int = 12,
    length: int = 100,
    lr: float = 1e-3,
    seed: int = 0,
    eval_every: int = 1000,
    config: GeneratorConfig | None = None,
    progress: bool = True,
    command: str | None = None,
    real_fraction: float = 0.8,
    aux_mouth: float = 1.0,
    threads: int | None = None,
    eval_temperatures: tuple[float, ...] | None = None,
    whisper_dir: str | Path | None = None,
    noise_fraction: float = 0.0,
    init: str | Path | None = None,
) -> dict:
    """Train the generator on the tokens of the tokenizer stored in ``checkpoint`` and the audio features of
    its encoder (``config.audio_encoder``: ``"student"``, the default, needs the student in ``checkpoint``,
    see ``teller-agent train student``); writes ``generator.safetensors``, updates ``config.json`` and draws
    ``generator_loss.png`` and ``generator_mouth_r.png`` there.

    Loss: cross-entropy of the frame's tokens (mouth levels weighted 2x), plus ``aux_mouth`` times the MSE of
    the frame's normalised mouth features (jaw + lips) regressed linearly from the transformer output ``h_t``
    and, separately, from the audio embedding alone (training-only heads, not saved): a dense, continuous lip
    target next to the sparse token targets. ``real_fraction`` of the windows come from real clips;
    ``threads`` sets ``torch.set_num_threads`` (None: leave it). ``noise_fraction`` of the real clips' windows
    hear their noisy twin (module docstring). ``init``: a checkpoint folder whose generator weights the
    training starts from (fine-tuning; its generator config is used, ``config`` is ignored). The validation speakers' lip sync is checked
    every ``eval_every`` steps; the weights of the evaluation with the highest validation mouth r are the ones
    saved (``generator_kept_step``; checkpoint selection on the validation speakers, never on held-out ones).
    At the end the lips' amplitude is calibrated on the validation speakers
    (:func:`~teller_agent.train.evaluate.calibrate_mouth_gain`) and their lip sync is averaged over 3
    sampling seeds from the saved float16 weights (:func:`~teller_agent.train.evaluate.evaluate_checkpoint`).

    Raises:
        CheckpointError: no tokenizer (or no student for ``"student"``) in ``checkpoint``; TellerError: no dataset.
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ck = load_checkpoint(checkpoint, need_generator=False)
    tokenizer = ck.tokenizer
    start_from = load_checkpoint(init).generator if init is not None else None
    cfg = start_from.cfg if start_from is not None else (config or GeneratorConfig(audio_encoder="student"))
    cfg.tokens_per_frame, cfg.mouth_tokens = tokenizer.tokens_per_frame, tokenizer.cfg.levels
    cfg.codebook_size = tokenizer.cfg.codebook_size
    key, compute, student = audio_feature_source(checkpoint, cfg, whisper_dir)
    if student is not None:
        cfg.lookahead, cfg.audio_dim = student.lookahead, student.cfg.dim
    model = MotionTokenGenerator(cfg)
    if start_from is not None:
        model.load_state_dict(start_from.state_dict())

    def tokenize(clips: list[Clip], noisy_sources: list[Clip] | None = None) -> list[_TokenizedClip]:
        out = []
        for c in tqdm(clips, desc="tokens + audio features", unit="clip", disable=not progress):
            x = torch.from_numpy(c.features)[None]
            mouth = tokenizer.normalize(x)[0, :, :MOUTH_DIM].numpy()
            noisy = None
            if noisy_sources is not None and c.kind == "real":
                others = [o.audio for o in noisy_sources if o.speaker != c.speaker]
                twin = dataclasses.replace(c, audio=noisy_twin_audio(c, others, seed))
                noisy = clip_features(dataset, twin, f"{key}-noisy{NOISY_TWIN_VERSION}s{seed}", compute)
            out.append(_TokenizedClip(c, tokenizer.encode(x)[0].numpy(), mouth,
                                      clip_features(dataset, c, key, compute), noisy))
        return out

    train_clips = load_clips(dataset, split="train", usable_only=True)
    babble = None
    if noise_fraction > 0:  # other voices for the babble: the real clips of the other training speakers
        babble = [c for c in train_clips if c.kind == "real"]
    train = tokenize(train_clips, babble)
    validation_clips = load_clips(dataset, split="validation", kinds=("real",))
    validation = tokenize(validation_clips)
    cfg.audio_dim = train[0].audio.shape[1]
    aux_h = torch.nn.Linear(cfg.d_model, MOUTH_DIM)  # training-only regression heads (not saved)
    aux_a = torch.nn.Linear(cfg.d_model, MOUTH_DIM)
    params = [*model.parameters(), *aux_h.parameters(), *aux_a.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    level_weight = torch.ones(cfg.tokens_per_frame)
    level_weight[: cfg.mouth_tokens] = 2.0
    history: dict[str, tuple[list[int], list[float]]] = {"train cross-entropy": ([], []),
                                                         "validation cross-entropy": ([], [])}
    if aux_mouth > 0:
        history["train mouth regression (MSE)"] = ([], [])
    sync_history: dict[str, tuple[list[int], list[float]]] = {"validation mouth r": ([], [])}
    if aux_mouth > 0:
        sync_history["validation mouth r, audio-only regression head"] = ([], [])
    start = time.time()
    bar = tqdm(range(1, steps + 1), desc="train generator", disable=not progress)
    last_eval: dict = {}
    best = {"r": -np.inf, "step": 0, "state": None}
    for step in bar:
        model.train()
        audio, tokens, first, mouth = _batch(train, length, batch, rng, real_fraction, noise_fraction)
        logits, h, audio_emb = model(audio, tokens, first, return_hidden=True)
        ce = F.cross_entropy(logits.reshape(-1, cfg.codebook_size), tokens[:, 1:].reshape(-1),
                             reduction="none", label_smoothing=0.05).view(tokens.shape[0], -1, cfg.tokens_per_frame)
        ce_loss = (ce * level_weight).mean() / level_weight.mean()
        loss = ce_loss
        if aux_mouth > 0:
            reg = 0.5 * (F.mse_loss(aux_h(h), mouth) + F.mse_loss(aux_a(audio_emb), mouth))
            loss = loss + aux_mouth * reg
            history["train mouth regression (MSE)"][0].append(step)
            history["train mouth regression (MSE)"][1].append(reg.item())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        history["train cross-entropy"][0].append(step)
        history["train cross-entropy"][1].append(ce_loss.item())
        bar.set_postfix(ce=f"{ce_loss.item():.3f}", r=f"{last_eval.get('r', float('nan')):.2f}",
                        ar=f"{last_eval.get('audio_r', float('nan')):.2f}")
        if validation and (step % eval_every == 0 or step == steps):
            model.eval()
            with torch.no_grad():
                audio, tokens, first, _ = _batch(validation, length, 32, np.random.default_rng(0))
                logits = model(audio, tokens, first)
                val = F.cross_entropy(logits.reshape(-1, cfg.codebook_size), tokens[:, 1:].reshape(-1)).item()
            history["validation cross-entropy"][0].append(step)
            history["validation cross-entropy"][1].append(val)
            last_eval = mouth_sync(MotionGenerator(FMLGCheckpoint(tokenizer, model, student=student), seed=seed),
                                   validation_clips)
            sync_history["validation mouth r"][0].append(step)
            sync_history["validation mouth r"][1].append(last_eval["r"])
            if last_eval["r"] > best["r"]:
                best.update(r=last_eval["r"], step=step,
                            state={k: v.detach().clone() for k, v in model.state_dict().items()})
            if aux_mouth > 0:
                last_eval["audio_r"] = _audio_mouth_r(model, aux_a, tokenizer, validation)
                sync_history["validation mouth r, audio-only regression head"][0].append(step)
                sync_history["validation mouth r, audio-only regression head"][1].append(last_eval["audio_r"])
            if progress:
                tqdm.write(f"step {step}: validation ce {val:.3f}, mouth r {last_eval['r']:.3f} "
                           f"(loudness {last_eval['loudness_r']:.3f}), audio-head r {last_eval.get('audio_r', float('nan')):.3f}")
    model.eval()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    metrics = {
        "generator_steps": steps,
        "generator_kept_step": best["step"] if best["state"] is not None else steps,
        "generator_minutes": round((time.time() - start) / 60, 1),
        "validation_audio_head_mouth_r": last_eval.get("audio_r"),
        "generator_lr": lr,
        "generator_real_fraction": real_fraction,
        "generator_aux_mouth": aux_mouth,
        "generator_noise_fraction": noise_fraction,
        "generator_init": str(init) if init is not None else None,
        "generator_parameters": sum(p.numel() for p in model.parameters()),
        "generator_command": command,
    }
    out = Path(checkpoint)
    save_checkpoint(out, tokenizer, model, info=metrics)
    plot_curves(out / "generator_loss.png", history, "motion-token generator: cross-entropy")
    if sync_history["validation mouth r"][0]:
        plot_curves(out / "generator_mouth_r.png", sync_history, "validation mouth-opening Pearson r (lag 0)",
                    log=False)
    if validation_clips:
        metrics.update(calibrate_mouth_gain(out, validation_clips, whisper_dir=whisper_dir))
        metrics.update(evaluate_checkpoint(out, validation_clips, eval_temperatures, whisper_dir=whisper_dir))
    return metrics


def _audio_mouth_r(model: MotionTokenGenerator, head: torch.nn.Module, tokenizer, clips: list[_TokenizedClip]) -> float:
    """Mean validation Pearson r of mouth opening predicted by the auxiliary head from the audio embedding
    alone (a diagnostic of what the audio features carry; true head pose and eyes)."""
    rs = []
    with torch.no_grad():
        for it in clips:
            emb = model.audio(torch.from_numpy(it.audio))  # (T, D)
            mouth = head(emb) * tokenizer.std[:MOUTH_DIM] + tokenizer.mean[:MOUTH_DIM]
            feats = it.clip.features[: len(it.audio)].copy()
            feats[:, :MOUTH_DIM] = mouth.numpy()
            rs.append(pearson(clip_mouth_opening(it.clip, feats), clip_mouth_opening(it.clip, it.clip.features[: len(feats)])))
    return float(np.mean(rs)) if rs else float("nan")
