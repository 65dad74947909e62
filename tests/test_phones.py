"""PocketSphinx phone labels for the generator's auxiliary phone loss (``train generator --aux-phones``)."""

from __future__ import annotations

import numpy as np
import pytest

from teller_agent.data import phones as P
from teller_agent.fmlg.tokenizer import FEATURE_DIM
from teller_agent.train.dataset import Clip


def test_silence_is_silence():
    labels = P.frame_phones(np.zeros(16000, np.float32), 25)
    assert labels.shape == (25,) and labels.dtype == np.int64
    assert (labels == P.SILENCE).all()


def test_real_english_speech_gets_many_phones(shared_data):
    """A clean English narration decodes to speech phones on most frames, many different ones, and the
    frames past the audio are silence."""
    from teller_agent.media import load_audio

    pcm, sr = load_audio(shared_data / "speech" / "EDTalk__teaser.mp3", sample_rate=16000)
    pcm = pcm[: 10 * 16000]
    labels = P.frame_phones(pcm, 260)  # 10 s of audio = 250 frames, then 10 past the end
    speech = labels[:250]
    assert (speech != P.SILENCE).mean() > 0.6
    assert len(set(speech.tolist())) >= 20
    assert (labels[252:] == P.SILENCE).all()


def test_dataset_phones_are_cached(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    clips = [Clip(f"c{i}", "real", "train", np.zeros((30, FEATURE_DIM), np.float32),
                  (0.1 * rng.standard_normal(30 * 640)).astype(np.float32), None, np.zeros((0, 68, 2), np.float32))
             for i in range(2)]
    first = P.dataset_phones(tmp_path, clips)
    assert set(first) == {"c0", "c1"} and all(v.shape == (30,) for v in first.values())
    assert (tmp_path / P.CACHE_NAME).is_file()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(P, "frame_phones", no_decoding)
    again = P.dataset_phones(tmp_path, clips)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    with pytest.raises(AssertionError, match="cache"):
        P.dataset_phones(tmp_path, clips + [Clip("new", "real", "train", np.zeros((5, FEATURE_DIM), np.float32),
                                                  np.zeros(3200, np.float32), None, np.zeros((0, 68, 2)))])
