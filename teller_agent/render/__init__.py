"""Rendering: from motion latents to RGB frames of the portrait."""

from .renderer import WarpRenderer, set_render_threads
from .warp import HeadWarp

__all__ = ["HeadWarp", "WarpRenderer", "set_render_threads"]
