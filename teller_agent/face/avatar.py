"""The prepared avatar: the framed portrait crop and its face geometry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .face68 import NUM_LANDMARKS, eye_centers


@dataclass(frozen=True, eq=False)
class PreparedAvatar:
    """A portrait framed for animation (see :func:`~teller_agent.face.prepare_avatar`).

    All coordinates are pixels of the ``S x S`` crop, ``x`` right and ``y``
    down, pixel ``(i, j)`` centred at ``x = i, y = j``, unless noted. Arrays are
    read-only views; copy them before modifying.

    Attributes:
        image: ``(S, S, 3) uint8`` RGB crop.
        landmarks: ``(68, 2) float32`` dlib 68-point (iBUG 300-W order)
            landmarks, predicted on ``image`` itself.
        face_box: ``(left, top, right, bottom)`` int: dlib's detection box
            mapped into the crop and clipped to it; roughly brows to chin, the
            jaw contour can stick out of it by a few pixels.
        face_mask: ``(S, S) uint8``, 255 on the face (landmark hull extended
            over the forehead, see :func:`~teller_agent.face.framing.face_mask`), 0 elsewhere.
        crop_box: ``(x0, y0, side)`` float, the crop in original-image pixels
            (may reach outside the image; that part is edge-replicated).
        source: file path of the photo, ``"skimage.data.astronaut"`` for the
            default portrait, ``"<array>"`` or ``"<image bytes>"``.
        key: cache key (hex sha256 of the photo and the framing settings).
        source_face_width: face width (jaw points 0-16) in original-image pixels.
    """

    image: np.ndarray
    landmarks: np.ndarray
    face_box: tuple[int, int, int, int]
    face_mask: np.ndarray
    crop_box: tuple[float, float, float]
    source: str
    key: str
    source_face_width: float

    def __post_init__(self) -> None:
        image = _read_only(self.image, np.uint8)
        size = image.shape[0]
        if image.shape != (size, size, 3):
            raise ValueError(f"image must be (S, S, 3) uint8, got {image.shape}")
        landmarks = _read_only(self.landmarks, np.float32)
        if landmarks.shape != (NUM_LANDMARKS, 2):
            raise ValueError(f"landmarks must be (68, 2), got {landmarks.shape}")
        mask = _read_only(self.face_mask, np.uint8)
        if mask.shape != (size, size):
            raise ValueError(f"face_mask must be ({size}, {size}), got {mask.shape}")
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "landmarks", landmarks)
        object.__setattr__(self, "face_mask", mask)
        object.__setattr__(self, "face_box", tuple(int(v) for v in self.face_box))
        object.__setattr__(self, "crop_box", tuple(float(v) for v in self.crop_box))
        if len(self.face_box) != 4 or len(self.crop_box) != 3:
            raise ValueError("face_box needs 4 values and crop_box 3")

    @property
    def size(self) -> int:
        """Side ``S`` of the square crop in pixels."""
        return int(self.image.shape[0])

    @property
    def eye_centers(self) -> np.ndarray:
        """``(2, 2) float32`` crop pixels: subject's right eye (image left) then left eye."""
        return eye_centers(self.landmarks)

    @property
    def inter_ocular(self) -> float:
        """Distance between the two eye centres in crop pixels."""
        right, left = self.eye_centers
        return float(np.linalg.norm(left - right))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` (everything but ``source``)."""
        return {
            "image": np.asarray(self.image),
            "landmarks": np.asarray(self.landmarks),
            "face_box": np.asarray(self.face_box, dtype=np.int64),
            "face_mask": np.asarray(self.face_mask),
            "crop_box": np.asarray(self.crop_box, dtype=np.float64),
            "key": np.asarray(self.key),
            "source_face_width": np.asarray(self.source_face_width, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays, source: str) -> PreparedAvatar:
        """Inverse of :meth:`to_arrays` (``arrays``: a mapping such as an ``NpzFile``).

        Raises:
            KeyError, ValueError: an array is missing or has the wrong shape.
        """
        return cls(
            image=np.array(arrays["image"]),
            landmarks=np.array(arrays["landmarks"]),
            face_box=tuple(np.asarray(arrays["face_box"]).tolist()),
            face_mask=np.array(arrays["face_mask"]),
            crop_box=tuple(np.asarray(arrays["crop_box"]).tolist()),
            source=source,
            key=str(arrays["key"]),
            source_face_width=float(arrays["source_face_width"]),
        )


def _read_only(values: np.ndarray, dtype) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype != dtype:
        raise ValueError(f"expected dtype {np.dtype(dtype)}, got {array.dtype}")
    view = array.view()
    view.flags.writeable = False
    return view
