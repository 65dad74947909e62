"""The facial motion latent: implicit keypoints in the LivePortrait convention.

Teller (arXiv 2503.18429, sec. 3.1) animates a portrait by driving the implicit
keypoints of LivePortrait (arXiv 2407.03168, sec. 3.1)::

    x_d = s * (x_c @ R + delta) + t

* ``x_c`` (K, 3): canonical keypoints of the portrait (identity, no pose),
* ``delta`` (K, 3): expression deltas,
* ``R`` (3, 3): head rotation from pitch, yaw, roll in degrees,
* ``t`` (3,): translation, ``s``: scale.

This module holds the per-frame motion (``delta``, rotation, ``t``, ``s``) as a
:class:`MotionLatent` and the portrait's rest state (``x_c`` and its own pose)
as :class:`PortraitKeypoints`. The motion is stored *relative to the portrait's
rest pose*, as in LivePortrait's relative animation mode that Teller uses at
inference: a neutral latent (all offsets zero, scale factor 1) reproduces the
portrait exactly.

Coordinate frames
-----------------
* Crop-normalised coordinates: ``x`` to the image right and ``y`` down, both in
  [-1, 1] across the square frame (pixel ``p`` of a frame of side ``S`` is at
  ``p / (S / 2) - 1``); ``z`` points toward the camera. Projection is
  orthographic: the image position of a keypoint is its ``(x, y)``.
* Canonical keypoints and expression deltas are in *face widths* (the distance
  between jaw landmarks 0 and 16 of the portrait), so one latent drives faces of
  any size; the portrait's rest scale ``s`` converts them to crop units.
* Angles are in degrees. Positive yaw moves the nose tip toward the image right,
  positive pitch moves it up, positive roll turns the face clockwise on screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import FPS
from ..errors import MotionFileError
from ..utils.atomic import atomic_path

#: Format version written into motion ``.npz`` files.
MOTION_FILE_VERSION = 1


def rotation_matrix(pitch: np.ndarray, yaw: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Rotation matrices for row-vector keypoints, ``x_rotated = x @ R``.

    Same construction as LivePortrait's ``get_rotation_matrix``
    (``src/utils/camera.py``): ``R = (Rz(roll) @ Ry(yaw) @ Rx(pitch)).T``.

    Args:
        pitch, yaw, roll: angles in degrees, any matching shape ``(...)``.

    Returns:
        float32 array of shape ``(..., 3, 3)``.
    """
    p, y, r = (np.deg2rad(np.asarray(a, dtype=np.float64)) for a in (pitch, yaw, roll))
    p, y, r = np.broadcast_arrays(p, y, r)
    one, zero = np.ones_like(p), np.zeros_like(p)
    cp, sp, cy, sy, cr, sr = np.cos(p), np.sin(p), np.cos(y), np.sin(y), np.cos(r), np.sin(r)
    rx = np.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(p.shape + (3, 3))
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(p.shape + (3, 3))
    rz = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(p.shape + (3, 3))
    rot = rz @ ry @ rx
    return np.swapaxes(rot, -1, -2).astype(np.float32)


