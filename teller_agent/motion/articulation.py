"""Named articulations of the ``face68`` space as expression-delta bases.

Each articulation is a (68, 3) pattern of expression deltas in face widths
(canonical frame: x right, y down, z toward the camera) for an amount of 1.
Amounts are combined linearly::

    delta = sum_a amount_a * BASIS[a]

They serve procedural idle motion, the synthetic viseme corpus and tests; the
learned generator predicts deltas directly.

* ``jaw_open``: 1 = mouth wide open (lower lip drops 0.22 face widths, chin
  follows and swings back), the upper lip lifts a little.
* ``lip_round``: 1 = rounded, protruded lips ("oo"): corners move in and forward.
* ``lip_spread``: 1 = spread lips ("ee", a smile): corners out and up.
* ``blink_left`` / ``blink_right``: 1 = the upper lid of the subject's left / right
  eye lowered by a typical eye opening (0.075 face widths); the renderer
  stops the lid at the lower lid, so any amount >= 1 closes the eye.
* ``brow_raise``: 1 = both brows up by 0.05 face widths.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

import numpy as np

from .space import FACE68

#: Typical open-eye gap between upper and lower lid, in face widths.
EYE_GAP = 0.075
#: Lower-lip drop of a wide-open mouth, in face widths.
JAW_DROP = 0.22


def _jaw_open() -> np.ndarray:
    d = np.zeros((68, 3), np.float32)
    # Jaw contour: the chin follows the lower lip; the angles barely move.
    for i, w in zip(range(3, 14), (0.05, 0.15, 0.35, 0.6, 0.85, 0.95, 0.85, 0.6, 0.35, 0.15, 0.05)):
        d[i, 1] = w * JAW_DROP
        d[i, 2] = -0.35 * w * JAW_DROP  # the chin swings back as the jaw rotates
    # Lower lip, outer (55-59) and inner (65-67); corners (48, 54, 60, 64) move half way and inward.
    for i, w in ((55, 0.75), (56, 0.93), (57, 1.0), (58, 0.93), (59, 0.75), (65, 0.95), (66, 1.0), (67, 0.95)):
        d[i, 1] = w * JAW_DROP
    for i, sign in ((48, 1), (60, 1), (54, -1), (64, -1)):
        d[i, 0] = sign * 0.035
        d[i, 1] = 0.4 * JAW_DROP
    # Upper lip lifts slightly.
    for i in (49, 50, 51, 52, 53, 61, 62, 63):
        d[i, 1] = -0.04 * JAW_DROP
    return d


def _lip_round() -> np.ndarray:
    d = np.zeros((68, 3), np.float32)
    for i, sign, w in ((48, 1, 1.0), (60, 1, 0.9), (54, -1, 1.0), (64, -1, 0.9),
                       (49, 1, 0.5), (59, 1, 0.5), (53, -1, 0.5), (55, -1, 0.5)):
        d[i, 0] = sign * 0.07 * w
    for i in range(48, 68):
        d[i, 2] = 0.05
    for i in (61, 62, 63):
        d[i, 1] = -0.01
    for i in (65, 66, 67):
        d[i, 1] = 0.015
    return d


def _lip_spread() -> np.ndarray:
    d = np.zeros((68, 3), np.float32)
    for i, sign in ((48, -1), (60, -1), (54, 1), (64, 1)):
        d[i, 0] = sign * 0.05
        d[i, 1] = -0.02
    for i, sign in ((49, -1), (59, -1), (53, 1), (55, 1)):
        d[i, 0] = sign * 0.025
        d[i, 1] = -0.01
    return d


def _blink(upper: tuple[int, ...], lower: tuple[int, ...]) -> np.ndarray:
    d = np.zeros((68, 3), np.float32)
    for i in upper:
        d[i, 1] = EYE_GAP
    for i in lower:
        d[i, 1] = -0.1 * EYE_GAP
    return d


def _brow_raise() -> np.ndarray:
    d = np.zeros((68, 3), np.float32)
    for i in range(17, 27):
        d[i, 1] = -0.05
    return d


g = FACE68.groups
BASIS: Mapping[str, np.ndarray] = MappingProxyType({
    "jaw_open": _jaw_open(),
    "lip_round": _lip_round(),
    "lip_spread": _lip_spread(),
    "blink_left": _blink(g["upper_lid_left"], g["lower_lid_left"]),
    "blink_right": _blink(g["upper_lid_right"], g["lower_lid_right"]),
    "brow_raise": _brow_raise(),
})
del g


def expression(**amounts: np.ndarray | float) -> np.ndarray:
    """Expression deltas from articulation amounts.

    Args:
        **amounts: articulation name -> amount, a float or a (T,) array.

    Returns:
        (T, 68, 3) float32 deltas in face widths (T = 1 for scalar amounts).

    Raises:
        KeyError: an unknown articulation name (the message lists the known ones).
    """
    unknown = set(amounts) - set(BASIS)
    if unknown:
        raise KeyError(f"unknown articulations {sorted(unknown)}; known: {sorted(BASIS)}")
    arrays = {k: np.atleast_1d(np.asarray(v, np.float32)) for k, v in amounts.items()}
    n = max((len(a) for a in arrays.values()), default=1)
    out = np.zeros((n, 68, 3), np.float32)
    for name, a in arrays.items():
        out += np.broadcast_to(a, (n,))[:, None, None] * BASIS[name][None]
    return out
