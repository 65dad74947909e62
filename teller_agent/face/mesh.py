"""MediaPipe Face Mesh (468 points) on a dlib-derived face ROI, for clean lip landmarks.

This runs the landmark model of MediaPipe Face Mesh (Kartynnik, Ablavatski,
Grishchenko and Grundmann, *Real-time Facial Surface Geometry from Monocular
Video on Mobile GPUs*, arXiv 1907.06724, 2019): ``face_landmark.tflite`` from
the mediapipe 0.10.21 wheel, vendored in ``teller_agent/face/mediapipe/``
(Apache-2.0, see the ``NOTICE`` there), run with LiteRT (``ai-edge-litert``),
without the ``mediapipe`` package (whose protobuf pin conflicts with livekit's).
Its 468 points give steadier lip contours than dlib's 68-point predictor,
whose inner-lip points are noisy on small faces; :func:`with_mesh_lips`
replaces dlib's lip points 48-67 by mesh points.

Pipeline (per frame, :meth:`FaceMesh.run`)
------------------------------------------
1. **ROI** (:func:`roi_from_landmarks`): MediaPipe crops a square, roll-normalised
   region around the face (1.5x the face detector's box, or, while tracking, 1.5x
   the previous frame's mesh box; rotated so the eye line is horizontal). Here the
   face is already located by dlib's 68 landmarks: the crop is centred on their
   centroid, its side is :data:`ROI_SCALE` (4.3) times their RMS distance from
   the centroid (about 1.6x the long side of their bounding box, brows to chin),
   and its roll is the angle of the line from the image-left to the image-right
   eye centre. Centroid and RMS radius average all 68 points, so one stray jaw
   point moves the crop less than a bounding box would. The mouth opening's
   frame-to-frame jitter hardly depends on the crop rule, and a second pass with
   the crop recomputed from the mesh (as MediaPipe does from the previous frame)
   doubles the cost without measurably helping, so there is none (the
   comparison: ``docs/results/design_measurements.md``).
2. **Crop**: ``cv2.warpAffine`` (bilinear, border replicated, as MediaPipe's
   ``ImageCroppingCalculator``) to :data:`INPUT_SIZE` x :data:`INPUT_SIZE` RGB,
   scaled to float32 in [0, 1] (MediaPipe's ``output_tensor_float_range``; a
   [-1, 1] input was less stable under small ROI shifts and farther from
   dlib's lips).
3. **Model**: input ``(1, 192, 192, 3)`` float32; outputs 1404 floats (468 x (x,
   y, z) in crop pixels, z relative to the face's centre, same scale as x) and
   one face-flag logit; the presence score is its sigmoid.
4. **Back to the frame**: the inverse affine maps x, y to frame pixels; z is
   divided by the crop's scale (frame pixels, relative, MediaPipe's convention).

Coordinates follow :mod:`teller_agent.face.landmarks`: pixel ``(i, j)`` is centred
at ``x = i, y = j``; the crop is built in MediaPipe's continuous convention
(``x + 0.5``) and mapped back to it.

Lip mapping
-----------
:data:`FACE68_LIPS_FROM_MESH` gives, for face68 points 48-67 (iBUG order: 48-59
outer lip from the image-left mouth corner over the upper lip, 60-67 inner lip
from the image-left inner corner), a pair of mesh indices whose mean is the
point; a single mesh point is written twice. It was checked on 152 images
(60 portraits from ``../shared/data/portraits`` and 92 frames of four talking
clips) against dlib's points: every face68 lip point took the mesh point (or the
mean of two neighbours on the same contour) nearest to dlib's on the median
image. Median distance to dlib's point: 0.026-0.040 inter-ocular distances
(1-3 px on a 60-px eye distance); the mouth corner 48 is image-left of 54 on
every image, and the outer upper lip is above the lower lip on every image.
Points 49, 53, 55 and 59 (between the corner and the cupid's bow / lower-lip
middle) are means of two mesh points: single points were 0.054-0.071 away,
the means 0.033-0.039.

Threads: a :class:`FaceMesh` is not thread-safe (one LiteRT interpreter with
fixed input and output buffers); use one instance per thread.
:func:`with_mesh_lips` without a ``mesh`` uses one instance per thread.
"""

