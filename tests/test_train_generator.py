"""Training plumbing: aligned windows, the per-clip feature cache, A/V offset correction at load time, and
the whole chain (tokenizer -> audio student distilled from Whisper -> generator) on a tiny dataset."""

from __future__ import annotations

import json

import numpy as np
from teller_agent.fmlg.tokenizer import FEATURE_DIM, MOUTH_DIM
from teller_agent.train.dataset import Clip, clip_features, load_clips
from teller_agent.train.generator import NOISE_SNR_DB, _batch, _TokenizedClip, noisy_twin_audio

FRAMES = 50  # 2 s at 25 fps


def _clip(clip_id: str = "real_a", kind: str = "real", seed: int = 0, frames: int = FRAMES) -> Clip:
    rng = np.random.default_rng(seed)
    t = np.arange(frames * 640) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 2.5 * t) > 0)
             + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    return Clip(clip_id, kind, "train", rng.standard_normal((frames, FEATURE_DIM)).astype(np.float32), audio,
                None, np.zeros((0, 68, 2), np.float32), speaker=clip_id, valid=np.ones(frames, bool))


def test_windows_keep_tokens_audio_and_mouth_of_the_same_frames():
    tokens = np.repeat(np.arange(FRAMES)[:, None], 4, 1).astype(np.int64)  # token = frame index
    audio = np.repeat(np.arange(FRAMES, dtype=np.float32)[:, None], 6, 1)  # feature = frame index
    mouth = np.repeat(np.arange(FRAMES, dtype=np.float32)[:, None], MOUTH_DIM, 1)
    it = _TokenizedClip(_clip(), tokens, mouth, audio)
    a, tok, first, m = _batch([it], 20, 8, np.random.default_rng(0))
    assert a.shape == (8, 20, 6) and tok.shape == (8, 21, 4) and m.shape == (8, 20, MOUTH_DIM)
    for b in range(8):
        frames = a[b, :, 0].numpy()
        np.testing.assert_array_equal(tok[b, 1:, 0].numpy(), frames)
        np.testing.assert_array_equal(m[b, :, 0].numpy(), frames)
        assert bool(first[b]) == (frames[0] == 0)
        if frames[0] > 0:
            assert tok[b, 0, 0] == frames[0] - 1  # the frame before the window


def test_noisy_twins_are_fixed_per_clip_within_the_snr_range_and_replace_the_audio_in_their_share():
    from teller_agent.data.augment import _speech_power

    clip, other = _clip("real_a", seed=0), _clip("real_b", seed=1)
    sources = [_clip("real_c", seed=2).audio]
    twin = noisy_twin_audio(clip, sources)
    np.testing.assert_array_equal(twin, noisy_twin_audio(clip, sources))  # cacheable: same clip, same twin
    assert not np.array_equal(twin, noisy_twin_audio(other, sources)[: len(twin)])
    assert not np.array_equal(twin, noisy_twin_audio(clip, sources, seed=1))
    snr = 10 * np.log10(_speech_power(clip.audio) / _speech_power(twin - clip.audio))
    assert NOISE_SNR_DB[0] - 0.5 <= snr <= NOISE_SNR_DB[1] + 0.5

    frames = np.arange(FRAMES)
    tokens = np.repeat(frames[:, None], 4, 1).astype(np.int64)
    mouth = np.zeros((FRAMES, MOUTH_DIM), np.float32)
    clean, noisy = np.zeros((FRAMES, 6), np.float32), np.ones((FRAMES, 6), np.float32)
    it = _TokenizedClip(clip, tokens, mouth, clean, noisy)
    a, tok, _, _ = _batch([it], 20, 400, np.random.default_rng(0), noise_fraction=0.3)
    share = float(a[:, 0, 0].mean())
    assert 0.22 < share < 0.38  # about 30% of the windows hear the twin, whole windows
    assert set(np.unique(a[:, :, 0].numpy(), axis=None)) == {0.0, 1.0}
    assert bool(((a[:, :, 0] == a[:, :1, 0]).all()))
    # no twin or no share: the clean features, and the same windows as before noisy twins existed
    base = _batch([_TokenizedClip(clip, tokens, mouth, clean)], 20, 50, np.random.default_rng(0))
    off = _batch([it], 20, 50, np.random.default_rng(0), noise_fraction=0.0)
    assert float(off[0].abs().max()) == 0.0
    np.testing.assert_array_equal(base[1].numpy(), off[1].numpy())


