"""Evaluation: lip-sync and motion-quality metrics on face68 landmark trajectories."""

from .metrics import (
    best_lag,
    blink_rate,
    count_blinks,
    eye_aspect_ratio,
    inter_ocular_distance,
    jitter,
    lagged_pearson,
    lip_vertex_error,
    mean_summary,
    mouth_opening,
    normalize_pose,
    pearson,
    shift,
    summarize,
    velocity,
)

__all__ = [
    "best_lag",
    "blink_rate",
    "count_blinks",
    "eye_aspect_ratio",
    "inter_ocular_distance",
    "jitter",
    "lagged_pearson",
    "lip_vertex_error",
    "mean_summary",
    "mouth_opening",
    "normalize_pose",
    "pearson",
    "shift",
    "summarize",
    "velocity",
]
