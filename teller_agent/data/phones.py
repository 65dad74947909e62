"""Phone labels for training audio from PocketSphinx's pretrained en-US acoustic model.

The generator's audio encoder is trained from scratch on a few minutes of real
talking video, so it learns the voices it has heard more than the speech sounds
in them. A phone recogniser trained on hundreds of hours of speech knows the
sounds: its per-frame phone labels, used as an auxiliary classification target
for the audio embedding (``train generator --aux-phones``), push the encoder
towards features that name the sound being made, whoever speaks. Teller
(arXiv 2503.18429, sec. 3.2) gets this from a pretrained Whisper encoder; no
such weights can be downloaded here, but the ``pocketsphinx`` wheel on PyPI
carries CMU Sphinx's en-US continuous model and phone language model.

Decoding is PocketSphinx's phone loop (``allphone``: no words, no transcript),
100 frames/s; each 25 fps video frame gets the phone covering its centre.
Filler and noise units map to silence. Non-English speech is labelled with the
nearest English phones (coarse, still phonetic). Labels are only a training
signal: nothing here runs at inference.

Public API::

    PHONES                                   the 39 ARPAbet phones plus SIL
    frame_phones(pcm, num_frames) -> (T,) int64 indices into PHONES
    dataset_phones(folder, clips, progress) -> {clip id: (T,) int64}, cached in the dataset folder
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np

from ..config import FPS
from ..errors import TellerError
from ..utils.atomic import atomic_path

#: ARPAbet phones of CMU Sphinx's en-US model (stress-free), then silence.
PHONES = ("AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
          "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z",
          "ZH", "SIL")
_INDEX = {p: i for i, p in enumerate(PHONES)}
SILENCE = _INDEX["SIL"]
#: PocketSphinx frames per second (10 ms shift).
_PS_RATE = 100
#: Cache file written into a dataset folder by :func:`dataset_phones`.
CACHE_NAME = "phones-pocketsphinx.npz"
#: What the cached labels were made with; a cache made otherwise is decoded again.
LABELS_VERSION = "pocketsphinx en-us allphone lw=2 dither=-80dBFS frame-centre v1"


class PhoneDecoder:
    """PocketSphinx phone-loop decoder over 16 kHz mono audio (one per process; not thread-safe).

    Raises:
        TellerError: ``pocketsphinx`` is not installed or its bundled en-US model is missing.
    """

    def __init__(self):
        try:
            from pocketsphinx import Decoder, get_model_path
        except ImportError as exc:
            raise TellerError("phone labels need the pocketsphinx package: pip install 'pocketsphinx>=5.1,<6'") from exc
        model = Path(get_model_path()) / "en-us"
        if not (model / "en-us" / "mdef").is_file() or not (model / "en-us-phone.lm.bin").is_file():
            raise TellerError(f"pocketsphinx's en-US model is missing under {model}; reinstall pocketsphinx")
        self._decoder = Decoder(hmm=str(model / "en-us"), allphone=str(model / "en-us-phone.lm.bin"),
                                lw=2.0, beam=1e-20, pbeam=1e-20, samprate=16000, loglevel="FATAL")

    def segments(self, pcm: np.ndarray) -> list[tuple[str, int, int]]:
        """``(phone, first frame, last frame)`` at 100 frames/s for ``pcm`` (N,) float32 in [-1, 1] at 16 kHz."""
        pcm = np.asarray(pcm, np.float32)
        # -80 dBFS of fixed noise: digital silence (exact zeros) otherwise decodes as a long /S/
        pcm = pcm + 1e-4 * np.random.default_rng(0).standard_normal(len(pcm)).astype(np.float32)
        pcm16 = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16)
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm16.tobytes(), full_utt=True)
        d.end_utt()
        return [(s.word, s.start_frame, s.end_frame) for s in d.seg()]


_DECODER: PhoneDecoder | None = None


def frame_phones(pcm: np.ndarray, num_frames: int, decoder: PhoneDecoder | None = None) -> np.ndarray:
    """Phone index (into :data:`PHONES`) of each 25 fps video frame: the phone covering the frame's centre.

    Args:
        pcm: (N,) float32 16 kHz mono audio; frame ``i`` covers ``[i / 25, (i + 1) / 25)`` seconds.
        num_frames: T video frames wanted (frames past the audio are silence).
        decoder: a :class:`PhoneDecoder` to reuse (default: one per process).

    Returns:
        (T,) int64.

    Raises:
        TellerError: pocketsphinx is missing.
    """
    global _DECODER
    if decoder is None:
        _DECODER = _DECODER or PhoneDecoder()
        decoder = _DECODER
    per_ps = np.full(num_frames * _PS_RATE // FPS + _PS_RATE, SILENCE, np.int64)
    for word, first, last in decoder.segments(pcm):
        phone = word.split("(")[0].upper()
        per_ps[max(first, 0) : min(last + 1, len(per_ps))] = _INDEX.get(phone, SILENCE)
    centres = (np.arange(num_frames) * _PS_RATE // FPS) + _PS_RATE // (2 * FPS)
    return per_ps[centres]


def dataset_phones(folder: str | Path, clips: Iterable, progress: bool = False) -> dict[str, np.ndarray]:
    """Frame phone labels of ``clips`` (objects with ``id``, ``audio``, ``num_frames``), cached in
    ``folder / CACHE_NAME`` so a dataset is decoded once (about 2 % of real time on one core).

    Returns:
        ``{clip id: (T,) int64}``.

    Raises:
        TellerError: pocketsphinx is missing.
    """
    from tqdm import tqdm

    path = Path(folder) / CACHE_NAME
    cached: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path) as z:
            if json.loads(str(z["phones"])) == [LABELS_VERSION, *PHONES]:
                cached = {k: z[k] for k in z.files if k != "phones"}
    clips = list(clips)
    todo = [c for c in clips if c.id not in cached or len(cached[c.id]) != c.num_frames]
    for c in tqdm(todo, desc="phone labels (pocketsphinx)", disable=not progress):
        cached[c.id] = frame_phones(c.audio, c.num_frames)
    if todo:
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, phones=json.dumps([LABELS_VERSION, *PHONES]), **cached)
    return {c.id: cached[c.id] for c in clips}
