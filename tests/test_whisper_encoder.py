"""The optional Whisper audio encoder (teller_agent.audio.whisper), on a tiny randomly initialised
WhisperConfig (no downloads): causality, streaming == whole clip, checkpoints that load it from a folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperModel

from teller_agent.audio.whisper import WhisperAudioEncoder, load_whisper_encoder
from teller_agent.errors import CheckpointError
from teller_agent.fmlg import MotionGenerator, load_checkpoint, save_checkpoint
from teller_agent.fmlg.model import GeneratorConfig, MotionTokenGenerator
from teller_agent.fmlg.tokenizer import FEATURE_DIM, MotionTokenizer, TokenizerConfig


def _tiny_whisper() -> WhisperModel:
    torch.manual_seed(0)
    cfg = WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80,
                        max_source_positions=40, max_target_positions=16, vocab_size=100, pad_token_id=0,
                        bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    return WhisperModel(cfg).eval()


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whisper")
    _tiny_whisper().save_pretrained(folder)
    return folder


def test_embeddings_see_no_audio_past_the_lookahead_and_stream_like_the_whole_clip(whisper_dir):
    torch.manual_seed(1)
    enc = WhisperAudioEncoder(load_whisper_encoder(whisper_dir), dim=16, lookahead=1, window=8).eval()
    mel = torch.randn(1, 4 * (30 + 1), 80)
    with torch.no_grad():
        whole = enc(mel)  # (1, 30, 16)
        assert whole.shape == (1, 30, 16)
        later = mel.clone()
        later[:, 4 * 12 :] = torch.randn_like(later[:, 4 * 12 :])  # change audio from frame 12 on
        changed = enc(later)
        # frame t sees mel frames < 4 (t + 2): frames <= 10 unchanged, frame 11 changed
        torch.testing.assert_close(changed[:, :11], whole[:, :11])
        assert not torch.allclose(changed[:, 11], whole[:, 11])
        early = mel.clone()
        early[:, :4] += 1.0  # frame 0's audio is outside the 8-frame window of frame 8 and later
        torch.testing.assert_close(enc(early)[:, 7:], whole[:, 7:])
        assert not torch.allclose(enc(early)[:, 6], whole[:, 6])
        state, outs = None, []
        for a, b in [(0, 4), (4, 5), (5, 31)]:
            y, state = enc.step(mel[:, 4 * a : 4 * b], state)
            outs.append(y)
        streamed = torch.cat(outs, 1)[:, 1:]  # undelayed: drop the look-ahead output
        torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=1e-5)


def test_window_is_checked(whisper_dir):
    w = load_whisper_encoder(whisper_dir)
    with pytest.raises(ValueError, match="window"):
        WhisperAudioEncoder(w, 16, lookahead=1, window=21)  # 40 positions = 20 frames at most
    with pytest.raises(ValueError, match="window"):
        WhisperAudioEncoder(w, 16, lookahead=2, window=2)
    with pytest.raises(FileNotFoundError):
        load_whisper_encoder(whisper_dir / "nowhere")


def test_whisper_checkpoint_keeps_whisper_out_and_loads_it_from_its_folder(tmp_path, whisper_dir, monkeypatch):
    torch.manual_seed(0)
    tokenizer = MotionTokenizer(TokenizerConfig(latent_dim=16, hidden=32, levels=2, codebook_size=32))
    tokenizer(torch.randn(2, 40, FEATURE_DIM))
    cfg = GeneratorConfig(d_model=32, layers=1, heads=2, kv_heads=1, ffn=64, window=16, tokens_per_frame=4,
                          mouth_tokens=2, codebook_size=32, audio_hidden=32, audio_encoder="whisper",
                          whisper_window=8)
    with pytest.raises(ValueError, match="Whisper"):
        MotionTokenGenerator(cfg)
    generator = MotionTokenGenerator(cfg, load_whisper_encoder(whisper_dir)).eval()
    save_checkpoint(tmp_path, tokenizer.eval(), generator)
    from safetensors.torch import load_file

    assert not any(k.startswith("audio.whisper.") for k in load_file(str(tmp_path / "generator.safetensors")))
    monkeypatch.delenv("TELLER_WHISPER_MODEL_DIR", raising=False)
    with pytest.raises(CheckpointError, match="TELLER_WHISPER_MODEL_DIR"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="cannot load"):
        load_checkpoint(tmp_path, whisper_dir=tmp_path / "nowhere")
    monkeypatch.setenv("TELLER_WHISPER_MODEL_DIR", str(whisper_dir))
    gen = MotionGenerator(tmp_path, seed=2)
    rng = np.random.default_rng(0)
    pcm = (0.1 * rng.normal(size=16000)).astype(np.float32)
    whole = gen.generate(pcm, 16000)
    gen.reset()
    parts = [gen.push_audio(pcm[i : i + 480], 16000) for i in range(0, len(pcm), 480)] + [gen.flush()]
    from teller_agent.motion import MotionLatent

    chunked = MotionLatent.concatenate(parts)
    assert len(whole) == len(chunked) == 25
    np.testing.assert_array_equal(chunked.flat(), whole.flat())
