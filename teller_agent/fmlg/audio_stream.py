"""Streamed audio embeddings for :class:`~teller_agent.fmlg.generator.MotionGenerator`, one per encoder kind.

Each stream takes log-mel frames as they are computed and returns the audio
embeddings (d_model) of the video frames they complete, in order, with the
look-ahead accounted for: frame ``t``'s embedding is returned only once the
audio it may depend on has arrived, and never earlier (a test checks it).

* ``"student"``: :class:`~teller_agent.audio.student.AudioStudent`, frame by frame
  (incremental conv state), ``lookahead`` frames late.
* ``"whisper"``: Whisper's encoder on slices (:class:`~teller_agent.audio.whisper.WhisperStream`):
  ``slice_frames`` embeddings at a time, when the slice's window is complete.
* ``"conv"``: the causal conv encoder of checkpoints before the Whisper features.
"""

from __future__ import annotations

import numpy as np
import torch

from ..audio.features import HOP_ALIGNED_LEAD, MELS_PER_FRAME
from ..audio.student import AudioStudent
from ..audio.whisper import WhisperFeatures
from .model import MotionTokenGenerator


class AudioStream:
    """Log-mel frames in, audio embeddings (n, d_model) out (see the module docstring).

    Attributes:
        mel_lead: samples of silence before each segment's audio for its log-mel
            (:func:`~teller_agent.audio.features.log_mel`).
        wait_frames: video frames of audio after frame ``t`` needed before its embedding comes out.
    """

    mel_lead: int = HOP_ALIGNED_LEAD
    wait_frames: int = 0
    #: (n, D) float32 encoder features behind the embeddings of the last :meth:`push` (None: not exposed).
    features: np.ndarray | None = None

    def reset(self) -> None:
        raise NotImplementedError

    def push(self, mel: np.ndarray) -> torch.Tensor:
        """``mel`` (M, 80), M a multiple of 4: the next mel frames. Returns (n, d_model) embeddings."""
        raise NotImplementedError


class _FrameStream(AudioStream):
    """A causal per-frame encoder whose ``step`` returns undelayed outputs (output u = frame u - lookahead)."""

    def __init__(self, step, embed, lookahead: int, mel_lead: int):
        self._step, self._embed, self.wait_frames, self.mel_lead = step, embed, lookahead, mel_lead
        self.reset()

    def reset(self) -> None:
        self._state = None
        self._outputs = 0

    def push(self, mel: np.ndarray) -> torch.Tensor:
        if len(mel) == 0:
            self.features = None
            return torch.zeros(0, 0)
        y, self._state = self._step(torch.from_numpy(np.ascontiguousarray(mel))[None], self._state)
        y = y[0]
        skip = max(0, min(len(y), self.wait_frames - self._outputs))  # the first outputs fill the look-ahead
        self._outputs += len(y)
        self.features = y[skip:].numpy()
        return self._embed(y[skip:])


class _WhisperStream(AudioStream):
    def __init__(self, features: WhisperFeatures, model: MotionTokenGenerator):
        self._stream = features.stream()
        self._model = model
        cfg = features.slices
        self.wait_frames = cfg.slice_frames - 1 + cfg.lookahead_frames

    def reset(self) -> None:
        self._stream.reset()

    def push(self, mel: np.ndarray) -> torch.Tensor:
        feats = self._stream.push(mel)
        return self._model.audio(torch.from_numpy(feats))


def make_audio_stream(model: MotionTokenGenerator, student: AudioStudent | None = None,
                      teacher: WhisperFeatures | None = None) -> AudioStream:
    """The :class:`AudioStream` of a generator (its ``cfg.audio_encoder``), with the student or the teacher
    it needs.

    Raises:
        ValueError: the encoder the generator was trained on is not given.
    """
    kind = model.cfg.audio_encoder
    if kind == "conv":
        return _FrameStream(model.audio.step, lambda y: y, model.cfg.lookahead, model.cfg.mel_lead)
    if kind == "student":
        if student is None:
            raise ValueError("this generator needs its audio student (audio_student.safetensors)")
        return _FrameStream(student.streamer(), model.audio, student.lookahead, HOP_ALIGNED_LEAD)
    if kind == "whisper":
        if teacher is None:
            raise ValueError("this generator needs the Whisper encoder (load_whisper_encoder)")
        return _WhisperStream(teacher, model)
    raise ValueError(f"unknown audio encoder {kind!r}")


__all__ = ["AudioStream", "make_audio_stream", "MELS_PER_FRAME"]
