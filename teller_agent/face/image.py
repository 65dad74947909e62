"""Loading portrait photos safely.

:func:`load_portrait` turns a JPEG, PNG or WebP file (or its bytes) into an
``(H, W, 3) uint8`` RGB array, upright (EXIF orientation applied), refusing
decompression bombs before any pixel is decoded. :func:`default_portrait` is
the bundled fallback portrait.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL import JpegImagePlugin, PngImagePlugin, WebPImagePlugin  # noqa: F401  (register openers)

from ..errors import ImageLoadError, ImageTooLargeError, ImageTooSmallError

#: What a portrait may be given as: a file path or the encoded file's bytes.
PortraitSource = Union[str, os.PathLike, bytes]

#: Formats accepted; anything else is refused before decoding (smaller attack
#: surface). "JPEG" also opens MPO, the multi-picture JPEG some cameras write.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP")

#: Smallest accepted image side in pixels.
MIN_IMAGE_SIDE = 32

#: ``source`` name of :func:`default_portrait`.
DEFAULT_PORTRAIT_SOURCE = "skimage.data.astronaut"

#: Background that transparent pixels are composited onto (white).
ALPHA_BACKGROUND = (255, 255, 255)

_HINT = "Use a JPEG, PNG or WebP photo of a face (re-save it with an image editor if needed)."


def default_portrait() -> np.ndarray:
    """The bundled default portrait: NASA's public-domain photo of astronaut
    Eileen Collins, shipped inside scikit-image (``skimage.data.astronaut``).

    Returns:
        ``(512, 512, 3) uint8`` RGB array.
    """
    from skimage import data

    return np.ascontiguousarray(data.astronaut(), dtype=np.uint8)


def load_portrait(path_or_bytes: PortraitSource, max_pixels: int | None = None) -> np.ndarray:
    """Decode a portrait photo into an upright RGB array.

    Args:
        path_or_bytes: path of a JPEG, PNG or WebP file, or the file's bytes.
        max_pixels: largest accepted ``width * height``; ``None`` takes
            ``TellerSettings().max_image_pixels`` (env ``TELLER_MAX_IMAGE_PIXELS``).

    Returns:
        ``(H, W, 3) uint8`` RGB array, rows top to bottom, after applying the
        EXIF orientation tag. Transparent pixels (RGBA, LA, palette with
        transparency) are composited onto white; grayscale, palette and
        16-bit images are converted to 8-bit RGB (16-bit values scaled by 1/257).

    Raises:
        ImageTooLargeError: the header declares more than ``max_pixels`` pixels
            (checked before decoding; decompression-bomb guard).
        ImageTooSmallError: the shorter side is below 32 pixels.
        ImageLoadError: the file is missing, unreadable, truncated, corrupt or
            not a JPEG/PNG/WebP image.
    """
    if max_pixels is None:
        from ..config import TellerSettings

        max_pixels = TellerSettings().max_image_pixels
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return decode_portrait(bytes(path_or_bytes), "<image bytes>", max_pixels)
    path = Path(path_or_bytes)
    return decode_portrait(read_image_file(path), str(path), max_pixels)


def read_image_file(path: Path) -> bytes:
    """Read a portrait file's bytes.

    Raises:
        ImageLoadError: the file is missing or cannot be read.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageLoadError(
            f"Portrait file not found: {path}. Check the path (TELLER_AVATAR_IMAGE or "
            "--image), or leave it unset to use the default portrait."
        ) from None
    except OSError as exc:
        raise ImageLoadError(
            f"Cannot read portrait file {path}: {exc.strerror or exc}. "
            "Check that it is a readable file."
        ) from exc


def decode_portrait(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Decode encoded image bytes; ``name`` is used in error messages.

    Same result and errors as :func:`load_portrait`.
    """
    image = _open_checked(data, name, max_pixels)
    try:
        image = ImageOps.exif_transpose(image)  # decodes the pixels
        rgb = to_rgb_array(image)
    except MemoryError:
        raise
    except Exception as exc:  # Pillow raises many types on corrupt data
        raise ImageLoadError(
            f"Cannot decode {name}: the image data is corrupt or truncated ({exc}). {_HINT}"
        ) from exc
    return rgb


def _open_checked(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """``Image.open`` (reads only the header) plus the size checks."""
    try:
        image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError as exc:
        # Pillow's own hard limit (2 x Image.MAX_IMAGE_PIXELS) fired first.
        match = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(match.group(1)):,} pixels" if match else "too many pixels"
        pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        if max_pixels <= pillow_limit:
            raise _too_large(name, size, max_pixels) from None
        raise ImageTooLargeError(
            f"{name} is too large: {size}, more than Pillow's decompression-bomb limit of "
            f"{pillow_limit:,} pixels (raising TELLER_MAX_IMAGE_PIXELS does not lift it). "
            "Downscale the photo."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"Cannot read {name}: not a valid JPEG, PNG or WebP image. {_HINT}") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise _too_large(name, f"{width}x{height} = {width * height:,} pixels", max_pixels)
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageTooSmallError(
            f"{name} is only {width}x{height} pixels; a portrait needs at least "
            f"{MIN_IMAGE_SIDE} pixels per side (a few hundred are recommended)."
        )
    return image


def _too_large(name: str, size: str, limit: int) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"{name} is too large: {size}, more than the limit of {limit:,} pixels. "
        "Downscale the photo, or raise the limit with the environment variable "
        "TELLER_MAX_IMAGE_PIXELS if you trust the file."
    )


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert a decoded Pillow image of any mode to ``(H, W, 3) uint8`` RGB.

    Alpha is composited onto white (:data:`ALPHA_BACKGROUND`); 16/32-bit
    integer grayscale is scaled from 0..65535 to 0..255; float grayscale is
    clipped to 0..255.
    """
    mode = image.mode
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(image), dtype=np.uint8)
    if mode.startswith("I") or mode == "F":
        return _gray_to_rgb(_high_depth_to_uint8(np.asarray(image), mode))
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(np.asarray(image.convert("RGB")), dtype=np.uint8)


def _high_depth_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    if mode == "F":
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    scaled = np.rint(values.astype(np.float64) / 257.0)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
