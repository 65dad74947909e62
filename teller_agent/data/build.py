"""``teller-agent dataset build``: real talking clips + speech + synthetic speech -> a versioned dataset folder.

See :mod:`teller_agent.train.dataset` for the layout. Real clips are tracked
(dlib, with MediaPipe Face Mesh lips: :func:`~teller_agent.data.extract.extract_clip`)
and fitted; every real clip carries its speaker, language and split from the
speaker table (:mod:`teller_agent.data.speakers`: train / validation / heldout,
speaker-disjoint) and its measured audio/video offset (:mod:`teller_agent.data.sync`).
Clips that fail (no face, no speech) or track badly are skipped and listed in the
manifest with the reason. Speech files without video (``--speech``) only feed the
audio student's distillation corpus. Held-out and validation clips are never
trained on.
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

#: Real clips whose tracking must be this good to be used.
MIN_VALID_FRACTION = 0.8
#: Where real clips' lip points come from.
LIPS = "mediapipe"
#: Audio files taken from a ``--speech`` folder.
SPEECH_SUFFIXES = (".wav", ".mp3", ".m4a", ".flac", ".ogg")


def _manifest_rows(folder: Path) -> dict[str, dict]:
    """Rows of the shared data's ``manifest.tsv`` (beside ``folder``), keyed by ``<subfolder>/<stem>``."""
    manifest = folder.parent / "manifest.tsv"
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as f:
        return {str(Path(row["file"]).with_suffix("")): row for row in csv.DictReader(f, delimiter="\t")}


def _existing(path: Path) -> dict | None:
    """A record already extracted into the dataset with the current lips (a rebuild resumes instead of
    re-tracking)."""
    try:
        rec = load_record(path) if path.is_file() else None
    except TellerError:
        return None
    return rec if rec is not None and rec.get("lips") == LIPS else None


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
    speech: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    command: str | None = None,
    speakers: dict | None = None,
) -> dict:
    """Build a dataset folder and return its manifest (also written to ``out/manifest.json``).

    Args:
        out: folder to create. Real-clip records already in it are reused (a rebuild resumes);
            synthetic clips are regenerated.
        real: folder of ``*.mp4`` talking clips (a silent clip uses the ``.wav`` of the same stem); every
            clip must have a row in the speaker table.
        synthetic: number of synthetic eSpeak NG clips (needs ``apt-get install espeak-ng``).
        speech: folder of speech audio files without video (audio student corpus only).
        seed: seeds the synthetic corpus.
        speakers: the speaker table (default :func:`~teller_agent.data.speakers.load_speakers`).

    Raises:
        TellerError: a folder is missing, or a real clip has no row in the speaker table.
    """
    from .speakers import load_speakers
    from .sync import load_offsets

    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    speakers = load_speakers() if speakers is None else speakers
    offsets = load_offsets()
    entries: list[dict] = []
    skipped: list[dict] = []
    if real is not None:
        real = Path(real)
        if not real.is_dir():
            raise TellerError(f"real clip folder {real} does not exist")
        rows = _manifest_rows(real)
        videos = sorted(real.glob("*.mp4"))
        unknown = [p.stem for p in videos if p.stem not in speakers]
        if unknown:
            raise TellerError(f"{len(unknown)} clips have no row in the speaker table (e.g. {unknown[0]}); add them to "
                              "teller_agent/data/speakers.tsv and run `python -m teller_agent.data.speakers --check`")
        for path in tqdm(videos, desc="real clips", unit="clip", disable=not progress):
            target = out / "clips" / f"{path.stem}.npz"
            rec = _existing(target)
            if rec is None:
                try:
                    rec = extract_clip(path, lips=LIPS)
                except TellerError as exc:
                    skipped.append({"file": path.name, "reason": str(exc)})
                    continue
                save_record(rec, target)
            valid = float(np.mean(rec["valid"]))
            if valid < MIN_VALID_FRACTION:
                skipped.append({"file": path.name, "reason": f"face tracked in only {valid:.0%} of frames"})
                continue
            who = speakers[path.stem]
            sync = offsets.get(path.stem)
            entries.append({
                "id": path.stem, "file": f"clips/{path.stem}.npz", "kind": "real", "split": who.split,
                "speaker": who.speaker, "language": who.language,
                "frames": len(rec["motion"]), "seconds": len(rec["motion"]) / FPS,
                "source": str(path), "license": rows.get(f"talking/{path.stem}", {}).get("source_license", "unknown"),
                "valid_fraction": round(valid, 3), "reproj_error_px": round(float(rec["reproj_error_px"]), 3),
                "lips": rec["lips"],
                "av_offset_frames": sync.correction if sync is not None else 0,
                "sync_usable": sync.usable if sync is not None else True,
            })
    if speech is not None:
        from ..media import load_audio

        speech = Path(speech)
        if not speech.is_dir():
            raise TellerError(f"speech folder {speech} does not exist")
        rows = _manifest_rows(speech)
        for path in sorted(p for p in speech.iterdir() if p.suffix.lower() in SPEECH_SUFFIXES):
            try:
                pcm, sr = load_audio(path, 16000)
            except TellerError as exc:
                skipped.append({"file": path.name, "reason": str(exc)})
                continue
            cid = f"speech__{path.stem}"
            with atomic_path(out / "clips" / f"{cid}.npz") as tmp, open(tmp, "wb") as f:
                np.savez(f, audio=np.asarray(pcm, np.float32), sample_rate=np.int64(sr))
            row = rows.get(f"speech/{path.stem}", {})
            entries.append({"id": cid, "file": f"clips/{cid}.npz", "kind": "speech", "split": "train",
                            "speaker": cid, "language": row.get("language", "unknown"),
                            "frames": int(len(pcm) / 640), "seconds": len(pcm) / sr, "source": str(path),
                            "license": row.get("source_license", "unknown")})
    if synthetic:
        from .synthetic import make_corpus

        portrait = _generic_portrait()
        for i, clip in enumerate(make_corpus(synthetic, seed=seed, progress=progress)):
            cid = f"synthetic_{seed}_{i:05d}"
            rec = {"motion": clip.motion, "portrait": portrait, "audio": clip.audio, "sample_rate": clip.sample_rate,
                   "valid": np.ones(len(clip.motion), bool), "fps": FPS, "reproj_error_px": 0.0,
                   "source": f"espeak-ng {clip.voice}: {clip.text}", "lips": "synthetic"}
            save_record(rec, out / "clips" / f"{cid}.npz")
            entries.append({"id": cid, "file": f"clips/{cid}.npz", "kind": "synthetic", "split": "train",
                            "speaker": f"espeak-{clip.voice}", "language": clip.language,
                            "frames": len(clip.motion), "seconds": len(clip.motion) / FPS,
                            "source": f"espeak-ng voice {clip.voice} ({clip.language})",
                            "license": "generated (eSpeak NG, GPL-3.0 program output)"})
    manifest = {"version": DATASET_VERSION, "name": out.name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "fps": FPS, "sample_rate": 16000, "clips": entries, "skipped": skipped, "command": command}
    with atomic_path(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return manifest
