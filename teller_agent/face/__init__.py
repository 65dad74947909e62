"""Face preparation: portrait photo -> framed crop, 68 landmarks and face mask.

Public API::

    load_portrait(path_or_bytes, max_pixels=None) -> (H, W, 3) uint8 RGB
    default_portrait() -> (512, 512, 3) uint8 RGB (skimage.data.astronaut)
    detect_landmarks(image) -> FaceDetection(landmarks (68, 2) float32, box) | None
    prepare_avatar(image=None, settings=None, use_cache=True) -> PreparedAvatar

Coordinates are pixels, ``x`` right and ``y`` down; landmarks follow dlib's
68-point (iBUG 300-W) order (see :mod:`teller_agent.face.landmarks`).
"""

from .avatar import PreparedAvatar
from .image import DEFAULT_PORTRAIT_SOURCE, default_portrait, load_portrait
from .landmarks import (
    FaceDetection,
    detect_faces,
    detect_landmarks,
    face_width,
    predict_landmarks,
    predictor_path,
)
from .face68 import eye_centers
from .prepare import PREP_VERSION, prepare_avatar

__all__ = [
    "DEFAULT_PORTRAIT_SOURCE",
    "PREP_VERSION",
    "FaceDetection",
    "PreparedAvatar",
    "default_portrait",
    "detect_faces",
    "detect_landmarks",
    "eye_centers",
    "face_width",
    "load_portrait",
    "predict_landmarks",
    "predictor_path",
    "prepare_avatar",
]
