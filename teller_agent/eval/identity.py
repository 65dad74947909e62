"""Identity kept: how far the face in rendered frames drifts from the person in the photo.

For each portrait, real speech drives the generator and the renderer; the dlib face descriptor
(:mod:`teller_agent.face.identity`) of every ``every``-th rendered frame is compared with the
descriptor of the original photo (Euclidean distance; dlib's same-person threshold is 0.6). This
is the CPU stand-in for the CSIM figure (ArcFace cosine similarity) talking-head papers report.

Reference (:func:`real_video_identity`): the same distance for real people talking, each clip's
frames against its own first frame, so the figures say how much a face that moves like a real
one is bound to move the descriptor (the lip-sync evaluation's "real" row plays the same part).
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np

from ..config import FPS, SHARED_DATA_DIR, TellerSettings

#: Image files taken as portraits.
PORTRAIT_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
#: Audio files taken as speech.
SPEECH_SUFFIXES = (".wav", ".mp3", ".m4a", ".flac", ".ogg")


def default_portraits_dir() -> Path:
    """``../shared/data/portraits`` beside the repository."""
    return SHARED_DATA_DIR / "portraits"


def default_speech_dir() -> Path:
    """``../shared/data/speech`` beside the repository."""
    return SHARED_DATA_DIR / "speech"


def list_media(folder: Path, suffixes: tuple[str, ...], limit: int | None = None) -> list[Path]:
    """Files of ``folder`` with one of ``suffixes``, sorted by name, at most ``limit``.

    Raises:
        FileNotFoundError: the folder is missing (names it).
    """
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder} is not a folder (the shared data sits beside the repository)")
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in suffixes)
    return files[:limit] if limit else files


def evaluate_identity(portraits: list[Path], speech: list[Path], settings: TellerSettings | None = None,
                      seconds: float = 3.0, every: int = 3, progress: bool = True,
                      mouth_interior: bool = True) -> dict:
    """Descriptor distance of rendered frames to each portrait's photo.

    Args:
        portraits: photos; portrait ``i`` speaks ``speech[i % len(speech)]`` (its first ``seconds``).
        settings: framing, model and seed (default: ``TellerSettings()``).
        every: measure every ``every``-th frame (25 fps).
        mouth_interior: False renders without the painted mouth interior (the warp's own pixels
            between the lips), to measure what the interior itself costs in identity.

    Returns:
        ``{"portraits": [{"name", "speech", "frames", "mean", "worst", "lost"}],
        "mean": mean of the per-portrait means, "worst": worst frame overall, "lost": frames where no
        face descriptor could be taken, "skipped": [{"name", "reason"}], "settings": {...}}``;
        distances are Euclidean in descriptor space (dimensionless).

    Raises:
        ValueError: no portraits or no speech given.
    """
    import torch
    from tqdm import tqdm

    from ..errors import TellerError
    from ..face import prepare_avatar
    from ..face.identity import face_descriptor
    from ..face.image import load_portrait
    from ..fmlg.generator import MotionGenerator
    from ..media import load_audio
    from ..render import WarpRenderer

    if not portraits or not speech:
        raise ValueError("evaluate_identity needs at least one portrait and one speech file")
    settings = settings or TellerSettings()
    torch.set_num_threads(1)
    generator = MotionGenerator.from_settings(settings)
    rows, skipped = [], []
    for i, portrait in enumerate(tqdm(portraits, desc="identity", unit="portrait", disable=not progress)):
        try:
            reference = face_descriptor(load_portrait(portrait, settings.max_image_pixels))
            avatar = prepare_avatar(portrait, settings)
        except TellerError as e:
            skipped.append({"name": portrait.name, "reason": str(e).split(". ")[0]})
            continue
        if reference is None:
            skipped.append({"name": portrait.name, "reason": "no face found by dlib's detector in the photo"})
            continue
        audio = speech[i % len(speech)]
        pcm, sr = load_audio(audio, sample_rate=16000)
        pcm = pcm[: int(seconds * sr)]
        generator.reset()
        torch.manual_seed(settings.seed)
        motion = generator.generate(pcm, sr)
        renderer = WarpRenderer(avatar, grid=settings.render_grid, mouth_interior=mouth_interior)
        box = tuple(float(v) for v in avatar.face_box)
        measured = (frame for k, frame in enumerate(renderer.render(motion)) if k % every == 0)
        rows.append({"name": portrait.name, "speech": audio.name, **_distances(measured, reference, box)})
    return {
        "portraits": rows,
        **_summary(rows),
        "skipped": skipped,
        "settings": {"seconds": seconds, "every": every, "fps": FPS, "seed": settings.seed,
                     "frame_size": settings.frame_size, "face_scale": settings.face_scale,
                     "mouth_interior": mouth_interior},
    }


def default_real_clips(seconds: float = 3.0) -> list[Path]:
    """The held-out speakers' real talking clips (``../shared/data/talking``, split of
    :mod:`teller_agent.data.speakers`) at least ``seconds`` long; empty without the shared data."""
    from ..data.speakers import clips_in_split
    from ..media.video import probe

    folder = SHARED_DATA_DIR / "talking"
    if not folder.is_dir():
        return []
    clips = []
    for stem in clips_in_split("heldout"):
        path = folder / f"{stem}.mp4"
        if path.is_file() and (probe(path).get("duration") or 0.0) >= seconds:
            clips.append(path)
    return clips


def real_video_identity(clips: list[Path], seconds: float = 3.0, every: int = 3, progress: bool = True) -> dict:
    """Reference for :func:`evaluate_identity`: descriptor distance of real talking frames to the
    same clip's first frame, as if that frame were the photo.

    Each clip's first ``seconds`` at :data:`~teller_agent.config.FPS`; every ``every``-th frame
    after the first is measured, its face found by dlib's detector (the head moves in real video).
    Real frames also change in head pose, light and expression, so this is how far a face that
    moves like a real one drifts, not a bound a renderer must reach.

    Returns:
        ``{"clips": [{"name", "frames", "lost", "mean", "worst"}], "mean": mean of the per-clip
        means, "worst": worst frame overall, "frames", "lost", "skipped": [{"name", "reason"}]}``.
    """
    from tqdm import tqdm

    from ..face.identity import face_descriptor
    from ..media.video import read_video_frames

    rows, skipped = [], []
    for path in tqdm(clips, desc="identity, real video", unit="clip", disable=not progress):
        frames = list(islice(read_video_frames(path, FPS), round(seconds * FPS)))
        reference = face_descriptor(frames[0]) if frames else None
        if reference is None:
            skipped.append({"name": path.name, "reason": "no face found by dlib's detector in the first frame"})
            continue
        rows.append({"name": path.name, **_distances(frames[every::every], reference)})
    return {"clips": rows, **_summary(rows), "skipped": skipped}


def _distances(frames, reference: np.ndarray, box: tuple[float, float, float, float] | None = None) -> dict:
    """``{"frames", "lost", "mean", "worst"}``: descriptor distances of ``frames`` ((H, W, 3) uint8
    RGB each; the face in ``box``, or found by the detector) to ``reference``; ``lost`` counts the
    frames without a descriptor."""
    from ..face.identity import face_descriptor

    dists, lost = [], 0
    for frame in frames:
        d = face_descriptor(frame, box)
        if d is None:
            lost += 1
            continue
        dists.append(float(np.linalg.norm(d - reference)))
    return {"frames": len(dists), "lost": lost, "mean": float(np.mean(dists)) if dists else None,
            "worst": float(np.max(dists)) if dists else None}


def _summary(rows: list[dict]) -> dict:
    """``{"mean", "worst", "frames", "lost"}`` over :func:`_distances` rows: the mean of the rows'
    means and the worst frame of all (None when no row was measured), frames and lost summed."""
    measured = [r for r in rows if r["mean"] is not None]
    return {"mean": float(np.mean([r["mean"] for r in measured])) if measured else None,
            "worst": float(np.max([r["worst"] for r in measured])) if measured else None,
            "frames": int(sum(r["frames"] for r in rows)), "lost": int(sum(r["lost"] for r in rows))}


def markdown_table(result: dict) -> str:
    """The per-portrait rows and the summary as a Markdown table, then the real-video reference's."""
    lines = _table_lines("| portrait | speech |", result["portraits"], result, speech=True)
    real = result.get("real_video")
    if real and real["clips"]:
        lines += ["", "Reference: real speakers (held-out clips), each frame against the clip's own first frame.", ""]
        lines += _table_lines("| clip |", real["clips"], real, speech=False)
    return "\n".join(lines) + "\n"


def _table_lines(head: str, rows: list[dict], summary: dict, speech: bool) -> list[str]:
    lines = [f"{head} frames | mean | worst |", "|---" * (head.count("|") + 2) + "|"]
    for r in rows:
        name = f"| {r['name']} | {r['speech']} |" if speech else f"| {r['name']} |"
        if r["mean"] is None:
            lines.append(f"{name} 0 (lost {r['lost']}) | - | - |")
        else:
            lines.append(f"{name} {r['frames']} | {r['mean']:.3f} | {r['worst']:.3f} |")
    if summary["mean"] is not None:
        name = "| **all** | |" if speech else "| **all** |"
        lines.append(f"{name} {summary['frames']} | **{summary['mean']:.3f}** | **{summary['worst']:.3f}** |")
    return lines
