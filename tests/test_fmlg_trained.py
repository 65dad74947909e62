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
from teller_agent.motion.latent import MotionLatent


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


def test_the_lip_readout_blends_the_lips_only_and_streams(shared_data):
    """The lip readout (generator module docstring, item 6): the mouth deltas at weight w are
    ((1 - w) generator + w readout) x lip_readout_gain exactly, the head is the same for any w (nothing is fed back),
    the readout's lips equal the offline readout of the student's features, and 10 ms chunks
    give the one-shot result."""
    from teller_agent.config import DEFAULT_LIP_READOUT
    from teller_agent.fmlg.checkpoint import LIP_READOUT_FILE
    from teller_agent.fmlg.tokenizer import MOUTH_DIM
    from teller_agent.train.student import student_features

    assert (DEFAULT_CHECKPOINT / LIP_READOUT_FILE).stat().st_size < 2**20
    ck = load_checkpoint()
    assert ck.lip_readout is not None
    assert MotionGenerator(ck).lip_readout == DEFAULT_LIP_READOUT > 0
    pcm, _ = load_audio(shared_data / "talking" / "SadTalker__WDA_BobMenendez_000.mp4", SAMPLE_RATE)
    pcm = pcm[: 2 * SAMPLE_RATE]
    f = {w: motion_to_features(MotionGenerator(ck, seed=0, lip_readout=w).generate(pcm, SAMPLE_RATE))
         for w in (0.0, 0.5, 1.0)}
    gain = ck.generator.cfg.lip_readout_gain  # scales the blended lips (w > 0)
    assert gain > 0
    np.testing.assert_allclose(f[0.5][:, :MOUTH_DIM], 0.5 * gain * f[0.0][:, :MOUTH_DIM] + 0.5 * f[1.0][:, :MOUTH_DIM],
                               atol=1e-5)
    np.testing.assert_array_equal(f[0.0][:, MOUTH_DIM:], f[1.0][:, MOUTH_DIM:])
    assert np.abs(f[0.0][:, :MOUTH_DIM] - f[1.0][:, :MOUTH_DIM]).mean() > 1e-3
    offline = ck.lip_readout(student_features(ck.student, pcm, len(f[1.0])))
    np.testing.assert_allclose(f[1.0][:, :MOUTH_DIM], gain * offline, atol=2e-3 * max(gain, 1.0))
    gen = MotionGenerator(ck, seed=0, lip_readout=0.5)
    gen.reset()
    parts = [gen.push_audio(pcm[i : i + 160], SAMPLE_RATE) for i in range(0, len(pcm), 160)]
    chunked = motion_to_features(MotionLatent.concatenate([*parts, gen.flush()]))
    np.testing.assert_allclose(chunked, f[0.5], rtol=0, atol=1e-5)  # float rounding only (test_fmlg.py)


def test_lip_readout_weight_and_file_errors(tmp_path):
    import shutil

    from teller_agent.errors import CheckpointError
    from teller_agent.fmlg.checkpoint import LIP_READOUT_FILE

    with pytest.raises(ValueError, match="lip_readout"):
        MotionGenerator(lip_readout=1.5)
    folder = tmp_path / "ck"
    shutil.copytree(DEFAULT_CHECKPOINT, folder)
    (folder / LIP_READOUT_FILE).write_bytes(b"not an npz")
    with pytest.raises(CheckpointError, match="teller-agent train readout"):
        load_checkpoint(folder)
    (folder / LIP_READOUT_FILE).unlink()  # a checkpoint without one: the generator's lips alone
    assert MotionGenerator(folder).lip_readout == 0.0
