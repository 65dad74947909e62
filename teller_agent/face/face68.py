"""The 68-point face layout (iBUG 300-W, as dlib's shape predictor returns it): the one
definition of every landmark index set and of the geometry read from them.

Left and right are the subject's: the subject's right eye (36-41) is on the image's left.
Index sets are tuples of ints (use ``points[..., list(SET), :]`` to index a single face).
"""

from __future__ import annotations

import numpy as np

#: Landmarks in the layout.
NUM_LANDMARKS = 68

#: Jaw line, 0 (subject's right ear) to 16; 8 is the chin.
JAW = tuple(range(0, 17))
CHIN = 8
#: Brows: the subject's right (image left) 17-21, left 22-26.
RIGHT_BROW = tuple(range(17, 22))
LEFT_BROW = tuple(range(22, 27))
BROWS = RIGHT_BROW + LEFT_BROW
#: Nose bridge 27-30 and nostrils 31-35; 30 is the tip.
NOSE = tuple(range(27, 36))
NOSE_TIP = 30
#: Eyes: the subject's right (image left) 36-41, corners 36 (outer) and 39 (inner); the left
#: 42-47, corners 42 (inner) and 45 (outer).
RIGHT_EYE = tuple(range(36, 42))
LEFT_EYE = tuple(range(42, 48))
EYE_CORNERS = (36, 39, 42, 45)
#: Eyelids: the eye points that move in a blink.
EYELIDS = (37, 38, 40, 41, 43, 44, 46, 47)
#: Lips: outer contour 48-59, inner contour 60-67 (the keypoints LVE measures).
OUTER_LIPS = tuple(range(48, 60))
INNER_LIPS = tuple(range(60, 68))
LIPS = OUTER_LIPS + INNER_LIPS
#: Inner-lip chains from the image-left inner corner 60 to the image-right one 64: the upper lip's
#: lower edge (60-64) and the lower lip's upper edge (60, 67-65, 64); the mouth opening lies between.
INNER_UPPER_LIP = (60, 61, 62, 63, 64)
INNER_LOWER_LIP = (60, 67, 66, 65, 64)
#: Inner-lip (upper, lower) pairs whose gaps define the mouth opening.
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
#: The midline pair alone (the gap the viseme tracks are written for).
MIDLINE_LIP_PAIR = ((62, 66),)

#: Points that move rigidly with the skull: nose and the four eye corners. Faces are aligned on
#: them before their lips are compared (eyelids move in blinks, brows with expression, jaw and
#: lips with speech: the signal measured).
RIGID_POINTS = NOSE + EYE_CORNERS
#: Points the head pose of a video frame is fitted to when motion is extracted: the rigid points
#: plus the brows at half weight (more points steady the fit; brows move less than the mouth).
POSE_FIT_POINTS = RIGID_POINTS + BROWS
POSE_FIT_WEIGHTS = np.array([1.0] * len(RIGID_POINTS) + [0.5] * len(BROWS))
#: Points whose rest position is taken from closed-mouth frames: lower jaw line and lips.
MOUTH_AND_CHIN = tuple(range(3, 14)) + LIPS


def inner_lip_gap(points: np.ndarray) -> np.ndarray:
    """Mouth opening: mean distance of the inner-lip pairs 61-67, 62-66, 63-65.

    Args:
        points: (..., 68, >=2) landmarks or keypoints (only x, y are used).

    Returns:
        (...) array in the units of ``points`` (pixels for landmarks).
    """
    p = np.asarray(points)[..., :2]
    return np.mean([np.linalg.norm(p[..., b, :] - p[..., a, :], axis=-1) for a, b in INNER_LIP_PAIRS], axis=0)


def eye_centers(landmarks: np.ndarray) -> np.ndarray:
    """Centres of the two eyes.

    Args:
        landmarks: (..., 68, 2) points.

    Returns:
        (..., 2, 2) float64: the subject's right eye (image left) first, then the left eye.
    """
    lm = np.asarray(landmarks, np.float64)
    return np.stack([lm[..., list(RIGHT_EYE), :].mean(axis=-2), lm[..., list(LEFT_EYE), :].mean(axis=-2)], axis=-2)


def lip_gap_delta(exp: np.ndarray, pairs: tuple[tuple[int, int], ...] = INNER_LIP_PAIRS) -> np.ndarray:
    """(T,) change of the inner-lip opening that expression deltas add (lower minus upper lip y,
    mean over ``pairs``), in the deltas' units (face widths for ``face68`` motion).

    Args:
        exp: (T, 68, >=2) expression deltas.
    """
    e = np.asarray(exp)
    upper = [u for u, _ in pairs]
    lower = [lo for _, lo in pairs]
    return (e[:, lower, 1] - e[:, upper, 1]).mean(axis=1)
