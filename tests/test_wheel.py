"""A plain (non-editable) install carries the model: the wheel holds the shipped checkpoint and,
installed away from the repository, renders a talking face with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_FILES = ("config.json", "tokenizer.safetensors", "generator.safetensors", "audio_student.safetensors",
                    "lip_readout.npz", "README.md")


def _clean_source(dest: Path) -> Path:
    """The repository's tracked files (git), copied to ``dest``: no build leftovers or scratch data."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True,
                           timeout=60).stdout.decode().split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    return dest


def test_the_wheel_carries_the_model_and_renders_from_it(tmp_path):
    dist = tmp_path / "dist"
    src = _clean_source(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(dist), str(src)], check=True, timeout=600)
    (wheel,) = dist.glob("teller_agent-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in CHECKPOINT_FILES if f"teller_agent/models/fmlg-face68/{f}" not in names]
    assert not missing, f"the wheel lacks the shipped checkpoint's {missing}"
    assert "teller_agent/face/mediapipe/face_landmark.tflite" in names
    missing = [f for f in ("mouth_atlas.npz", "README.md") if f"teller_agent/models/mouth-atlas/{f}" not in names]
    assert not missing, f"the wheel lacks the mouth atlas's {missing}"
    page = [f"teller_agent/playground/static/{f}" for f in ("index.html", "app.js", "style.css",
                                                            "vendor/livekit-client.umd.js", "vendor/livekit-client.json",
                                                            "vendor/livekit-client.LICENSE")]
    assert not [f for f in page if f not in names], f"the wheel lacks the playground page: {set(page) - set(names)}"

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, timeout=600)
    t = np.arange(16000) / 16000
    sf.write(tmp_path / "speech.wav", (0.3 * (np.sin(2 * np.pi * 3 * t) > 0) * np.sin(2 * np.pi * 180 * t)), 16000)
    script = (
        "import sys, teller_agent\n"
        "from pathlib import Path\n"
        f"assert Path(teller_agent.__file__).resolve().is_relative_to(Path({str(site)!r}).resolve()), teller_agent.__file__\n"
        "from teller_agent.fmlg.checkpoint import DEFAULT_CHECKPOINT\n"
        f"assert DEFAULT_CHECKPOINT.resolve().is_relative_to(Path({str(site)!r}).resolve()), DEFAULT_CHECKPOINT\n"
        "from teller_agent.cli import main\n"
        "sys.exit(main(['render', '--audio', 'speech.wav', '-o', 'out.mp4', '--size', '256', '-q']))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site), TELLER_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("TELLER_MODEL_DIR", None)
    env.pop("TELLER_AVATAR_IMAGE", None)
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    from teller_agent.media import probe

    info = probe(tmp_path / "out.mp4")
    assert info["frame_count"] == 25 and abs(info["audio_duration"] - 1.0) < 0.05
