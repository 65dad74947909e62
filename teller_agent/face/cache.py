"""On-disk cache of prepared avatars: ``<cache_dir>/avatars/<key>.npz``.

Files are written atomically (temporary file in the same folder, then
``os.replace``), so a crash never leaves a half-written entry under the final
name. Unreadable or inconsistent entries are treated as missing.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from ..utils.atomic import atomic_path
from .avatar import PreparedAvatar

log = logging.getLogger(__name__)


def avatar_key(image_digest: str, frame_size: int, face_scale: float, face_center_y: float, version: int) -> str:
    """Cache key: hex sha256 of the image digest, the framing settings and ``version``."""
    text = f"teller-agent avatar v{version}|{image_digest}|{frame_size}|{face_scale!r}|{face_center_y!r}"
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(cache_dir: Path, key: str) -> Path:
    """Where the avatar with ``key`` is cached."""
    return Path(cache_dir) / "avatars" / f"{key}.npz"


def load_avatar(path: Path, key: str, source: str) -> PreparedAvatar | None:
    """The cached avatar at ``path``, or ``None`` if it is missing, unreadable,
    corrupt or was written for another key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            avatar = PreparedAvatar.from_arrays(arrays, source)
    except Exception as exc:  # any damage means "not cached"
        log.warning("ignoring unreadable avatar cache file %s (%s); it will be rewritten", path, exc)
        return None
    if avatar.key != key:
        log.warning("ignoring avatar cache file %s written for another key", path)
        return None
    return avatar


def save_avatar(path: Path, avatar: PreparedAvatar) -> None:
    """Write ``avatar`` to ``path`` atomically (creating the folder).

    Raises:
        OSError: the folder or file cannot be written; no temporary file is left.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        np.savez_compressed(file, **avatar.to_arrays())
        file.flush()
        os.fsync(file.fileno())
