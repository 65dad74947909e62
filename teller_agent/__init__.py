"""teller-agent: a real-time talking avatar for LiveKit voice agents.

The pipeline follows Teller (arXiv 2503.18429): audio -> motion tokens ->
motion latent (implicit keypoints) -> rendered frames.
"""

from .config import FPS, TellerSettings
from .errors import (
    AudioLoadError,
    CheckpointError,
    FaceTooSmallError,
    ImageLoadError,
    ImageTooLargeError,
    ImageTooSmallError,
    MotionFileError,
    NoFaceError,
    TellerError,
)

__version__ = "0.1.0"

__all__ = [
    "FPS",
    "TellerSettings",
    "TellerError",
    "ImageLoadError",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "NoFaceError",
    "FaceTooSmallError",
    "AudioLoadError",
    "CheckpointError",
    "MotionFileError",
    "__version__",
]
