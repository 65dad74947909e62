"""A sheet to judge a face by eye: each portrait as photographed, then rendered at rest, on an open,
a rounded and a spread vowel, and in a blink (articulation amounts of
:mod:`teller_agent.motion.articulation`), one row per portrait."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..motion.articulation import expression
from ..motion.latent import MotionLatent

#: Label -> articulation amounts of each rendered cell (the photo comes first).
STATES: dict[str, dict[str, float]] = {
    "rest": {},
    "open 'a'": {"jaw_open": 1.0},
    "round 'o'": {"jaw_open": 0.45, "lip_round": 1.0},
    "spread 'i'": {"jaw_open": 0.25, "lip_spread": 1.0},
    "blink": {"blink_left": 1.0, "blink_right": 1.0},
}


def state_motion(amounts: dict[str, float]) -> MotionLatent:
    """One frame of ``face68`` motion: a still head with these articulation amounts."""
    m = MotionLatent.neutral(1, 68)
    if amounts:
        m.exp[:] = expression(**amounts)
    return m


def _square(photo: np.ndarray, side: int) -> np.ndarray:
    """The whole photo letterboxed into a ``side x side`` cell."""
    h, w = photo.shape[:2]
    f = side / max(h, w)
    small = cv2.resize(photo, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    cell = np.full((side, side, 3), 32, np.uint8)
    y, x = (side - small.shape[0]) // 2, (side - small.shape[1]) // 2
    cell[y : y + small.shape[0], x : x + small.shape[1]] = small
    return cell


def states_sheet(portraits: Sequence, settings=None, thumb: int = 200) -> np.ndarray:
    """``(rows, cols) x thumb`` grid: per portrait (path or RGB array; None: the default portrait) the
    photo, then a frame per :data:`STATES` entry, labelled in the first row.

    Raises:
        ImageLoadError, NoFaceError, ...: a portrait cannot be prepared (names the file).
    """
    from ..config import TellerSettings
    from ..face import prepare_avatar
    from ..face.image import default_portrait, load_portrait
    from ..media.contact_sheet import contact_sheet
    from .renderer import WarpRenderer

    settings = settings or TellerSettings()
    frames, labels = [], []
    for n, portrait in enumerate(portraits):
        if portrait is None:
            photo = default_portrait()
        elif isinstance(portrait, np.ndarray):
            photo = portrait
        else:
            photo = load_portrait(portrait, settings.max_image_pixels)
        avatar = prepare_avatar(portrait, settings)
        renderer = WarpRenderer(avatar, grid=settings.render_grid)
        frames.append(_square(photo, avatar.size))
        name = ("default portrait" if portrait is None else "portrait" if isinstance(portrait, np.ndarray)
                else str(getattr(portrait, "name", portrait)))
        labels.append(name[:22])
        for label, amounts in STATES.items():
            frames.append(renderer.render_frame(state_motion(amounts)))
            labels.append(label if n == 0 else "")
    return contact_sheet(frames, cols=1 + len(STATES), labels=labels, thumb=thumb)
