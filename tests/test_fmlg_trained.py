"""The shipped FMLG checkpoint (teller_agent/models/fmlg-face68): it loads by default and behaves like speech."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from teller_agent.audio.features import SAMPLE_RATE
from teller_agent.eval.metrics import mouth_opening
from teller_agent.fmlg import DEFAULT_CHECKPOINT, MotionGenerator, load_checkpoint
from teller_agent.fmlg.tokenizer import motion_to_features
from teller_agent.media import load_audio
from teller_agent.motion import FACE68


@pytest.fixture(scope="module")
def generator():
    torch.set_num_threads(1)
    return MotionGenerator(seed=0)  # default settings: the shipped checkpoint


@pytest.fixture(scope="module")
def portrait(avatar):
    return FACE68.lift(avatar.landmarks, avatar.size)


def _opening(portrait, motion) -> np.ndarray:
    return mouth_opening(portrait.drive(motion)[..., :2])


def test_shipped_checkpoint_is_small_and_documented():
    files = list(DEFAULT_CHECKPOINT.glob("*.safetensors"))
    assert {f.name for f in files} == {"tokenizer.safetensors", "generator.safetensors", "audio_student.safetensors"}
    assert all(f.stat().st_size < 25 * 2**20 for f in files)
    info = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())["info"]
    assert info["tokenizer_reconstruction"] and info["validation_mouth_r"] is not None
    assert sum(row["shipped"] for row in info["lookahead_study"]) == 1  # the look-ahead table, one row shipped
    assert (DEFAULT_CHECKPOINT / "README.md").is_file()


def test_tokenizer_round_trip_within_reported_error(shared_data):
    from teller_agent.data.extract import extract_clip

    info = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())["info"]
    reported = info["tokenizer_reconstruction"][-1]["mouth_fw"]
    ck = load_checkpoint(need_generator=False)
    rec = extract_clip(shared_data / "talking" / "deep_avsr__00022.mp4")  # a held-out clip
    feats = motion_to_features(rec["motion"])
    with torch.no_grad():
        back = ck.tokenizer.decode(ck.tokenizer.encode(torch.from_numpy(feats)[None]))[0].numpy()
    err = np.abs(back - feats)[:, : 2 * 37].mean()
    assert err < 1.5 * reported, (err, reported)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_silence_closes_the_mouth_and_speech_opens_it(portrait, shared_data, seed):
    generator = MotionGenerator(seed=seed)  # several sampling seeds: the margins hold for each take
    silent = generator.generate(np.zeros(3 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    # a held-out speaker (teller_agent/data/speakers.tsv)
    pcm, _ = load_audio(shared_data / "talking" / "SadTalker__WDA_BobMenendez_000.mp4", SAMPLE_RATE)
    speech = generator.generate(pcm[: 6 * SAMPLE_RATE], SAMPLE_RATE)
    rest = _opening(portrait, FACE68.neutral(1))[0]
    quiet, talking = _opening(portrait, silent) - rest, _opening(portrait, speech) - rest
    assert quiet.mean() < 0.05, "silence should leave the lips (nearly) closed"
    assert talking.mean() > quiet.mean() + 0.04 and np.percentile(talking, 90) > 0.12
    assert talking.std() > 2 * quiet.std(), "speech should open and close the mouth"


def test_silence_is_alive_not_frozen(generator):
    motion = generator.generate(np.zeros(5 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    assert len(motion) == 125
    assert np.ptp(motion.yaw) + np.ptp(motion.pitch) > 0.5, "gentle head motion while silent"
    assert len(np.unique(motion.flat(), axis=0)) > 100, "frames differ over time"