def test_babble_is_other_voices_at_the_asked_snr():
    from teller_agent.data.augment import _speech_power, add_babble

    x = _clip("a", seed=0).audio
    voices = [_clip("b", seed=1).audio[:5000], _clip("c", seed=2).audio]  # a short one is looped
    for snr in (-5.0, 0.0, 10.0):
        y = add_babble(x, np.random.default_rng(0), snr, voices)
        assert y.shape == x.shape and y.dtype == np.float32
        assert abs(10 * np.log10(_speech_power(x) / _speech_power(y - x)) - snr) < 0.01
    np.testing.assert_array_equal(add_babble(x, np.random.default_rng(4), 0.0, voices),
                                  add_babble(x, np.random.default_rng(4), 0.0, voices))
    import pytest

    with pytest.raises(ValueError, match="source"):
        add_babble(x, np.random.default_rng(0), 0.0, [])


def test_clip_features_are_computed_once_per_clip_and_offset(tmp_path):
    calls = []

    def compute(pcm, frames):
        calls.append(frames)
        return np.ones((frames, 3), np.float32) * len(pcm)

    clip = _clip()
    first = clip_features(tmp_path, clip, "enc-x", compute)
    again = clip_features(tmp_path, clip, "enc-x", compute)
    assert first.shape == (FRAMES, 3) and calls == [FRAMES]
    np.testing.assert_array_equal(first, again)
    clip.offset = 2  # another alignment of the same clip is another cache entry
    clip_features(tmp_path, clip, "enc-x", compute)
    assert calls == [FRAMES, FRAMES]


def _tiny_dataset(folder, offset: int = 0):
    """Three eSpeak clips written as a dataset: one synthetic and one "real" training clip, one "real"
    validation clip."""
    from teller_agent.data.build import _generic_portrait
    from teller_agent.data.extract import save_record
    from teller_agent.data.synthetic import make_clip
    from teller_agent.train.dataset import DATASET_VERSION

    portrait = _generic_portrait()
    texts = ["The quick brown fox jumps over the lazy dog.", "Pack my box with five dozen liquor jugs.",
             "How vexingly quick daft zebras jump!"]
    entries = []
    (folder / "clips").mkdir(parents=True)
    for i, text in enumerate(texts):
        clip = make_clip(text, "en-us", np.random.default_rng(i), rate=170, augment=False, language="en")
        rec = {"motion": clip.motion, "portrait": portrait, "audio": clip.audio, "sample_rate": 16000,
               "valid": np.ones(len(clip.motion), bool), "fps": 25, "reproj_error_px": 0.0, "lips": "synthetic"}
        save_record(rec, folder / "clips" / f"c{i}.npz")
        kind, split = [("synthetic", "train"), ("real", "train"), ("real", "validation")][i]
        entries.append({"id": f"c{i}", "file": f"clips/c{i}.npz", "kind": kind, "split": split, "speaker": f"s{i}",
                        "language": "en", "frames": len(clip.motion), "seconds": len(clip.motion) / 25,
                        "av_offset_frames": offset if kind == "real" else 0})
    (folder / "manifest.json").write_text(json.dumps({"version": DATASET_VERSION, "name": "tiny", "created": "-",
                                                      "fps": 25, "sample_rate": 16000, "clips": entries}))
    return folder


