"""Identity kept: rendered frames of real portraits speaking real speech stay the photo's person
(dlib face-descriptor distance; dlib's same-person threshold is 0.6)."""

from __future__ import annotations

import json

import numpy as np
import pytest

PORTRAITS = ("AniPortrait__Aragaki.png", "EAMM__7.png")
SPEECH = "AniPortrait__lyl.wav"
REAL_CLIP = "LipNet__lbbc2a.mp4"  # a held-out speaker's real talking clip


@pytest.fixture
def real_media(shared_data):
    portraits = [shared_data / "portraits" / n for n in PORTRAITS]
    speech = shared_data / "speech" / SPEECH
    missing = [p.name for p in [*portraits, speech] if not p.is_file()]
    if missing:
        pytest.skip(f"shared media missing: {missing}")
    return portraits, speech


def test_two_real_portraits_keep_their_identity_while_speaking(real_media, settings):
    from teller_agent.eval.identity import evaluate_identity

    portraits, speech = real_media
    result = evaluate_identity(portraits, [speech], settings, seconds=1.0, every=5, progress=False)
    assert [r["name"] for r in result["portraits"]] == list(PORTRAITS) and result["lost"] == 0
    print({r["name"]: (round(r["mean"], 3), round(r["worst"], 3)) for r in result["portraits"]})
    assert result["mean"] <= 0.22 and result["worst"] <= 0.36


def test_the_descriptor_tells_two_people_apart(real_media):
    from teller_agent.face.identity import SAME_PERSON_DISTANCE, face_descriptor
    from teller_agent.face.image import load_portrait

    portraits, _ = real_media
    a, b = (face_descriptor(load_portrait(p, 60_000_000)) for p in portraits)
    assert np.linalg.norm(a - b) > SAME_PERSON_DISTANCE


def test_eval_identity_command_writes_its_table_and_json(real_media, tmp_path, monkeypatch, settings):
    from teller_agent.cli import main

    portraits, speech = real_media
    monkeypatch.setenv("TELLER_CACHE_DIR", str(settings.cache_dir))
    out = tmp_path / "identity"
    clip = portraits[0].parent.parent / "talking" / REAL_CLIP
    if not clip.is_file():
        pytest.skip(f"shared clip missing: {clip}")
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / REAL_CLIP).symlink_to(clip)
    code = main(["eval", "identity", "--portraits", str(portraits[0].parent), "--speech", str(speech.parent),
                 "--limit", "1", "--seconds", "0.4", "--every", "5", "--real-clips", str(clips),
                 "--out", str(out), "-q"])
    assert code == 0
    result = json.loads((out / "identity.json").read_text())
    assert result["frames"] >= 2 and result["mean"] is not None and "eval identity" in result["command"]
    assert [r["name"] for r in result["real_video"]["clips"]] == [REAL_CLIP]
    table = (out / "identity.md").read_text()
    assert "| **all** |" in table and f"| {REAL_CLIP} |" in table
    assert result["settings"]["mouth_interior"] is True
    # the ablation: the same frames without the painted mouth interior, no reference rows
    code = main(["eval", "identity", "--portraits", str(portraits[0].parent), "--speech", str(speech.parent),
                 "--limit", "1", "--seconds", "0.4", "--every", "5", "--no-real-video", "--no-mouth-interior",
                 "--sheet-portraits", "0", "--out", str(out), "-q"])
    ablation = json.loads((out / "identity.json").read_text())
    assert code == 0 and ablation["settings"]["mouth_interior"] is False and "real_video" not in ablation
    assert ablation["frames"] == result["frames"]


def test_the_real_video_reference_measures_a_clip_against_its_own_first_frame(shared_data):
    from teller_agent.eval.identity import real_video_identity
    from teller_agent.face.identity import SAME_PERSON_DISTANCE

    clip = shared_data / "talking" / REAL_CLIP
    if not clip.is_file():
        pytest.skip(f"shared clip missing: {clip}")
    result = real_video_identity([clip], seconds=1.0, every=5, progress=False)
    row = result["clips"][0]
    assert row["frames"] + row["lost"] == 4  # frames 5, 10, 15 and 20 of the first 25
    # the speaker's own talking frames: the same person, yet not the first frame's exact descriptor
    assert 0.01 < row["mean"] <= row["worst"] < SAME_PERSON_DISTANCE


def test_a_missing_real_clips_folder_is_named_before_any_rendering(tmp_path, monkeypatch, capsys):
    import teller_agent.eval.identity as identity
    from teller_agent.cli import main

    def never(*args, **kwargs):
        raise AssertionError("the portraits were rendered before the bad --real-clips was reported")

    monkeypatch.setattr(identity, "evaluate_identity", never)
    portraits, speech = tmp_path / "portraits", tmp_path / "speech"
    portraits.mkdir(), speech.mkdir()
    (portraits / "a.jpg").write_bytes(b"")
    (speech / "a.wav").write_bytes(b"")
    missing = tmp_path / "no-such-folder"
    code = main(["eval", "identity", "--portraits", str(portraits), "--speech", str(speech),
                 "--real-clips", str(missing), "--out", str(tmp_path / "out"), "-q"])
    assert code == 2 and f"--real-clips {missing} is not a folder" in capsys.readouterr().err
