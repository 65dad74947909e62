"""Atomic file writing: write to a temporary file next to the target, then
``os.replace`` it into place, so a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


def temp_path_for(path: Path) -> Path:
    """A unique, hidden temporary path in the same folder as ``path`` that keeps
    its suffix (so FFmpeg and Pillow still infer the format from it), e.g.
    ``out/.clip.3f2a9c1e.partial.mp4`` for ``out/clip.mp4``. Same folder means the
    final ``os.replace`` is a rename on one file system, hence atomic."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")


def remove_quietly(path: Path) -> None:
    """Delete ``path`` if it exists, ignoring every OS error."""
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it into place, on any
    exception (``KeyboardInterrupt`` included) delete it and leave ``path`` untouched.

    Example::

        with atomic_path("model.safetensors") as tmp:
            save_file(state, tmp)
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        remove_quietly(tmp)
