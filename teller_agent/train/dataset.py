"""Versioned FMLG dataset folders: ``manifest.json`` + one motion record per clip.

Layout::

    <folder>/manifest.json        {"version": 1, "name", "created", "fps", "sample_rate", "clips": [...]}
    <folder>/clips/<id>.npz       a record written by teller_agent.data.extract.save_record

Each manifest entry: ``id``, ``file``, ``kind`` ("real" | "synthetic"),
``split`` ("train" | "heldout"), ``frames``, ``seconds``, ``source``,
``license``, and quality figures for real clips.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.encoder import clip_mel
from ..data.extract import load_record
from ..errors import TellerError
from ..fmlg.tokenizer import motion_to_features
from ..motion.latent import PortraitKeypoints

DATASET_VERSION = 1


@dataclass
class Clip:
    """One clip in memory: model features, audio and log-mel ready for training."""

    id: str
    kind: str
    split: str
    features: np.ndarray  # (T, FEATURE_DIM) float32
    audio: np.ndarray  # (N,) float32 at 16 kHz
    portrait: PortraitKeypoints
    landmarks: np.ndarray  # (T, 68, 2) pixels of the source video, NaN where untracked; empty for synthetic

    @property
    def num_frames(self) -> int:
        return len(self.features)

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
                          f"version {DATASET_VERSION}; rebuild it")
    return manifest


def load_clips(folder: str | Path, split: str | None = None, kinds: tuple[str, ...] = ("real", "synthetic")) -> list[Clip]:
    """Load the clips of a dataset folder (optionally one split only)."""
    folder = Path(folder)
    clips = []
    for entry in read_manifest(folder)["clips"]:
        if (split is not None and entry["split"] != split) or entry["kind"] not in kinds:
            continue
        rec = load_record(folder / entry["file"])
        clips.append(Clip(entry["id"], entry["kind"], entry["split"], motion_to_features(rec["motion"]),
                          np.asarray(rec["audio"], np.float32), rec["portrait"], rec["landmarks"]))
    return clips


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
