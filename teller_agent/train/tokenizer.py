"""``teller-agent train tokenizer``: fit the RVQ motion tokenizer on a dataset folder."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import DEFAULT_FACE_SCALE
from ..fmlg.checkpoint import save_checkpoint
from ..fmlg.tokenizer import FEATURE_DIM, MOUTH_DIM, HEAD_DIM, MotionTokenizer, TokenizerConfig
from .dataset import Clip, load_clips, sample_clips
from .plots import plot_curves

#: Face width in pixels at 512x512 with the default framing.
FACE_WIDTH_PX_512 = DEFAULT_FACE_SCALE * 512


def _windows(clips: list[Clip], length: int, batch: int, rng: np.random.Generator) -> torch.Tensor:
    picks = sample_clips([c.num_frames for c in clips], [c.kind for c in clips], batch, rng)
    out = np.zeros((batch, length, FEATURE_DIM), np.float32)
    for b, i in enumerate(picks):
        f = clips[i].features
        s = rng.integers(0, max(len(f) - length, 0) + 1)
        w = f[s : s + length]
        out[b, : len(w)] = w
        out[b, len(w) :] = w[-1]
    return torch.from_numpy(out)


def reconstruction_report(tokenizer: MotionTokenizer, clips: list[Clip]) -> list[dict]:
    """Error of decoding from the first k RVQ levels, for k = 1..L, on ``clips``.

    Returns one dict per k: ``levels``, ``mouth_fw`` / ``head_fw`` (mean absolute
    keypoint error in face widths), ``mouth_px`` / ``head_px`` (the same in pixels
    at 512x512), ``pose_deg`` (mean absolute rotation error, degrees).
    """
    tokenizer.eval()
    rows = []
    for k in range(1, tokenizer.cfg.levels + 1):
        errs = {"mouth": [], "head": [], "pose": []}
        for c in clips:
            x = torch.from_numpy(c.features)[None]
            rec = tokenizer.decode(tokenizer.encode(x), levels=k)[0].numpy()
            d = np.abs(rec - c.features)
            errs["mouth"].append(d[:, :MOUTH_DIM].reshape(-1, 2).mean())
            errs["head"].append(d[:, MOUTH_DIM : MOUTH_DIM + HEAD_DIM - 6].reshape(-1, 2).mean())
            errs["pose"].append(d[:, -6:-3].mean())
        mouth, head = float(np.mean(errs["mouth"])), float(np.mean(errs["head"]))
        rows.append({"levels": k, "mouth_fw": mouth, "head_fw": head, "mouth_px": mouth * FACE_WIDTH_PX_512,
                     "head_px": head * FACE_WIDTH_PX_512, "pose_deg": float(np.mean(errs["pose"]))})
    return rows


def train_tokenizer(
    dataset: str | Path,
    out: str | Path,
    steps: int = 3000,
    batch: int = 32,
    length: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    config: TokenizerConfig | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict:
    """Train the tokenizer; writes ``tokenizer.safetensors`` + ``config.json`` into ``out`` and
    ``tokenizer_loss.png`` beside them. Returns the metrics (also stored in config.json)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = load_clips(dataset, split="train")
    validation = load_clips(dataset, split="validation", kinds=("real",))
    tokenizer = MotionTokenizer(config)
    tokenizer.set_stats(np.concatenate([c.features for c in train]))
    opt = torch.optim.AdamW(tokenizer.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    weights = torch.ones(FEATURE_DIM)
    weights[:MOUTH_DIM] = 2.0  # lips matter most for lip sync
    history: dict[str, tuple[list[int], list[float]]] = {"train reconstruction": ([], []), "train commitment": ([], [])}
    start = time.time()
    bar = tqdm(range(steps), desc="train tokenizer", disable=not progress)
    for step in bar:
        tokenizer.train()
        x = _windows(train, length, batch, rng)
        recon, _, commit = tokenizer(x)
        rec_loss = ((recon - tokenizer.normalize(x)) ** 2 * weights).mean()
        loss = rec_loss + commit
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tokenizer.parameters(), 1.0)
        opt.step()
        sched.step()
        history["train reconstruction"][0].append(step)
        history["train reconstruction"][1].append(rec_loss.item())
        history["train commitment"][0].append(step)
        history["train commitment"][1].append(max(commit.item(), 1e-6))
        bar.set_postfix(rec=f"{rec_loss.item():.4f}")
    report = reconstruction_report(tokenizer, validation or train[:5])
    metrics = {"tokenizer_steps": steps, "tokenizer_minutes": round((time.time() - start) / 60, 1),
               "tokenizer_reconstruction": report, "tokenizer_eval_clips": "validation" if validation else "train",
               "tokenizer_command": command}
    out = Path(out)
    save_checkpoint(out, tokenizer, info=metrics)
    plot_curves(out / "tokenizer_loss.png", history, "motion tokenizer: normalised reconstruction MSE")
    return metrics
