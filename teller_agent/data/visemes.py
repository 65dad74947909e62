"""eSpeak phonemes -> visemes -> coarticulated mouth motion at 25 fps.

The synthetic corpus animates the mouth from the phoneme timings that eSpeak NG
reports (:mod:`teller_agent.data.espeak`). Three steps:

1. **Phoneme -> viseme.** eSpeak's own mnemonics (Kirshenbaum-like ASCII, per
   language: ``tS`` for /tʃ/, ``A:`` for /ɑː/, ``n^`` for /ɲ/, ``&~`` for
   nasal /ɐ̃/, ...) are tokenised (diacritics such as ``: ; # - ~ ^`` and digits
   dropped, aspiration ``h`` after a consonant ignored) and each token mapped to
   one of the 15 MPEG-4 / Oculus visemes (:data:`VISEMES`). Diphthongs and other
   multi-token symbols (``aI``, ``oU``, ``@L``, ``ju``) are split in time.
   Unknown tokens fall back on their class: a token that looks like a vowel
   letter goes to the nearest vowel viseme, anything else to a neutral coronal
   consonant (``DD``) - never an error, since every language has its own names.
2. **Viseme -> articulation targets**: ``jaw_open``, ``lip_round``,
   ``lip_spread`` (the :mod:`~teller_agent.motion.articulation` bases) and
   ``closure`` (inner lips pressed together: 1 for p/b/m, 0.85 for f/v).
3. **Coarticulation** of jaw, rounding and spreading with dominance functions (Cohen & Massaro 1993, "Modeling
   coarticulation in synthetic visual speech"): each segment ``s`` exerts, on
   each parameter ``k``, a dominance ``D_sk(t) = a_sk * exp(-(tau / c_k)^1.5)``
   where ``tau`` is the time outside the segment (0 inside) and ``c_k`` a
   time constant that is longer before the segment (anticipation, 60-120 ms)
   than after it (carry-over). The parameter track is the dominance-weighted
   mean of the targets, ``sum_s D_sk T_sk / sum_s D_sk``. Strong dominance
   where a segment must reach its target (rounding of /u/, /S/) and weak
   dominance where the articulator is free (rounding during /t/, everything
   during /h/) give the classic effects: lips round during the /t/ of "too",
   the jaw undershoots in fast speech. These tracks are evaluated on a 4x
   finer grid than the video and averaged per frame.
4. **Lip closure** of p/b/m (and the near-closure of f/v) is a gesture that
   must complete, so it is not blended: it holds over the segment, ramps in
   over 50 ms before it (anticipation) and releases over 35 ms after it; the
   frame holding the middle of each closure always gets the full closure, so
   a 30 ms /p/ between two frame centres still shows closed lips.

Frame ``i`` covers ``[i / FPS, (i + 1) / FPS)`` of the audio.

Public API::

    VISEMES, VISEME_TARGETS
    phoneme_to_visemes(symbol) -> list[str]
    articulation_tracks(phonemes, num_frames, emphasis=None) -> dict[str, (T,) float32]
    tracks_to_expression(tracks) -> (T, 68, 3) float32 deltas
    phonemes_to_expression(phonemes, num_frames, emphasis=None) -> (T, 68, 3)
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np

from ..config import FPS
from ..motion.articulation import expression

__all__ = [
    "PARAMS",
    "VISEMES",
    "VISEME_TARGETS",
    "articulation_tracks",
    "phoneme_to_visemes",
    "phonemes_to_expression",
    "tracks_to_expression",
]

#: The MPEG-4 / Oculus viseme set (``sil`` = silence), plus ``hh``: a
#: transparent consonant (/h/, glottal stop, palatalisation marks) that takes
#: the shape of its neighbours.
VISEMES = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U", "hh")

#: Articulation parameters of a viseme target, in this order.
PARAMS = ("jaw_open", "lip_round", "lip_spread", "closure")

_VOWELS = frozenset({"aa", "E", "I", "O", "U"})

# viseme -> (jaw_open, lip_round, lip_spread, closure)
VISEME_TARGETS: Mapping[str, tuple[float, float, float, float]] = MappingProxyType({
    "sil": (0.0, 0.0, 0.0, 0.0),
    "PP": (0.0, 0.05, 0.0, 1.0),
    "FF": (0.06, 0.0, 0.15, 0.85),
    "TH": (0.18, 0.0, 0.15, 0.0),
    "DD": (0.16, 0.0, 0.1, 0.0),
    "kk": (0.22, 0.0, 0.05, 0.0),
    "CH": (0.12, 0.55, 0.0, 0.0),
    "SS": (0.06, 0.0, 0.35, 0.0),
    "nn": (0.14, 0.0, 0.1, 0.0),
    "RR": (0.16, 0.4, 0.0, 0.0),
    "aa": (0.72, 0.0, 0.1, 0.0),
    "E": (0.42, 0.0, 0.3, 0.0),
    "I": (0.2, 0.0, 0.6, 0.0),
    "O": (0.48, 0.6, 0.0, 0.0),
    "U": (0.18, 0.9, 0.0, 0.0),
    "hh": (0.3, 0.0, 0.0, 0.0),
})

# viseme -> dominance magnitude per parameter (jaw, round, spread); closure is a
# gesture, not blended (see articulation_tracks).
_DOMINANCE: Mapping[str, tuple[float, float, float]] = MappingProxyType({
    "sil": (0.6, 0.4, 0.4),
    "PP": (0.5, 0.2, 0.3),
    "FF": (0.5, 0.3, 0.6),
    "TH": (0.6, 0.3, 0.6),
    "DD": (0.5, 0.2, 0.3),
    "kk": (0.5, 0.2, 0.3),
    "CH": (0.6, 1.5, 0.8),
    "SS": (0.6, 0.3, 0.9),
    "nn": (0.5, 0.2, 0.3),
    "RR": (0.5, 0.9, 0.5),
    "aa": (1.5, 0.8, 0.8),
    "E": (1.2, 0.8, 0.9),
    "I": (1.0, 1.0, 1.5),
    "O": (1.2, 1.5, 1.2),
    "U": (1.0, 2.0, 1.5),
    "hh": (0.08, 0.08, 0.08),
})

#: (anticipation, carry-over) time constants in seconds per parameter.
_TIME_CONSTANTS = {"jaw_open": (0.08, 0.06), "lip_round": (0.12, 0.08), "lip_spread": (0.09, 0.06),
                   "closure": (0.05, 0.035)}  # closure: raised-cosine ramp in / release times
_SHAPE = 1.5
_SUBSAMPLES = 4

# Multi-character tokens first (longest match wins), then single characters.
_TOKENS: Mapping[str, str] = MappingProxyType({
    # affricates and special consonants
    "tS": "CH", "dZ": "CH", "tC": "CH", "dz;": "CH", "ts": "SS", "dz": "SS", "s\\": "CH", "z\\": "CH",
    "**": "RR", "ss": "SS", "t_s\\": "CH", "d_z\\": "CH", "t_s": "SS", "d_z": "SS", "p\\": "FF", "ng": "kk", "l^": "DD", "n^": "nn", "r*": "DD",
    # bilabials / labiodentals
    "p": "PP", "b": "PP", "m": "PP", "B": "PP", "f": "FF", "v": "FF", "F": "FF",
    # dentals, alveolars
    "T": "TH", "D": "TH", "t": "DD", "d": "DD", "l": "DD", "L": "DD", "*": "DD", "n": "nn", "N": "kk",
    # velars, uvulars, palatals
    "k": "kk", "g": "kk", "x": "kk", "G": "kk", "q": "kk", "X": "kk", "c": "kk", "J": "kk",
    # postalveolars, sibilants
    "S": "CH", "Z": "CH", "C": "CH", "s": "SS", "z": "SS",
    "r": "RR", "R": "RR",
    # transparent
    "h": "hh", "?": "hh", ";": "hh", "H": "hh",
    # glides (short vowels)
    "j": "I", "w": "U", "W": "O",
    # vowels
    "a": "aa", "A": "aa", "&": "aa", "6": "aa",
    "e": "E", "E": "E", "@": "E", "3": "E", "V": "E",
    "i": "I", "I": "I", "1": "I", "8": "I",
    "o": "O", "O": "O", "0": "O", "Q": "O", "Y": "O",
    "u": "U", "U": "U", "y": "U", "M": "U",
})
_MULTI = sorted((t for t in _TOKENS if len(t) > 1), key=len, reverse=True)
# Diacritics and digits that modify the preceding token (length, stress, nasal, palatal, variants).
_MODIFIERS = re.compile(r"[:#\-~^.'\",!2345679=|/<>+]")
_VOWEL_LETTERS = set("aeiouAEIOU@&03VYy68")


def phoneme_to_visemes(symbol: str) -> list[str]:
    """Visemes of one eSpeak phoneme mnemonic, in time order (diphthongs give two).

    ``"_"`` (and ``"_:"`` etc.) is silence; unknown tokens fall back on a vowel
    viseme if they start like a vowel, else on ``DD``.
    """
    if not symbol or symbol.startswith("_"):
        return ["sil"]
    out: list[str] = []
    i, n = 0, len(symbol)
    while i < n:
        if symbol[i] == ";" and out:  # palatalisation mark after a consonant: modifier
            i += 1
            continue
        for tok in _MULTI:
            if symbol.startswith(tok, i):
                out.append(_TOKENS[tok])
                i += len(tok)
                break
        else:
            ch = symbol[i]
            i += 1
            if ch == "h" and out and out[-1] not in _VOWELS and out[-1] != "hh":
                continue  # aspiration ("th", "tS;h")
            if _MODIFIERS.fullmatch(ch) and (out or ch not in "3456"):
                continue
            if ch in _TOKENS:
                out.append(_TOKENS[ch])
            elif ch.isalpha() or ord(ch) > 127:
                out.append("E" if ch in _VOWEL_LETTERS else "DD")
    if not out:
        return ["hh"]
    # Collapse repeats ("ss", "aa") into one.
    collapsed = [out[0]]
    for v in out[1:]:
        if v != collapsed[-1]:
            collapsed.append(v)
    return collapsed


def _segments(phonemes: Sequence[tuple[float, float, str]], emphasis: Sequence[float] | None):
    """(start, end, viseme, jaw scale) segments; multi-viseme symbols split in time (first part 55%)."""
    segs: list[tuple[float, float, str, float]] = []
    for k, (start, end, symbol) in enumerate(phonemes):
        if end <= start:
            continue
        scale = 1.0 if emphasis is None else float(emphasis[k])
        vis = phoneme_to_visemes(symbol)
        if len(vis) == 1:
            segs.append((start, end, vis[0], scale))
            continue
        weights = np.array([1.2] + [1.0] * (len(vis) - 1))
        bounds = start + (end - start) * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
        for j, v in enumerate(vis):
            segs.append((float(bounds[j]), float(bounds[j + 1]), v, scale))
    return segs


def articulation_tracks(
    phonemes: Sequence[tuple[float, float, str]],
    num_frames: int,
    emphasis: Sequence[float] | None = None,
    fps: float = FPS,
) -> dict[str, np.ndarray]:
    """Coarticulated per-frame articulation amounts.

    Args:
        phonemes: ``(start_s, end_s, symbol)`` intervals (eSpeak mnemonics).
        num_frames: T; frame ``i`` covers ``[i / fps, (i + 1) / fps)``.
        emphasis: optional per-phoneme factor on the jaw target (e.g. from
            loudness: stressed vowels open wider), same length as ``phonemes``.
        fps: frame rate.

    Returns:
        dict of (T,) float32 tracks for :data:`PARAMS` (``closure`` in [0, 1]).
    """
    if emphasis is not None and len(emphasis) != len(phonemes):
        raise ValueError(f"emphasis has {len(emphasis)} values for {len(phonemes)} phonemes")
    segs = _segments(phonemes, emphasis)
    if num_frames <= 0:
        return {p: np.zeros(0, np.float32) for p in PARAMS}
    if not segs:
        return {p: np.zeros(num_frames, np.float32) for p in PARAMS}
    t = (np.arange(num_frames * _SUBSAMPLES) + 0.5) / (fps * _SUBSAMPLES)
    starts = np.array([s[0] for s in segs])[:, None]
    ends = np.array([s[1] for s in segs])[:, None]
    before = np.clip(starts - t[None], 0.0, None)  # (S, N): time until the segment starts
    after = np.clip(t[None] - ends, 0.0, None)  # time since it ended
    tracks: dict[str, np.ndarray] = {}
    for k, name in enumerate(PARAMS[:3]):
        ant, car = _TIME_CONSTANTS[name]
        alpha = np.array([_DOMINANCE[s[2]][k] for s in segs])[:, None]
        target = np.array([VISEME_TARGETS[s[2]][k] * (s[3] if name == "jaw_open" else 1.0) for s in segs])[:, None]
        dom = alpha * np.exp(-((before / ant) ** _SHAPE) - ((after / car) ** _SHAPE)) + 1e-12
        fine = (dom * target).sum(0) / dom.sum(0)
        tracks[name] = fine.reshape(num_frames, _SUBSAMPLES).mean(1).astype(np.float32)
    # Lip closure is a gesture that must complete, not a blended target: it is
    # held over the segment, ramps in over the anticipation time and releases
    # over the carry-over time (raised cosines); overlapping gestures take the
    # maximum. Sampled at frame centres, and the frame holding the middle of each
    # closure gets its full amount, so a 30 ms /p/ between two frame centres
    # still shows closed lips on one frame.
    centre = (np.arange(num_frames) + 0.5) / fps
    closure = np.zeros(num_frames, np.float64)
    ant, car = _TIME_CONSTANTS["closure"]
    for start, end, vis, _ in segs:
        amount = VISEME_TARGETS[vis][3]
        if amount <= 0:
            continue
        pre, post = start - centre, centre - end
        g = np.ones(num_frames)
        g = np.where(pre > 0, 0.5 + 0.5 * np.cos(np.pi * np.clip(pre / ant, 0, 1)), g)
        g = np.where(post > 0, 0.5 + 0.5 * np.cos(np.pi * np.clip(post / car, 0, 1)), g)
        closure = np.maximum(closure, amount * g)
        k = int(0.5 * (start + end) * fps)
        if 0 <= k < num_frames:
            closure[k] = max(closure[k], amount)
    tracks["closure"] = closure.astype(np.float32)
    return tracks


def tracks_to_expression(tracks: Mapping[str, np.ndarray]) -> np.ndarray:
    """(T, 68, 3) expression deltas from :func:`articulation_tracks` output.

    ``closure`` lowers the jaw opening and then presses the inner lips together:
    the vertical gap between each upper/lower inner-lip pair (61/67, 62/66,
    63/65) is scaled by ``1 - closure``, meeting half way.
    """
    c = np.clip(np.asarray(tracks.get("closure", 0.0), np.float32), 0.0, 1.0)
    exp = expression(
        jaw_open=np.asarray(tracks["jaw_open"], np.float32) * (1.0 - 0.8 * c),
        lip_round=tracks["lip_round"],
        lip_spread=np.asarray(tracks["lip_spread"], np.float32) * (1.0 - 0.5 * c),
    )
    c = np.broadcast_to(np.atleast_1d(c), (exp.shape[0],))
    for up, lo in ((61, 67), (62, 66), (63, 65)):
        gap = exp[:, lo, 1] - exp[:, up, 1]
        shift = 0.5 * c * np.clip(gap, 0.0, None)
        exp[:, up, 1] += shift
        exp[:, lo, 1] -= shift
    return exp


def phonemes_to_expression(
    phonemes: Sequence[tuple[float, float, str]],
    num_frames: int,
    emphasis: Sequence[float] | None = None,
) -> np.ndarray:
    """(T, 68, 3) mouth expression deltas for phoneme intervals (see :func:`articulation_tracks`)."""
    if num_frames <= 0:
        return np.zeros((0, 68, 3), np.float32)
    return tracks_to_expression(articulation_tracks(phonemes, num_frames, emphasis))


