"""Motion latents from real talking-head videos (training data for the speech-to-motion generator).

Pipeline, one clip at a time::

    clip = track_landmarks("talk.mp4")                  # 25 fps dlib landmarks (face-mesh lips) + 16 kHz audio
    motion, portrait = landmarks_to_motion(clip.landmarks, clip.valid, clip.frame_size)
    record = extract_clip("talk.mp4")                   # both, plus quality numbers
    save_record(record, "talk.npz"); record = load_record("talk.npz")

Tracking (:func:`track_landmarks`)
----------------------------------
Frames are read at 25 fps by timestamp (:func:`~teller_agent.media.read_video_frames`).
dlib's HOG detector finds the largest face on the first frame (whole frame).
After that the detector only searches a small window (:data:`ROI_WINDOW` = 2
box sides) around the box predicted from the previous frame's landmarks
(native resolution for faces of 90-130 px, rescaled to 110 px otherwise): 2-5 ms
instead of 20-80 ms for a full frame. When it finds the face, the 68-point
predictor runs in the detector's box (the boxes it was trained on); when it
does not (profiles, motion blur), the predictor runs in a box derived from the
previous frame's landmarks (the box's offset and size relative to the
upper-face landmarks are learnt from the detector's boxes), and the whole
frame is searched again every :data:`FULL_DETECT_EVERY` frames. A tracked
shape that looks degenerate (face width or size changing by more than 25 % in
one frame or by more than :data:`MAX_ANCHOR_RATIO` since the last detection,
eyes not above the mouth, the face mostly outside the image) triggers a fresh
full-frame detection; frames with no face are marked invalid in a boolean mask
(they never raise). A detection that does not overlap the track (a camera cut)
restarts it on the largest face.

Lips: with ``lips="mediapipe"`` (the default) each valid frame's lip points
48-67 are then replaced by MediaPipe Face Mesh points
(:func:`~teller_agent.face.mesh.with_mesh_lips`: the 468-point model run on a
crop placed by that frame's dlib landmarks), steadier than dlib's inner lip on
small faces (lower frame-to-frame jitter of the mouth opening). The
tracking itself (boxes, plausibility and size tests) uses dlib's shape only; a
frame whose mesh face-presence score is below
:data:`~teller_agent.face.mesh.MIN_PRESENCE` (0.5) keeps dlib's lips.
``lips="dlib"`` keeps dlib's lips everywhere.

Why not pure tracking (predictor in the previous frame's box, detector once a
second)? It is 1.5-3x faster on large frames, but the box feeds back into the
shape: on fast, expressive faces (``LivePortrait__d12``) the shape drifted and
grew or shrank by 40 % within a second; a per-frame local detection stays
within 0.01 face widths of detect-every-frame and is the default
(``detect_every=1``; larger values give the pure-tracking mode).

Motion (:func:`fit_motion`, :func:`landmarks_to_motion`)
--------------------------------------------------------
The landmarks are mapped into a *virtual square crop* with the default framing
(``TellerSettings.face_scale = 0.42``, ``face_center_y = 0.45``): one fixed
similarity per clip (no rotation) puts the clip's median face width at
``2 * 0.42`` crop-normalised units and its median landmark centroid at
``(0, 2 * 0.45 - 1)``. In that frame:

1. **Rest shape** (the reference the motion is relative to): every valid frame
   is aligned to a common anchor by a 2D similarity fitted on the stable points
   (generalised Procrustes, two rounds); the rest shape is the per-point median
   of the aligned shapes, except the mouth and lower jaw (points 3-13 and
   48-67), which are the median over the *closed-mouth* frames (inner-lip gap
   in the lowest :data:`CLOSED_MOUTH_QUANTILE` of the clip). So the rest pose is
   the clip's typical head pose (its pitch = yaw = 0, roll from the eye line)
   and its mouth is closed, like a portrait photo; speech then opens the mouth
   with positive deltas. The rest shape is lifted with ``FACE68.lift`` (generic
   depth template).
2. **Rigid head motion** per frame: a weak-perspective (orthographic + scale)
   fit of the rest keypoints' canonical 3D positions to the observed stable
   points (nose 27-35, eye corners 36/39/42/45, brows 17-26 at half weight;
   not the jaw contour or lips), solved for pitch, yaw, roll, scale and 2D
   translation with batched Levenberg-Marquardt in float64, using the same
   rotation as :func:`~teller_agent.motion.rotation_matrix`.
3. **Expression** is the residual, in the convention of
   :meth:`~teller_agent.motion.PortraitKeypoints.drive`
   (``x_d = s (x_c R + delta) + t``: delta is added after the rotation):
   ``delta_xy = (x_obs - t) / s - (x_c R)_xy``, ``delta_z = 0`` (unobservable).
   Driving the portrait with the raw fit reproduces the landmarks exactly.
4. **Outliers**: valid frames whose stable-point residual is far above the
   clip's typical one, or whose head scale is off the clip's median by more
   than :data:`OUTLIER_SCALE_RATIO` (a lost track, another face) are marked invalid.
5. **Gaps**: invalid frames are filled by linear interpolation of the flat
   latent between the nearest valid frames (held constant at the ends).
6. **Smoothing**: Savitzky-Golay filters (zero lag), order 2, on the pose
   (pitch, yaw, roll, t, scale; window :data:`POSE_WINDOW` = 7 frames = 0.28 s)
   and on the expression (window :data:`EXPRESSION_WINDOW` = 5 frames = 0.2 s,
   which keeps lip closures of 2-3 frames visible). The reported reprojection
   error compares the smoothed, driven keypoints with the raw landmarks.

Errors are reported in pixels of a 512 x 512 frame with that framing (one face
width = 215 px).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DEFAULT_FACE_CENTER_Y, DEFAULT_FACE_SCALE, FPS
from ..errors import AudioLoadError, TellerError
from ..face.face68 import MOUTH_AND_CHIN, NUM_LANDMARKS, POSE_FIT_POINTS, POSE_FIT_WEIGHTS, inner_lip_gap
from ..face.landmarks import Box, detect_faces, face_width, predict_landmarks
from ..face.mesh import MIN_PRESENCE, FaceMesh, lips_from_mesh
from ..media import load_audio, probe, read_video_frames
from ..utils.atomic import atomic_path
from ..motion.latent import MotionLatent, PortraitKeypoints
from ..motion.space import FACE68

log = logging.getLogger(__name__)

#: Format version of records written by :func:`save_record`.
RECORD_VERSION = 2  # 2: records say where their lip points come from (``lips``)

#: While tracking, the detector re-runs in a window around the face every this many frames
#: (default of ``track_landmarks(detect_every=...)``).
DETECT_EVERY = 1
#: While tracking with no face found near the track, the whole frame is searched every this many frames.
FULL_DETECT_EVERY = 25
#: While no face is tracked, the whole frame is searched every this many frames.
LOST_RETRY_EVERY = 2
#: Face size (pixels) in the rescaled window of a local detection (dlib's HOG window is 80 px).
ROI_FACE_PX = 110
#: Faces between these sizes (pixels) are detected at native resolution.
ROI_MIN_FACE_PX, ROI_MAX_FACE_PX = 90, 130
#: Side of the local detection window in tracked-box sides.
ROI_WINDOW = 2.0
#: With ``detect_every > 1``: a local detection overlapping the tracked box less than this (IoU)
#: re-anchors the track on it (otherwise the track keeps its own box).
REANCHOR_IOU = 0.6
#: The tracked face may grow or shrink by at most this factor between two detections.
MAX_ANCHOR_RATIO = 1.35
#: A change of the face width (or size) by more than this fraction in one frame
#: marks the tracked shape as degenerate and triggers a fresh detection.
MAX_SIZE_JUMP = 0.25
#: A detection overlapping the tracked box less than this (IoU) starts a new track on the largest face.
MIN_TRACK_IOU = 0.3

#: Framing of the virtual crop (defaults of :class:`~teller_agent.config.TellerSettings`).
FACE_SCALE = DEFAULT_FACE_SCALE
FACE_CENTER_Y = DEFAULT_FACE_CENTER_Y
#: Side of the square frame in which errors are reported (pixels).
ERROR_FRAME_SIZE = 512

#: Frames whose inner-lip gap is in this lowest fraction of the clip count as "mouth closed".
CLOSED_MOUTH_QUANTILE = 0.2

#: Savitzky-Golay windows (frames at 25 fps) and polynomial order.
POSE_WINDOW = 7
EXPRESSION_WINDOW = 5
SMOOTH_ORDER = 2

#: A frame is an outlier when its stable-point RMS residual exceeds this many
#: times the clip's median residual and also :data:`OUTLIER_MIN_PX` (512-px frame).
OUTLIER_FACTOR = 6.0
OUTLIER_MIN_PX = 8.0
#: ... or when its head scale is off the clip's median by more than this factor (another face, a broken track).
OUTLIER_SCALE_RATIO = 1.6

# Upper-face points (no lower jaw, no mouth): their box does not change when the mouth opens.
_UPPER_FACE = np.array(sorted(set(range(68)) - set(range(4, 13)) - set(range(48, 68))))


# ---------------------------------------------------------------------------
# audio
# ---------------------------------------------------------------------------


def load_clip_audio(path: str | os.PathLike[str], sample_rate: int = 16000) -> tuple[np.ndarray, int]:
    """The speech of a clip: its own audio track, or the ``.wav`` with the same stem beside it.

    Returns:
        ``(pcm, sr)``: mono float32 PCM in [-1, 1] at ``sample_rate`` Hz.

    Raises:
        AudioLoadError: the video has no audio stream and no ``<stem>.wav``
            partner exists (or the audio cannot be decoded).
    """
    path = Path(path)
    try:
        has_audio = probe(path)["audio_codec"] is not None
    except (FileNotFoundError, ValueError) as exc:
        raise AudioLoadError(f"cannot read {path}: {exc}") from exc
    if has_audio:
        return load_audio(path, sample_rate)
    partner = path.with_suffix(".wav")
    if partner.is_file():
        return load_audio(partner, sample_rate)
    raise AudioLoadError(
        f"{path} has no audio stream and there is no partner file {partner.name} beside it; "
        "training clips need speech: mux the audio into the video or put the .wav with the same stem next to it"
    )


# ---------------------------------------------------------------------------
# tracking
# ---------------------------------------------------------------------------


@dataclass
class TrackedClip:
    """Landmarks of one video at ``fps`` frames per second.

    Attributes:
        landmarks: (T, 68, 2) float32 pixel coordinates in the original video
            (x right, y down); NaN on invalid frames.
        valid: (T,) bool, True where a face was tracked.
        fps: frame rate of ``landmarks``.
        frame_size: ``(width, height)`` of the video in pixels.
        audio: (N,) float32 mono PCM at ``sample_rate`` Hz.
        sample_rate: Hz.
        path: the video file.
        detections: how many times the face detector ran.
        seconds: wall time of tracking (decoding included, audio excluded).
        lips: where the lip points 48-67 come from: ``"dlib"`` (all frames) or
            ``"mediapipe"`` (face mesh, except the frames ``mesh_lips`` marks False).
        mesh_lips: (T,) bool, True where points 48-67 are the face mesh's;
            all False for ``lips="dlib"`` and on invalid frames.
    """

    landmarks: np.ndarray
    valid: np.ndarray
    fps: int
    frame_size: tuple[int, int]
    audio: np.ndarray
    sample_rate: int
    path: str
    detections: int = 0
    seconds: float = 0.0
    lips: str = "dlib"
    mesh_lips: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.landmarks.shape[0])

    @property
    def frames_per_second(self) -> float:
        """Tracking throughput (frames per wall-clock second)."""
        return self.num_frames / self.seconds if self.seconds > 0 else float("nan")


def _upper_box(lm: np.ndarray) -> tuple[float, float, float]:
    """Centre x, centre y and size (sqrt of area) of the upper-face landmarks' bounding box."""
    pts = lm[_UPPER_FACE]
    lo, hi = pts.min(0), pts.max(0)
    c = (lo + hi) / 2
    return float(c[0]), float(c[1]), float(np.sqrt(max((hi[0] - lo[0]) * (hi[1] - lo[1]), 1e-6)))


