"""Errors raised by teller-agent.

Every error names the problem and the fix, so that a message printed to a user
is enough to act on. All derive from :class:`TellerError`.
"""

from __future__ import annotations


class TellerError(Exception):
    """Base class of every error teller-agent raises on bad input or state."""


# --- portrait images -------------------------------------------------------


class ImageLoadError(TellerError):
    """The portrait file is missing, unreadable, corrupt or not an image."""


class ImageTooLargeError(ImageLoadError):
    """The image header declares more pixels than ``TELLER_MAX_IMAGE_PIXELS``
    (decompression-bomb guard); raised before any pixel is decoded."""


class ImageTooSmallError(ImageLoadError):
    """The image is too small to hold a usable face (e.g. 1x1)."""


class NoFaceError(TellerError):
    """No face was detected in the portrait."""


class FaceTooSmallError(TellerError):
    """A face was found but is smaller than ``TELLER_FACE_MIN_SIZE``."""


# --- media -----------------------------------------------------------------


class AudioLoadError(TellerError):
    """An audio file is missing, corrupt, empty or has no audio stream."""


class MotionFileError(TellerError):
    """A motion ``.npz`` file is missing, corrupt or of another motion space."""


# --- models ----------------------------------------------------------------


class CheckpointError(TellerError):
    """A model checkpoint is missing, corrupt, incomplete or of another version."""
