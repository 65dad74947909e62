"""``teller-agent train generator``: fit the autoregressive motion-token generator (teacher forcing)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from ..fmlg.checkpoint import FMLGCheckpoint, load_checkpoint, save_checkpoint
from ..fmlg.generator import MotionGenerator
from ..fmlg.model import GeneratorConfig, MotionTokenGenerator
from .dataset import Clip, load_clips, sample_clips
from .evaluate import mouth_sync
from .plots import plot_curves

_SILENCE_MEL = -1.0  # log-mel value of digital silence (the feature floor)


class _TokenizedClip:
    def __init__(self, clip: Clip, tokens: np.ndarray, lookahead: int):
        self.clip = clip
        self.tokens = tokens  # (T, K) int64
        self.mel = clip.mel(lookahead)  # (4 (T + L), 80)


def _batch(items: list[_TokenizedClip], length: int, batch: int, context: int, lookahead: int,
           rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    picks = sample_clips([it.tokens.shape[0] for it in items], [it.clip.kind for it in items], batch, rng)
    s_len = min(length, min(items[i].tokens.shape[0] for i in picks))
    k = items[0].tokens.shape[1]
    mel = np.full((batch, 4 * (context + s_len + lookahead), 80), _SILENCE_MEL, np.float32)
    tokens = np.zeros((batch, s_len + 1, k), np.int64)
    first = np.zeros(batch, bool)
    for b, i in enumerate(picks):
        it = items[i]
        t = it.tokens.shape[0]
        s = int(rng.integers(0, t - s_len + 1))
        lo = max(s - context, 0)
        seg = it.mel[4 * lo : 4 * (s + s_len + lookahead)]
        mel[b, mel.shape[1] - len(seg) :] = seg
        tokens[b, 1:] = it.tokens[s : s + s_len]
        if s > 0:
            tokens[b, 0] = it.tokens[s - 1]
        first[b] = s == 0
    return torch.from_numpy(mel), torch.from_numpy(tokens), torch.from_numpy(first)


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
) -> dict:
    """Train the generator on the tokens of the tokenizer stored in ``checkpoint``; writes
    ``generator.safetensors``, updates ``config.json`` and draws ``generator_loss.png`` there."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ck = load_checkpoint(checkpoint, need_generator=False)
    tokenizer = ck.tokenizer
    cfg = config or GeneratorConfig()
    cfg.tokens_per_frame, cfg.mouth_tokens = tokenizer.tokens_per_frame, tokenizer.cfg.levels
    cfg.codebook_size = tokenizer.cfg.codebook_size
    model = MotionTokenGenerator(cfg)

    def tokenize(clips):
        return [_TokenizedClip(c, tokenizer.encode(torch.from_numpy(c.features)[None])[0].numpy(), cfg.lookahead)
                for c in clips]

    train = tokenize(load_clips(dataset, split="train"))
    heldout_clips = load_clips(dataset, split="heldout", kinds=("real",))
    heldout = tokenize(heldout_clips)
    context = model.audio.receptive_field
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    level_weight = torch.ones(cfg.tokens_per_frame)
    level_weight[: cfg.mouth_tokens] = 2.0
    history: dict[str, tuple[list[int], list[float]]] = {"train cross-entropy": ([], []), "held-out cross-entropy": ([], [])}
    sync_history: dict[str, tuple[list[int], list[float]]] = {"held-out mouth r": ([], [])}
    start = time.time()
    bar = tqdm(range(1, steps + 1), desc="train generator", disable=not progress)
    last_eval: dict = {}
    for step in bar:
        model.train()
        mel, tokens, first = _batch(train, length, batch, context, cfg.lookahead, rng)
        logits = model(mel, tokens, first)
        ce = F.cross_entropy(logits.reshape(-1, cfg.codebook_size), tokens[:, 1:].reshape(-1),
                             reduction="none", label_smoothing=0.05).view(tokens.shape[0], -1, cfg.tokens_per_frame)
        loss = (ce * level_weight).mean() / level_weight.mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        history["train cross-entropy"][0].append(step)
        history["train cross-entropy"][1].append(loss.item())
        bar.set_postfix(ce=f"{loss.item():.3f}", r=f"{last_eval.get('r', float('nan')):.2f}")
        if heldout and (step % eval_every == 0 or step == steps):
            model.eval()
            with torch.no_grad():
                mel, tokens, first = _batch(heldout, length, 32, context, cfg.lookahead, np.random.default_rng(0))
                logits = model(mel, tokens, first)
                val = F.cross_entropy(logits.reshape(-1, cfg.codebook_size), tokens[:, 1:].reshape(-1)).item()
            history["held-out cross-entropy"][0].append(step)
            history["held-out cross-entropy"][1].append(val)
            last_eval = mouth_sync(MotionGenerator(FMLGCheckpoint(tokenizer, model), seed=seed), heldout_clips)
            sync_history["held-out mouth r"][0].append(step)
            sync_history["held-out mouth r"][1].append(last_eval["r"])
    model.eval()
    metrics = {
        "generator_steps": steps,
        "generator_minutes": round((time.time() - start) / 60, 1),
        "heldout_mouth_r": last_eval.get("r"),
        "heldout_loudness_r": last_eval.get("loudness_r"),
        "heldout_clips": {k: [round(v[0], 3), round(v[1], 3)] for k, v in last_eval.get("clips", {}).items()},
        "generator_parameters": sum(p.numel() for p in model.parameters()),
        "generator_command": command,
    }
    out = Path(checkpoint)
    save_checkpoint(out, tokenizer, model, info=metrics)
    plot_curves(out / "generator_loss.png", history, "motion-token generator: cross-entropy")
    if sync_history["held-out mouth r"][0]:
        plot_curves(out / "generator_mouth_r.png", sync_history, "held-out mouth-opening Pearson r", log=False)
    return metrics
