"""``teller-agent animate`` and ``bench render`` end to end, through the console entry point."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from teller_agent.cli import main
from teller_agent.config import TellerSettings
from teller_agent.media import probe, read_video_frames

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def env(monkeypatch, settings):
    monkeypatch.setenv("TELLER_CACHE_DIR", str(settings.cache_dir))
    monkeypatch.delenv("TELLER_AVATAR_IMAGE", raising=False)


def _speech_like(seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    envelope = (np.sin(2 * np.pi * 3.0 * t) > 0).astype(np.float32)
    return (0.3 * envelope * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


def test_animate_with_audio_writes_a_synced_mp4(tmp_path, env, capsys):
    wav = tmp_path / "speech.wav"
    sf.write(wav, _speech_like(1.3, 24000), 24000)
    out, sheet = tmp_path / "out.mp4", tmp_path / "sheet.png"
    assert main(["animate", "--procedural", "--audio", str(wav), "-o", str(out), "--contact-sheet", str(sheet),
                 "--every", "5", "-q"]) == 0
    info = probe(out)
    frames = list(read_video_frames(out, fps=None))
    assert len(frames) == info["frame_count"] == 33  # 1.3 s * 25 fps = 32.5 -> rounded half up
    assert frames[0].shape == (512, 512, 3)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert abs(info["audio_duration"] - 1.3) < 0.01
    assert abs(info["video_duration"] - info["audio_duration"]) <= 1 / 25
    assert sheet.stat().st_size > 1000
    # The mouth follows the loudness: loud and quiet stretches differ around the mouth.
    assert np.std([f[300:380, 200:310].mean() for f in frames]) > 0.5
    assert "33 frames" in capsys.readouterr().out


def test_animate_without_audio_uses_seconds(tmp_path, env):
    out = tmp_path / "idle.mp4"
    assert main(["animate", "--seconds", "0.8", "--size", "256", "-o", str(out), "-q"]) == 0
    info = probe(out)
    assert info["frame_count"] == 20 and info["width"] == 256 and info["audio_codec"] is None


def test_animate_from_a_motion_file(tmp_path, env):
    from teller_agent.motion import procedural_motion

    motion = tmp_path / "m.npz"
    procedural_motion(12, seed=3).save(motion)
    out = tmp_path / "m.mp4"
    assert main(["animate", "--motion", str(motion), "-o", str(out), "-q"]) == 0
    assert probe(out)["frame_count"] == 12


def test_motion_in_chunks_is_trimmed_or_held_to_the_audio():
    from teller_agent.animate import fit_stream
    from teller_agent.motion import MotionLatent, procedural_motion

    motion = procedural_motion(9, seed=1)
    chunks = [motion[0:3], motion[3:6], motion[6:9]]
    assert [len(c) for c in fit_stream(chunks, 7)] == [3, 3, 1]
    longer = list(fit_stream(chunks, 11))
    assert [len(c) for c in longer] == [3, 3, 3, 2]
    flat = MotionLatent.concatenate(longer).flat()
    np.testing.assert_array_equal(flat[:9], motion.flat())
    np.testing.assert_array_equal(flat[9:], np.repeat(motion.flat()[-1:], 2, axis=0))  # the last frame held
    assert sum(len(c) for c in fit_stream([], 4)) == 4  # nothing generated: the neutral face


def test_render_with_a_missing_model_names_it_and_writes_nothing(tmp_path, env, capsys):
    wav = tmp_path / "speech.wav"
    sf.write(wav, _speech_like(1.0, 16000), 16000)
    out = tmp_path / "never.mp4"
    code = main(["render", "--audio", str(wav), "--model", str(tmp_path / "no-model"), "-o", str(out), "-q"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no-model" in err and "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image", "{tmp}/missing.jpg"], "missing.jpg"),
        (["--image", "{tmp}/corrupt.jpg"], "corrupt.jpg"),
        (["--audio", "{tmp}/corrupt.wav"], "corrupt.wav"),
        (["--motion", "{tmp}/corrupt.npz"], "corrupt.npz"),
    ],
)
def test_bad_inputs_fail_cleanly(tmp_path, env, capsys, args, message):
    for name in ("corrupt.jpg", "corrupt.wav", "corrupt.npz"):
        (tmp_path / name).write_bytes(b"\x00garbage" * 10)
    out = tmp_path / "never.mp4"
    code = main(["animate", "-q", "-o", str(out)] + [a.format(tmp=tmp_path) for a in args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_bench_render_prints_json(env, capsys):
    assert main(["bench", "render", "--frames", "30", "--size", "256", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"size", "frames", "median_ms", "p95_ms", "fps", "peak_rss_mb", "machine"} <= report.keys()
    assert report["frames"] == 30 and report["fps"] > 0


def test_readme_documents_every_setting():
    text = README.read_text()
    for name in TellerSettings.model_fields:
        assert re.search(rf"`TELLER_{name.upper()}`", text), f"README lacks TELLER_{name.upper()}"


def test_bench_generator_prints_json(env, capsys):
    assert main(["bench", "generator", "--seconds", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"frames", "median_ms", "p95_ms", "fps", "rtf", "peak_rss_mb"} <= report.keys()
    from teller_agent.fmlg import MotionGenerator

    lookahead = MotionGenerator().lookahead  # frames of future audio the shipped checkpoint waits for
    assert report["frames"] == 25 - lookahead  # the streamed second without a flush: the last frames wait


@pytest.mark.parametrize("bad, message", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"),
                                          (40.0, "full scale")])
def test_render_names_bad_audio_samples_and_writes_nothing(tmp_path, env, capsys, bad, message):
    x = _speech_like(1.0, 16000)
    x[4000:4100] = bad
    wav = tmp_path / "bad.wav"
    sf.write(wav, x, 16000, subtype="FLOAT")
    out = tmp_path / "never.mp4"
    assert main(["render", "--audio", str(wav), "-o", str(out), "--size", "256", "-q"]) == 2
    err = capsys.readouterr().err
    assert "bad.wav" in err and message in err and "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_render_says_a_sentence(tmp_path, env):
    pytest.importorskip("teller_agent.data.espeak")
    from teller_agent.data.espeak import espeak_available

    if not espeak_available():
        pytest.skip("eSpeak NG is not installed (apt-get install espeak-ng)")
    out = tmp_path / "talk.mp4"
    assert main(["render", "--say", "Hello there.", "-o", str(out), "--size", "256", "-q"]) == 0
    info = probe(out)
    assert info["frame_count"] >= 10 and abs(info["video_duration"] - info["audio_duration"]) <= 1 / 25


def test_sheet_shows_the_photo_and_each_mouth_state(tmp_path, env):
    from PIL import Image

    from teller_agent.render.states import STATES

    out = tmp_path / "states.jpg"
    assert main(["sheet", "-o", str(out), "--size", "256", "--thumb", "64"]) == 0
    w, h = Image.open(out).size
    cells = 1 + len(STATES)
    assert (w, h) == (cells * 64 + (cells - 1) * 2, 64)
