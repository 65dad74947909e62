"""Versioned FMLG dataset folders: ``manifest.json`` + one record per clip + cached audio features.

Layout::

    <folder>/manifest.json                 {"version": 2, "name", "created", "fps", "sample_rate", "clips": [...]}
    <folder>/clips/<id>.npz                a motion record (teller_agent.data.extract.save_record), or audio only
    <folder>/features/<encoder>/<id>.npy   per-frame audio features of the clip's (aligned) audio, float16

Each manifest entry: ``id``, ``file``, ``kind`` (``"real"``, ``"synthetic"``, or ``"speech"``: audio
without motion, for the audio student only), ``split`` (``"train"``, ``"validation"``, ``"heldout"``;
by speaker, see :mod:`teller_agent.data.speakers`), ``speaker``, ``language``, ``frames``, ``seconds``,
``source``, ``license``; real clips also ``lips``, quality figures, ``av_offset_frames`` (the measured
audio/video offset that loading corrects, :mod:`teller_agent.data.sync`) and ``sync_usable``.

Features are computed once per clip and encoder and cached (:func:`clip_features`): the Whisper
teacher's (``whisper-base-<slices>``) for the student's distillation and the teacher-fed generator, and
a student's (``student-<hash>``) for the generator trained on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio.encoder import clip_mel
from ..audio.features import SAMPLES_PER_FRAME
from ..data.extract import load_record
from ..data.sync import align_clip
from ..errors import TellerError
from ..fmlg.tokenizer import motion_to_features
from ..motion.latent import PortraitKeypoints
from ..utils.atomic import atomic_path

DATASET_VERSION = 2


@dataclass
class Clip:
    """One clip in memory, its audio and motion aligned (the measured offset is already corrected).

    Attributes:
        features: (T, FEATURE_DIM) float32 motion features; (0, FEATURE_DIM) for ``kind == "speech"``.
        audio: (N,) float32 at 16 kHz; audio frame ``t`` (samples ``[640 t, 640 (t + 1))``) goes with
            motion frame ``t``.
        valid: (T,) bool tracked frames (all True for synthetic clips).
        landmarks: (T, 68, 2) pixels of the source video, NaN where untracked; empty for synthetic clips.
    """

    id: str
    kind: str
    split: str
    features: np.ndarray
    audio: np.ndarray
    portrait: PortraitKeypoints | None
    landmarks: np.ndarray
    speaker: str = ""
    language: str = "unknown"
    valid: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    offset: int = 0

    @property
    def num_frames(self) -> int:
        """Motion frames (for speech clips: whole audio frames)."""
        return len(self.features) if self.kind != "speech" else len(self.audio) // SAMPLES_PER_FRAME

    def mel(self, lookahead: int, lead: int = 0) -> np.ndarray:
        """(4 (T + lookahead), 80) log-mel of the clip's audio (``lead``: see :func:`clip_mel`)."""
        return clip_mel(self.audio, self.num_frames, lookahead, lead)


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a dataset folder; TellerError names a missing/corrupt/other-version one."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise TellerError(f"no dataset at {folder} (manifest.json missing); build one with `teller-agent dataset build`")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise TellerError(f"{path} is corrupt ({exc}); rebuild the dataset") from exc
    if manifest.get("version") != DATASET_VERSION:
        raise TellerError(f"{path} is dataset version {manifest.get('version')}; this teller-agent reads "
                          f"version {DATASET_VERSION}; rebuild it with `teller-agent dataset build`")
    return manifest


def _load_entry(folder: Path, entry: dict) -> Clip:
    if entry["kind"] == "speech":
        with np.load(folder / entry["file"]) as f:
            audio = f["audio"].astype(np.float32)
        return Clip(entry["id"], "speech", entry["split"], np.zeros((0, 0), np.float32), audio, None,
                    np.zeros((0, 68, 2), np.float32), entry.get("speaker", ""), entry.get("language", "unknown"))
    rec = load_record(folder / entry["file"])
    feats = motion_to_features(rec["motion"])
    audio = np.asarray(rec["audio"], np.float32)
    valid = np.asarray(rec["valid"], bool)
    landmarks = rec["landmarks"]
    offset = int(entry.get("av_offset_frames", 0))
    audio, feats, valid, landmarks = align_clip(offset, audio, feats, valid, landmarks)
    return Clip(entry["id"], entry["kind"], entry["split"], feats, audio, rec["portrait"], landmarks,
                entry.get("speaker", ""), entry.get("language", "unknown"), valid, offset)


def load_clips(folder: str | Path, split: str | None = None, kinds: tuple[str, ...] = ("real", "synthetic"),
               usable_only: bool = False) -> list[Clip]:
    """Load the clips of a dataset folder.

    Args:
        split: one split only (None: all).
        kinds: which kinds (``"real"``, ``"synthetic"``, ``"speech"``).
        usable_only: skip real clips whose audio/video sync could not be established (``sync_usable`` false:
            dubbed or occluded speech); training uses this, evaluation does not.
    """
    folder = Path(folder)
    clips = []
    for entry in read_manifest(folder)["clips"]:
        if (split is not None and entry["split"] != split) or entry["kind"] not in kinds:
            continue
        if usable_only and not entry.get("sync_usable", True):
            continue
        clips.append(_load_entry(folder, entry))
    return clips


def features_key(name: str, config: dict) -> str:
    """Cache folder name of an encoder: ``name`` plus a short hash of its configuration."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    return f"{name}-{digest}"


def clip_features(folder: str | Path, clip: Clip, key: str, compute: Callable[[np.ndarray, int], np.ndarray],
                  frames: int | None = None) -> np.ndarray:
    """A clip's per-frame audio features, computed once and cached in ``<folder>/features/<key>/``.

    Args:
        folder: the dataset folder.
        clip: the clip (its aligned audio is what is encoded).
        key: the encoder's cache name (:func:`features_key`).
        compute: ``(pcm, num_frames) -> (num_frames, D)`` float32.
        frames: frames wanted (default ``clip.num_frames``); the cache holds at least that many.

    Returns:
        (frames, D) float32.
    """
    frames = clip.num_frames if frames is None else frames
    path = Path(folder) / "features" / key / f"{clip.id}.o{clip.offset}.npy"
    if path.is_file():
        cached = np.load(path)
        if len(cached) >= frames:
            return cached[:frames].astype(np.float32)
    feats = np.asarray(compute(clip.audio, frames), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, feats.astype(np.float16))
    return feats


def sample_clips(lengths: list[int], kinds: list[str], batch: int, rng: np.random.Generator,
                 real_fraction: float = 0.5) -> np.ndarray:
    """Indices of ``batch`` clips to draw windows from: a clip's chance grows with its length,
    and real clips get ``real_fraction`` of the draws whatever the synthetic corpus's size
    (when both kinds are present)."""
    lengths_a = np.maximum(np.asarray(lengths, float), 1.0)
    real = np.array([k == "real" for k in kinds])
    p = lengths_a.copy()
    if real.any() and (~real).any():
        p[real] *= real_fraction / lengths_a[real].sum()
        p[~real] *= (1 - real_fraction) / lengths_a[~real].sum()
    return rng.choice(len(lengths_a), size=batch, p=p / p.sum())
