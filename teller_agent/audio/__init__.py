"""Audio front-end: features computed from speech audio."""

from .loudness import loudness_envelope

__all__ = ["loudness_envelope"]
