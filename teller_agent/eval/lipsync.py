"""``teller-agent eval lipsync``: motion generated from a clip's audio against the clip's own face.

For each real talking clip (video with its speech):

1. **Ground truth.** The project's landmark pipeline
   (:func:`~teller_agent.data.extract.track_landmarks` then
   :func:`~teller_agent.data.extract.fit_motion`) tracks dlib's 68 landmarks
   with MediaPipe Face Mesh lips at 25 fps and fits a ``face68`` motion latent
   relative to the clip's own rest face (smoothed, tracking gaps interpolated:
   the same trajectory the generator is trained on). The true landmark
   trajectory is that rest face driven by that motion. The clip's measured
   audio/video offset (:mod:`teller_agent.data.sync`, committed in
   ``teller_agent/data/av_offsets.tsv``, measured once with a readout that never
   saw the speaker) is corrected by cutting audio and video so that they line up:
   lag 0 then means "the frame shown with its own audio".
2. **Generated.** :class:`~teller_agent.fmlg.MotionGenerator` turns the clip's
   audio alone into motion, which drives the same rest face (so identity and
   framing cancel out; the motion itself is portrait-independent).
3. **Baselines**, driven the same way:

   * ``loudness``: the procedural avatar without a model (what ``teller-agent
     animate`` does): the jaw opens in proportion to the audio's loudness
     envelope, with procedural blinks and head sway;
   * ``readout``: a linear readout (ridge regression, fitted on the training
     speakers) of Whisper's features of the audio (the teacher on 200 ms slices,
     :mod:`teller_agent.audio.whisper`) to the mouth motion, head still: the floor
     a speech-to-motion model must clear (only when the checkpoint holds
     :data:`READOUT_FILE`);
   * ``frozen_mouth``: the rest face, still, mouth closed (no motion at all: with
     head motion kept, the projected lip gap would vary a little with pitch and
     yaw, and Pearson r, blind to scale, would credit those specks with sync);
   * ``true_shift_+4`` / ``true_shift_-4``: the true trajectory delayed /
     advanced by 4 frames (160 ms): what a pure sync error costs;
   * ``real``: the true trajectory against itself (r = 1, LVE = 0, lag 0;
     its velocity, jitter and blink rate are the real clip's).

4. **Metrics**: :func:`~teller_agent.eval.metrics.summarize` per clip and
   method; the headline is the mean over speakers (each speaker's clips
   frame-weighted, :func:`~teller_agent.eval.metrics.mean_summary` with speakers)
   of the mouth-opening r **at lag 0**, with the best lag beside it; also per
   language and per speaker.

Which clips: ``--heldout`` and ``--validation`` take the clips of that split of
the speaker table (:mod:`teller_agent.data.speakers`: speakers that never appear
in training). Settings are chosen on ``--validation``; ``--heldout`` is reported.

Outputs (in ``out``): ``lipsync.md`` (tables), ``lipsync.json`` (everything),
``plots/<clip>.png`` (true vs generated mouth opening over time) and
``sheets/<clip>.png`` (a contact sheet: video frames, the true motion and the
generated motion rendered on a portrait by the warp renderer).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import FPS, TellerSettings
from ..errors import TellerError
from ..motion.latent import MotionLatent, PortraitKeypoints
from ..utils.atomic import atomic_path
from . import metrics as M

log = logging.getLogger(__name__)

#: Format version of the JSON written by :func:`evaluate_lipsync`.
RESULT_VERSION = 1
#: Frames the "true trajectory shifted" baselines move by (4 frames = 160 ms at 25 fps).
SHIFT_FRAMES = 4
#: Every method of the table, in display order, with its label.
METHODS: dict[str, str] = {
    "real": "real video (reference)",
    "generated": "FMLG, from audio alone",
    "loudness": "baseline: mouth follows loudness",
    "readout": "baseline: linear readout of Whisper features",
    "frozen_mouth": "baseline: frozen mouth (still face)",
    f"true_shift_+{SHIFT_FRAMES}": f"baseline: true, {SHIFT_FRAMES} frames late",
    f"true_shift_-{SHIFT_FRAMES}": f"baseline: true, {SHIFT_FRAMES} frames early",
}
#: Frames per clip shown in the contact sheets.
SHEET_FRAMES = 6
#: The linear-readout baseline inside a checkpoint folder (:class:`~teller_agent.eval.readout.Readout` of the
#: teacher's Whisper features to the mouth features, written by ``teller-agent train student``).
READOUT_FILE = "readout_whisper.npz"


@dataclass
class RealClip:
    """Ground truth of one real talking clip (see the module docstring).

    Attributes:
        name: the video's stem.
        path: the video file.
        motion: the fitted ``face68`` motion, T frames at 25 fps.
        portrait: the clip's rest face (:class:`PortraitKeypoints`, crop-normalised units).
        landmarks: (T, 68, 2) float64 true trajectory, ``portrait`` driven by ``motion``
            (crop-normalised units of the clip's virtual crop).
        audio: (N,) float32 mono speech at ``sample_rate`` Hz (16000).
        sample_rate: Hz.
        valid_fraction: share of frames where a face was tracked (the rest are interpolated).
        reproj_error_px: mean distance between the fitted and the tracked landmarks (512-px frame).
        crop: ``(x0, y0, side)`` of the virtual crop in video pixels.
        speaker, language: from the speaker table (the clip's name when it has no row).
        av_offset_frames: the corrected audio/video offset (frames; 0 when none).
    """

    name: str
    path: Path
    motion: MotionLatent
    portrait: PortraitKeypoints
    landmarks: np.ndarray
    audio: np.ndarray
    sample_rate: int
    valid_fraction: float
    reproj_error_px: float
    crop: tuple[float, float, float]
    speaker: str = ""
    language: str = "unknown"
    av_offset_frames: int = 0

    @property
    def num_frames(self) -> int:
        return len(self.motion)


def default_clips_dir() -> Path:
    """``../shared/data/talking`` beside the repository (where the project's real clips live)."""
    from ..config import SHARED_DATA_DIR

    return SHARED_DATA_DIR / "talking"


def list_clips(folder: str | Path, split: str | None = None, names: Sequence[str] | None = None,
               limit: int | None = None) -> list[Path]:
    """The talking clips (``*.mp4``) of ``folder``, sorted by name.

    Args:
        folder: a folder of videos with speech (muxed, or a ``<stem>.wav`` beside a silent video).
        split: keep only the clips of this split of the speaker table (``"heldout"``, ``"validation"`` or
            ``"train"``; :mod:`teller_agent.data.speakers`).
        names: keep only these stems (applied after ``split``).
        limit: keep at most this many (after the filters).

    Returns:
        Paths of the videos.

    Raises:
        TellerError: ``folder`` is missing, or no clip is left.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TellerError(f"clip folder {folder} does not exist; pass --clips DIR (e.g. ../shared/data/talking)")
    videos = sorted(folder.glob("*.mp4"))
    if split is not None:
        from ..data.speakers import clips_in_split

        wanted = set(clips_in_split(split))
        missing = sorted(wanted - {p.stem for p in videos})
        if missing:
            log.warning("%d %s clips not in %s (e.g. %s)", len(missing), split, folder, missing[0])
        videos = [p for p in videos if p.stem in wanted]
    if names:
        videos = [p for p in videos if p.stem in set(names)]
    if limit is not None:
        videos = videos[: max(int(limit), 0)]
    if not videos:
        raise TellerError(f"no talking clip (*.mp4) left in {folder} after the filters")
    return videos


def load_real_clip(path: str | Path, max_seconds: float | None = None, offset: int | None = None) -> RealClip:
    """Track a clip, fit its true motion and line its audio up with it (see the module docstring).

    Args:
        path: a video with speech (its own audio stream, or ``<stem>.wav`` beside it).
        max_seconds: keep only the first seconds (after fitting on the whole clip); None keeps all.
        offset: audio/video offset to correct, frames (None: the clip's measured one from
            :mod:`teller_agent.data.sync`, 0 when it has none).

    Raises:
        AudioLoadError: no speech; TellerError: no face tracked; FileNotFoundError, ValueError: not a video.
    """
    from ..audio.features import SAMPLES_PER_FRAME
    from ..data.extract import fit_motion, track_landmarks
    from ..data.speakers import load_speakers
    from ..data.sync import align_clip, correction_of

    path = Path(path)
    tracked = track_landmarks(path)
    fit = fit_motion(tracked.landmarks, tracked.valid, tracked.frame_size)
    motion, valid = fit.motion, fit.valid
    audio_full = tracked.audio
    offset = correction_of(path.stem) if offset is None else int(offset)
    audio_full, motion, valid = align_clip(offset, audio_full, motion, valid)
    who = load_speakers().get(path.stem)
    if max_seconds is not None:
        frames = max(1, int(max_seconds * FPS))
        motion, valid = motion[:frames], valid[:frames]
    audio = audio_full[: len(motion) * SAMPLES_PER_FRAME] if max_seconds is not None else audio_full
    landmarks = fit.portrait.drive(motion)[..., :2].astype(np.float64)
    return RealClip(path.stem, path, motion, fit.portrait, landmarks, audio, tracked.sample_rate,
                    float(np.mean(valid)) if len(valid) else 0.0, fit.reproj_error_px, fit.crop,
                    who.speaker if who else path.stem, who.language if who else "unknown", offset)


def loudness_motion(audio: np.ndarray, sample_rate: int, num_frames: int, seed: int = 0) -> MotionLatent:
    """The no-model avatar: procedural motion whose jaw opening is the audio's loudness envelope.

    Args:
        audio: (N,) float mono PCM; sample_rate: Hz; num_frames: T; seed: blinks and sway.

    Returns:
        ``face68`` :class:`MotionLatent` of ``num_frames`` frames.
    """
    from ..audio.loudness import loudness_envelope
    from ..motion.procedural import procedural_motion

    return procedural_motion(num_frames, seed=seed, mouth=loudness_envelope(audio, sample_rate)[:num_frames])


def readout_motion(readout, features: np.ndarray, num_frames: int) -> MotionLatent:
    """The linear-readout baseline: mouth features predicted from Whisper features (T, D), head still.

    Args:
        readout: a :class:`~teller_agent.eval.readout.Readout` of Whisper features to the ``MOUTH_DIM`` mouth
            features of :func:`~teller_agent.fmlg.tokenizer.motion_to_features`.
        features: (T', D) Whisper features, T' >= ``num_frames``.
    """
    from ..fmlg.tokenizer import FEATURE_DIM, MOUTH_DIM, features_to_motion

    out = np.zeros((num_frames, FEATURE_DIM), np.float32)
    out[:, :MOUTH_DIM] = readout(features[:num_frames])
    return features_to_motion(out)


def method_trajectories(clip: RealClip, generated: MotionLatent, seed: int = 0,
                        readout: MotionLatent | None = None) -> dict[str, np.ndarray]:
    """(T, 68, 2) landmark trajectories of every method of :data:`METHODS` on ``clip``'s rest face.

    ``T = min(len(generated), clip.num_frames)`` (the generator gives ``round(samples / 640)`` frames;
    the video may be a frame longer or shorter). The truth is under ``"real"``; ``"readout"`` only when
    ``readout`` (the baseline's motion, :func:`readout_motion`) is given.
    """
    n = min(len(generated), clip.num_frames)
    true = clip.landmarks[:n]

    def drive(motion: MotionLatent) -> np.ndarray:
        return clip.portrait.drive(motion[:n])[..., :2].astype(np.float64)

    out = {
        "real": true,
        "generated": drive(generated),
        "loudness": drive(loudness_motion(clip.audio, clip.sample_rate, n, seed)),
        "readout": drive(readout) if readout is not None else None,
        "frozen_mouth": drive(MotionLatent.neutral(n, clip.motion.num_keypoints, clip.motion.space)),
        f"true_shift_+{SHIFT_FRAMES}": M.shift(true, SHIFT_FRAMES),
        f"true_shift_-{SHIFT_FRAMES}": M.shift(true, -SHIFT_FRAMES),
    }
    assert list(out) == list(METHODS)
    return {k: v for k, v in out.items() if v is not None}


def evaluate_clip(clip: RealClip, generated: MotionLatent, seed: int = 0, max_lag: int = 8,
                  readout: MotionLatent | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of every method on one clip.

    Returns:
        ``(row, series)``: ``row`` is ``{"name", "frames", "seconds", "valid_fraction", "reproj_error_px",
        "metrics": {method: summarize(...)}}``; ``series`` the (T,) mouth openings (IOD) per method.
    """
    tracks = method_trajectories(clip, generated, seed, readout)
    true = tracks["real"]
    metrics = {name: M.summarize(lm, true, max_lag=max_lag) for name, lm in tracks.items()}
    series = {name: M.mouth_opening(lm) for name, lm in tracks.items()}
    row = {
        "name": clip.name,
        "speaker": clip.speaker,
        "language": clip.language,
        "av_offset_frames": clip.av_offset_frames,
        "frames": len(true),
        "seconds": len(true) / FPS,
        "valid_fraction": round(clip.valid_fraction, 4),
        "reproj_error_px": round(clip.reproj_error_px, 3),
        "metrics": metrics,
    }
    return row, series


# -- outputs -------------------------------------------------------------------------------


def plot_mouth(path: str | Path, name: str, series: dict[str, np.ndarray], metrics: dict[str, dict]) -> Path:
    """PNG of the true and generated mouth opening (and the loudness baseline) over time.

    Args:
        path: the ``.png`` to write (atomically).
        series: (T,) mouth openings in IOD per method (``"real"``, ``"generated"``, ``"loudness"``).
        metrics: per method the :func:`~teller_agent.eval.metrics.summarize` dict (for the title).
    """
    from ..plotting import pyplot

    plt = pyplot()
    t = np.arange(len(series["real"])) / FPS
    fig, ax = plt.subplots(figsize=(10, 3.2), dpi=100)
    ax.plot(t, series["real"], color="black", lw=1.6, label="real video")
    ax.plot(t, series["generated"], color="tab:blue", lw=1.2, label="generated (FMLG)")
    ax.plot(t, series["loudness"], color="tab:orange", lw=0.9, ls="--", alpha=0.8, label="loudness baseline")
    if "readout" in series:
        ax.plot(t, series["readout"], color="tab:green", lw=0.9, ls=":", alpha=0.9, label="linear readout")
    g = metrics["generated"]
    ax.set_title(f"{name}: r at lag 0 = {g['mouth_r']:.2f}, best lag {g['best_lag']:+d} frames, LVE = {g['lve']:.3f} "
                 f"IOD (loudness r = {metrics['loudness']['mouth_r']:.2f})", fontsize=10)
    ax.set_xlabel("seconds")
    ax.set_ylabel("mouth opening (IOD)")
    ax.set_xlim(0, max(t[-1] if len(t) else 0, 1 / FPS))
    ax.legend(loc="upper right", fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def sheet_indices(true_opening: np.ndarray, count: int = SHEET_FRAMES) -> list[int]:
    """``count`` frame indices spread over the clip: the widest true mouth opening in each of ``count`` equal parts."""
    n = len(true_opening)
    if n == 0:
        return []
    edges = np.linspace(0, n, min(count, n) + 1).astype(int)
    return [int(a + np.argmax(true_opening[a:b])) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _video_crops(path: Path, indices: list[int], crop: tuple[float, float, float], size: int) -> list[np.ndarray]:
    """The 25 fps frames ``indices`` of a video, cut to the virtual crop and resized to ``size``."""
    import cv2

    from ..media import read_video_frames

    x0, y0, side = crop
    s = size / side
    affine = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], np.float64)
    wanted, out = set(indices), {}
    for i, frame in enumerate(read_video_frames(path, FPS)):
        if i in wanted:
            out[i] = cv2.warpAffine(frame, affine, (size, size), flags=cv2.INTER_AREA, borderValue=(0, 0, 0))
        if i >= max(indices):
            break
    blank = np.zeros((size, size, 3), np.uint8)
    return [out.get(i, blank) for i in indices]


def contact_sheet_for(path: str | Path, clip: RealClip, generated: MotionLatent, renderer, indices: list[int],
                      thumb: int = 160) -> Path:
    """PNG with three rows at the same frames: the video (cropped), the true motion and the generated
    motion, both rendered on ``renderer``'s portrait by the warp renderer.

    Args:
        path: the ``.png`` to write (atomically).
        renderer: a :class:`~teller_agent.render.WarpRenderer`.
        indices: frame indices (e.g. :func:`sheet_indices`).
    """
    from ..media import contact_sheet, save_image

    def rendered(motion: MotionLatent) -> list[np.ndarray]:
        sub = MotionLatent.from_flat(motion.flat()[indices], motion.num_keypoints, motion.space)
        return list(renderer.render(sub))

    rows = [_video_crops(clip.path, indices, clip.crop, renderer.size), rendered(clip.motion), rendered(generated)]
    labels = [f"{kind} {i / FPS:.1f}s" for kind in ("video", "true", "generated") for i in indices]
    sheet = contact_sheet([f for row in rows for f in row], cols=len(indices), labels=labels, thumb=thumb)
    return save_image(path, sheet)


def _fmt(v: float, digits: int = 3, sign: bool = False) -> str:
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


#: Methods shown in the per-language and per-speaker tables.
_COMPARED = ("generated", "readout", "loudness")


def _ratio(s: dict, key: str) -> str:
    true = s.get(f"{key}_true", 0.0)
    return f"{s[f'{key}_pred'] / true:.2f}" if true else "-"


def group_rows(rows: list[dict], key: str) -> dict[str, dict[str, dict]]:
    """``{group: {method: mean_summary over the group's clips, speaker-weighted}}`` for ``key`` in a row
    (``"language"`` or ``"speaker"``)."""
    out: dict[str, dict[str, dict]] = {}
    for g in sorted({r[key] for r in rows}):
        part = [r for r in rows if r[key] == g]
        out[g] = {m: M.mean_summary([r["metrics"][m] for r in part], [r["speaker"] for r in part])
                  for m in part[0]["metrics"]}
    return out


#: Methods whose clip-by-clip wins over the loudness baseline are counted (:func:`clips_above_loudness`),
#: with their column labels.
_COUNTED = {"generated": "FMLG", "readout": "readout", f"true_shift_+{SHIFT_FRAMES}": f"true, {SHIFT_FRAMES} frames late",
            f"true_shift_-{SHIFT_FRAMES}": f"true, {SHIFT_FRAMES} frames early"}


def clips_above_loudness(rows: list[dict]) -> list[dict]:
    """How many clips each method's mouth r at lag 0 beats the loudness baseline's on, by clip length.

    A clip of a word or two holds too few frames for its own r to rank two methods; the
    audio/video offset measurement pools such clips for the same reason
    (:data:`teller_agent.data.sync.MIN_GROUP_FRAMES`), and the counts are split at that length.
    The true trajectory shifted by :data:`SHIFT_FRAMES` frames (a plain sync error) is counted
    too, as a reference for how often a wrong mouth still wins on a clip.

    Args:
        rows: the ``clips`` of a :func:`evaluate_lipsync` result.

    Returns:
        ``[{"label", "clips", <method>: wins, ...}]``: clips shorter than ``MIN_GROUP_FRAMES``, those
        at least that long, and all clips (groups without clips are left out); a method is counted
        only where every clip of the group has it.
    """
    from ..data.sync import MIN_GROUP_FRAMES

    seconds = MIN_GROUP_FRAMES / FPS
    groups = [(f"shorter than {seconds:g} s", [r for r in rows if r["frames"] < MIN_GROUP_FRAMES]),
              (f"{seconds:g} s or longer", [r for r in rows if r["frames"] >= MIN_GROUP_FRAMES]),
              ("all", rows)]
    out = []
    for label, part in groups:
        if not part or not all("loudness" in r["metrics"] for r in part):
            continue
        entry: dict[str, Any] = {"label": label, "clips": len(part)}
        for m in _COUNTED:
            if all(m in r["metrics"] for r in part):
                entry[m] = sum(r["metrics"][m]["mouth_r"] > r["metrics"]["loudness"]["mouth_r"] for r in part)
        out.append(entry)
    return out


def markdown_tables(result: dict[str, Any], per_clip: bool = False) -> str:
    """The lip-sync tables of a :func:`evaluate_lipsync` result, as markdown.

    A headline (mouth-opening r at lag 0, mean over speakers), then tables: per method (mean over
    speakers), clips above the loudness baseline by length (:func:`clips_above_loudness`), per
    language, per speaker, and with ``per_clip`` one row per clip. Velocity is the mean
    absolute frame-to-frame change of the mouth opening (IOD per frame), jitter the mean absolute second
    difference (IOD per frame squared); "std" and "velocity" ratios are generated / real.
    """
    mean = result["mean"]
    ref, gen = mean["real"], mean["generated"]
    speakers = result.get("speakers", {})
    above = sum(1 for v in speakers.values() if v["generated"]["mouth_r"] > v["loudness"]["mouth_r"])
    counts = clips_above_loudness(result["clips"])
    clips_above = f" and {counts[-1]['generated']} of {counts[-1]['clips']} clips" if counts else ""
    lines = [
        f"**Mouth-opening r at lag 0: {_fmt(gen['mouth_r'])}** (mean over {gen.get('speakers', 0)} speakers, "
        f"{ref.get('clips', 0)} clips, {ref.get('duration_s', 0):.1f} s; best lag {_fmt(gen['best_lag'], 1, True)} frames, "
        f"positive = late); above the loudness baseline for {above} of {len(speakers)} speakers{clips_above}. "
        f"Amplitude of the "
        f"generated mouth against the real one: std {_ratio(gen, 'mouth_std')}x, velocity "
        f"{_ratio(gen, 'mouth_velocity')}x.",
        "",
        "| method | mouth r (lag 0) | best lag (frames) | mean abs lag | LVE (IOD) | std (IOD) | velocity (IOD/frame) | "
        "jitter (IOD/frame²) | blinks/min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label in METHODS.items():
        s = mean.get(key)
        if not s or s.get("clips", 0) == 0:
            continue
        lines.append(
            f"| {label} | {_fmt(s['mouth_r'])} | {_fmt(s['best_lag'], 1, True)} | {_fmt(s['abs_best_lag'], 1)} | "
            f"{_fmt(s['lve'])} | {_fmt(s['mouth_std_pred'])} | {_fmt(s['mouth_velocity_pred'])} | "
            f"{_fmt(s['mouth_jitter_pred'])} | {s['blink_rate_pred']:.1f} |")
    counted = [m for m in _COUNTED if counts and m in counts[-1]]
    if counted:
        lines += ["", "Clips on which a method's mouth r at lag 0 is above the loudness baseline's, by clip length "
                  "(the shifted true motion shows how often a plain sync error still wins on a clip):", "",
                  "| clips | count | " + " | ".join(_COUNTED[m] for m in counted) + " |",
                  "|---|---|" + "---|" * len(counted)]
        lines += [f"| {c['label']} | {c['clips']} | " + " | ".join(str(c[m]) for m in counted) + " |" for c in counts]
    shown = [m for m in _COMPARED if m in mean and mean[m].get("clips", 0)]
    names = {"generated": "FMLG r", "readout": "readout r", "loudness": "loudness r"}
    lines += ["", "| language | speakers | seconds | " + " | ".join(names[m] for m in shown) + " | FMLG best lag |",
              "|---|---|---|" + "---|" * len(shown) + "---|"]
    for lang, g in result.get("languages", {}).items():
        lines.append(f"| {lang} | {g['generated'].get('speakers', 0)} | {g['real']['duration_s']:.0f} | "
                     + " | ".join(_fmt(g[m]["mouth_r"]) for m in shown)
                     + f" | {_fmt(g['generated']['best_lag'], 1, True)} |")
    lines += ["", "| speaker | language | clips | seconds | A/V offset corrected | " + " | ".join(names[m] for m in shown)
              + " | best lag | std gen / real | velocity gen / real |",
              "|---|---|---|---|---|" + "---|" * len(shown) + "---|---|---|"]
    offsets = {}
    for row in result["clips"]:
        offsets.setdefault(row["speaker"], set()).add(row.get("av_offset_frames", 0))
    for spk, g in speakers.items():
        lang = next(r["language"] for r in result["clips"] if r["speaker"] == spk)
        off = ", ".join(f"{o:+d}" for o in sorted(offsets.get(spk, {0})))
        lines.append(f"| {spk} | {lang} | {g['real']['clips']} | {g['real']['duration_s']:.1f} | {off} | "
                     + " | ".join(_fmt(g[m]["mouth_r"]) for m in shown)
                     + f" | {_fmt(g['generated']['best_lag'], 1, True)} | {_ratio(g['generated'], 'mouth_std')} | "
                     f"{_ratio(g['generated'], 'mouth_velocity')} |")
    if per_clip:
        lines += ["", "| clip | speaker | seconds | tracked | A/V offset | mouth r | loudness r | LVE (IOD) | best lag | "
                  "velocity gen / real | blinks/min gen / real |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in result["clips"]:
            g, loud = row["metrics"]["generated"], row["metrics"]["loudness"]
            lines.append(
                f"| {row['name']} | {row['speaker']} | {row['seconds']:.1f} | {100 * row['valid_fraction']:.0f}% | "
                f"{row.get('av_offset_frames', 0):+d} | {_fmt(g['mouth_r'])} | {_fmt(loud['mouth_r'])} | {_fmt(g['lve'])} | "
                f"{g['best_lag']:+d} | {_fmt(g['mouth_velocity_pred'])} / {_fmt(g['mouth_velocity_true'])} | "
                f"{g['blink_rate_pred']:.0f} / {g['blink_rate_true']:.0f} |")
    return "\n".join(lines) + "\n"


def checkpoint_id(model: str | Path | None) -> dict[str, str]:
    """Which checkpoint was evaluated: its folder, the first 12 hex digits of the SHA-256 of each
    ``*.safetensors`` and of the lip readout in it (so a result names the exact weights; files that cannot
    be read are skipped), and the generator's calibrated gains from its ``config.json``."""
    import hashlib
    import json

    from ..fmlg.checkpoint import DEFAULT_CHECKPOINT, LIP_READOUT_FILE

    folder = Path(model) if model is not None else DEFAULT_CHECKPOINT
    out = {"folder": str(model) if model is not None else "teller_agent/models/fmlg-face68 (shipped)"}
    for f in [*sorted(folder.glob("*.safetensors")), folder / LIP_READOUT_FILE]:
        try:
            out[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()[:12]
        except OSError:
            continue
    try:
        gen = json.loads((folder / "config.json").read_text()).get("generator") or {}
    except (OSError, ValueError):
        gen = {}
    out.update({k: gen[k] for k in ("mouth_gain", "lip_readout_gain") if k in gen})
    return out


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON (atomically) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    return path


# -- the whole evaluation ---------------------------------------------------------------------


def _readout_baseline(model: str | Path | None, settings: TellerSettings):
    """``(Readout, WhisperFeatures)`` of the checkpoint's linear-readout baseline, or ``(None, None)`` when the
    checkpoint has none or the Whisper weights are not installed (logged)."""
    import json as _json

    from ..fmlg.checkpoint import DEFAULT_CHECKPOINT
    from .readout import Readout

    folder = Path(model) if model is not None else DEFAULT_CHECKPOINT
    if not (folder / READOUT_FILE).is_file():
        return None, None
    try:
        from ..audio.whisper import SliceConfig, WhisperFeatures, WhisperWeightsError, load_whisper_encoder

        slices = SliceConfig(**_json.loads((folder / "config.json").read_text())["student"]["teacher_slices"])
        teacher = WhisperFeatures(load_whisper_encoder(settings.whisper_model_dir, slices.layers), slices)
        return Readout.load(folder / READOUT_FILE), teacher
    except (WhisperWeightsError, OSError, KeyError, TypeError, ValueError) as exc:
        log.warning("no linear-readout baseline: %s", exc)
        return None, None


def evaluate_lipsync(
    clips: Sequence[str | Path],
    out: str | Path,
    model: str | Path | None = None,
    seed: int = 0,
    image: str | Path | None = None,
    max_seconds: float | None = None,
    max_lag: int = 8,
    sheets: bool = True,
    settings: TellerSettings | None = None,
    progress: bool = True,
    command: str | None = None,
    split: str | None = None,
) -> dict[str, Any]:
    """Evaluate the generator on real clips and write the report files (see the module docstring).

    Args:
        clips: video paths (e.g. from :func:`list_clips`).
        out: output folder (created): ``lipsync.md``, ``lipsync.json``, ``plots/``, ``sheets/``.
        model: FMLG checkpoint folder; None: ``settings.model_dir`` or the shipped one.
        seed: sampling seed of the generator and of the loudness baseline's procedural motion.
        image: portrait for the contact sheets (None: the settings' or the bundled default).
        max_seconds: evaluate only the first seconds of each clip (None: whole clips).
        max_lag: largest lag (frames) the best-lag search tries.
        sheets: also render the contact sheets.
        settings: sampling and framing options (None: from the environment).
        progress: a progress bar on stderr.
        command: the command line, recorded in the JSON.
        split: the speaker split the clips were taken from (recorded in the JSON).

    Returns:
        The result dict also written to ``lipsync.json``: ``clips`` (a row per clip, see
        :func:`evaluate_clip`), ``mean`` (per method, :func:`~teller_agent.eval.metrics.mean_summary`),
        ``skipped`` (clips that could not be evaluated, with the reason), ``model`` (:func:`checkpoint_id`),
        ``code`` (git commit), settings and timing.

    Raises:
        CheckpointError: the model cannot be loaded. A clip without speech or without a face is skipped
        (listed under ``skipped``), never fatal.
    """
    import torch
    from tqdm import tqdm

    from ..bench.common import code_version, machine
    from ..errors import AudioLoadError
    from ..fmlg.generator import MotionGenerator

    settings = settings or TellerSettings()
    model = model if model is not None else settings.model_dir
    readout, teacher = _readout_baseline(model, settings)
    out = Path(out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    if sheets:
        (out / "sheets").mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    start = time.perf_counter()
    generator = MotionGenerator.from_settings(settings, model, seed=seed)
    renderer = None
    if sheets:
        from ..face import prepare_avatar
        from ..render import WarpRenderer, set_render_threads

        set_render_threads(settings.render_threads)
        renderer = WarpRenderer(prepare_avatar(image, settings), grid=settings.render_grid)

    rows, skipped = [], []
    bar = tqdm(list(clips), desc="eval lipsync", unit="clip", disable=not progress)
    for path in bar:
        path = Path(path)
        bar.set_postfix_str(path.stem)
        try:
            clip = load_real_clip(path, max_seconds)
        except (AudioLoadError, TellerError, ValueError) as exc:
            skipped.append({"name": path.stem, "reason": str(exc)})
            log.warning("skipping %s: %s", path.name, exc)
            continue
        motion = generator.generate(clip.audio, clip.sample_rate)
        base = None
        if readout is not None:
            n = min(len(motion), clip.num_frames)
            base = readout_motion(readout, teacher.clip(clip.audio, n), n)
        row, series = evaluate_clip(clip, motion, seed=seed, max_lag=max_lag, readout=base)
        row["plot"] = str(plot_mouth(out / "plots" / f"{clip.name}.png", clip.name, series, row["metrics"])
                          .relative_to(out))
        if renderer is not None:
            idx = sheet_indices(series["real"])
            row["sheet"] = str(contact_sheet_for(out / "sheets" / f"{clip.name}.png", clip, motion[:row["frames"]],
                                                 renderer, idx).relative_to(out))
        rows.append(row)
    bar.close()

    speakers = [r["speaker"] for r in rows]
    mean = {name: M.mean_summary([r["metrics"][name] for r in rows if name in r["metrics"]],
                                 [r["speaker"] for r in rows if name in r["metrics"]]) for name in METHODS}
    result = {
        "kind": "lipsync",
        "version": RESULT_VERSION,
        "command": command,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "code": code_version(),
        "model": checkpoint_id(model),
        "seed": seed,
        "max_seconds": max_seconds,
        "max_lag": max_lag,
        "shift_frames": SHIFT_FRAMES,
        "methods": METHODS,
        "mean": mean,
        "languages": group_rows(rows, "language") if rows else {},
        "speakers": group_rows(rows, "speaker") if rows else {},
        "split": split,
        "clips": rows,
        "skipped": skipped,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    write_json(out / "lipsync.json", result)
    with atomic_path(out / "lipsync.md") as tmp:
        tmp.write_text(f"# Lip sync: `{command or 'teller-agent eval lipsync'}`\n\n" + markdown_tables(result, per_clip=True))
    return result
