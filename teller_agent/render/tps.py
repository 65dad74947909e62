"""Thin-plate spline interpolation in 2D (Bookstein 1989), numpy with OpenCV's vectorised log.

``f(q) = a0 + a1 qx + a2 qy + sum_i w_i U(|q - c_i|)`` with ``U(r) = r^2 log r^2``
interpolates values given at control points ``c_i`` with the least bending
energy. A small ``regularization`` turns interpolation into smoothing, which
keeps the system solvable when two control points nearly coincide.
"""

from __future__ import annotations

import cv2
import numpy as np


def _kernel(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(M, N) ``U(|p_m - c_n|) = r^2 log r^2``, in the inputs' dtype (float32 per frame, float64 for the
    solve). The per-frame float32 case takes the log from OpenCV, several times faster than numpy's
    (within 1e-6 of it)."""
    d2 = points @ centers.T
    d2 *= -2.0
    d2 += (points * points).sum(1)[:, None]
    d2 += (centers * centers).sum(1)[None, :]
    np.maximum(d2, 1e-12, out=d2)
    log = cv2.log(d2) if d2.dtype == np.float32 and d2.ndim == 2 and d2.size else np.log(d2)
    log *= d2
    return log


def solve(centers: np.ndarray, values: np.ndarray, regularization: float = 0.0) -> np.ndarray:
    """TPS coefficients interpolating ``values`` at ``centers``.

    Args:
        centers: (N, 2) float control points (N >= 3, not all collinear).
        values: (N, C) float values at the control points.
        regularization: added to the kernel diagonal (0 = exact interpolation).

    Returns:
        (N + 3, C) float64 coefficients: N kernel weights, then the affine part.
    """
    centers = np.asarray(centers, np.float64)
    n = len(centers)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = _kernel(centers, centers)
    system[:n, :n] += regularization * np.eye(n)
    poly = np.concatenate([np.ones((n, 1)), centers], axis=1)
    system[:n, n:] = poly
    system[n:, :n] = poly.T
    rhs = np.zeros((n + 3, values.shape[1]))
    rhs[:n] = values
    return np.linalg.solve(system, rhs)


def evaluate(coefficients: np.ndarray, centers: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Evaluate a spline from :func:`solve` at ``points`` (M, 2); returns (M, C) float32."""
    n = len(centers)
    coef = coefficients.astype(np.float32)
    kern = _kernel(points.astype(np.float32), centers.astype(np.float32))
    return kern @ coef[:n] + coef[n] + points.astype(np.float32) @ coef[n + 1 :]
