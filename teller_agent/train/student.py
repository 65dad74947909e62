"""``teller-agent train student``: distil Whisper's encoder features into the causal audio student.

Teacher: Whisper base (:mod:`teller_agent.audio.whisper`) on 200 ms slices,
its features cached per clip in the dataset folder. Student:
:class:`~teller_agent.audio.student.AudioStudent` with ``lookahead`` frames of
future audio, trained to regress the teacher's z-scored features (mean squared
error) from log-mel of the same audio. Its input audio is augmented on the fly
(noise, reverb, band limit, gain, pitch; never tempo, so frames stay aligned)
while its target stays the clean audio's teacher features, so it learns the
teacher's invariance to the channel rather than the corpus' microphones.

Corpus: every training-split clip of the dataset (real talking clips, speech
files without video, the synthetic eSpeak corpus); validation clips measure
the regression error and, with a ridge readout to the mouth opening
(:mod:`teller_agent.eval.readout`), how much lip-sync information the student
keeps against its teacher.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..audio.features import HOP_ALIGNED_LEAD, MELS_PER_FRAME, SAMPLES_PER_FRAME, log_mel
from ..audio.student import AudioStudent, StudentConfig, stack_mel
from ..audio.whisper import WHISPER_BASE, SliceConfig, WhisperFeatures, load_whisper_encoder
from ..config import FPS
from ..data.augment import AugmentConfig, augment
from .dataset import Clip, clip_features, features_key, load_clips
from .plots import plot_curves

#: Augmentation of the student's input audio (timing kept: no tempo change).
STUDENT_AUGMENT = AugmentConfig(tempo_prob=0.0, pitch_prob=0.4, pitch_semitones=(-3.0, 3.0), band_prob=0.3,
                                reverb_prob=0.3, rt60_range=(0.1, 0.6), wet_range=(0.1, 0.4), noise_prob=0.6,
                                snr_db_range=(5.0, 30.0), gain_db_range=(-18.0, 6.0))
#: Teacher slicing used for distillation (Teller, sec. 3.2: 200 ms slices; 1 s of past context, 200 ms after).
TEACHER_SLICES = SliceConfig(slice_frames=5, lookahead_frames=5, context_frames=25)
_SILENCE_MEL = -1.0


def teacher_key(slices: SliceConfig = TEACHER_SLICES, teacher: str = WHISPER_BASE) -> str:
    """Feature-cache name of the teacher's features."""
    return features_key(teacher, slices.to_dict())


