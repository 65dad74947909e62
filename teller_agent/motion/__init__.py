"""Facial motion: the motion latent, motion spaces, articulations and procedural motion."""

from .articulation import BASIS, expression
from .latent import MotionLatent, PortraitKeypoints, rotation_matrix
from .procedural import procedural_motion
from .space import FACE68, LIVEPORTRAIT21, MotionSpace, get_space

__all__ = [
    "BASIS",
    "FACE68",
    "LIVEPORTRAIT21",
    "MotionLatent",
    "MotionSpace",
    "PortraitKeypoints",
    "expression",
    "get_space",
    "procedural_motion",
    "rotation_matrix",
]
