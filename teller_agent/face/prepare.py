"""``prepare_avatar``: portrait photo -> framed crop, landmarks and face mask, cached."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np

from ..config import TellerSettings
from ..errors import FaceTooSmallError, ImageTooSmallError, NoFaceError
from . import framing
from .avatar import PreparedAvatar
from .cache import avatar_key, cache_path, load_avatar, save_avatar
from .image import (
    DEFAULT_PORTRAIT_SOURCE,
    MIN_IMAGE_SIDE,
    decode_portrait,
    default_portrait,
    read_image_file,
    to_rgb_array,
)
from .landmarks import detect_landmarks, face_width, predict_landmarks

log = logging.getLogger(__name__)

#: Version of the preparation algorithm; part of the cache key. Bump it when
#: the output of :func:`prepare_avatar` changes for the same input.
PREP_VERSION = 3

#: What :func:`prepare_avatar` accepts as the portrait.
ImageInput = Union[None, str, os.PathLike, bytes, np.ndarray]


@dataclass(frozen=True)
class _Source:
    """A portrait before decoding: its name, content digest and decoder."""

    name: str
    digest: str
    decode: Callable[[int], np.ndarray]  # max_pixels -> (H, W, 3) uint8 RGB


def prepare_avatar(
    image: ImageInput = None,
    settings: TellerSettings | None = None,
    use_cache: bool = True,
) -> PreparedAvatar:
    """Frame a portrait for animation and locate its face.

    Finds the largest face (dlib), crops a square, axis-aligned
    head-and-shoulders frame around it (side ``face_width / face_scale``, face
    centre at the horizontal middle and at ``face_center_y`` of the height;
    edges replicated where the square leaves the photo), resizes it to
    ``frame_size`` and re-runs the 68-point landmark predictor on the crop.

    Args:
        image: a JPEG/PNG/WebP path or its bytes, an ``(H, W, 3)`` RGB (or
            ``(H, W)`` gray, ``(H, W, 4)`` RGBA) ``uint8`` array, or ``None``
            for ``settings.avatar_image`` when set, else the default portrait
            (:func:`~teller_agent.face.default_portrait`).
        settings: framing, limits and ``cache_dir``; ``None`` reads them from
            the environment (:class:`~teller_agent.config.TellerSettings`).
        use_cache: read and write ``<cache_dir>/avatars/<key>.npz``. A hit
            returns in milliseconds without running dlib; a corrupt entry is
            ignored and rewritten; a failed write only logs a warning.

    Returns:
        The :class:`PreparedAvatar` (crop of ``frame_size`` pixels).

    Raises:
        ImageLoadError, ImageTooLargeError, ImageTooSmallError: see
            :func:`~teller_agent.face.load_portrait`.
        NoFaceError: no face was found.
        FaceTooSmallError: the face is narrower than ``settings.face_min_size``
            pixels in the original photo.
    """
    settings = settings if settings is not None else TellerSettings()
    if image is None and settings.avatar_image is not None:
        image = settings.avatar_image
    source = _resolve_source(image)
    key = avatar_key(
        source.digest, settings.frame_size, settings.face_scale, settings.face_center_y, PREP_VERSION
    )
    path = cache_path(settings.cache_dir, key)
    if use_cache:
        cached = load_avatar(path, key, source.name)
        if cached is not None:
            _check_face_width(cached.source_face_width, source.name, settings)
            return cached
    avatar = _prepare(source.decode(settings.max_image_pixels), source.name, key, settings)
    if use_cache:
        _store(path, avatar)
    return avatar


def _prepare(rgb: np.ndarray, name: str, key: str, settings: TellerSettings) -> PreparedAvatar:
    """Detect, frame, crop and re-landmark one decoded photo."""
    started = time.perf_counter()
    detection = detect_landmarks(rgb)
    if detection is None:
        raise NoFaceError(
            f"No face found in {name}. Use a frontal, well-lit photo of one person looking at "
            f"the camera, with the face at least {settings.face_min_size} px wide (150 px or "
            "more works best) and not hidden by hair, hands or sunglasses."
        )
    width = face_width(detection.landmarks)
    _check_face_width(width, name, settings)
    size = settings.frame_size
    crop = framing.crop_for_face(detection.landmarks, settings.face_scale, settings.face_center_y,
                                 image_size=(rgb.shape[1], rgb.shape[0]))
    crop_image = framing.extract_crop(rgb, crop, size)
    box = framing.to_crop_box(detection.box, crop, size)
    landmarks = predict_landmarks(crop_image, box)
    log.debug("prepared %s in %.2f s (face %.0f px)", name, time.perf_counter() - started, width)
    return PreparedAvatar(
        image=crop_image,
        landmarks=landmarks,
        face_box=framing.clip_box(box, size),
        face_mask=framing.face_mask(landmarks, size),
        crop_box=crop,
        source=name,
        key=key,
        source_face_width=width,
    )


def _check_face_width(width: float, name: str, settings: TellerSettings) -> None:
    if width < settings.face_min_size:
        raise FaceTooSmallError(
            f"The face in {name} is only {width:.0f} px wide; at least "
            f"{settings.face_min_size} px is needed (TELLER_FACE_MIN_SIZE). Use a larger or "
            "closer photo of the face."
        )


def _store(path: Path, avatar: PreparedAvatar) -> None:
    try:
        save_avatar(path, avatar)
    except Exception as exc:  # the cache is an optimisation; never fail on it
        log.warning("could not write the avatar cache %s: %s", path, exc)


# --- sources -----------------------------------------------------------------


def _resolve_source(image: ImageInput) -> _Source:
    if image is None:
        rgb = default_portrait()
        return _Source(DEFAULT_PORTRAIT_SOURCE, _array_digest(rgb), lambda _max_pixels: rgb)
    if isinstance(image, np.ndarray):
        rgb = _array_to_rgb(image)
        return _Source("<array>", _array_digest(rgb), lambda _max_pixels: rgb)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _bytes_source(bytes(image), "<image bytes>")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        return _bytes_source(read_image_file(path), str(path))
    raise TypeError(f"image must be None, a path, bytes or a numpy array, not {type(image).__name__}")


def _bytes_source(data: bytes, name: str) -> _Source:
    digest = hashlib.sha256(b"file\0" + data).hexdigest()
    return _Source(name, digest, lambda max_pixels: decode_portrait(data, name, max_pixels))


def _array_digest(rgb: np.ndarray) -> str:
    digest = hashlib.sha256(f"array {rgb.shape} {rgb.dtype}\0".encode())
    digest.update(memoryview(np.ascontiguousarray(rgb)).cast("B"))
    return digest.hexdigest()


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """Validate an in-memory image and convert gray/RGBA to ``(H, W, 3) uint8`` RGB."""
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(
            f"image array must be uint8 (H, W), (H, W, 3) RGB or (H, W, 4) RGBA, "
            f"got shape {array.shape} dtype {array.dtype}"
        )
    if min(array.shape[:2]) < MIN_IMAGE_SIDE:
        raise ImageTooSmallError(
            f"The image array is only {array.shape[1]}x{array.shape[0]} pixels; a portrait needs "
            f"at least {MIN_IMAGE_SIDE} pixels per side."
        )
    if array.ndim == 3 and array.shape[2] == 3:
        return np.ascontiguousarray(array)
    from PIL import Image

    return to_rgb_array(Image.fromarray(array))
