"""Generator training plumbing: augmented audio variants of the real clips (``--real-augment``)."""

from __future__ import annotations

import numpy as np

from teller_agent.fmlg.tokenizer import FEATURE_DIM, MOUTH_DIM
from teller_agent.train.dataset import Clip
from teller_agent.train.generator import _batch, _TokenizedClip, real_audio_variants

FRAMES = 50  # 2 s at 25 fps


def _clip(clip_id: str = "real_a", kind: str = "real", seed: int = 0) -> Clip:
    rng = np.random.default_rng(seed)
    t = np.arange(FRAMES * 640) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 2.5 * t) > 0)
             + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    return Clip(clip_id, kind, "train", rng.standard_normal((FRAMES, FEATURE_DIM)).astype(np.float32), audio,
                None, np.zeros((0, 68, 2), np.float32))


def _tokenized(clip: Clip, variants=()) -> _TokenizedClip:
    tokens = np.arange(FRAMES * 4).reshape(FRAMES, 4) % 32
    return _TokenizedClip(clip, tokens.astype(np.int64), 1, np.zeros((FRAMES, MOUTH_DIM), np.float32), variants)


def test_variants_keep_the_length_and_are_seeded():
    clip = _clip()
    a = real_audio_variants(clip, 4, seed=0)
    assert len(a) == 4
    assert all(v.shape == clip.audio.shape and v.dtype == np.float32 and np.isfinite(v).all() for v in a)
    assert all(not np.allclose(v, clip.audio) for v in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, real_audio_variants(clip, 4, seed=0)))
    assert not np.allclose(a[0], real_audio_variants(clip, 1, seed=1)[0])
    # seeded by the clip's id, not by its place in the dataset
    assert not np.allclose(a[0], real_audio_variants(_clip("real_b"), 1, seed=0)[0])
    assert real_audio_variants(clip, 0) == []


def test_variants_keep_the_timing():
    """No tempo change: the loudness envelope of every variant lines up with the clean audio at lag 0."""
    clip = _clip()

    def envelope(x):
        return np.log(1e-6 + (x.reshape(-1, 640) ** 2).mean(1))

    e0 = envelope(clip.audio)
    for v in real_audio_variants(clip, 4, seed=3):
        e = envelope(v)
        lags = range(-3, 4)
        r = [np.corrcoef(e0[5:-5], np.roll(e, lag)[5:-5])[0, 1] for lag in lags]
        assert list(lags)[int(np.argmax(r))] == 0


def test_tokenized_clip_mels_have_the_clip_frame_count():
    clip = _clip()
    it = _tokenized(clip, real_audio_variants(clip, 3, seed=0))
    assert len(it.mels) == 4 and it.mels[0] is it.mel
    assert all(m.shape == (4 * (FRAMES + 1), 80) for m in it.mels)
    assert len(_tokenized(clip).mels) == 1


def test_batch_draws_every_variant_at_the_same_window():
    """Windows take the clean mel or a variant at random, always at the tokens' own frames."""
    clip = _clip()
    it = _tokenized(clip, real_audio_variants(clip, 3, seed=0))
    # mark each mel so the batch tells which one it came from (mel value = variant index)
    it.mels = [np.full_like(m, i) for i, m in enumerate(it.mels)]
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(10):
        mel, tokens, first, _, _ = _batch([it], 20, 8, context=0, lookahead=1, rng=rng)
        assert mel.shape == (8, 4 * 21, 80)
        for b in range(8):
            values = np.unique(mel[b].numpy())
            assert len(values) == 1
            seen.add(int(values[0]))
    assert seen == {0, 1, 2, 3}


def test_batch_without_variants_draws_as_before():
    """No variants: the batch and the random stream are those of a clip with only its own mel."""
    clip = _clip()
    plain = _tokenized(clip)
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    a = _batch([plain], 20, 4, 0, 1, r1)
    b = _batch([plain], 20, 4, 0, 1, r2)
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a, b))
    expected = np.random.default_rng(5)
    expected.choice(1, size=4, p=[1.0])  # sample_clips
    for _ in range(4):
        expected.integers(0, FRAMES - 20 + 1)  # window starts only
    assert r1.random() == expected.random()


def test_batch_phones_follow_the_window_and_default_to_ignored():
    """Phone labels come from the same frames as the window's target tokens; clips without labels give -1
    (ignored by the loss)."""
    clip = _clip()
    tokens = np.arange(FRAMES * 4).reshape(FRAMES, 4) % 32
    it = _TokenizedClip(clip, tokens.astype(np.int64), 1, np.zeros((FRAMES, MOUTH_DIM), np.float32),
                        phones=np.arange(FRAMES, dtype=np.int64))
    _, tok, _, _, phones = _batch([it], 20, 6, 0, 1, np.random.default_rng(1))
    assert phones.shape == (6, 20)
    for b in range(6):
        frames = phones[b].numpy()
        assert np.array_equal(np.diff(frames), np.ones(19))
        assert np.array_equal(tok[b, 1:, 0].numpy(), (4 * frames) % 32)
    _, _, _, _, none = _batch([_tokenized(clip)], 20, 3, 0, 1, np.random.default_rng(1))
    assert (none.numpy() == -1).all()
