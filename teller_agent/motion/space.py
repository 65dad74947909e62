"""Motion spaces: which keypoints a motion latent drives and how a portrait is lifted into them.

Two spaces exist:

* ``face68`` (the default): the 68 landmarks of the iBUG 300-W / dlib layout,
  lifted to 3D with a generic depth template. It needs no learned weights, so
  the CPU warp renderer and the whole pipeline run with no downloads.
* ``liveportrait21``: LivePortrait's K = 21 implicit keypoints (arXiv
  2407.03168, sec. 3.1), as used by Teller. Its canonical keypoints come from
  LivePortrait's keypoint detector, so it has no landmark lifting here; the
  same :class:`~teller_agent.motion.latent.MotionLatent` carries its motion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from ..face import face68
from .latent import MotionLatent, PortraitKeypoints, rotation_matrix

# Depth of each of the 68 landmarks relative to the head's rotation pivot, in
# face widths, z toward the camera. Hand-made from average facial anthropometry
# (nose tip ~0.6 face widths in front of the neck pivot, jaw angles ~0.1, eyes
# recessed ~0.35 behind the nose tip). Generic: identity depth is not modelled.
_NOSE_TIP_DEPTH = 0.6
_JAW = [-0.62, -0.6, -0.55, -0.48, -0.4, -0.32, -0.25, -0.21, -0.2]
_DEPTH_BEHIND_NOSE = np.array(
    _JAW + _JAW[-2::-1]  # 0-16 jaw contour, symmetric
    + [-0.45, -0.38, -0.33, -0.3, -0.29] + [-0.29, -0.3, -0.33, -0.38, -0.45]  # 17-26 brows
    + [-0.3, -0.2, -0.1, 0.0]  # 27-30 nose bridge to tip
    + [-0.18, -0.12, -0.08, -0.12, -0.18]  # 31-35 nostrils
    + [-0.42, -0.36, -0.35, -0.37, -0.38, -0.38]  # 36-41 image-left eye (subject's right)
    + [-0.37, -0.35, -0.36, -0.42, -0.38, -0.38]  # 42-47 image-right eye
    + [-0.3, -0.22, -0.17, -0.15, -0.17, -0.22, -0.3, -0.23, -0.19, -0.18, -0.19, -0.23]  # 48-59 outer lips
    + [-0.29, -0.2, -0.19, -0.2, -0.29, -0.2, -0.19, -0.2],  # 60-67 inner lips
    dtype=np.float32,
)
FACE68_DEPTH = _DEPTH_BEHIND_NOSE + _NOSE_TIP_DEPTH

#: Named index sets of the face68 space, from :mod:`teller_agent.face.face68` (left and right are
#: the subject's).
FACE68_GROUPS: Mapping[str, tuple[int, ...]] = MappingProxyType({
    "jaw": face68.JAW,
    "brow_right": face68.RIGHT_BROW,
    "brow_left": face68.LEFT_BROW,
    "nose": face68.NOSE,
    "eye_right": face68.RIGHT_EYE,
    "eye_left": face68.LEFT_EYE,
    "lips_outer": face68.OUTER_LIPS,
    "lips_inner": face68.INNER_LIPS,
    "upper_lid_right": (37, 38),
    "lower_lid_right": (41, 40),
    "upper_lid_left": (43, 44),
    "lower_lid_left": (47, 46),
})


@dataclass(frozen=True)
class MotionSpace:
    """A keypoint layout that motion latents live in.

    Attributes:
        name: stored in motion files; latents of one space only drive portraits
            lifted into the same space.
        num_keypoints: K.
        groups: named index sets (e.g. ``"lips_inner"``) for articulation and metrics.
        depth: (K,) float32 generic depth template in face widths, or None if
            the space's canonical keypoints come from a learned detector.
    """

    name: str
    num_keypoints: int
    groups: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    depth: np.ndarray | None = None

    @property
    def dim(self) -> int:
        """Width of a motion latent's flat view, ``3K + 7``."""
        return 3 * self.num_keypoints + 7

    def neutral(self, num_frames: int) -> MotionLatent:
        """``num_frames`` frames of no motion in this space."""
        return MotionLatent.neutral(num_frames, self.num_keypoints, self.name)

    def lift(self, landmarks: np.ndarray, frame_size: int) -> PortraitKeypoints:
        """Lift 2D landmarks of a portrait to its rest keypoints.

        The rest pose takes roll from the line through the eye centres and
        pitch = yaw = 0 (the photo defines "frontal"); the pivot ``t`` is the
        landmarks' centroid; the scale is the face width (landmarks 0-16).

        Args:
            landmarks: (K, 2) float landmark positions in pixels of the square
                frame (x right, y down).
            frame_size: side of that frame in pixels.

        Returns:
            The portrait's :class:`PortraitKeypoints`, whose ``rest()``
            reproduces ``landmarks`` exactly in crop-normalised units.

        Raises:
            ValueError: wrong landmark count, or a space without a depth template.
        """
        if self.depth is None:
            raise ValueError(f"motion space {self.name!r} has no depth template; its keypoints come from a detector")
        pts = np.asarray(landmarks, dtype=np.float32)
        if pts.shape != (self.num_keypoints, 2):
            raise ValueError(f"expected landmarks of shape ({self.num_keypoints}, 2), got {pts.shape}")
        xy = pts / (frame_size / 2.0) - 1.0
        eyes = self.groups
        image_left = xy[list(eyes["eye_right"])].mean(0)  # the subject's right eye
        image_right = xy[list(eyes["eye_left"])].mean(0)
        roll = float(np.degrees(np.arctan2(image_right[1] - image_left[1], image_right[0] - image_left[0])))
        jaw = self.groups["jaw"]
        scale = float(np.linalg.norm(xy[jaw[-1]] - xy[jaw[0]]))
        if scale <= 1e-6:
            raise ValueError("degenerate landmarks: the face has zero width")
        pivot = np.array([xy[:, 0].mean(), xy[:, 1].mean(), 0.0], np.float32)
        posed = np.concatenate([xy, (self.depth * scale)[:, None]], axis=1)
        rot = rotation_matrix(0.0, 0.0, roll)
        canonical = ((posed - pivot) / scale) @ rot.T  # x_s = s x_c R + t  =>  x_c = (x_s - t) / s R^T
        return PortraitKeypoints(canonical.astype(np.float32), 0.0, 0.0, roll, pivot, scale)


FACE68 = MotionSpace("face68", 68, FACE68_GROUPS, FACE68_DEPTH)
LIVEPORTRAIT21 = MotionSpace("liveportrait21", 21)

SPACES: Mapping[str, MotionSpace] = MappingProxyType({s.name: s for s in (FACE68, LIVEPORTRAIT21)})


def get_space(name: str) -> MotionSpace:
    """The registered motion space called ``name``; KeyError names the known ones."""
    try:
        return SPACES[name]
    except KeyError:
        raise KeyError(f"unknown motion space {name!r}; known: {sorted(SPACES)}") from None