def teacher_features(dataset: str | Path, clips: list[Clip], slices: SliceConfig = TEACHER_SLICES,
                     whisper_dir: str | Path | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Teacher features ``{clip id: (T, 512)}`` of ``clips``, computed once and cached in the dataset folder.

    Raises:
        WhisperWeightsError: the Whisper weights are not installed (the message gives the pip command).
    """
    feats = None
    out = {}
    for clip in tqdm(clips, desc="Whisper features", unit="clip", disable=not progress):
        key = teacher_key(slices)

        def compute(pcm: np.ndarray, n: int) -> np.ndarray:
            nonlocal feats
            if feats is None:
                feats = WhisperFeatures(load_whisper_encoder(whisper_dir, slices.layers), slices)
            return feats.clip(pcm, n)

        out[clip.id] = clip_features(dataset, clip, key, compute)
    return out


class _Item:
    def __init__(self, clip: Clip, target: np.ndarray):
        self.clip = clip
        self.target = target  # (T, D) teacher features
        self.mel = _mel(clip.audio, len(target))


def _mel(pcm: np.ndarray, frames: int) -> np.ndarray:
    """(4 frames, 80) hop-aligned log-mel of ``frames`` video frames (silence after the end)."""
    need = frames * 640
    pcm = np.pad(np.asarray(pcm, np.float32)[:need], (0, max(0, need - len(pcm))))
    return log_mel(pcm, HOP_ALIGNED_LEAD)[: MELS_PER_FRAME * frames]


def _batch(items: list[_Item], length: int, batch: int, context: int, lookahead: int, rng: np.random.Generator,
           augment_prob: float, student: AudioStudent) -> tuple[torch.Tensor, torch.Tensor]:
    """Mel windows (B, 4 (context + length + lookahead), 80) and z-scored targets (B, length, D)."""
    lengths = np.array([max(len(it.target) - lookahead, 1) for it in items], float)
    picks = rng.choice(len(items), size=batch, p=lengths / lengths.sum())
    span = context + length + lookahead
    mel = np.full((batch, MELS_PER_FRAME * span, 80), _SILENCE_MEL, np.float32)
    target = np.zeros((batch, length, items[0].target.shape[1]), np.float32)
    mask = np.zeros((batch, length), np.float32)
    for b, i in enumerate(picks):
        it = items[i]
        t = len(it.target)
        s = int(rng.integers(0, max(t - length, 0) + 1))
        n = min(length, t - s)
        lo, hi = max(s - context, 0), min(s + n + lookahead, t)
        if rng.random() < augment_prob:
            pcm = it.clip.audio[lo * 640 : hi * 640]
            pcm = augment(pcm, 16000, rng, STUDENT_AUGMENT).pcm
            seg = _mel(pcm, hi - lo)
        else:
            seg = it.mel[MELS_PER_FRAME * lo : MELS_PER_FRAME * hi]
        start = MELS_PER_FRAME * (context - (s - lo))
        mel[b, start : start + len(seg)] = seg
        target[b, :n] = it.target[s : s + n]
        mask[b, :n] = 1.0
    z = student.normalize(torch.from_numpy(target))
    return torch.from_numpy(mel), z, torch.from_numpy(mask)


def student_features(student: AudioStudent, pcm: np.ndarray, frames: int) -> np.ndarray:
    """(frames, D) float32 student features of 16 kHz audio (silence after its end), as streaming gives them."""
    mel = _mel(pcm, frames + student.lookahead)
    with torch.no_grad():
        return student(torch.from_numpy(mel)[None])[0, :frames].numpy()


def readout_sync(train: list[tuple[np.ndarray, Clip]], evaluate: list[tuple[np.ndarray, Clip]]) -> dict:
    """Lip-sync information in features: a ridge readout fitted on ``train`` (features, clip) to the true
    mouth opening, scored on ``evaluate`` as the mean over speakers of the frame-weighted Pearson r at lag 0."""
    from ..eval.metrics import pearson, speaker_mean
    from ..eval.readout import fit_readout
    from .evaluate import clip_mouth_opening

    def mouth(c: Clip) -> np.ndarray:
        return clip_mouth_opening(c, c.features)

    n = [min(len(f), c.num_frames) for f, c in train]
    ro = fit_readout([f[:k] for (f, _), k in zip(train, n)], [mouth(c)[:k] for (_, c), k in zip(train, n)],
                     weights=[c.valid[:k] for (_, c), k in zip(train, n)])
    rows = []
    for f, c in evaluate:
        k = min(len(f), c.num_frames)
        rows.append((pearson(ro(f[:k])[:, 0], mouth(c)[:k]), c.speaker, k))
    return {"r": speaker_mean(*zip(*rows)) if rows else float("nan"), "speakers": len({s for _, s, _ in rows})}


def save_mouth_readout(folder: Path, train: list[tuple[np.ndarray, Clip]]) -> Path:
    """Fit and write the linear-readout baseline of ``teller-agent eval lipsync``: a ridge regression of
    Whisper teacher features to the clips' mouth features (jaw and lips, ``MOUTH_DIM``), on the training
    speakers' real clips (tracked frames only)."""
    from ..eval.lipsync import READOUT_FILE
    from ..eval.readout import fit_readout
    from ..fmlg.tokenizer import MOUTH_DIM

    n = [min(len(f), c.num_frames) for f, c in train]
    ro = fit_readout([f[:k] for (f, _), k in zip(train, n)], [c.features[:k, :MOUTH_DIM] for (_, c), k in zip(train, n)],
                     weights=[c.valid[:k] for (_, c), k in zip(train, n)])
    return ro.save(folder / READOUT_FILE)


#: Ridge penalty of the lip readout (on standardised student features), and the penalties
#: ``teller-agent train readout`` compares on the validation speakers (:func:`fit_lip_readout`).
LIP_READOUT_RIDGE = 5e4
LIP_READOUT_RIDGES = (1e3, 1e4, 5e4, 1e5, 3e5)


def save_lip_readout(folder: Path, student: AudioStudent, train: list[Clip], ridge: float = LIP_READOUT_RIDGE,
                     features: list[np.ndarray] | None = None) -> tuple[Path, int]:
    """Fit and write the generator's lip readout (:data:`~teller_agent.fmlg.checkpoint.LIP_READOUT_FILE`): a
    ridge regression (penalty ``ridge``) from ``student``'s features of each frame to that frame's mouth
    expression deltas (``MOUTH_DIM``), on the real clips ``train`` of the training speakers (tracked frames
    only), anchored at silence (:func:`silence_features` maps to zero deltas, the rest face, and the penalty
    shrinks toward that closed mouth rather than toward the mean mouth of speech). ``features``: the clips'
    (T_i, D) student features when already computed. Returns (its path, the frames it was fitted on).

    Raises:
        ValueError: no clips.
    """
    from ..fmlg.checkpoint import LIP_READOUT_FILE

    if not train:
        raise ValueError("the lip readout needs real training clips")
    ro = _fit_lip_readout(student, train, ridge, features)
    return ro.save(Path(folder) / LIP_READOUT_FILE), int(sum(c.valid[: c.num_frames].sum() for c in train))


def _fit_lip_readout(student: AudioStudent, train: list[Clip], ridge: float, features: list[np.ndarray] | None):
    from ..eval.readout import fit_readout
    from ..fmlg.tokenizer import MOUTH_DIM

    feats = features if features is not None else [student_features(student, c.audio, c.num_frames) for c in train]
    return fit_readout(feats, [c.features[: c.num_frames, :MOUTH_DIM] for c in train], lam=ridge,
                       weights=[c.valid[: c.num_frames] for c in train], anchor=silence_features(student))


def silence_features(student: AudioStudent, seconds: float = 2.0) -> np.ndarray:
    """(D,) float32 the student's features of digital silence: the mean over the frames after its first
    second (by then the causal receptive field holds only silence)."""
    frames = int(round(seconds * FPS))
    return student_features(student, np.zeros(frames * SAMPLES_PER_FRAME, np.float32), frames)[FPS:].mean(0)


def fit_lip_readout(dataset: str | Path, checkpoint: str | Path, command: str | None = None,
                    ridges: tuple[float, ...] = LIP_READOUT_RIDGES) -> dict:
    """(Re)fit the lip readout of the audio student in ``checkpoint`` on ``dataset``'s real training clips
    (those whose audio/video sync was established) with the ridge penalty :data:`LIP_READOUT_RIDGE`, and write
    it there. When the checkpoint also holds a generator and the dataset has validation clips, measure on them:
    lip sync at the default weight for each penalty in ``ridges``
    (:func:`~teller_agent.train.evaluate.lip_readout_ridge_study`), then, after calibrating the blend's amplitude
    at the default weight (:func:`~teller_agent.train.evaluate.calibrate_lip_readout_gain`), the blend for each
    weight (:func:`~teller_agent.train.evaluate.lip_readout_study`), and last the lips' robustness to babble for
    the generator alone and the shipped blend (:func:`~teller_agent.train.evaluate.noise_robustness`, other
    voices from the training clips); all go into the checkpoint's info.

    Returns ``{"path", "clips", "frames", "speakers", "ridge"}`` plus ``lip_readout_ridge_study``,
    ``lip_readout_study``, ``lip_readout_gain`` and ``noise_robustness`` when measured.

    Raises:
        CheckpointError: no student in ``checkpoint``; TellerError: the dataset has no such clips.
    """
    import json

    from ..errors import TellerError
    from ..fmlg.checkpoint import load_student
    from .evaluate import calibrate_lip_readout_gain, lip_readout_ridge_study, lip_readout_study, shipped_noise_robustness

    student = load_student(checkpoint)
    train = load_clips(dataset, split="train", kinds=("real",), usable_only=True)
    if not train:
        raise TellerError(f"dataset {dataset} has no real training clips to fit the lip readout on")
    features = [student_features(student, c.audio, c.num_frames) for c in train]
    path, frames = save_lip_readout(Path(checkpoint), student, train, features=features)
    info = {"path": str(path), "clips": len(train), "frames": frames, "speakers": len({c.speaker for c in train}),
            "ridge": LIP_READOUT_RIDGE}
    config_path = Path(checkpoint) / "config.json"
    validation = load_clips(dataset, split="validation", kinds=("real",))
    if validation and json.loads(config_path.read_text()).get("generator"):
        from ..config import DEFAULT_LIP_READOUT
        from ..fmlg.checkpoint import record_info

        readouts = {ridge: _fit_lip_readout(student, train, ridge, features) for ridge in ridges}
        ridge_study = lip_readout_ridge_study(checkpoint, validation, readouts)
        gain = calibrate_lip_readout_gain(checkpoint, validation)
        study = lip_readout_study(checkpoint, validation)
        noise = shipped_noise_robustness(checkpoint, validation, [c.audio for c in train])
        record_info(checkpoint, {"lip_readout_fit": {k: info[k] for k in ("clips", "frames", "speakers", "ridge")},
                                 "lip_readout_ridge_study": ridge_study, "lip_readout_study": study,
                                 "lip_readout_weight": DEFAULT_LIP_READOUT, "lip_readout_command": command,
                                 "noise_robustness": noise})
        info.update(lip_readout_ridge_study=ridge_study, lip_readout_study=study, noise_robustness=noise, **gain)
    return info


def train_student(
    dataset: str | Path,
    checkpoint: str | Path,
    lookahead: int = 1,
    steps: int = 4000,
    batch: int = 16,
    length: int = 100,
    lr: float = 2e-3,
    seed: int = 0,
    hidden: int = 256,
    augment_prob: float = 0.5,
    threads: int | None = 1,
    whisper_dir: str | Path | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict:
    """Distil the teacher into a student with ``lookahead`` frames of look-ahead; writes
    ``audio_student.safetensors`` (and its config and metrics) into ``checkpoint`` and draws
    ``student_loss.png`` there. Returns the metrics (validation feature error and readout r of student and
    teacher).

    Raises:
        TellerError: the dataset is missing or has no training clips; WhisperWeightsError: no Whisper weights.
    """
    from ..errors import TellerError
    from ..fmlg.checkpoint import save_student

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_clips = load_clips(dataset, split="train", kinds=("real", "synthetic", "speech"), usable_only=True)
    val_clips = load_clips(dataset, split="validation", kinds=("real",))
    if not train_clips:
        raise TellerError(f"dataset {dataset} has no training clips")
    teacher = teacher_features(dataset, train_clips + val_clips, whisper_dir=whisper_dir, progress=progress)
    cfg = StudentConfig(dim=next(iter(teacher.values())).shape[1], hidden=hidden, lookahead=lookahead,
                        teacher=WHISPER_BASE, teacher_slices=TEACHER_SLICES.to_dict())
    student = AudioStudent(cfg)
    allf = np.concatenate([teacher[c.id] for c in train_clips])
    student.mean.copy_(torch.from_numpy(allf.mean(0)))
    student.std.copy_(torch.from_numpy(allf.std(0) + 1e-3))
    del allf
    items = [_Item(c, teacher[c.id]) for c in train_clips if len(teacher[c.id]) > lookahead]
    context = student.net.receptive_field - 1
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    history: dict[str, tuple[list[int], list[float]]] = {"train MSE (z-scored)": ([], []), "validation MSE": ([], [])}
    start = time.time()

    def validation_mse() -> float:
        student.eval()
        errs, n = 0.0, 0
        with torch.no_grad():
            for c in val_clips:
                y = student_features(student, c.audio, len(teacher[c.id]))
                d = student.normalize(torch.from_numpy(y)) - student.normalize(torch.from_numpy(teacher[c.id]))
                errs += float((d ** 2).mean(1).sum())
                n += len(y)
        student.train()
        return errs / max(n, 1)

    bar = tqdm(range(1, steps + 1), desc="train student", disable=not progress)
    val = float("nan")
    for step in bar:
        mel, z, mask = _batch(items, length, batch, context, lookahead, rng, augment_prob, student)
        pred = student.net(stack_mel(mel))[:, context + lookahead :]
        loss = (((pred - z) ** 2).mean(-1) * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        sched.step()
        history["train MSE (z-scored)"][0].append(step)
        history["train MSE (z-scored)"][1].append(loss.item())
        if val_clips and (step % max(steps // 8, 1) == 0 or step == steps):
            val = validation_mse()
            history["validation MSE"][0].append(step)
            history["validation MSE"][1].append(val)
        bar.set_postfix(mse=f"{loss.item():.3f}", val=f"{val:.3f}")
    student.eval()
    minutes = round((time.time() - start) / 60, 1)
    metrics = {
        "student_lookahead_ms": 40 * lookahead,
        "student_steps": steps,
        "student_minutes": minutes,
        "student_parameters": sum(p.numel() for p in student.parameters()),
        "student_train_minutes_of_audio": round(sum(len(c.audio) for c in train_clips) / 16000 / 60, 1),
        "student_validation_mse": round(validation_mse(), 4) if val_clips else None,
        "student_command": command,
    }
    real_train = [c for c in train_clips if c.kind == "real"]
    if val_clips and real_train:
        t_tr = [(teacher[c.id], c) for c in real_train]
        t_va = [(teacher[c.id], c) for c in val_clips]
        s_tr = [(student_features(student, c.audio, len(teacher[c.id])), c) for c in real_train]
        s_va = [(student_features(student, c.audio, len(teacher[c.id])), c) for c in val_clips]
        metrics["validation_readout_r_teacher"] = round(readout_sync(t_tr, t_va)["r"], 4)
        metrics["validation_readout_r_student"] = round(readout_sync(s_tr, s_va)["r"], 4)
    out = Path(checkpoint)
    save_student(out, student, info=metrics)
    if real_train:
        save_mouth_readout(out, [(teacher[c.id], c) for c in real_train])
        save_lip_readout(out, student, real_train)
    plot_curves(out / "student_loss.png", history, "audio student: distillation error (z-scored Whisper features)")
    return metrics