def _box_relation(lm: np.ndarray, box: Box) -> np.ndarray:
    """Detector box relative to the upper-face box: (dx, dy, w, h) in units of its size."""
    cx, cy, size = _upper_box(lm)
    left, top, right, bottom = box
    return np.array([((left + right) / 2 - cx) / size, ((top + bottom) / 2 - cy) / size,
                     (right - left) / size, (bottom - top) / size])


def _box_from_landmarks(lm: np.ndarray, rel: np.ndarray) -> Box:
    cx, cy, size = _upper_box(lm)
    x, y = cx + rel[0] * size, cy + rel[1] * size
    hw, hh = rel[2] * size / 2, rel[3] * size / 2
    return (x - hw, y - hh, x + hw, y + hh)


def _iou(a: Box, b: Box) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _plausible(lm: np.ndarray, width: int, height: int) -> bool:
    """A face-like shape: finite, a few pixels wide, eyes above the mouth, mostly inside the image."""
    if not np.all(np.isfinite(lm)):
        return False
    left_eye, right_eye = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_vec = right_eye - left_eye
    iod = float(np.linalg.norm(eye_vec))
    if iod < 3.0:
        return False
    down = lm[48:68].mean(0) - (left_eye + right_eye) / 2  # eyes -> mouth
    # Rotating the eye line by +90 degrees (y down) gives the face's "down" direction.
    cos = float(np.dot(down, np.array([-eye_vec[1], eye_vec[0]]))) / (iod * max(float(np.linalg.norm(down)), 1e-6))
    if cos < 0.5:
        return False
    inside = (lm[:, 0] >= -0.5) & (lm[:, 0] <= width - 0.5) & (lm[:, 1] >= -0.5) & (lm[:, 1] <= height - 0.5)
    return bool(inside.mean() >= 0.5)