@dataclass
class MotionLatent:
    """Motion of ``T`` frames at :data:`~teller_agent.config.FPS` frames per second.

    Attributes:
        exp: (T, K, 3) float32 expression deltas in face widths, canonical frame,
            added to the portrait's own expression.
        pitch, yaw, roll: (T,) float32 head rotation offsets in degrees from the
            portrait's rest pose.
        t: (T, 3) float32 translation offset in crop-normalised units.
        scale: (T,) float32 scale factor on the portrait's rest scale (1 = rest).
        space: name of the :class:`~teller_agent.motion.space.MotionSpace`
            whose keypoint layout ``exp`` follows (e.g. ``"face68"``).

    The flat view (:meth:`flat`) is ``(T, D)`` with ``D = 3K + 7``, laid out as
    ``[exp (3K, keypoint-major), pitch, yaw, roll, tx, ty, tz, scale]``.
    """

    exp: np.ndarray
    pitch: np.ndarray
    yaw: np.ndarray
    roll: np.ndarray
    t: np.ndarray
    scale: np.ndarray
    space: str = "face68"

    def __post_init__(self) -> None:
        self.exp = np.asarray(self.exp, dtype=np.float32)
        if self.exp.ndim != 3 or self.exp.shape[2] != 3:
            raise ValueError(f"exp must have shape (T, K, 3), got {self.exp.shape}")
        n = self.exp.shape[0]
        for name, shape in (("pitch", (n,)), ("yaw", (n,)), ("roll", (n,)), ("t", (n, 3)), ("scale", (n,))):
            value = np.asarray(getattr(self, name), dtype=np.float32)
            if value.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
            setattr(self, name, value)

    # -- construction -------------------------------------------------------

    @classmethod
    def neutral(cls, num_frames: int, num_keypoints: int, space: str = "face68") -> MotionLatent:
        """``num_frames`` frames of no motion: the portrait exactly as photographed."""
        return cls(
            exp=np.zeros((num_frames, num_keypoints, 3), np.float32),
            pitch=np.zeros(num_frames, np.float32),
            yaw=np.zeros(num_frames, np.float32),
            roll=np.zeros(num_frames, np.float32),
            t=np.zeros((num_frames, 3), np.float32),
            scale=np.ones(num_frames, np.float32),
            space=space,
        )

    @classmethod
    def from_flat(cls, flat: np.ndarray, num_keypoints: int, space: str = "face68") -> MotionLatent:
        """Inverse of :meth:`flat`. ``flat``: (T, 3K + 7) array (numpy or torch)."""
        arr = np.asarray(flat.detach().cpu() if hasattr(flat, "detach") else flat, dtype=np.float32)
        dim = 3 * num_keypoints + 7
        if arr.ndim != 2 or arr.shape[1] != dim:
            raise ValueError(f"flat motion must have shape (T, {dim}) for K={num_keypoints}, got {arr.shape}")
        k3 = 3 * num_keypoints
        return cls(
            exp=arr[:, :k3].reshape(-1, num_keypoints, 3),
            pitch=arr[:, k3],
            yaw=arr[:, k3 + 1],
            roll=arr[:, k3 + 2],
            t=arr[:, k3 + 3 : k3 + 6],
            scale=arr[:, k3 + 6],
            space=space,
        )

    @classmethod
    def concatenate(cls, parts: list[MotionLatent]) -> MotionLatent:
        """Join latents of the same space along time."""
        if not parts:
            raise ValueError("nothing to concatenate")
        spaces = {p.space for p in parts}
        if len(spaces) != 1:
            raise ValueError(f"cannot join motion of different spaces: {sorted(spaces)}")
        return cls.from_flat(np.concatenate([p.flat() for p in parts]), parts[0].num_keypoints, parts[0].space)

    # -- views --------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return self.exp.shape[0]

    @property
    def num_keypoints(self) -> int:
        return self.exp.shape[1]

    @property
    def dim(self) -> int:
        """Width ``D = 3K + 7`` of the flat view."""
        return 3 * self.num_keypoints + 7

    @property
    def duration(self) -> float:
        """Length in seconds at :data:`FPS`."""
        return self.num_frames / FPS

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: int | slice) -> MotionLatent:
        """Frames ``index`` as a new latent (an int gives a one-frame latent)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return MotionLatent(
            self.exp[index], self.pitch[index], self.yaw[index], self.roll[index],
            self.t[index], self.scale[index], self.space,
        )

    def flat(self) -> np.ndarray:
        """(T, 3K + 7) float32 view for models; see the class docstring for the layout."""
        n = self.num_frames
        return np.concatenate(
            [self.exp.reshape(n, 3 * self.num_keypoints), self.pitch[:, None], self.yaw[:, None], self.roll[:, None],
             self.t, self.scale[:, None]],
            axis=1,
        ).astype(np.float32)

    # -- files --------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` file (atomically: a failed write leaves no file)."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(
                f, version=MOTION_FILE_VERSION, space=self.space, fps=FPS, exp=self.exp,
                pitch=self.pitch, yaw=self.yaw, roll=self.roll, t=self.t, scale=self.scale,
            )

    @classmethod
    def load(cls, path: str | Path, space: str | None = None) -> MotionLatent:
        """Read a file written by :meth:`save`.

        Raises:
            MotionFileError: the file is missing, corrupt, of another format
                version, another frame rate, or (when ``space`` is given)
                another motion space.
        """
        path = Path(path)
        if not path.is_file():
            raise MotionFileError(f"motion file {path} does not exist; write one with MotionLatent.save()")
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = {k: data[k] for k in data.files}
        except Exception as exc:  # zipfile/format errors of every kind
            raise MotionFileError(f"motion file {path} is not a readable .npz ({exc}); re-create it") from exc
        missing = {"version", "space", "fps", "exp", "pitch", "yaw", "roll", "t", "scale"} - fields.keys()
        if missing:
            raise MotionFileError(f"motion file {path} lacks {sorted(missing)}; it was not written by teller-agent")
        if int(fields["version"]) != MOTION_FILE_VERSION or int(fields["fps"]) != FPS:
            raise MotionFileError(
                f"motion file {path} has version {int(fields['version'])} at {int(fields['fps'])} fps; "
                f"this teller-agent reads version {MOTION_FILE_VERSION} at {FPS} fps"
            )
        file_space = str(fields["space"])
        if space is not None and file_space != space:
            raise MotionFileError(f"motion file {path} is in space {file_space!r}, expected {space!r}")
        try:
            return cls(fields["exp"], fields["pitch"], fields["yaw"], fields["roll"], fields["t"],
                       fields["scale"], file_space)
        except ValueError as exc:
            raise MotionFileError(f"motion file {path} is inconsistent: {exc}") from exc


@dataclass(frozen=True)
class PortraitKeypoints:
    """The rest state of one portrait in a motion space (LivePortrait's source ``x_s`` info).

    Attributes:
        canonical: (K, 3) float32 canonical keypoints ``x_c`` in face widths.
        pitch, yaw, roll: rest pose of the portrait in degrees.
        t: (3,) float32 rest translation (the head pivot) in crop-normalised units.
        scale: rest scale: one face width in crop-normalised units.
    """

    canonical: np.ndarray
    pitch: float
    yaw: float
    roll: float
    t: np.ndarray
    scale: float

    def drive(self, motion: MotionLatent, expression: bool = True) -> np.ndarray:
        """Driven keypoints ``x_d = s (x_c R + delta) + t`` for every frame of ``motion``.

        Args:
            motion: T frames; its keypoint count must equal ``len(canonical)``.
            expression: if False, ignore ``motion.exp`` (rigid head motion only).

        Returns:
            (T, K, 3) float32 keypoints in crop-normalised units.
        """
        if motion.num_keypoints != len(self.canonical):
            raise ValueError(f"motion has {motion.num_keypoints} keypoints, portrait has {len(self.canonical)}")
        rot = rotation_matrix(self.pitch + motion.pitch, self.yaw + motion.yaw, self.roll + motion.roll)
        kp = self.canonical[None] @ rot
        if expression:
            kp = kp + motion.exp
        s = (self.scale * motion.scale)[:, None, None]
        return (s * kp + (self.t + motion.t)[:, None, :]).astype(np.float32)

    def rest(self) -> np.ndarray:
        """(K, 3) float32 keypoints of the portrait itself (``x_s``)."""
        rot = rotation_matrix(self.pitch, self.yaw, self.roll)
        return (self.scale * (self.canonical @ rot) + self.t).astype(np.float32)


def blend(a: MotionLatent, b: MotionLatent, weight: float | np.ndarray) -> MotionLatent:
    """Linear blend ``(1 - w) a + w b`` of two latents of the same shape and space.

    Args:
        a, b: latents of ``T`` frames each (or one frame each).
        weight: scalar or (T,) weight of ``b`` in [0, 1].

    Expression deltas, angles (degrees; the offsets here are small, so a linear
    blend of Euler angles is close to a rotation slerp), translation and scale
    are blended independently.

    Raises:
        ValueError: the latents differ in space or shape.
    """
    if a.space != b.space or a.exp.shape != b.exp.shape:
        raise ValueError(f"cannot blend {a.space} {a.exp.shape} with {b.space} {b.exp.shape}")
    w = np.broadcast_to(np.asarray(weight, np.float32), (a.num_frames,))
    fa, fb = a.flat(), b.flat()
    return MotionLatent.from_flat(fa + w[:, None] * (fb - fa), a.num_keypoints, a.space)
