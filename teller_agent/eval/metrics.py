"""Lip-sync and motion-quality metrics on ``face68`` landmark trajectories.

Pure numpy; one function per metric. Every function computes in float64 and
returns Python ``float``/``int`` scalars or float64 arrays.

Conventions
-----------
* A landmark trajectory is a ``(T, 68, 2)`` float array of pixel positions
  (x to the image right, y down) in the iBUG 300-W / dlib order (jaw 0-16,
  brows 17-26, nose 27-35, eyes 36-41 (image left) and 42-47, outer lips
  48-59, inner lips 60-67), sampled at :data:`~teller_agent.config.FPS`
  (25) frames per second.
* Derived series are ``(T,)`` float arrays, one value per frame.
* Face-relative lengths are in *inter-ocular distances* (IOD): the distance
  between the two eye centres, each the mean of its six landmarks.
* Lags and shifts are in frames. A positive lag/shift means *later*:
  ``shift(x, 2)[t] == x[t - 2]``, and ``best_lag(pred, true) == 2`` when
  ``pred`` shows at frame ``t`` what ``true`` showed at ``t - 2``.

Degenerate input never produces NaN, infinities or numpy warnings: a zero
denominator (no variance, coincident eye centres, zero eye width) gives 0 for
that quantity, and empty or too-short series give the neutral value each
function documents (0.0, 0, or an empty array). Non-finite *input* values are
not cleaned: NaN in gives NaN out.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..config import FPS
from ..face.face68 import INNER_LIP_PAIRS, LEFT_EYE, LIPS, NUM_LANDMARKS, RIGHT_EYE, RIGID_POINTS, eye_centers

# -- landmark index sets: teller_agent.face.face68 (iBUG 300-W / dlib 68-point order) --------


# -- validation and small helpers ----------------------------------------------


def _landmarks(landmarks: np.ndarray, name: str = "landmarks") -> np.ndarray:
    """``landmarks`` as a float64 ``(T, 68, 2)`` array, or ValueError."""
    arr = np.asarray(landmarks, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"{name} must have shape (T, {NUM_LANDMARKS}, 2), got {arr.shape}")
    return arr


def _series(x: np.ndarray, name: str = "series") -> np.ndarray:
    """``x`` as a float64 ``(T,)`` array, or ValueError."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D series of shape (T,), got {arr.shape}")
    return arr


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, 0 where ``den`` is 0 (no warnings)."""
    num, den = np.broadcast_arrays(np.asarray(num, np.float64), np.asarray(den, np.float64))
    out = np.zeros(num.shape, np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _is_constant(x: np.ndarray) -> bool:
    """True if the float64 series ``x`` (length >= 1) has no variance beyond rounding noise.

    Exactly equal values, or a spread (max - min) within 64 float64 ulps of the
    largest magnitude: below that, a "correlation" would only measure rounding.
    """
    spread = float(np.max(x) - np.min(x))
    return spread <= 64.0 * np.finfo(np.float64).eps * float(np.max(np.abs(x)))


# -- face geometry ---------------------------------------------------------------


def inter_ocular_distance(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the eye centres (:func:`teller_agent.face.face68.eye_centers`), per frame.

    Args:
        landmarks: ``(T, 68, 2)`` float pixels.

    Returns:
        ``(T,)`` float64 pixels (empty for T = 0).
    """
    centers = eye_centers(_landmarks(landmarks))
    return np.linalg.norm(centers[:, 1] - centers[:, 0], axis=-1)


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap per frame, in inter-ocular distances.

    Definition: the mean of the Euclidean distances ``|61-67|``, ``|62-66|`` and
    ``|63-65|`` (upper to lower inner lip, left, middle and right), divided by the
    frame's :func:`inter_ocular_distance`. Euclidean (not vertical) distances
    make it invariant to head roll as well as to translation and scale.

    Args:
        landmarks: ``(T, 68, 2)`` float pixels.

    Returns:
        ``(T,)`` float64, dimensionless (0 = lips touching; about 0.1-0.5 in
        speech). Frames whose eye centres coincide give 0. Empty for T = 0.
    """
    lm = _landmarks(landmarks)
    upper, lower = zip(*INNER_LIP_PAIRS)
    gaps = np.linalg.norm(lm[:, list(upper)] - lm[:, list(lower)], axis=-1)  # (T, 3)
    return _safe_divide(gaps.mean(axis=1), inter_ocular_distance(lm))


def eye_aspect_ratio(landmarks: np.ndarray) -> np.ndarray:
    """Eye aspect ratio (EAR, Soukupova & Cech, CVWW 2016), mean of both eyes, per frame.

    For one eye with landmarks ``p1..p6`` (36-41 or 42-47; p1, p4 the corners,
    p2, p3 the upper lid, p6, p5 the lower lid)::

        EAR = (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|)

    Args:
        landmarks: ``(T, 68, 2)`` float pixels.

    Returns:
        ``(T,)`` float64, dimensionless (about 0.25-0.35 open, near 0 closed).
        An eye of zero width contributes 0. Empty for T = 0.
    """
    lm = _landmarks(landmarks)
    ears = []
    for eye in (RIGHT_EYE, LEFT_EYE):
        p = lm[:, eye]  # (T, 6, 2): p1..p6 are p[:, 0]..p[:, 5]
        height = np.linalg.norm(p[:, 1] - p[:, 5], axis=-1) + np.linalg.norm(p[:, 2] - p[:, 4], axis=-1)
        width = np.linalg.norm(p[:, 0] - p[:, 3], axis=-1)
        ears.append(_safe_divide(height, 2.0 * width))
    return (ears[0] + ears[1]) / 2.0


# -- pose normalisation and lip vertex error -------------------------------------


def _canonical_reference(reference: np.ndarray, points: Sequence[int]) -> np.ndarray:
    """``reference`` (68, 2) moved to the canonical frame, as (68,) complex.

    Canonical frame: origin at the centroid of ``points``, x axis along the eye
    line (image-left eye centre to image-right eye centre), unit = the
    inter-ocular distance. A reference whose eye centres coincide is only
    centred (no rotation, no scaling: units stay pixels).
    """
    z = reference[:, 0] + 1j * reference[:, 1]
    eye_line = z[list(LEFT_EYE)].mean() - z[list(RIGHT_EYE)].mean()  # image left to image right
    if eye_line == 0:
        eye_line = 1.0 + 0.0j
    # Dividing by the complex eye vector rotates it onto +x and scales it to 1.
    return (z - z[list(points)].mean()) / eye_line


def normalize_pose(
    landmarks: np.ndarray,
    reference: np.ndarray | None = None,
    points: Sequence[int] = RIGID_POINTS,
) -> np.ndarray:
    """Remove per-frame translation, scale and in-plane rotation (similarity Procrustes).

    The reference shape (``reference``, or the trajectory's first frame) is put
    in a canonical frame: origin at the centroid of its ``points``, x axis along
    its eye line (image-left to image-right eye centre), unit length = its
    inter-ocular distance. Each frame is then fitted onto it by the
    least-squares similarity transform (rotation, uniform scale, translation;
    no reflection) of its ``points`` onto the reference's ``points``, and that
    transform is applied to all 68 landmarks.

    In 2D, with points as complex numbers ``z`` (frame) and ``w`` (reference)
    centred on their ``points`` centroids, the fit is ``w ~ a z`` with
    ``a = sum(conj(z) w) / sum(|z|^2)`` over ``points``; ``|a|`` is the scale and
    ``arg(a)`` the rotation.

    Args:
        landmarks: ``(T, 68, 2)`` float pixels.
        reference: ``(68, 2)`` float pixels, or None to use ``landmarks[0]``.
        points: landmark indices the fit uses (default :data:`RIGID_POINTS`:
            nose and eye corners, which do not move with speech or blinks);
            at least two distinct points are needed for a fit.

    Returns:
        ``(T, 68, 2)`` float64 in inter-ocular distances of the reference, in
        its canonical frame (x right along the eye line, y down). A frame whose
        ``points`` all coincide carries no scale or orientation; it maps every
        landmark to the origin (the minimum-norm least-squares fit ``a = 0``).
        A reference whose eye centres coincide is only centred (units stay
        pixels). T = 0 gives an empty ``(0, 68, 2)`` array.

    Raises:
        ValueError: wrong shapes, or no ``points``.
    """
    lm = _landmarks(landmarks)
    points = list(points)
    if not points:
        raise ValueError("normalize_pose needs at least one landmark index in points")
    if reference is None:
        if len(lm) == 0:
            return np.zeros((0, NUM_LANDMARKS, 2), np.float64)
        ref = lm[0]
    else:
        ref = _landmarks(np.asarray(reference)[None], "reference")[0]

    w = _canonical_reference(ref, points)  # (68,), its `points` centroid is 0
    z = lm[..., 0] + 1j * lm[..., 1]  # (T, 68)
    zc = z - z[:, points].mean(axis=1, keepdims=True)
    num = np.sum(np.conj(zc[:, points]) * w[points], axis=1)  # (T,)
    den = np.sum(np.abs(zc[:, points]) ** 2, axis=1)  # (T,)
    a = np.zeros(len(lm), np.complex128)
    np.divide(num, den, out=a, where=den > 0)
    out = a[:, None] * zc
    return np.stack([out.real, out.imag], axis=-1)


def lip_vertex_error(pred: np.ndarray, true: np.ndarray) -> float:
    """Lip vertex error (LVE), in inter-ocular distances.

    As in MeshTalk (Richard et al., ICCV 2021) and FaceFormer (Fan et al., CVPR
    2022): for each frame the maximal L2 distance over the lip keypoints
    (48-67) between generated and ground truth, averaged over all frames.

    Both trajectories are first pose- and size-normalised with
    :func:`normalize_pose` onto one common reference, ``true``'s first frame in
    its canonical frame (unit = its inter-ocular distance). Each trajectory is
    aligned frame by frame on *its own* :data:`RIGID_POINTS` (nose and eye
    corners; not the lids, brows, jaw or lips, which move with blinks,
    expression and speech). So head motion, framing and face size do not
    count; only lip shape and position relative to the nose and eyes do.

    Args:
        pred: ``(T, 68, 2)`` float pixels, generated.
        true: ``(T, 68, 2)`` float pixels, ground truth.

    Returns:
        Mean over frames of the per-frame maximal lip-keypoint distance, in
        inter-ocular distances (of ``true``'s first frame). Exactly 0.0 for
        identical inputs; 0.0 for T = 0.

    Raises:
        ValueError: wrong shapes or different frame counts.
    """
    pred, true = _landmarks(pred, "pred"), _landmarks(true, "true")
    if len(pred) != len(true):
        raise ValueError(f"pred has {len(pred)} frames, true has {len(true)}")
    if len(true) == 0:
        return 0.0
    reference = true[0]
    pred_n = normalize_pose(pred, reference)
    true_n = normalize_pose(true, reference)
    dist = np.linalg.norm(pred_n[:, LIPS] - true_n[:, LIPS], axis=-1)  # (T, 20)
    return float(dist.max(axis=1).mean())


# -- correlation and lag -----------------------------------------------------------


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation coefficient of two series.

    ``r = sum((a - mean a)(b - mean b)) / sqrt(sum((a - mean a)^2) sum((b - mean b)^2))``

    Args:
        a, b: ``(T,)`` float series of equal length.

    Returns:
        r in [-1, 1] as a float. 0.0 when either series is constant (zero
        variance, up to float64 rounding) or T < 2, never NaN for finite input.

    Raises:
        ValueError: not 1-D, or different lengths.
    """
    a, b = _series(a, "a"), _series(b, "b")
    if len(a) != len(b):
        raise ValueError(f"series lengths differ: {len(a)} vs {len(b)}")
    if len(a) < 2 or _is_constant(a) or _is_constant(b):
        return 0.0
    da, db = a - a.mean(), b - b.mean()
    r = float(np.dot(da, db) / np.sqrt(np.dot(da, da) * np.dot(db, db)))
    return float(np.clip(r, -1.0, 1.0))


def lagged_pearson(pred: np.ndarray, true: np.ndarray, lag: int) -> float:
    """Pearson r of ``pred[t]`` against ``true[t - lag]`` over the frames where both exist.

    Positive ``lag`` tests the hypothesis "pred lags behind true by ``lag``
    frames". The overlap has ``T - |lag|`` frames.

    Args:
        pred, true: ``(T,)`` float series of equal length.
        lag: frames, any sign.

    Returns:
        r as a float; 0.0 when the overlap has fewer than 2 frames or is
        constant in either series.

    Raises:
        ValueError: not 1-D, or different lengths.
    """
    pred, true = _series(pred, "pred"), _series(true, "true")
    if len(pred) != len(true):
        raise ValueError(f"series lengths differ: {len(pred)} vs {len(true)}")
    n = len(pred) - abs(lag)
    if n < 2:
        return 0.0
    if lag >= 0:
        return pearson(pred[lag:], true[:n])
    return pearson(pred[:n], true[-lag:])


def best_lag(pred: np.ndarray, true: np.ndarray, max_lag: int = 8) -> int:
    """The lag in frames, within ``[-max_lag, max_lag]``, maximising :func:`lagged_pearson`.

    Sign convention: positive = ``pred`` lags behind ``true`` (its events happen
    later). Example: ``true = [0, 0, 1, 0, 0, 0]`` and ``pred = [0, 0, 0, 1, 0, 0]``
    (the peak one frame later) give ``best_lag(pred, true) == +1``; in general
    ``best_lag(shift(true, k), true) == k``. At 25 fps one frame is 40 ms.

    Only lags leaving an overlap of at least 2 frames are tried. Ties go to the
    smaller ``|lag|``, then to the positive one; if no lag has r > 0 (e.g. a
    constant series) the result is 0.

    Args:
        pred, true: ``(T,)`` float series of equal length (e.g. mouth openings).
        max_lag: largest ``|lag|`` tried, >= 0.

    Returns:
        The lag as an int (0 for T < 2).

    Raises:
        ValueError: not 1-D, different lengths, or negative ``max_lag``.
    """
    pred, true = _series(pred, "pred"), _series(true, "true")
    if len(pred) != len(true):
        raise ValueError(f"series lengths differ: {len(pred)} vs {len(true)}")
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    limit = min(int(max_lag), len(pred) - 2)
    if limit < 0:  # T < 2: not even lag 0 has a correlation
        return 0
    best, best_r = 0, 0.0
    candidates = [0] + [sign * k for k in range(1, limit + 1) for sign in (1, -1)]  # 0, 1, -1, 2, -2, ...
    for lag in candidates:
        r = lagged_pearson(pred, true, lag)
        if r > best_r:
            best, best_r = lag, r
    return best


def shift(x: np.ndarray, frames: int) -> np.ndarray:
    """``x`` delayed by ``frames`` frames along axis 0, padded with its edge values.

    ``out[t] = x[clip(t - frames, 0, T - 1)]``: positive ``frames`` delays
    (events happen later, the first value repeats at the start), negative
    advances (the last value repeats at the end). Used for the "ground truth
    shifted by +-k frames" baselines, e.g. ``shift(true_landmarks, 3)``.

    Args:
        x: ``(T, ...)`` array (a series or a landmark trajectory).
        frames: shift in frames, any sign; ``|frames| >= T`` gives all-edge output.

    Returns:
        Array of ``x``'s shape and dtype (a copy; empty for T = 0).
    """
    arr = np.asarray(x)
    if arr.ndim == 0:
        raise ValueError("shift needs an array with a time axis, got a scalar")
    if len(arr) == 0:
        return arr.copy()
    index = np.clip(np.arange(len(arr)) - int(frames), 0, len(arr) - 1)
    return arr[index]


# -- smoothness ---------------------------------------------------------------------


def velocity(x: np.ndarray) -> float:
    """Mean absolute first difference: ``mean |x[t+1] - x[t]|``.

    Args:
        x: ``(T,)`` float series, or ``(T, ...)`` where every trailing element is
            its own series (the mean is over frames and elements).

    Returns:
        Float in ``x``'s units per frame (multiply by 25 for per second);
        0.0 for T < 2.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0 or len(arr) < 2:
        return 0.0
    return float(np.mean(np.abs(np.diff(arr, n=1, axis=0))))


def jitter(x: np.ndarray) -> float:
    """Mean absolute second difference: ``mean |x[t+1] - 2 x[t] + x[t-1]|``.

    Zero for any constant or linear motion; grows with frame-to-frame shake.

    Args:
        x: ``(T,)`` float series, or ``(T, ...)`` where every trailing element is
            its own series (the mean is over frames and elements).

    Returns:
        Float in ``x``'s units per frame squared (multiply by 625 for per
        second squared); 0.0 for T < 3.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0 or len(arr) < 3:
        return 0.0
    return float(np.mean(np.abs(np.diff(arr, n=2, axis=0))))


# -- blinks ---------------------------------------------------------------------------


def count_blinks(eye_openness: np.ndarray, threshold: float = 0.6, release: float = 0.8,
                 min_frames: int = 1) -> int:
    """Number of eye-closing events in a series of eye openness (e.g. :func:`eye_aspect_ratio`).

    Relative to the clip's median ``m`` (taken as the open-eye level): a blink
    starts once the openness stays below ``threshold * m`` for ``min_frames``
    consecutive frames, and it is counted then, once. The next blink can only
    start after the openness has risen above ``release * m`` (hysteresis, so a
    noisy dip counts once). A clip that starts with closed eyes counts that
    blink.

    Args:
        eye_openness: ``(T,)`` float series, larger = more open.
        threshold: closing level as a fraction of the median.
        release: re-opening level as a fraction of the median, >= ``threshold``.
        min_frames: frames below ``threshold`` that make a blink, >= 1.

    Returns:
        The count as an int; 0 for T = 0 or a median <= 0 (no open-eye level).
        Assumes the eyes are open most of the clip (else the median is not the
        open level).

    Raises:
        ValueError: not 1-D, ``release < threshold`` or ``min_frames < 1``.
    """
    x = _series(eye_openness, "eye_openness")
    if release < threshold:
        raise ValueError(f"release ({release}) must be >= threshold ({threshold})")
    if min_frames < 1:
        raise ValueError(f"min_frames must be >= 1, got {min_frames}")
    if len(x) == 0:
        return 0
    median = float(np.median(x))
    if not median > 0:
        return 0
    close_level, open_level = threshold * median, release * median
    count, run, closed = 0, 0, False
    for value in x:
        if closed:
            if value > open_level:
                closed, run = False, 0
        elif value < close_level:
            run += 1
            if run >= min_frames:
                closed, count = True, count + 1
        else:
            run = 0
    return count


def blink_rate(eye_openness: np.ndarray, fps: float = FPS, threshold: float = 0.6, release: float = 0.8,
               min_frames: int = 1) -> float:
    """Blinks per minute: :func:`count_blinks` over the clip's duration ``T / fps``.

    Args:
        eye_openness: ``(T,)`` float series, e.g. :func:`eye_aspect_ratio`.
        fps: frames per second of the series (default 25).
        threshold, release, min_frames: see :func:`count_blinks`.

    Returns:
        Blinks per minute as a float (a resting adult blinks about 15-20 times
        a minute); 0.0 for T = 0.

    Raises:
        ValueError: as :func:`count_blinks`, or ``fps <= 0``.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    blinks = count_blinks(eye_openness, threshold, release, min_frames)
    n = len(_series(eye_openness, "eye_openness"))
    if n == 0:
        return 0.0
    return blinks * 60.0 * fps / n


# -- one clip ----------------------------------------------------------------------------


def summarize(pred_landmarks: np.ndarray, true_landmarks: np.ndarray, fps: float = FPS,
              max_lag: int = 8) -> dict[str, float | int]:
    """All metrics of one clip, generated (``pred``) against ground truth (``true``).

    Args:
        pred_landmarks, true_landmarks: ``(T, 68, 2)`` float pixels, same T.
        fps: frame rate (default 25).
        max_lag: largest lag :func:`best_lag` tries, in frames.

    Returns:
        A dict of plain Python numbers:

        * ``num_frames`` (int) and ``duration_s`` (seconds);
        * ``mouth_r``: :func:`pearson` of the two :func:`mouth_opening` series;
        * ``lve``: :func:`lip_vertex_error`, inter-ocular distances;
        * ``best_lag`` (int frames, positive = pred late) and ``best_lag_r``
          (its :func:`lagged_pearson`), from the mouth openings;
        * ``mouth_std_pred``/``_true`` (IOD): standard deviation of the mouth openings (amplitude);
        * ``mouth_velocity_pred``/``_true`` (IOD per frame) and
          ``mouth_jitter_pred``/``_true`` (IOD per frame squared): :func:`velocity`
          and :func:`jitter` of the mouth openings;
        * ``blink_rate_pred``/``_true``: :func:`blink_rate` of the
          :func:`eye_aspect_ratio` series, blinks per minute.

        For T = 0 every value is 0 (0.0 for floats).

    Raises:
        ValueError: wrong shapes, different frame counts or ``fps <= 0``.
    """
    pred, true = _landmarks(pred_landmarks, "pred_landmarks"), _landmarks(true_landmarks, "true_landmarks")
    if len(pred) != len(true):
        raise ValueError(f"pred has {len(pred)} frames, true has {len(true)}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    mouth_pred, mouth_true = mouth_opening(pred), mouth_opening(true)
    lag = best_lag(mouth_pred, mouth_true, max_lag)
    return {
        "num_frames": len(true),
        "duration_s": len(true) / float(fps),
        "mouth_r": pearson(mouth_pred, mouth_true),
        "lve": lip_vertex_error(pred, true),
        "best_lag": lag,
        "best_lag_r": lagged_pearson(mouth_pred, mouth_true, lag),
        "mouth_std_pred": float(np.std(mouth_pred)) if len(mouth_pred) else 0.0,
        "mouth_std_true": float(np.std(mouth_true)) if len(mouth_true) else 0.0,
        "mouth_velocity_pred": velocity(mouth_pred),
        "mouth_velocity_true": velocity(mouth_true),
        "mouth_jitter_pred": jitter(mouth_pred),
        "mouth_jitter_true": jitter(mouth_true),
        "blink_rate_pred": blink_rate(eye_aspect_ratio(pred), fps),
        "blink_rate_true": blink_rate(eye_aspect_ratio(true), fps),
    }


# -- many clips ----------------------------------------------------------------------------

#: Keys of :func:`summarize` that add up over clips (the others are averaged).
ADDITIVE_KEYS = ("num_frames", "duration_s")


def mean_summary(summaries: Sequence[dict[str, float | int]], speakers: Sequence[str] | None = None
                 ) -> dict[str, float | int]:
    """Combine the :func:`summarize` dicts of several clips into one row.

    Every metric is the unweighted mean over clips (each clip counts once,
    whatever its length) or, with ``speakers`` (one label per summary), the
    mean over speakers of each speaker's frame-weighted mean
    (:func:`speaker_mean`), except :data:`ADDITIVE_KEYS` (``num_frames``,
    ``duration_s``), which are summed. ``best_lag`` becomes a float mean and
    ``abs_best_lag`` (mean of ``|best_lag|``, frames) is added, since lags of
    opposite signs would cancel in the mean. Non-numeric values are ignored.

    Args:
        summaries: dicts with the same numeric keys (e.g. from :func:`summarize`).

    Returns:
        A dict of plain Python numbers with a ``clips`` count; ``{"clips": 0}``
        for no summaries.

    Raises:
        ValueError: the dicts have different numeric keys.
    """
    if not summaries:
        return {"clips": 0}

    def numeric(d: dict) -> list[str]:
        return [k for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)]

    keys = numeric(summaries[0])
    for i, s in enumerate(summaries[1:], 1):
        if set(numeric(s)) != set(keys):
            raise ValueError(f"summary {i} has keys {sorted(numeric(s))}, summary 0 has {sorted(keys)}")
    out: dict[str, float | int] = {"clips": len(summaries)}
    frames = [int(s.get("num_frames", 1)) for s in summaries]

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if speakers is None else speaker_mean(values, speakers, frames)

    for k in keys:
        values = [s[k] for s in summaries]
        out[k] = sum(values) if k in ADDITIVE_KEYS else mean(values)
    if "best_lag" in keys:
        out["abs_best_lag"] = mean([abs(s["best_lag"]) for s in summaries])
    if speakers is not None:
        out["speakers"] = len(set(speakers))
    return out


def speaker_mean(values: Sequence[float], speakers: Sequence[str], frames: Sequence[int]) -> float:
    """The mean over speakers of each speaker's frame-weighted mean of per-clip ``values``.

    The headline aggregate of the lip-sync evaluation: a speaker with thirty 1.2 s clips counts as much as
    one with a single 50 s clip. 0.0 for no clips.

    Args:
        values: per clip (e.g. mouth-opening r at lag 0).
        speakers: per clip, the speaker label.
        frames: per clip, the frame count (weights within a speaker).
    """
    by: dict[str, list[tuple[float, int]]] = {}
    for v, s, n in zip(values, speakers, frames):
        by.setdefault(s, []).append((float(v), max(int(n), 1)))
    if not by:
        return 0.0
    return float(np.mean([np.average([v for v, _ in rows], weights=[n for _, n in rows]) for rows in by.values()]))