def _size_jump(lm: np.ndarray, prev: np.ndarray) -> bool:
    for a, b in ((face_width(lm), face_width(prev)), (_upper_box(lm)[2], _upper_box(prev)[2])):
        if b <= 0 or abs(a - b) > MAX_SIZE_JUMP * b:
            return True
    return False


def _detect_near(frame: np.ndarray, box: Box) -> list[Box]:
    """Faces in a window of :data:`ROI_WINDOW` box sides around ``box``: a few
    milliseconds instead of a full-frame detection."""
    import cv2

    from ..face.landmarks import get_detector

    height, width = frame.shape[:2]
    size = max(box[2] - box[0], box[3] - box[1], 1.0)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = ROI_WINDOW / 2 * size
    x0, y0 = max(int(cx - half), 0), max(int(cy - half), 0)
    x1, y1 = min(int(cx + half) + 1, width), min(int(cy + half) + 1, height)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return []
    # Native resolution when the face is comfortably above dlib's 80-px HOG window (the
    # detector's boxes then match a full-frame detection); rescaled when tiny or huge (speed).
    scale = 1.0 if ROI_MIN_FACE_PX <= size <= ROI_MAX_FACE_PX else ROI_FACE_PX / size
    if scale == 1.0:
        rects = get_detector()(np.ascontiguousarray(frame[y0:y1, x0:x1]), 0)
        return [(r.left() + x0, r.top() + y0, r.right() + x0, r.bottom() + y0) for r in rects]
    window = cv2.resize(frame[y0:y1, x0:x1], None, fx=scale, fy=scale,
                        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    rects = get_detector()(np.ascontiguousarray(window), 0)
    return [tuple((v + 0.5) / scale - 0.5 + o for v, o in zip((r.left(), r.top(), r.right(), r.bottom()),
                                                            (x0, y0, x0, y0))) for r in rects]


def track_landmarks(
    path: str | os.PathLike[str],
    fps: int = FPS,
    progress: bool = False,
    audio: bool = True,
    detect_every: int = DETECT_EVERY,
    lips: str = "mediapipe",
) -> TrackedClip:
    """68 dlib landmarks per frame of a video at ``fps``, tracked from frame to frame.

    See the module docstring for the tracking scheme. Invalid frames (no face)
    are flagged in ``valid`` and hold NaN landmarks.

    Args:
        path: video file.
        fps: output frame rate (frames are picked by timestamp).
        progress: log a line every 250 frames (``logging`` INFO).
        audio: also decode the speech (:func:`load_clip_audio`, 16 kHz).
        detect_every: run the local detector every this many frames. 1 (the
            default): the predictor always gets the detector's box when the
            detector finds the face, and the previous frame's landmarks only
            when it does not (profiles). Larger: pure tracking in between,
            faster on big frames but prone to drift on fast, expressive faces.
        lips: ``"mediapipe"`` (default): on every valid frame, points 48-67 are
            replaced by MediaPipe Face Mesh lip points
            (:mod:`teller_agent.face.mesh`), except where
            the mesh's face-presence score is below
            :data:`~teller_agent.face.mesh.MIN_PRESENCE`; ``"dlib"``: dlib's
            lips. Tracking uses dlib's shape either way. ``clip.mesh_lips``
            says which frames got mesh lips.

    Raises:
        FileNotFoundError, ValueError: not a readable video, or an unknown ``lips``.
        FaceMeshError: ``lips="mediapipe"`` and the mesh model or the LiteRT
            runtime is missing (raised before any frame is decoded).
        AudioLoadError: ``audio`` is True and the clip has no speech (no audio
            stream and no ``.wav`` partner).
    """
    if lips not in ("mediapipe", "dlib"):
        raise ValueError(f"lips must be 'mediapipe' or 'dlib', got {lips!r}")
    mesh: FaceMesh | None = None
    if lips == "mediapipe":
        mesh = FaceMesh()
        mesh.load()  # fail before decoding anything
    path = Path(path)
    pcm, sr = load_clip_audio(path) if audio else (np.zeros(0, np.float32), 16000)
    start = time.perf_counter()
    out: list[np.ndarray] = []
    valid: list[bool] = []
    from_mesh: list[bool] = []
    nan = np.full((NUM_LANDMARKS, 2), np.nan, np.float32)
    prev: np.ndarray | None = None  # landmarks of the previous frame while tracking
    rel = np.zeros(4)  # detector box relative to the upper-face box
    anchor = 0.0  # upper-face size at the last detection
    since_detect = since_full = 0
    detections = 0
    width = height = 0

    def start_on(frame: np.ndarray, boxes: list[Box]) -> np.ndarray | None:
        """Landmarks of the first plausible face among ``boxes``; sets ``rel`` and ``anchor``."""
        nonlocal rel, anchor
        for box in boxes:
            cand = predict_landmarks(frame, box)
            if _plausible(cand, width, height):
                rel, anchor = _box_relation(cand, box), _upper_box(cand)[2]
                return cand
        return None

    for i, frame in enumerate(read_video_frames(path, fps)):
        height, width = frame.shape[:2]
        since_detect += 1
        since_full += 1
        lm: np.ndarray | None = None
        if prev is None:
            if i == 0 or since_full >= LOST_RETRY_EVERY:
                detections += 1
                since_full = since_detect = 0
                lm = start_on(frame, detect_faces(frame))
        else:
            track_box = _box_from_landmarks(prev, rel)
            lm = predict_landmarks(frame, track_box)
            if since_detect >= detect_every:
                detections += 1
                since_detect = 0
                boxes = _detect_near(frame, track_box)
                if not boxes and since_full >= FULL_DETECT_EVERY:  # e.g. a profile, or the track drifted off
                    boxes, since_full = detect_faces(frame), 0
                if boxes:
                    since_full = 0
                    best = max(boxes, key=lambda b: _iou(b, track_box))
                    overlap = _iou(best, track_box)
                    if detect_every > 1 and overlap >= REANCHOR_IOU:  # the track agrees: keep it, refine the box relation
                        rel = 0.5 * rel + 0.5 * _box_relation(lm, best)
                        anchor = _upper_box(lm)[2]
                    else:  # the track drifted (or the shot changed): restart on the detection
                        if overlap < MIN_TRACK_IOU:
                            best = boxes[0]  # largest
                            prev = None  # a new face: no size-jump test against the old one
                        lm = start_on(frame, [best])
            if lm is not None:
                size = _upper_box(lm)[2]
                drifted = not (1 / MAX_ANCHOR_RATIO <= size / max(anchor, 1e-6) <= MAX_ANCHOR_RATIO)
                if not _plausible(lm, width, height) or drifted or (prev is not None and _size_jump(lm, prev)):
                    lm = None
            if lm is None and since_detect > 0:  # degenerate: one fresh detection on this frame
                detections += 1
                since_full = since_detect = 0
                lm = start_on(frame, detect_faces(frame))
        prev = lm  # tracking continues from dlib's shape
        used_mesh = False
        if lm is not None and mesh is not None:
            result = mesh.run(frame, lm)
            if result.presence >= MIN_PRESENCE:
                lm = lm.copy()
                lm[48:68] = lips_from_mesh(result.points)
                used_mesh = True
        out.append(lm if lm is not None else nan)
        valid.append(lm is not None)
        from_mesh.append(used_mesh)
        if progress and (i + 1) % 250 == 0:
            elapsed = time.perf_counter() - start
            log.info("%s: %d frames, %.1f frames/s, %d valid", path.name, i + 1, (i + 1) / elapsed, sum(valid))
    seconds = time.perf_counter() - start
    if not out:
        raise ValueError(f"{path} decoded to no frames")
    return TrackedClip(
        landmarks=np.stack(out).astype(np.float32), valid=np.array(valid, bool), fps=int(fps),
        frame_size=(int(width), int(height)), audio=pcm, sample_rate=int(sr), path=str(path),
        detections=detections, seconds=seconds, lips=lips, mesh_lips=np.array(from_mesh, bool),
    )


# ---------------------------------------------------------------------------
# motion fitting
# ---------------------------------------------------------------------------


def _rot64(angles: np.ndarray) -> np.ndarray:
    """float64 twin of :func:`~teller_agent.motion.rotation_matrix`; ``angles`` (..., 3) radians (pitch, yaw, roll)."""
    p, y, r = angles[..., 0], angles[..., 1], angles[..., 2]
    one, zero = np.ones_like(p), np.zeros_like(p)
    cp, sp, cy, sy, cr, sr = np.cos(p), np.sin(p), np.cos(y), np.sin(y), np.cos(r), np.sin(r)
    rx = np.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(p.shape + (3, 3))
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(p.shape + (3, 3))
    rz = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(p.shape + (3, 3))
    return np.swapaxes(rz @ ry @ rx, -1, -2)


def _similarity(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted 2D similarity mapping ``src`` onto ``dst``: ``dst ~ scale * src @ rot + shift``."""
    w = w / w.sum()
    ms, md = (w[:, None] * src).sum(0), (w[:, None] * dst).sum(0)
    a, b = src - ms, dst - md
    cov = (w[:, None] * a).T @ b
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1.0, d]) @ vt
    scale = (sig * [1.0, d]).sum() / max((w * (a**2).sum(1)).sum(), 1e-12)
    return float(scale), rot, md - scale * ms @ rot


def _rigid_residual(params: np.ndarray, canon: np.ndarray, obs: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted residuals (T, 2N) of ``s (x_c R)_xy + t`` against ``obs``; params (T, 6) =
    pitch, yaw, roll (radians), log s, tx, ty."""
    rot = _rot64(params[:, :3])
    proj = np.exp(params[:, 3])[:, None, None] * (canon[None] @ rot)[..., :2] + params[:, None, 4:6]
    return ((proj - obs) * np.sqrt(w)[None, :, None]).reshape(len(params), -1)


def _fit_rigid(canon: np.ndarray, obs: np.ndarray, w: np.ndarray, init: np.ndarray, iters: int = 30) -> np.ndarray:
    """Batched Levenberg-Marquardt for the weak-perspective head pose of every frame."""
    p = init.astype(np.float64).copy()
    lam = np.full(len(p), 1e-3)
    r = _rigid_residual(p, canon, obs, w)
    cost = (r**2).sum(1)
    eps = 1e-6
    for _ in range(iters):
        jac = np.empty(r.shape + (6,))
        for k in range(6):
            dp = np.zeros(6)
            dp[k] = eps
            jac[..., k] = (_rigid_residual(p + dp, canon, obs, w) - _rigid_residual(p - dp, canon, obs, w)) / (2 * eps)
        jtj = np.einsum("tnk,tnl->tkl", jac, jac)
        jtr = np.einsum("tnk,tn->tk", jac, r)
        diag = np.einsum("tkk->tk", jtj)
        a = jtj + lam[:, None, None] * np.eye(6)[None] * (diag[:, None, :] + 1e-9)
        step = -np.linalg.solve(a, jtr[..., None])[..., 0]
        trial = p + step
        r_new = _rigid_residual(trial, canon, obs, w)
        cost_new = (r_new**2).sum(1)
        better = cost_new < cost
        p[better], r[better], cost[better] = trial[better], r_new[better], cost_new[better]
        lam = np.where(better, lam * 0.3, lam * 10.0).clip(1e-9, 1e9)
        if np.all(np.abs(step).max(1) < 1e-9):
            break
    return p


def _interp_invalid(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill rows of (T, D) ``x`` where ``valid`` is False by linear interpolation over time."""
    if valid.all():
        return x
    t = np.arange(len(x))
    good = np.flatnonzero(valid)
    out = x.copy()
    for d in range(x.shape[1]):
        out[~valid, d] = np.interp(t[~valid], good, x[good, d])
    return out


def _smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Savitzky-Golay along axis 0 (order :data:`SMOOTH_ORDER`), window shrunk for short clips."""
    n = len(x)
    window = min(window, n if n % 2 else n - 1)
    if window <= SMOOTH_ORDER:
        return x
    from scipy.signal import savgol_filter  # here, not at import: scipy.signal takes seconds to import

    return savgol_filter(x, window, SMOOTH_ORDER, axis=0, mode="interp")


@dataclass
class MotionFit:
    """Result of :func:`fit_motion`.

    Attributes:
        motion: the smoothed, gap-filled :class:`MotionLatent` (T frames).
        portrait: the clip's rest keypoints in the virtual crop.
        raw_motion: the per-frame fit before smoothing and gap filling
            (invalid frames hold the interpolated values too).
        observed: (T, 68, 2) float32 landmarks in crop-normalised units of the virtual crop (NaN where invalid).
        valid: (T,) bool: the input mask minus rigid-fit outliers.
        outliers: (T,) bool: frames dropped as outliers.
        crop: ``(x0, y0, side)`` of the virtual crop in original pixels (floats).
        reproj_error_px: mean distance (512-px frame) between ``portrait.drive(motion)``
            and the observed landmarks over valid frames and all 68 points.
        rigid_error_px: RMS residual of the rigid fit on the stable points (512-px frame).
    """

    motion: MotionLatent
    portrait: PortraitKeypoints
    raw_motion: MotionLatent
    observed: np.ndarray
    valid: np.ndarray
    outliers: np.ndarray
    crop: tuple[float, float, float]
    reproj_error_px: float
    rigid_error_px: float
    stats: dict[str, Any] = field(default_factory=dict)


def fit_motion(
    landmarks: np.ndarray,
    valid: np.ndarray | None = None,
    frame_size: tuple[int, int] | None = None,
    smooth: bool = True,
) -> MotionFit:
    """Motion latents (``face68`` space) of tracked landmarks, relative to the clip's rest shape.

    See the module docstring for the method.

    Args:
        landmarks: (T, 68, 2) pixel coordinates (NaN allowed on invalid frames).
        valid: (T,) bool mask; default: frames with finite landmarks.
        frame_size: ``(width, height)`` of the video; when given, frames with
            most landmarks outside it are treated as invalid.
        smooth: apply the Savitzky-Golay smoothing (the raw fit is always in ``raw_motion``).

    Raises:
        TellerError: no valid frame.
        ValueError: wrong shapes.
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must have shape (T, 68, 2), got {lm.shape}")
    n = len(lm)
    ok = np.all(np.isfinite(lm), axis=(1, 2))
    if valid is not None:
        valid = np.asarray(valid, bool)
        if valid.shape != (n,):
            raise ValueError(f"valid must have shape ({n},), got {valid.shape}")
        ok &= valid
    if frame_size is not None:
        w_img, h_img = frame_size
        with np.errstate(invalid="ignore"):
            inside = ((lm[..., 0] >= -0.5) & (lm[..., 0] <= w_img - 0.5)
                      & (lm[..., 1] >= -0.5) & (lm[..., 1] <= h_img - 0.5)).mean(1)
        ok &= inside >= 0.5
    if not ok.any():
        raise TellerError("no valid frame: no face was tracked in this clip")
    good = np.flatnonzero(ok)

    # 1. The virtual crop: fixed per clip, face width 2 * FACE_SCALE, centroid at (0, 2 * FACE_CENTER_Y - 1).
    widths = np.linalg.norm(lm[good, 16] - lm[good, 0], axis=1)
    ref_width = float(np.median(widths))
    centre = np.median(lm[good].mean(1), axis=0)
    half = ref_width / FACE_SCALE / 2
    offset = np.array([0.0, 2 * FACE_CENTER_Y - 1])
    obs = (lm - centre) / half + offset
    obs[~ok] = np.nan
    side = 2 * half
    crop = (float(centre[0] - half * (1 + offset[0])), float(centre[1] - half * (1 + offset[1])), float(side))

    # 2. Rest shape: generalised Procrustes on stable points, median, closed mouth from closed frames.
    stable = np.array(POSE_FIT_POINTS)
    wts = POSE_FIT_WEIGHTS
    anchor = np.median(obs[good], axis=0)
    aligned = np.empty((len(good), NUM_LANDMARKS, 2))
    for _ in range(2):
        for j, t in enumerate(good):
            s, rot, shift = _similarity(obs[t, stable], anchor[stable], wts)
            aligned[j] = s * obs[t] @ rot + shift
        anchor = np.median(aligned, axis=0)
    gaps = inner_lip_gap(aligned)
    closed = gaps <= np.quantile(gaps, CLOSED_MOUTH_QUANTILE)
    rest = np.median(aligned, axis=0)
    rest[list(MOUTH_AND_CHIN)] = np.median(aligned[closed][:, list(MOUTH_AND_CHIN)], axis=0)
    portrait = FACE68.lift((rest + 1.0).astype(np.float32), 2)  # frame_size 2: pixel p -> p - 1 = rest
    canon = portrait.canonical.astype(np.float64)

    # 3. Rigid head motion on the stable points, initialised by a 2D similarity to the rest shape.
    init = np.zeros((len(good), 6))
    rest_stable = rest[stable]
    for j, t in enumerate(good):
        s, rot, shift = _similarity(rest_stable, obs[t, stable], wts)
        ang = np.arctan2(rot[0, 1], rot[0, 0])  # rest @ rot: rotation of the rest shape, y down
        init[j] = [0.0, 0.0, np.deg2rad(portrait.roll) + ang, np.log(s * portrait.scale),
                   *(portrait.t[:2] * s) @ rot + shift]
    params = _fit_rigid(canon[stable], obs[good][:, stable], wts, init)
    resid = _rigid_residual(params, canon[stable], obs[good][:, stable], np.ones(len(stable)))
    rms = np.sqrt((resid.reshape(len(good), -1, 2) ** 2).sum(-1).mean(1)) * (ERROR_FRAME_SIZE / 2)

    # 4. Outliers: a rigid residual far above the clip's typical one.
    bad = rms > max(OUTLIER_FACTOR * float(np.median(rms)), OUTLIER_MIN_PX)
    rel_scale = np.exp(params[:, 3] - np.median(params[:, 3]))
    bad |= (rel_scale < 1 / OUTLIER_SCALE_RATIO) | (rel_scale > OUTLIER_SCALE_RATIO)
    if bad.all():
        bad[:] = False
    outliers = np.zeros(n, bool)
    outliers[good[bad]] = True
    keep = good[~bad]
    params = params[~bad]
    rms = rms[~bad]
    ok = ok & ~outliers
    obs[outliers] = np.nan

    # 5. Expression residual in the drive() convention: delta = (x - t) / s - (x_c R), z = 0.
    rot = _rot64(params[:, :3])
    s = np.exp(params[:, 3])
    rotated = canon[None] @ rot
    exp = np.zeros((len(keep), NUM_LANDMARKS, 3))
    exp[..., :2] = (obs[keep] - params[:, None, 4:6]) / s[:, None, None] - rotated[..., :2]

    full = np.zeros((n, 3 * NUM_LANDMARKS + 7))
    full[keep, : 3 * NUM_LANDMARKS] = exp.reshape(len(keep), -1)
    k3 = 3 * NUM_LANDMARKS
    full[keep, k3] = np.rad2deg(params[:, 0]) - portrait.pitch
    full[keep, k3 + 1] = np.rad2deg(params[:, 1]) - portrait.yaw
    full[keep, k3 + 2] = np.rad2deg(params[:, 2]) - portrait.roll
    full[keep, k3 + 3] = params[:, 4] - portrait.t[0]
    full[keep, k3 + 4] = params[:, 5] - portrait.t[1]
    full[keep, k3 + 6] = s / portrait.scale
    full = _interp_invalid(full, ok)
    raw = MotionLatent.from_flat(full.astype(np.float32), NUM_LANDMARKS, FACE68.name)

    # 6. Smoothing: pose and expression separately.
    if smooth:
        full[:, :k3] = _smooth(full[:, :k3], EXPRESSION_WINDOW)
        full[:, k3:] = _smooth(full[:, k3:], POSE_WINDOW)
    motion = MotionLatent.from_flat(full.astype(np.float32), NUM_LANDMARKS, FACE68.name)

    driven = portrait.drive(motion)[..., :2].astype(np.float64)
    dist = np.linalg.norm(driven[ok] - obs[ok], axis=-1) * (ERROR_FRAME_SIZE / 2)
    raw_dist = np.linalg.norm(portrait.drive(raw)[ok][..., :2] - obs[ok], axis=-1) * (ERROR_FRAME_SIZE / 2)
    stats = {
        "raw_reproj_error_px": float(raw_dist.mean()),
        "max_reproj_error_px": float(dist.max()),
        "face_width_px": ref_width,
        "closed_frames": int(closed.sum()),
        "outlier_frames": int(outliers.sum()),
    }
    return MotionFit(
        motion=motion, portrait=portrait, raw_motion=raw, observed=obs.astype(np.float32), valid=ok,
        outliers=outliers, crop=crop, reproj_error_px=float(dist.mean()), rigid_error_px=float(np.sqrt((rms**2).mean())),
        stats=stats,
    )


def landmarks_to_motion(
    landmarks: np.ndarray,
    valid: np.ndarray | None = None,
    frame_size: tuple[int, int] | None = None,
) -> tuple[MotionLatent, PortraitKeypoints]:
    """Smoothed ``face68`` motion of tracked landmarks and the clip's rest keypoints.

    ``portrait.drive(motion)[..., :2]`` reproduces the landmarks mapped into the
    virtual crop (see :func:`fit_motion`, which also returns the mapping and
    quality numbers).
    """
    fit = fit_motion(landmarks, valid, frame_size)
    return fit.motion, fit.portrait


# ---------------------------------------------------------------------------
# whole clips and records
# ---------------------------------------------------------------------------


def extract_clip(path: str | os.PathLike[str], fps: int = FPS, progress: bool = False,
                 lips: str = "mediapipe") -> dict[str, Any]:
    """Track a clip and fit its motion.

    Returns:
        A record dict: ``motion`` (:class:`MotionLatent`), ``portrait``
        (:class:`PortraitKeypoints`), ``audio`` (float32 PCM), ``sample_rate``
        (16000), ``valid`` ((T,) bool, after outlier removal), ``fps``,
        ``reproj_error_px``, ``rigid_error_px``, ``landmarks`` ((T, 68, 2)
        original pixels, NaN where no face), ``crop`` (virtual crop
        ``(x0, y0, side)``), ``frame_size`` ``(w, h)``, ``source`` (path),
        ``track_seconds``, ``fit_seconds``, ``lips`` (``"mediapipe"`` or ``"dlib"``: where the lip
        points come from, see :func:`track_landmarks`).

    Raises:
        AudioLoadError: the clip has no speech; TellerError: no face at all.
    """
    clip = track_landmarks(path, fps=fps, progress=progress, lips=lips)
    t0 = time.perf_counter()
    fit = fit_motion(clip.landmarks, clip.valid, clip.frame_size)
    return {
        "motion": fit.motion,
        "portrait": fit.portrait,
        "audio": clip.audio,
        "sample_rate": clip.sample_rate,
        "valid": fit.valid,
        "fps": clip.fps,
        "reproj_error_px": fit.reproj_error_px,
        "rigid_error_px": fit.rigid_error_px,
        "landmarks": clip.landmarks,
        "crop": fit.crop,
        "frame_size": clip.frame_size,
        "source": clip.path,
        "track_seconds": clip.seconds,
        "fit_seconds": time.perf_counter() - t0,
        "lips": clip.lips,
    }


_MOTION_KEYS = ("exp", "pitch", "yaw", "roll", "t", "scale")


def save_record(record: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a record from :func:`extract_clip` as one ``.npz`` (atomically: a failed write leaves no file)."""
    path = Path(path)
    motion: MotionLatent = record["motion"]
    portrait: PortraitKeypoints = record["portrait"]
    arrays: dict[str, Any] = {f"motion_{k}": getattr(motion, k) for k in _MOTION_KEYS}
    arrays.update(
        version=RECORD_VERSION,
        space=motion.space,
        portrait_canonical=portrait.canonical,
        portrait_pose=np.array([portrait.pitch, portrait.yaw, portrait.roll], np.float64),
        portrait_t=portrait.t,
        portrait_scale=float(portrait.scale),
        audio=np.asarray(record["audio"], np.float32),
        sample_rate=int(record["sample_rate"]),
        valid=np.asarray(record["valid"], bool),
        fps=int(record["fps"]),
        reproj_error_px=float(record["reproj_error_px"]),
        rigid_error_px=float(record.get("rigid_error_px", np.nan)),
        landmarks=np.asarray(record.get("landmarks", np.zeros((0, NUM_LANDMARKS, 2))), np.float32),
        crop=np.asarray(record.get("crop", (np.nan,) * 3), np.float64),
        frame_size=np.asarray(record.get("frame_size", (0, 0)), np.int64),
        source=str(record.get("source", "")),
        lips=str(record.get("lips", "dlib")),
    )
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def load_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a record written by :func:`save_record` (same keys, minus the timings).

    Raises:
        TellerError: missing, unreadable or of another version.
    """
    path = Path(path)
    if not path.is_file():
        raise TellerError(f"record {path} does not exist; write one with save_record()")
    try:
        with np.load(path, allow_pickle=False) as data:
            f = {k: data[k] for k in data.files}
    except Exception as exc:  # zip/format errors of every kind
        raise TellerError(f"record {path} is not a readable .npz ({exc}); re-extract it") from exc
    if "version" not in f or int(f["version"]) != RECORD_VERSION:
        raise TellerError(f"record {path} is not a version-{RECORD_VERSION} motion record; re-extract it")
    motion = MotionLatent(*(f[f"motion_{k}"] for k in _MOTION_KEYS), space=str(f["space"]))
    pose = f["portrait_pose"]
    portrait = PortraitKeypoints(f["portrait_canonical"].astype(np.float32), float(pose[0]), float(pose[1]),
                                 float(pose[2]), f["portrait_t"].astype(np.float32), float(f["portrait_scale"]))
    return {
        "motion": motion,
        "portrait": portrait,
        "audio": f["audio"],
        "sample_rate": int(f["sample_rate"]),
        "valid": f["valid"].astype(bool),
        "fps": int(f["fps"]),
        "reproj_error_px": float(f["reproj_error_px"]),
        "rigid_error_px": float(f["rigid_error_px"]),
        "landmarks": f["landmarks"],
        "crop": tuple(float(v) for v in f["crop"]),
        "frame_size": tuple(int(v) for v in f["frame_size"]),
        "source": str(f["source"]),
        "lips": str(f["lips"]),
    }
