"""The CPU warp renderer: motion latent + prepared portrait -> RGB frames, no weights.

Per frame: drive the portrait's ``face68`` keypoints with the motion latent
(``x_d = s (x_c R + delta) + t``), warp the photo with :class:`HeadWarp`, then
paint the eyelids and show a real mouth interior (:class:`~.paint.MouthPainter`).
This plays the role of LivePortrait's warping and decoding networks
(arXiv 2407.03168, sec. 3) at a fraction of the cost, so the whole avatar runs
on a laptop CPU.
"""

from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np

from ..config import DEFAULT_RENDER_GRID
from ..face.face68 import INNER_LIPS
from ..motion.latent import MotionLatent
from ..motion.space import FACE68
from .paint import MouthPainter, paint_eyelids
from .warp import HeadWarp

_EYES = (  # (upper lid chain, lower lid chain) as landmark indices, corner to corner
    ((36, 37, 38, 39), (36, 41, 40, 39)),
    ((42, 43, 44, 45), (42, 47, 46, 45)),
)
_INNER_LIPS = list(INNER_LIPS)


class WarpRenderer:
    """Renders frames of a prepared portrait driven by ``face68`` motion.

    Args:
        avatar: a :class:`~teller_agent.face.PreparedAvatar` (square crop and
            its 68 landmarks in pixels).
        grid: cells per side of the coarse warp grid (``TellerSettings.render_grid``).
        atlas: the mouth-interior atlas (:class:`~teller_agent.render.mouth_atlas.MouthAtlas`);
            default: the shipped one.
        mouth_interior: paint the mouth interior between the driven inner lips; False leaves
            the warp's own pixels there (an ablation: ``teller-agent eval identity --no-mouth-interior``).

    Raises:
        MouthAtlasError: ``atlas`` is None and the shipped atlas file is missing (the message
            names the command that builds it).

    The output of a neutral latent is the crop itself.
    """

    space = FACE68

    def __init__(self, avatar, grid: int = DEFAULT_RENDER_GRID, atlas=None, mouth_interior: bool = True):
        self.avatar = avatar
        self.image = np.ascontiguousarray(avatar.image)
        self.size = self.image.shape[0]
        landmarks = np.asarray(avatar.landmarks, np.float32)
        self.portrait = FACE68.lift(landmarks, self.size)
        self.warp = HeadWarp(self.image, self.portrait, grid=grid)
        self.mouth = MouthPainter(self.image, landmarks, atlas)
        self.rest_gap = self.mouth.rest_gap
        self.mouth_interior = mouth_interior

    def render(self, motion: MotionLatent) -> Iterator[np.ndarray]:
        """Yield one (S, S, 3) uint8 RGB frame per motion frame.

        Raises:
            ValueError: ``motion`` is not in the ``face68`` space.
        """
        if motion.space != self.space.name or motion.num_keypoints != self.space.num_keypoints:
            raise ValueError(
                f"the warp renderer drives {self.space.name!r} motion, got {motion.space!r} "
                f"with {motion.num_keypoints} keypoints"
            )
        face, rigid = self.warp.driven(motion)
        head = self.warp.rigid_points(motion)
        for i in range(len(motion)):
            yield self._frame(face[i], rigid[i], head[i])

    def render_frame(self, motion: MotionLatent) -> np.ndarray:
        """The frame of a one-frame ``motion``: (S, S, 3) uint8 RGB."""
        return next(self.render(motion[0]))

    def _frame(self, face: np.ndarray, rigid: np.ndarray, head: np.ndarray) -> np.ndarray:
        frame = self.warp.remap(face, rigid, head)
        for upper, lower in _EYES:
            paint_eyelids(frame, rigid[list(upper)], face[list(upper)], face[list(lower)])
        if self.mouth_interior:
            self.mouth.paint(frame, face[_INNER_LIPS])
        return frame


def set_render_threads(threads: int) -> None:
    """Worker threads of the libraries the renderer calls every frame: OpenCV's pool and numpy's
    BLAS (the thin-plate spline solve). Process-wide.

    ``threads`` = 0 leaves both at their defaults (OpenCV's own, numpy's BLAS untouched); 1 gives
    the single-core figures we report. Limiting the BLAS matters on small machines: OpenBLAS
    worker threads busy-wait for the next call, and at 25 small calls per second they never
    sleep, so each extra thread burns a whole core (``docs/results/design_measurements.md``).

    Args:
        threads: >= 0.
    """
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(threads if threads > 0 else -1)
    if threads > 0:
        threadpool_limits(limits=threads, user_api="blas")
