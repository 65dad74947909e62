"""Dense backward warp of a portrait from its rest keypoints to driven keypoints.

For every output pixel ``q`` the warp gives the portrait pixel to sample,
``q + m(q) * d(q)``, where

* ``d`` is a thin-plate spline through the driven keypoints whose values are
  the displacements back to the rest keypoints. Solving it *backward* (in output
  space) means parted lips give two well-separated control rows, never two
  coincident ones, and no inversion of a forward field is needed.
* ``m`` is a falloff mask: 1 over the head (face landmarks plus rigid points on
  the forehead, crown and temples), easing to 0 a fraction of a face width
  outside it. It keeps the neck, shoulders and background steady while the
  head turns, and bounds the region that is warped at all.

The spline is evaluated on a coarse grid (``render_grid`` cells per side)
inside that region only and upsampled bilinearly to pixels; OpenCV's
``remap`` then samples the portrait.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..config import DEFAULT_RENDER_GRID

from . import tps
from .paint import smoothstep
from ..motion.latent import MotionLatent, PortraitKeypoints
from ..face.face68 import INNER_LIP_PAIRS

# Rigid head points in canonical face widths (x right, y down, z toward the
# camera), placed relative to the eye centre: they carry forehead, hair and
# temples along with head rotation, which the 68 face landmarks do not cover.
_HEAD_POINTS = np.array(
    [
        [-0.38, -0.42, 0.25], [0.0, -0.5, 0.38], [0.38, -0.42, 0.25],  # forehead
        [-0.45, -0.8, -0.05], [0.0, -0.95, 0.05], [0.45, -0.8, -0.05],  # crown / hair
        [-0.62, -0.1, -0.15], [0.62, -0.1, -0.15],  # temples
        [-0.58, 0.25, -0.2], [0.58, 0.25, -0.2],  # ears
    ],
    np.float32,
)

#: Keypoints whose expression deltas are *not* warped but painted (the upper
#: eyelids: a blink slides skin over a still eyeball rather than squeezing it).
PAINTED_KEYPOINTS = (37, 38, 43, 44)


class HeadWarp:
    """Backward warp for one portrait; build once, call :meth:`remap` per frame.

    Args:
        image: (S, S, 3) uint8 portrait crop.
        portrait: the portrait's rest keypoints (``face68`` layout).
        grid: cells per side of the coarse grid the spline is solved on.
        falloff: width in face widths over which the motion fades out around the head.

    Attributes:
        roi: (x0, y0, x1, y1) pixel box outside of which the output is the portrait.
        moving: (S, S) bool, the pixels the warp may move; all others stay the portrait's.
    """

    def __init__(self, image: np.ndarray, portrait: PortraitKeypoints, grid: int = DEFAULT_RENDER_GRID, falloff: float = 0.35):
        self.image = image
        # OpenCV's remap has a vectorised path for 4 channels that 3-channel images miss
        # (the same pixels, faster: docs/results/design_measurements.md): the warp samples an RGBA copy
        self._image_rgba = cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)
        self.portrait = portrait
        self.size = size = image.shape[0]
        self.half = size / 2.0
        eye_centre = portrait.canonical[36:48].mean(0)
        self.head_canonical = (_HEAD_POINTS + eye_centre).astype(np.float32)
        rest_head = self.rigid_points(MotionLatent.neutral(1, len(portrait.canonical), "face68"))[0]
        rest_face = self._to_px(portrait.rest()[:, :2])
        self.rest_points = np.concatenate([rest_face, rest_head]).astype(np.float32)

        # Coarse grid: cell of `cell` pixels; grid node j sits at pixel (j + 0.5) * cell - 0.5,
        # which is exactly where cv2.resize (INTER_LINEAR) puts it when upsampling by `cell`.
        self.cell = cell = max(2, size // grid)
        cells = -(-size // cell)
        face_width_px = portrait.scale * self.half
        mask = self._falloff_mask(cells, cell, face_width_px, falloff)
        ys, xs = np.nonzero(mask > 0)
        gy0, gy1 = max(ys.min() - 1, 0), min(ys.max() + 2, cells)
        gx0, gx1 = max(xs.min() - 1, 0), min(xs.max() + 2, cells)
        self._grid_box = (gx0, gy0, gx1, gy1)
        self.roi = (gx0 * cell, gy0 * cell, min(gx1 * cell, size), min(gy1 * cell, size))
        self._mask = mask[gy0:gy1, gx0:gx1, None].astype(np.float32)
        # Pixels whose cell and neighbours all have zero falloff never move.
        moving = cv2.dilate((mask > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
        self.moving = np.kron(moving, np.ones((cell, cell), np.uint8))[:size, :size].astype(bool)
        gy, gx = np.mgrid[gy0:gy1, gx0:gx1].astype(np.float32)
        nodes_px = np.stack([gx, gy], -1).reshape(-1, 2) * cell + (cell - 1) / 2.0
        # The spline is evaluated only at nodes whose falloff is not zero (the others stay still).
        self._active = np.flatnonzero(self._mask.ravel() > 0)
        self._nodes = (nodes_px / self.half - 1.0).astype(np.float32)[self._active]
        self._active_mask = self._mask.ravel()[self._active, None] * np.float32(self.half)
        x0, y0, x1, y1 = self.roi
        by, bx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self._base = np.stack([bx, by], -1)  # (H, W, 2) identity map of the roi

    # -- geometry -----------------------------------------------------------

    def _to_px(self, xy: np.ndarray) -> np.ndarray:
        return (xy + 1.0) * self.half

    def rigid_points(self, motion: MotionLatent) -> np.ndarray:
        """(T, P, 2) pixel positions of the rigid head points under ``motion``."""
        rigid = PortraitKeypoints(self.head_canonical, self.portrait.pitch, self.portrait.yaw,
                                  self.portrait.roll, self.portrait.t, self.portrait.scale)
        head_motion = MotionLatent(np.zeros((len(motion), len(_HEAD_POINTS), 3), np.float32), motion.pitch,
                                   motion.yaw, motion.roll, motion.t, motion.scale, motion.space)
        return self._to_px(rigid.drive(head_motion)[..., :2])

    def driven(self, motion: MotionLatent) -> tuple[np.ndarray, np.ndarray]:
        """Pixel positions under ``motion``: ((T, 68, 2) with expression, (T, 68, 2) rigid only)."""
        full = self._to_px(self.portrait.drive(motion)[..., :2])
        rigid = self._to_px(self.portrait.drive(motion, expression=False)[..., :2])
        return full, rigid

    def _falloff_mask(self, cells: int, cell: int, face_width_px: float, falloff: float) -> np.ndarray:
        hull = cv2.convexHull((self.rest_points / cell).astype(np.float32))
        inside = np.zeros((cells, cells), np.uint8)
        cv2.fillConvexPoly(inside, np.round(hull).astype(np.int32), 1)
        dist = cv2.distanceTransform((1 - inside).astype(np.uint8), cv2.DIST_L2, 5) * cell
        inner = 0.1 * face_width_px
        mask = 1.0 - smoothstep((dist - inner) / (falloff * face_width_px))
        # Motion also fades out toward the frame edges, so no pixel is fetched from beyond them.
        centres = (np.arange(cells) + 0.5) * cell
        to_edge = (np.minimum(centres, self.size - centres) - cell / 2) / (0.08 * self.size)
        return mask * np.minimum.outer(smoothstep(to_edge), smoothstep(to_edge))

    # -- per frame ----------------------------------------------------------

    def remap(self, face_px: np.ndarray, rigid_px: np.ndarray, head_px: np.ndarray) -> np.ndarray:
        """Warp the portrait to one frame's keypoints.

        Args:
            face_px: (68, 2) driven face keypoints in output pixels.
            rigid_px: (68, 2) the same without expression (used for :data:`PAINTED_KEYPOINTS`).
            head_px: (P, 2) driven rigid head points in output pixels.

        Returns:
            (S, S, 3) uint8 frame; pixels outside :attr:`roi` are the portrait's.
        """
        dst = np.concatenate([face_px, head_px]).astype(np.float32)
        dst[list(PAINTED_KEYPOINTS)] = rigid_px[list(PAINTED_KEYPOINTS)]
        keep = np.ones(len(dst), bool)
        for upper, lower in INNER_LIP_PAIRS:  # closed lips: one control point, not two on top of each other
            if np.linalg.norm(dst[lower] - dst[upper]) < 0.75:
                keep[lower] = False
        disp = (self.rest_points - dst)[keep]
        frame = self.image.copy()
        if np.abs(disp).max() < 1e-3:
            return frame
        centers = dst[keep] / self.half - 1.0
        coef = tps.solve(centers, disp / self.half, regularization=1e-7)
        gx0, gy0, gx1, gy1 = self._grid_box
        field = np.zeros(((gy1 - gy0) * (gx1 - gx0), 2), np.float32)
        field[self._active] = tps.evaluate(coef, centers, self._nodes) * self._active_mask
        x0, y0, x1, y1 = self.roi
        cell = self.cell
        dense = cv2.resize(field.reshape(gy1 - gy0, gx1 - gx0, 2), ((gx1 - gx0) * cell, (gy1 - gy0) * cell),
                           interpolation=cv2.INTER_LINEAR)
        dense = dense[: y1 - y0, : x1 - x0]
        dense += self._base
        warped = cv2.remap(self._image_rgba, dense, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        frame[y0:y1, x0:x1] = cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB)
        return frame