from __future__ import annotations

import hashlib
import math
import threading
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..errors import CheckpointError

#: The vendored landmark model (MediaPipe 0.10.21, ``mediapipe/modules/face_landmark/face_landmark.tflite``).
MODEL_PATH = Path(__file__).resolve().parent / "mediapipe" / "face_landmark.tflite"

#: SHA-256 of :data:`MODEL_PATH`; checked before the model is loaded.
MODEL_SHA256 = "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"

#: Side of the model's square input crop (pixels).
INPUT_SIZE = 192

#: Number of mesh points.
NUM_MESH_POINTS = 468

#: ROI side in RMS radii of the 68 dlib points around their centroid (about
#: 1.6x the long side of their bounding box; see the module docstring).
ROI_SCALE = 4.3

#: Below this face-presence score the mesh is not used for a frame's lips.
#: MediaPipe's own tracking threshold (``min_tracking_confidence``) is 0.5 too.
#: On real faces the score is above 0.9 (above 0.999 on 99.8 % of 1,345 tracked
#: frames of 13 clips, 0.91 at worst); a crop shifted off the face by 0.9 of
#: its side scores below 0.01.
MIN_PRESENCE = 0.5

#: Mesh indices for face68 points 48..67: a pair per point, the point is their
#: mean (one mesh point is written twice). Verified against dlib (module docstring).
FACE68_LIPS_FROM_MESH: tuple[tuple[int, int], ...] = (
    # outer lip 48-59: image-left corner, upper lip to the image-right corner, lower lip back
    (61, 61), (40, 39), (37, 37), (0, 0), (267, 267), (269, 270),
    (291, 291), (405, 321), (314, 314), (17, 17), (84, 84), (181, 91),
    # inner lip 60-67: image-left inner corner, upper inner lip, image-right inner corner, lower inner lip
    (78, 78), (82, 82), (13, 13), (312, 312), (308, 308), (317, 317), (14, 14), (87, 87),
)

_LIP_INDEX = np.array(FACE68_LIPS_FROM_MESH, dtype=np.intp)  # (20, 2)


class FaceMeshError(CheckpointError):
    """The MediaPipe face mesh cannot run: its model file is missing or corrupt,
    or the LiteRT runtime (``ai-edge-litert``) is not installed. The message names the fix."""


class MeshResult(NamedTuple):
    """Output of :meth:`FaceMesh.run`.

    Attributes:
        points: ``(468, 3) float32``: x, y in frame pixels (x right, y down);
            z in the same pixel scale, relative to the face (smaller is nearer
            the camera), MediaPipe's convention.
        presence: face-presence score in [0, 1] (sigmoid of the model's face flag).
    """

    points: np.ndarray
    presence: float


class Roi(NamedTuple):
    """A square, rotated crop region in frame pixels.

    Attributes:
        center: ``(2,) float64`` crop centre (x, y), pixels.
        side: side length in pixels.
        angle: roll in radians: the crop's x axis is the frame's x axis rotated
            by ``angle`` (positive turns x towards y, i.e. clockwise on screen).
    """

    center: np.ndarray
    side: float
    angle: float


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_model(path: Path | None = None) -> Path:
    """Check that the face mesh model file exists and has :data:`MODEL_SHA256`.

    Args:
        path: model file; default :data:`MODEL_PATH`.

    Returns:
        The checked path.

    Raises:
        FaceMeshError: the file is missing or its SHA-256 differs.
    """
    path = Path(MODEL_PATH if path is None else path)
    restore = (
        "it ships inside the teller-agent package (teller_agent/face/mediapipe/face_landmark.tflite): "
        "reinstall teller-agent (from a checkout: git checkout -- teller_agent/face/mediapipe), or extract "
        "mediapipe/modules/face_landmark/face_landmark.tflite from the mediapipe 0.10.21 wheel "
        "(pip download --no-deps mediapipe==0.10.21) to that path"
    )
    if not path.is_file():
        raise FaceMeshError(f"MediaPipe face mesh model {path} is missing; {restore}")
    actual = sha256_of(path)
    if actual != MODEL_SHA256:
        raise FaceMeshError(
            f"MediaPipe face mesh model {path} has SHA-256 {actual}, expected {MODEL_SHA256} "
            f"(the file is corrupt or another model version); {restore}"
        )
    return path


