"""MediaPipe face mesh lips (teller_agent.face.mesh) and their use in track_landmarks.

The real-media tests read ``../shared/data`` and skip with a reason when it is absent.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

from teller_agent.errors import CheckpointError, TellerError
from teller_agent.face import mesh as mesh_module
from teller_agent.face.mesh import (
    FACE68_LIPS_FROM_MESH,
    MODEL_PATH,
    NUM_MESH_POINTS,
    FaceMesh,
    FaceMeshError,
    check_model,
    lips_from_mesh,
    with_mesh_lips,
)

PORTRAITS = ("EAMM__anne.png", "SadTalker__happy.png", "Talking-Face_PC-AVS__Input__512400353__000000.jpg")
CLIP = "Arabic-Lip-Reading__add_01549.mp4"  # 1.24 s, 256x256 face crop, own audio


def test_vendored_model_is_intact_and_mapping_is_well_formed():
    assert check_model() == MODEL_PATH
    assert (MODEL_PATH.parent / "NOTICE").is_file()
    idx = np.array(FACE68_LIPS_FROM_MESH)
    assert idx.shape == (20, 2) and idx.min() >= 0 and idx.max() < NUM_MESH_POINTS
    points = np.random.default_rng(0).normal(size=(NUM_MESH_POINTS, 3)).astype(np.float32)
    lips = lips_from_mesh(points)
    assert lips.shape == (20, 2) and lips.dtype == np.float32
    assert np.allclose(lips[0], points[61, :2]) and np.allclose(lips[1], points[[40, 39], :2].mean(0))
    with pytest.raises(ValueError):
        lips_from_mesh(points[:68])


@pytest.fixture(scope="module")
def face_mesh():
    return FaceMesh()


@pytest.mark.parametrize("name", PORTRAITS)
def test_mesh_lips_sit_on_dlib_mouth(shared_data, face_mesh, name):
    from teller_agent.face import detect_landmarks, load_portrait

    image = load_portrait(shared_data / "portraits" / name)
    det = detect_landmarks(image)
    assert det is not None, name
    lm = det.landmarks
    result = face_mesh.run(image, lm)
    assert result.points.shape == (NUM_MESH_POINTS, 3) and result.points.dtype == np.float32
    assert result.presence > 0.9
    lips = lips_from_mesh(result.points)
    # Inside dlib's mouth box enlarged by 20 % of its size on every side.
    lo, hi = lm[48:68].min(0), lm[48:68].max(0)
    margin = 0.2 * (hi - lo)
    assert np.all(lips >= lo - margin) and np.all(lips <= hi + margin), name
    # Orientation: 48 is the image-left corner; upper lip above lower lip (y down).
    assert lips[0, 0] < lips[6, 0] and lips[12, 0] < lips[16, 0]
    for upper, lower in ((61, 67), (62, 66), (63, 65), (50, 58), (51, 57), (52, 56)):
        assert lips[upper - 48, 1] < lips[lower - 48, 1], (name, upper, lower)
    # Each mapped point near its dlib counterpart (mean under 0.08 eye distances).
    iod = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
    assert np.linalg.norm(lips - lm[48:68], axis=1).mean() < 0.08 * iod
    # with_mesh_lips: a copy with only 48-67 replaced.
    out = with_mesh_lips(image, lm, face_mesh)
    assert out is not lm and np.array_equal(out[:48], lm[:48]) and np.allclose(out[48:], lips)


def test_bad_inputs_raise_value_error(face_mesh):
    frame = np.zeros((64, 64, 3), np.uint8)
    lm = np.zeros((68, 2), np.float32)
    with pytest.raises(ValueError):
        face_mesh.run(frame.astype(np.float32), lm)
    with pytest.raises(ValueError):
        face_mesh.run(frame, lm[:20])
    with pytest.raises(ValueError):
        face_mesh.run(frame, np.full((68, 2), np.nan))


def test_corrupt_model_raises(tmp_path, monkeypatch):
    bad = tmp_path / "face_landmark.tflite"
    shutil.copy(MODEL_PATH, bad)
    data = bytearray(bad.read_bytes())
    data[1000] ^= 0xFF
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(mesh_module, "MODEL_PATH", bad)
    with pytest.raises(FaceMeshError, match="SHA-256") as info:
        FaceMesh().load()
    assert isinstance(info.value, TellerError) and isinstance(info.value, CheckpointError)
    assert "reinstall teller-agent" in str(info.value)
    # track_landmarks fails before decoding anything (the path need not exist).
    from teller_agent.data import track_landmarks

    with pytest.raises(FaceMeshError):
        track_landmarks(tmp_path / "missing.mp4", lips="mediapipe")


def test_missing_model_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(mesh_module, "MODEL_PATH", tmp_path / "nothing" / "face_landmark.tflite")
    with pytest.raises(FaceMeshError, match="missing"):
        FaceMesh().load()
    with pytest.raises(FaceMeshError, match="missing"):
        FaceMesh(tmp_path / "other.tflite").load()


def test_missing_runtime_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(FaceMeshError, match="pip install ai-edge-litert"):
        FaceMesh().load()


def test_track_landmarks_with_mesh_lips(shared_data):
    from teller_agent.data import track_landmarks

    path = shared_data / "talking" / CLIP
    dlib_clip = track_landmarks(path, audio=False, lips="dlib")
    mesh_clip = track_landmarks(path, audio=False)  # default: lips="mediapipe"
    assert dlib_clip.lips == "dlib" and not dlib_clip.mesh_lips.any()
    assert mesh_clip.lips == "mediapipe"
    valid = mesh_clip.valid
    assert valid.sum() >= 25 and np.array_equal(valid, dlib_clip.valid)
    assert np.array_equal(mesh_clip.mesh_lips, valid)  # a real face on every valid frame
    a, b = mesh_clip.landmarks[valid], dlib_clip.landmarks[valid]
    assert np.array_equal(a[:, :48], b[:, :48])  # tracking unchanged: only the lips differ
    dist = np.linalg.norm(a[:, 48:] - b[:, 48:], axis=-1)
    iod = np.linalg.norm(b[:, 36:42].mean(1) - b[:, 42:48].mean(1), axis=-1)
    assert dist.mean() > 0.3  # really another labeller
    assert dist.mean() < 0.06 * iod.mean()  # ~1.3 px at a 40-px eye distance
    assert np.all(dist < 0.2 * iod[:, None])  # no point strays off the lips (max measured: 0.08)
    with pytest.raises(ValueError, match="lips"):
        track_landmarks(path, audio=False, lips="mesh")
