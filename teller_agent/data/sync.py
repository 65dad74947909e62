"""Audio/video offsets of the real talking clips, measured before they are trusted as lip-sync truth.

Many source clips are not in sync: separately distributed ``.wav`` partners,
frame-rate conversions and web re-encodes shift the speech against the face by
one to several frames (``../shared/data/README.md`` warns about it). Trained on,
such a clip teaches a late or early mouth; evaluated on, it caps the lip sync at
lag 0 of any model. In the spirit of SyncNet's offset search (Chung & Zisserman
2016, "Out of time"), each clip's offset is measured with a model that never saw
its speaker:

1. A :class:`~teller_agent.eval.readout.Readout` (ridge regression) maps Whisper
   features of the audio to the mouth opening of the fitted motion (inner-lip gap
   / inter-ocular distance).
2. Cross-fitting: the training speakers are split into :data:`FOLDS` folds; a
   training clip is predicted by the readout fitted on the other folds. Validation
   and held-out clips are predicted by the readout fitted on all training speakers.
3. The offset is the lag in ``[-MAX_OFFSET, MAX_OFFSET]`` frames maximising the
   Pearson r of predicted against true mouth opening (positive: the speech is late
   against the face). Clips shorter than :data:`MIN_GROUP_FRAMES` are too short to
   place a peak: their speaker's clips are pooled (frame-weighted mean of the r
   curves) and share the estimate; a speaker with fewer frames than that in all
   gets no estimate (group ``"short"``, never corrected).
4. Two rounds: the second readout is fitted on training clips aligned by the
   first round's offsets.

An offset is **applied** (the clip is cut so that audio and face line up, see
:func:`align_frames`) when ``|offset| >= MIN_APPLIED_OFFSET`` frames, the peak
stands out (``r_best - r_lag0 >= MIN_PEAK_GAIN``) and is inside the searched range
(a peak at ``+-MAX_OFFSET`` is the edge of the search, not a measurement): a frame of lead is within what
real mouths do (lips move before their sound) and what the readout resolves. Training skips clips whose best r stays below
:data:`MIN_USABLE_R` (dubbed or occluded speech: nothing to learn sync from);
evaluation keeps every clip. The measured table is committed in
:data:`OFFSETS_TSV` and written by ``teller-agent dataset sync``.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..eval.metrics import lagged_pearson
from ..eval.readout import fit_readout
from ..utils.atomic import atomic_path

log = logging.getLogger(__name__)

#: The committed table of measured offsets (one row per real talking clip).
OFFSETS_TSV = Path(__file__).with_name("av_offsets.tsv")
#: Largest offset searched, frames (40 ms each).
MAX_OFFSET = 10
#: Clips shorter than this (frames) share their speaker's pooled estimate.
MIN_GROUP_FRAMES = 100
#: Offsets of at least this many frames (either sign) are corrected.
MIN_APPLIED_OFFSET = 2
#: ... and when r at the offset exceeds r at lag 0 by at least this.
MIN_PEAK_GAIN = 0.05
#: Training skips clips whose best lagged r is below this.
MIN_USABLE_R = 0.2
#: Folds of training speakers for cross-fitting.
FOLDS = 5
#: Ridge penalty of the readout.
RIDGE_LAMBDA = 1000.0

_COLUMNS = ("clip", "offset_frames", "applied", "r_lag0", "r_best", "group", "usable")


@dataclass(frozen=True)
class SyncClip:
    """What the offset measurement needs of one clip.

    Attributes:
        clip: stem of the talking video.
        speaker, split: from :mod:`teller_agent.data.speakers`.
        features: (T, D) float Whisper features of the clip's audio (frame t = audio [640 t, 640 (t + 1))).
        mouth: (T,) float true mouth opening (IOD) of the clip's fitted motion, frame-aligned with ``features``.
        valid: (T,) bool tracked frames.
    """

    clip: str
    speaker: str
    split: str
    features: np.ndarray
    mouth: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class SyncEstimate:
    """The measured offset of one clip (see the module docstring).

    Attributes:
        offset_frames: lag maximising r; positive = the speech is late against the face.
        applied: whether datasets and evaluation correct it (``|offset| >= MIN_APPLIED_OFFSET``).
        r_lag0, r_best: the readout's r at lag 0 and at the offset (of the clip's group).
        group: ``"clip"`` or ``"speaker"`` (pooled over the speaker's clips).
        usable: ``r_best >= MIN_USABLE_R`` (training skips unusable clips).
    """

    clip: str
    offset_frames: int
    applied: bool
    r_lag0: float
    r_best: float
    group: str
    usable: bool

    @property
    def correction(self) -> int:
        """The offset that is corrected: ``offset_frames`` if applied, else 0."""
        return self.offset_frames if self.applied else 0


def lag_curve(pred: np.ndarray, true: np.ndarray, max_lag: int = MAX_OFFSET) -> np.ndarray:
    """(2 max_lag + 1,) Pearson r of ``pred`` against ``true`` at lags ``-max_lag .. max_lag``
    (:func:`~teller_agent.eval.metrics.lagged_pearson`'s sign: positive = ``pred`` late)."""
    return np.array([lagged_pearson(pred, true, lag) for lag in range(-max_lag, max_lag + 1)])


def align_frames(offset: int, audio_frames: int, motion_frames: int) -> tuple[int, int, int]:
    """How to cut a clip so that its speech lines up with its face.

    With offset ``k`` (the speech of face frame ``j`` is audio frame ``j + k``), face frame ``j`` is paired
    with audio frame ``j + k``. Returns ``(audio_start, motion_start, frames)``: keep the audio from frame
    ``audio_start`` (sample ``640 audio_start``) and ``frames`` face frames from ``motion_start``.
    """
    audio_start, motion_start = max(offset, 0), max(-offset, 0)
    frames = max(0, min(audio_frames - audio_start, motion_frames - motion_start))
    return audio_start, motion_start, frames


def align_clip(offset: int, audio: np.ndarray, *frames):
    """Cut a clip by :func:`align_frames` so that face frame ``j`` shows the speech of audio frame ``j``.

    Args:
        offset: the clip's audio/video offset, frames (0: nothing is cut).
        audio: (N,) 16 kHz samples (the last video frame's audio may be partial).
        frames: per-frame arrays (the first one sets the number of face frames, e.g. motion features or a
            :class:`~teller_agent.motion.latent.MotionLatent`); an empty one stays empty.

    Returns:
        ``(audio, *frames)``, cut.
    """
    from ..audio.features import SAMPLES_PER_FRAME

    if not offset:
        return (audio, *frames)
    a, m, n = align_frames(offset, -(-len(audio) // SAMPLES_PER_FRAME), len(frames[0]))
    return (audio[a * SAMPLES_PER_FRAME :], *(f[m : m + n] if len(f) else f for f in frames))


def _estimate(curves: list[tuple[np.ndarray, int]]) -> tuple[int, float, float]:
    curve = np.average([c for c, _ in curves], axis=0, weights=[max(n, 1) for _, n in curves])
    k = int(np.argmax(curve))
    return k - MAX_OFFSET, float(curve[MAX_OFFSET]), float(curve[k])


def measure_offsets(clips: list[SyncClip], rounds: int = 2, seed: int = 0) -> dict[str, SyncEstimate]:
    """Measure every clip's audio/video offset (see the module docstring).

    Raises:
        ValueError: no training clips to fit the readout on.
    """
    train_speakers = sorted({c.speaker for c in clips if c.split == "train"})
    if not train_speakers:
        raise ValueError("no training clips to fit the sync readout on")
    rng = np.random.default_rng(seed)
    fold = dict(zip(train_speakers, rng.permutation(len(train_speakers)) % FOLDS))
    offsets = {c.clip: 0 for c in clips}
    estimates: dict[str, SyncEstimate] = {}
    for _ in range(rounds):
        curves: dict[str, np.ndarray] = {}

        def fit(members: list[SyncClip]):
            feats, targets, weights = [], [], []
            for c in members:
                a, m, n = align_frames(offsets[c.clip], len(c.features), len(c.mouth))
                if n >= 2:
                    feats.append(c.features[a : a + n])
                    targets.append(c.mouth[m : m + n])
                    weights.append(c.valid[m : m + n])
            return fit_readout(feats, targets, RIDGE_LAMBDA, weights=weights)

        full = fit([c for c in clips if c.split == "train"])
        for k in range(FOLDS):
            part = fit([c for c in clips if c.split == "train" and fold[c.speaker] != k])
            for c in clips:
                if c.split == "train" and fold[c.speaker] == k:
                    n = min(len(c.features), len(c.mouth))
                    curves[c.clip] = lag_curve(part(c.features[:n])[:, 0], c.mouth[:n])
        for c in clips:
            if c.split != "train":
                n = min(len(c.features), len(c.mouth))
                curves[c.clip] = lag_curve(full(c.features[:n])[:, 0], c.mouth[:n])
        by_speaker: dict[str, list[SyncClip]] = {}
        for c in clips:
            by_speaker.setdefault(c.speaker, []).append(c)
        estimates = {}
        for c in clips:
            n = len(c.mouth)
            if n >= MIN_GROUP_FRAMES:
                group, members = "clip", [c]
            else:
                group, members = "speaker", by_speaker[c.speaker]
            offset, r0, rbest = _estimate([(curves[m.clip], len(m.mouth)) for m in members])
            if sum(len(m.mouth) for m in members) < MIN_GROUP_FRAMES:
                group = "short"
            applied = (group != "short" and MIN_APPLIED_OFFSET <= abs(offset) < MAX_OFFSET
                       and rbest - r0 >= MIN_PEAK_GAIN)
            estimates[c.clip] = SyncEstimate(c.clip, offset, applied, round(r0, 3), round(rbest, 3), group,
                                             rbest >= MIN_USABLE_R)
            offsets[c.clip] = estimates[c.clip].correction
    return estimates


def save_offsets(estimates: dict[str, SyncEstimate], path: str | Path = OFFSETS_TSV) -> Path:
    """Write the offsets table (sorted by clip, atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(_COLUMNS)
            for e in sorted(estimates.values(), key=lambda e: e.clip):
                w.writerow([e.clip, e.offset_frames, "yes" if e.applied else "no", f"{e.r_lag0:.3f}",
                            f"{e.r_best:.3f}", e.group, "yes" if e.usable else "no"])
    return path


def load_offsets(path: str | Path = OFFSETS_TSV) -> dict[str, SyncEstimate]:
    """The offsets table (``{}`` if it does not exist yet: no clip is corrected)."""
    path = Path(path)
    if not path.is_file():
        log.warning("no audio/video offsets table at %s: clips are used as they are", path)
        return {}
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            out[row["clip"]] = SyncEstimate(row["clip"], int(row["offset_frames"]), row["applied"] == "yes",
                                            float(row["r_lag0"]), float(row["r_best"]), row["group"],
                                            row["usable"] == "yes")
    return out


def correction_of(clip: str, table: dict[str, SyncEstimate] | None = None) -> int:
    """The offset (frames) to correct for ``clip`` (0 when it is not in the table or not applied)."""
    table = load_offsets() if table is None else table
    e = table.get(clip)
    return e.correction if e is not None else 0


def sync_dataset(dataset: str | Path, table_path: str | Path = OFFSETS_TSV, progress: bool = True
                 ) -> dict[str, SyncEstimate]:
    """``teller-agent dataset sync``: measure the offsets of a dataset's real clips (Whisper teacher features,
    cached in the dataset), write the table to ``table_path`` and the corrections into the manifest
    (``av_offset_frames``, ``sync_usable``).

    Raises:
        TellerError: no dataset; WhisperWeightsError: the Whisper weights are not installed.
    """
    import json

    from ..train.dataset import load_clips, read_manifest
    from ..train.evaluate import clip_mouth_opening
    from ..train.student import teacher_features

    dataset = Path(dataset)
    manifest = read_manifest(dataset)
    raw = dict(manifest)
    raw["clips"] = [{**e, "av_offset_frames": 0} for e in manifest["clips"]]
    with atomic_path(dataset / "manifest.json") as tmp:  # measure on the clips as recorded
        tmp.write_text(json.dumps(raw, indent=1))
    clips = load_clips(dataset, kinds=("real",))
    feats = teacher_features(dataset, clips, progress=progress)
    items = []
    for c in clips:
        n = min(len(feats[c.id]), c.num_frames)
        items.append(SyncClip(c.id, c.speaker, c.split, feats[c.id][:n], clip_mouth_opening(c, c.features)[:n],
                              c.valid[:n]))
    table = measure_offsets(items)
    save_offsets(table, table_path)
    for e in raw["clips"]:
        if e["id"] in table:
            e["av_offset_frames"] = table[e["id"]].correction
            e["sync_usable"] = table[e["id"]].usable
    with atomic_path(dataset / "manifest.json") as tmp:
        tmp.write_text(json.dumps(raw, indent=1))
    return table
