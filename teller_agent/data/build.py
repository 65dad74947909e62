"""``teller-agent dataset build``: real talking clips + synthetic speech -> a versioned dataset folder.

See :mod:`teller_agent.train.dataset` for the layout. Real clips are tracked
and fitted with :func:`~teller_agent.data.extract.extract_clip`; clips that
fail (no face, no speech) or track badly are skipped and listed in the
manifest with the reason. Held-out clips are never trained on.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..config import FPS
from ..errors import TellerError
from ..train.dataset import DATASET_VERSION
from ..utils.atomic import atomic_path
from .extract import extract_clip, load_record, save_record

#: Real clips held out for evaluation by default (stems in ../shared/data/talking): different
#: sources, sizes and speakers, all frontal with clean speech.
DEFAULT_HELDOUT = (
    "deep_avsr__00022",
    "Talking-Face_PC-AVS__00473",
    "EDTalk__uncrop_Obama",
    "styletalk__andrew_clip_2",
    "LivePortrait__d20",
    "video-retalking__4",
)
#: Real clips whose tracking must be this good to be used.
MIN_VALID_FRACTION = 0.8


def _licenses(real: Path) -> dict[str, str]:
    manifest = real.parent / "manifest.tsv"
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as f:
        return {Path(row["file"]).stem: row.get("source_license", "") for row in csv.DictReader(f, delimiter="\t")}


def _existing(path: Path) -> dict | None:
    """A record already extracted into the dataset (a rebuild resumes instead of re-tracking)."""
    try:
        return load_record(path) if path.is_file() else None
    except TellerError:
        return None


def _generic_portrait():
    """Rest keypoints of the bundled default portrait: the reference face of synthetic clips."""
    from ..face import prepare_avatar
    from ..motion.space import FACE68

    avatar = prepare_avatar(None)
    return FACE68.lift(avatar.landmarks, avatar.size)


def build_dataset(
    out: str | Path,
    real: str | Path | None = None,
    synthetic: int = 0,
    heldout: list[str] | None = None,
    seed: int = 0,
    progress: bool = True,
    command: str | None = None,
) -> dict:
    """Build a dataset folder and return its manifest (also written to ``out/manifest.json``).

    Args:
        out: folder to create. Real-clip records already in it are reused (a rebuild resumes);
            synthetic clips are regenerated.
        real: folder of ``*.mp4`` talking clips (a silent clip uses the ``.wav`` of the same stem).
        synthetic: number of synthetic eSpeak NG clips (needs ``apt-get install espeak-ng``).
        heldout: stems of real clips to hold out (default :data:`DEFAULT_HELDOUT`).
        seed: seeds the synthetic corpus.
    """
    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    held = set(DEFAULT_HELDOUT if heldout is None else heldout)
    entries: list[dict] = []
    skipped: list[dict] = []
    if real is not None:
        real = Path(real)
        if not real.is_dir():
            raise TellerError(f"real clip folder {real} does not exist")
        licenses = _licenses(real)
        videos = sorted(real.glob("*.mp4"))
        for path in tqdm(videos, desc="real clips", unit="clip", disable=not progress):
            target = out / "clips" / f"{path.stem}.npz"
            try:
                rec = _existing(target) or extract_clip(path)
            except TellerError as exc:
                skipped.append({"file": path.name, "reason": str(exc)})
                continue
            valid = float(np.mean(rec["valid"]))
            if valid < MIN_VALID_FRACTION:
                skipped.append({"file": path.name, "reason": f"face tracked in only {valid:.0%} of frames"})
                continue
            if not target.exists():
                save_record(rec, target)
            entries.append({
                "id": path.stem, "file": f"clips/{path.stem}.npz", "kind": "real",
                "split": "heldout" if path.stem in held else "train",
                "frames": len(rec["motion"]), "seconds": len(rec["motion"]) / FPS,
                "source": str(path), "license": licenses.get(path.stem, "unknown"),
                "valid_fraction": round(valid, 3), "reproj_error_px": round(float(rec["reproj_error_px"]), 3),
            })
    if synthetic:
        from .synthetic import make_corpus

        portrait = _generic_portrait()
        for i, clip in enumerate(make_corpus(synthetic, seed=seed, progress=progress)):
            cid = f"synthetic_{seed}_{i:05d}"
            rec = {"motion": clip.motion, "portrait": portrait, "audio": clip.audio, "sample_rate": clip.sample_rate,
                   "valid": np.ones(len(clip.motion), bool), "fps": FPS, "reproj_error_px": 0.0,
                   "source": f"espeak-ng {clip.voice}: {clip.text}"}
            save_record(rec, out / "clips" / f"{cid}.npz")
            entries.append({"id": cid, "file": f"clips/{cid}.npz", "kind": "synthetic", "split": "train",
                            "frames": len(clip.motion), "seconds": len(clip.motion) / FPS,
                            "source": f"espeak-ng voice {clip.voice} ({clip.language})",
                            "license": "generated (eSpeak NG, GPL-3.0 program output)"})
    manifest = {"version": DATASET_VERSION, "name": out.name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "fps": FPS, "sample_rate": 16000, "clips": entries, "skipped": skipped,
                "heldout": sorted(held), "command": command}
    with atomic_path(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return manifest
