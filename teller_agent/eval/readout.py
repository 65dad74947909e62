"""A linear readout of audio features: ridge regression, the floor a speech-to-motion model must clear.

Used in two places: the ``linear readout`` baseline row of ``teller-agent eval lipsync``
(Whisper features -> mouth motion features, fitted on the training speakers) and the
audio/video offset measurement of the real clips (:mod:`teller_agent.data.sync`,
Whisper features -> mouth opening).

Closed form on standardised inputs: ``w = (X'X + lambda I)^-1 X'(y - mean y)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils.atomic import atomic_path


@dataclass
class Readout:
    """A fitted ridge regression ``(T, D) -> (T, K)``.

    Attributes:
        mean, std: (D,) float64 input centre and scale (inputs are standardised as ``(x - mean) / std``
            before the weights); the centre is the inputs' mean, or the anchor of :func:`fit_readout`.
        weight: (D, K) float64.
        bias: (K,) float64 (the target mean; 0 with an anchor).
        context: the input is each frame's features with those of ``context`` frames before and after
            (edge frames repeated), i.e. ``D = (2 context + 1) * feature width``.
    """

    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    context: int = 0

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(T, feature width) features -> (T, K) predictions (float32)."""
        x = with_context(np.asarray(features, np.float64), self.context)
        return (((x - self.mean) / self.std) @ self.weight + self.bias).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write the readout as ``.npz`` (atomically)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, mean=self.mean, std=self.std, weight=self.weight, bias=self.bias,
                         context=np.int64(self.context))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Readout:
        """Read a readout written by :meth:`save` (OSError / ValueError when missing or corrupt)."""
        with np.load(path) as f:
            return cls(f["mean"], f["std"], f["weight"], f["bias"], int(f["context"]))


def with_context(x: np.ndarray, context: int) -> np.ndarray:
    """(T, D) -> (T, (2 context + 1) D): each frame with its ``context`` neighbours on either side."""
    if context == 0:
        return x
    t = len(x)
    return np.concatenate([x[np.clip(np.arange(t) + d, 0, t - 1)] for d in range(-context, context + 1)], 1)


def fit_readout(features: list[np.ndarray], targets: list[np.ndarray], lam: float = 1000.0, context: int = 0,
                weights: list[np.ndarray] | None = None, anchor: np.ndarray | None = None) -> Readout:
    """Fit a ridge readout on clips.

    Args:
        features: per clip (T_i, D) float features.
        targets: per clip (T_i,) or (T_i, K) float targets.
        lam: ridge penalty on the standardised inputs.
        context: neighbouring frames on each side added to every frame's input.
        weights: per clip (T_i,) bool or float frame weights (e.g. tracked frames only), default all 1.
        anchor: (D,) an input whose prediction is held at 0 (e.g. the features of silence, whose target is
            the rest face): the fit has no intercept and the penalty shrinks predictions toward 0 there
            instead of toward the targets' mean. Default: a free intercept.

    Raises:
        ValueError: no frames, or mismatched lengths.
    """
    xs, ys, ws = [], [], []
    for i, (f, y) in enumerate(zip(features, targets)):
        y = np.asarray(y, np.float64)
        y = y[:, None] if y.ndim == 1 else y
        if len(f) != len(y):
            raise ValueError(f"clip {i}: {len(f)} feature frames but {len(y)} target frames")
        xs.append(with_context(np.asarray(f, np.float64), context))
        ys.append(y)
        ws.append(np.ones(len(y)) if weights is None else np.asarray(weights[i], np.float64))
    if not xs or sum(len(x) for x in xs) == 0:
        raise ValueError("no frames to fit a readout on")
    x, y, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)[:, None]
    wsum = w.sum()
    mean = (w * x).sum(0) / wsum
    std = np.sqrt((w * (x - mean) ** 2).sum(0) / wsum) + 1e-6
    if anchor is not None:
        anchor = np.asarray(anchor, np.float64)
        if anchor.shape != mean.shape:
            raise ValueError(f"anchor has shape {anchor.shape}, the inputs {mean.shape}")
        mean = anchor
    xn = (x - mean) / std
    bias = (w * y).sum(0) / wsum if anchor is None else np.zeros(y.shape[1])
    a = xn.T @ (w * xn) + lam * np.eye(x.shape[1])
    weight = np.linalg.solve(a, xn.T @ (w * (y - bias)))
    return Readout(mean, std, weight, bias, context)
