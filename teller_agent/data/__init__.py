"""Training data: per-frame motion latents extracted from real talking-head videos.

Public API (see :mod:`teller_agent.data.extract`)::

    track_landmarks(path, fps=25, progress=False) -> TrackedClip
    load_clip_audio(path, sample_rate=16000) -> (pcm, sr)
    fit_motion(landmarks, valid, frame_size=None) -> MotionFit
    landmarks_to_motion(landmarks, valid, frame_size=None) -> (MotionLatent, PortraitKeypoints)
    extract_clip(path) -> dict
    save_record(record, path) / load_record(path) -> dict
"""

from .extract import (
    RECORD_VERSION,
    MotionFit,
    TrackedClip,
    extract_clip,
    fit_motion,
    landmarks_to_motion,
    load_clip_audio,
    load_record,
    save_record,
    track_landmarks,
)

__all__ = [
    "RECORD_VERSION",
    "MotionFit",
    "TrackedClip",
    "extract_clip",
    "fit_motion",
    "landmarks_to_motion",
    "load_clip_audio",
    "load_record",
    "save_record",
    "track_landmarks",
]
