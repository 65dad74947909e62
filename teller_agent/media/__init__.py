"""Media I/O: decode audio, write and read video, make contact sheets.

Conventions: audio is mono float32 PCM in [-1, 1], shape ``(N,)``, with its
sample rate in Hz; frames are RGB ``uint8`` arrays of shape ``(H, W, 3)``;
times are in seconds; video runs at :data:`teller_agent.config.FPS` (25) fps.
"""

from .audio import DEFAULT_SAMPLE_RATE, load_audio, resample
from .contact_sheet import contact_sheet, save_image
from .video import AAC_FALLBACK_RATE, AAC_SAMPLE_RATES, VideoWriter, probe, read_video_frames

__all__ = [
    "DEFAULT_SAMPLE_RATE",
    "load_audio",
    "resample",
    "VideoWriter",
    "read_video_frames",
    "probe",
    "AAC_SAMPLE_RATES",
    "AAC_FALLBACK_RATE",
    "contact_sheet",
    "save_image",
]