def test_a_measured_offset_is_corrected_when_the_clips_load(tmp_path):
    plain = load_clips(_tiny_dataset(tmp_path / "a"), split="validation")[0]
    late = load_clips(_tiny_dataset(tmp_path / "b", offset=3), split="validation")[0]
    speech_frames = -(-(len(plain.audio) - 3 * 640) // 640)  # frames the speech covers after the cut (last partial)
    assert late.offset == 3 and late.num_frames == min(plain.num_frames, speech_frames) < plain.num_frames
    np.testing.assert_array_equal(late.features, plain.features[: late.num_frames])  # face frame j ...
    np.testing.assert_array_equal(late.audio, plain.audio[3 * 640 :])  # ... with the speech of frame j + 3


def test_tokenizer_student_and_generator_train_end_to_end(tmp_path):
    """The documented training chain on a tiny dataset: every step writes what the next one needs, and the
    result loads and streams like the shipped checkpoint."""
    from teller_agent.fmlg import MotionGenerator, load_checkpoint
    from teller_agent.fmlg.model import GeneratorConfig
    from teller_agent.train.generator import train_generator
    from teller_agent.train.student import train_student
    from teller_agent.train.tokenizer import train_tokenizer
    from teller_agent.fmlg.tokenizer import TokenizerConfig

    data = _tiny_dataset(tmp_path / "data")
    ck = tmp_path / "ck"
    train_tokenizer(data, ck, steps=3, batch=4, length=16, progress=False,
                    config=TokenizerConfig(latent_dim=8, hidden=16, levels=2, codebook_size=16))
    student = train_student(data, ck, lookahead=2, steps=3, batch=2, length=16, hidden=16, progress=False)
    assert student["student_lookahead_ms"] == 80 and np.isfinite(student["student_validation_mse"])
    assert (ck / "audio_student.safetensors").is_file() and (ck / "readout_whisper.npz").is_file()
    cfg = GeneratorConfig(d_model=32, layers=1, heads=2, kv_heads=1, ffn=64, window=16, audio_encoder="student")
    metrics = train_generator(data, ck, steps=2, batch=2, length=16, config=cfg, progress=False, eval_every=2)
    assert np.isfinite(metrics["validation_mouth_r"])
    loaded = load_checkpoint(ck)
    assert loaded.student is not None and loaded.generator.cfg.lookahead == 2
    motion = MotionGenerator(ck).generate(np.zeros(16000, np.float32), 16000)
    assert len(motion) == 25

    # fine-tuning from that generator with noisy twins of the real training clip (not of the synthetic one)
    tuned = train_generator(data, ck, steps=2, batch=2, length=16, progress=False, eval_every=2, init=ck,
                            noise_fraction=0.5)
    assert tuned["generator_init"] == str(ck) and tuned["generator_noise_fraction"] == 0.5
    twins = list((data / "features").glob("*-noisy*/*.npy"))
    assert [p.name.split(".")[0] for p in twins] == ["c1"]
    assert load_checkpoint(ck).generator.cfg.d_model == 32  # the initial checkpoint's architecture

    # `teller-agent train readout`: refits the lip readout and measures penalties and weights on validation
    from teller_agent.config import DEFAULT_LIP_READOUT
    from teller_agent.train.card import write_model_card
    from teller_agent.train.evaluate import LIP_READOUT_WEIGHTS
    from teller_agent.train.student import LIP_READOUT_RIDGE, fit_lip_readout

    info = fit_lip_readout(data, ck, ridges=(1e3, LIP_READOUT_RIDGE))
    assert info["ridge"] == LIP_READOUT_RIDGE and [r["ridge"] for r in info["lip_readout_ridge_study"]] == [
        1e3, LIP_READOUT_RIDGE]
    assert [r["weight"] for r in info["lip_readout_study"]] == list(LIP_READOUT_WEIGHTS)
    assert all(np.isfinite(r["r"]) for r in info["lip_readout_ridge_study"] + info["lip_readout_study"])
    loaded = load_checkpoint(ck)
    assert loaded.info["lip_readout_fit"]["ridge"] == LIP_READOUT_RIDGE
    assert loaded.info["lip_readout_weight"] == DEFAULT_LIP_READOUT
    noise = loaded.info["noise_robustness"]
    assert [r["lip_readout"] for r in noise] == [0.0, DEFAULT_LIP_READOUT]
    assert all(np.isfinite(r["r_noisy"]) and r["open_inflation"] > 0 for r in noise)
    card = write_model_card(ck, data).read_text()
    assert "Ridge penalty of the readout" in card and "| 50000 |" in card
    assert "| generator alone |" in card and "babble" in card