def roi_from_landmarks(landmarks: np.ndarray, scale: float = ROI_SCALE) -> Roi:
    """The model's crop for a face given its 68 dlib landmarks (module docstring, step 1).

    Args:
        landmarks: ``(68, 2)`` pixel coordinates, dlib order, finite.
        scale: crop side in RMS radii of the points around their centroid.

    Returns:
        :class:`Roi`: centroid of the 68 points, ``scale`` times their RMS radius
        (measured in the roll-normalised frame, the same either way), and the
        roll of the eye line (image-left eye centre to image-right eye centre).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_vec = lm[42:48].mean(0) - lm[36:42].mean(0)
    angle = math.atan2(eye_vec[1], eye_vec[0])
    center = lm.mean(0)
    radius = math.sqrt(float(((lm - center) ** 2).sum(1).mean()))
    return Roi(center, scale * radius, angle)


def _crop_affine(roi: Roi) -> np.ndarray:
    """``(2, 3)`` affine from frame pixel indices to crop pixel indices (cv2 convention)."""
    s = INPUT_SIZE / roi.side
    c, sn = math.cos(roi.angle), math.sin(roi.angle)
    a = s * np.array([[c, sn], [-sn, c]])  # s * R(angle)^T
    # Continuous coordinates (pixel index + 0.5): u = a (p - center) + INPUT_SIZE / 2.
    b = INPUT_SIZE / 2 - a @ roi.center
    return np.hstack([a, (a @ np.array([0.5, 0.5]) + b - 0.5)[:, None]])


class FaceMesh:
    """MediaPipe's 468-point face landmark model, cropped by dlib landmarks.

    One LiteRT interpreter per instance (``num_threads=1``), created on first
    use (:meth:`load`): about 0.03 s, then 2-4 ms per face on one CPU core.
    Not thread-safe: use one instance per thread.

    Args:
        model_path: the ``.tflite`` file; default :data:`MODEL_PATH` (read when
            the interpreter is created). Its SHA-256 must be :data:`MODEL_SHA256`.
    """

    def __init__(self, model_path: str | Path | None = None):
        self.model_path = None if model_path is None else Path(model_path)
        self._interpreter = None
        self._input = self._points = self._flag = 0

    def load(self) -> None:
        """Check the model file and create the interpreter (no-op when done already).

        Raises:
            FaceMeshError: the model file is missing or corrupt, or
                ``ai_edge_litert`` is not importable (the ``train`` extra).
        """
        if self._interpreter is not None:
            return
        path = check_model(self.model_path)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise FaceMeshError(
                f"the MediaPipe face mesh needs the LiteRT runtime, which is not importable ({exc}); "
                "install it with: pip install 'teller-agent[train]' (or pip install ai-edge-litert)"
            ) from exc
        try:
            interpreter = Interpreter(model_path=str(path), num_threads=1)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise FaceMeshError(f"LiteRT cannot load the face mesh model {path}: {exc}") from exc
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        sizes = {int(np.prod(d["shape"])): d["index"] for d in outputs}
        if (len(inputs) != 1 or tuple(inputs[0]["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3)
                or set(sizes) != {NUM_MESH_POINTS * 3, 1}):
            raise FaceMeshError(f"{path} is not MediaPipe's face_landmark model (inputs {inputs}, outputs {outputs})")
        self._input = inputs[0]["index"]
        self._points, self._flag = sizes[NUM_MESH_POINTS * 3], sizes[1]
        self._interpreter = interpreter

    def run(self, frame: np.ndarray, landmarks: np.ndarray) -> MeshResult:
        """The 468 mesh points of the face that ``landmarks`` locate in ``frame``.

        Args:
            frame: ``(H, W, 3) uint8`` RGB image.
            landmarks: ``(68, 2)`` float pixel coordinates of the face (dlib order,
                finite), e.g. from :func:`~teller_agent.face.landmarks.predict_landmarks`.

        Returns:
            :class:`MeshResult`: ``points`` ``(468, 3) float32`` in frame pixels
            and the face-presence score. The points are returned whatever the
            score; below :data:`MIN_PRESENCE` they are not a face.

        Raises:
            ValueError: wrong shapes, dtype or non-finite landmarks.
            FaceMeshError: the model cannot be loaded (see :meth:`load`).
        """
        frame = np.asarray(frame)
        lm = np.asarray(landmarks, dtype=np.float64)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
        if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
            raise ValueError(f"landmarks must be finite (68, 2) pixel coordinates, got shape {lm.shape}")
        self.load()
        roi = roi_from_landmarks(lm)
        affine = _crop_affine(roi)
        crop = cv2.warpAffine(frame, affine, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        tensor = crop.astype(np.float32)[None] * np.float32(1.0 / 255.0)
        interpreter = self._interpreter
        interpreter.set_tensor(self._input, tensor)
        interpreter.invoke()
        raw = interpreter.get_tensor(self._points).reshape(NUM_MESH_POINTS, 3).astype(np.float64)
        logit = float(interpreter.get_tensor(self._flag).reshape(()))
        # Crop continuous -> crop index (-0.5) -> frame index (inverse affine).
        inverse = cv2.invertAffineTransform(affine)
        xy = (raw[:, :2] - 0.5) @ inverse[:, :2].T + inverse[:, 2]
        z = raw[:, 2] * (roi.side / INPUT_SIZE)
        points = np.column_stack([xy, z]).astype(np.float32)
        presence = 1.0 / (1.0 + math.exp(-logit)) if logit > -700 else 0.0
        return MeshResult(points, presence)


def lips_from_mesh(mesh_points: np.ndarray) -> np.ndarray:
    """face68 lip points 48-67 from the 468 mesh points (:data:`FACE68_LIPS_FROM_MESH`).

    Args:
        mesh_points: ``(468, 2 or 3)`` mesh points in pixels (only x, y are used).

    Returns:
        ``(20, 2) float32`` pixel coordinates of face68 points 48..67.

    Raises:
        ValueError: ``mesh_points`` is not ``(468, >=2)``.
    """
    pts = np.asarray(mesh_points)
    if pts.ndim != 2 or pts.shape[0] != NUM_MESH_POINTS or pts.shape[1] < 2:
        raise ValueError(f"mesh_points must be ({NUM_MESH_POINTS}, 2 or 3), got {pts.shape}")
    return pts[_LIP_INDEX, :2].astype(np.float64).mean(axis=1).astype(np.float32)


_local = threading.local()


def _default_mesh() -> FaceMesh:
    mesh = getattr(_local, "mesh", None)
    if mesh is None:
        mesh = _local.mesh = FaceMesh()
    return mesh


def with_mesh_lips(frame: np.ndarray, landmarks: np.ndarray, mesh: FaceMesh | None = None,
                   min_presence: float = MIN_PRESENCE) -> np.ndarray:
    """A copy of ``landmarks`` with the lip points 48-67 taken from the face mesh.

    Args:
        frame: ``(H, W, 3) uint8`` RGB image.
        landmarks: ``(68, 2)`` dlib landmarks of a face in ``frame`` (pixels, finite).
        mesh: the :class:`FaceMesh` to run; default: one per thread, created on first use.
        min_presence: when the mesh's face-presence score is below this, the
            copy keeps dlib's lips unchanged.

    Returns:
        ``(68, 2) float32`` pixel coordinates.

    Raises:
        ValueError: wrong shapes or dtype; FaceMeshError: the model cannot be loaded.
    """
    out = np.array(landmarks, dtype=np.float32, copy=True)
    result = (mesh or _default_mesh()).run(frame, out)
    if result.presence >= min_presence:
        out[48:68] = lips_from_mesh(result.points)
    return out
