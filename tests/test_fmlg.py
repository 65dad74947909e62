"""FMLG plumbing on a tiny randomly initialised checkpoint: streaming, resets, resampling, errors.

Behaviour that needs trained weights (silence closes the mouth, speech opens it,
tokenizer error) is tested on the shipped checkpoint in test_fmlg_trained.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from teller_agent.audio.encoder import clip_mel
from teller_agent.audio.features import HOP_ALIGNED_LEAD, LogMelStream, log_mel
from teller_agent.audio.student import AudioStudent, StudentConfig
from teller_agent.errors import CheckpointError
from teller_agent.fmlg import MotionGenerator, load_checkpoint, save_checkpoint
from teller_agent.fmlg.model import GeneratorConfig, MotionTokenGenerator
from teller_agent.fmlg.tokenizer import FEATURE_DIM, MOUTH_DIM, MotionTokenizer, TokenizerConfig
from teller_agent.motion import MotionLatent


def _tiny(folder, lookahead: int = 1, encoder: str = "student", mel_lead: int = HOP_ALIGNED_LEAD):
    """A random checkpoint: a tiny audio student (the default encoder) or the legacy conv encoder."""
    torch.manual_seed(0)
    tokenizer = MotionTokenizer(TokenizerConfig(latent_dim=16, hidden=32, levels=2, codebook_size=32))
    tokenizer(torch.randn(2, 40, FEATURE_DIM))  # k-means initialisation of the codebooks
    student = AudioStudent(StudentConfig(dim=24, hidden=16, lookahead=lookahead, dilations=(1, 2))) \
        if encoder == "student" else None
    generator = MotionTokenGenerator(GeneratorConfig(d_model=32, layers=2, heads=2, kv_heads=1, ffn=64, window=16,
                                                     tokens_per_frame=4, mouth_tokens=2, codebook_size=32,
                                                     audio_hidden=32, mel_lead=mel_lead, lookahead=lookahead,
                                                     audio_encoder=encoder, audio_dim=24))
    save_checkpoint(folder, tokenizer.eval(), generator.eval(), {"note": "random, for tests"}, student=student)
    return folder


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return _tiny(tmp_path_factory.mktemp("ck"))


def _speech(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.2 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 3 * t) > 0) + 0.01 * rng.normal(size=len(t))
            ).astype(np.float32)


def _stream(gen: MotionGenerator, pcm: np.ndarray, sr: int, chunk_ms: float) -> MotionLatent:
    n = max(1, int(sr * chunk_ms / 1000))
    parts = [gen.push_audio(pcm[i : i + n], sr) for i in range(0, len(pcm), n)]
    return MotionLatent.concatenate(parts + [gen.flush()])


def test_checkpoint_round_trip_is_small_and_loads(tiny_checkpoint):
    ck = load_checkpoint(tiny_checkpoint)
    assert ck.generator is not None and ck.info["note"] == "random, for tests"
    assert all(p.stat().st_size < 25 * 2**20 for p in tiny_checkpoint.glob("*.safetensors"))


@pytest.mark.parametrize("chunk_ms", [10, 20, 160, 1000])
def test_chunked_equals_one_shot(tiny_checkpoint, chunk_ms):
    """Chunking changes nothing but float rounding: the frames a push completes are encoded and
    decoded in one batch (so the BLAS sums may group differently), and every sampled token is the
    same (a different token would move the features by far more than the tolerance)."""
    pcm = _speech(1.5, 16000)
    gen = MotionGenerator(tiny_checkpoint, seed=7)
    whole = gen.generate(pcm, 16000)
    gen.reset()
    chunked = _stream(gen, pcm, 16000, chunk_ms)
    assert len(whole) == len(chunked) == round(1.5 * 25)
    np.testing.assert_allclose(chunked.flat(), whole.flat(), rtol=0, atol=1e-5)


def test_the_students_numpy_streamer_matches_its_torch_step():
    """The live path (numpy, one frame at a time) computes what training's torch forward computes."""
    torch.manual_seed(1)
    student = AudioStudent(StudentConfig(dim=24, hidden=16, lookahead=2, dilations=(1, 2, 4))).eval()
    mel = torch.randn(1, 4 * 30, 80)
    stream, state, parts = student.streamer(), None, []
    for i in range(30):
        y, state = stream(mel[:, 4 * i : 4 * i + 4], state)
        parts.append(y)
    with torch.no_grad():
        whole, _ = student.step(mel, None)
    np.testing.assert_allclose(torch.cat(parts, 1).numpy(), whole.numpy(), atol=1e-5, rtol=1e-5)
    several, _ = stream(mel, None)  # several frames in one call: the same
    np.testing.assert_allclose(several.numpy(), whole.numpy(), atol=1e-5, rtol=1e-5)


def test_mouth_gain_scales_only_the_lips_around_the_rest_face(tiny_checkpoint):
    from teller_agent.fmlg.tokenizer import MOUTH_KEYPOINTS, motion_to_features

    pcm = _speech(1.0, 16000)
    ck = load_checkpoint(tiny_checkpoint)
    plain = motion_to_features(MotionGenerator(ck, seed=3).generate(pcm, 16000))
    ck.generator.cfg.mouth_gain = 2.5
    louder = MotionGenerator(ck, seed=3).generate(pcm, 16000)
    np.testing.assert_allclose(motion_to_features(louder)[:, :MOUTH_DIM], 2.5 * plain[:, :MOUTH_DIM], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(motion_to_features(louder)[:, MOUTH_DIM:], plain[:, MOUTH_DIM:])
    assert louder.exp[:, MOUTH_KEYPOINTS].any()  # the lips moved at all


@pytest.mark.parametrize("lookahead", [1, 3, 5])
def test_student_frames_arrive_exactly_after_their_lookahead(tmp_path, lookahead):
    """Frame k comes out as soon as the audio up to the end of frame k + lookahead has arrived, never
    earlier (it would then not have seen its look-ahead) and not a sample later."""
    gen = MotionGenerator(_tiny(tmp_path, lookahead))
    assert gen.mel_lead == HOP_ALIGNED_LEAD and gen.lookahead == lookahead
    pcm = _speech(1.0, 16000)
    produced = 0
    for i in range(0, len(pcm), 160):  # 10 ms chunks
        produced += len(gen.push_audio(pcm[i : i + 160], 16000))
        assert produced == max(0, (i + 160) // 640 - lookahead)
    assert gen.latency_s == pytest.approx(0.04 * lookahead)


@pytest.mark.parametrize("mel_lead", [0, HOP_ALIGNED_LEAD])
def test_legacy_conv_frames_arrive_with_bounded_lookahead(tmp_path, mel_lead):
    gen = MotionGenerator(_tiny(tmp_path, encoder="conv", mel_lead=mel_lead))
    assert gen.mel_lead == mel_lead
    pcm = _speech(1.0, 16000)
    produced = 0
    for i in range(0, len(pcm), 320):  # 20 ms chunks
        produced += len(gen.push_audio(pcm[i : i + 320], 16000))
        # frame k is out as soon as the audio up to the end of frame k + lookahead has arrived (plus,
        # without the lead, the last mel window's 15 ms tail), not a sample later
        heard = i + 320
        mel_frames = max(0, (heard + mel_lead - 400) // 160 + 1)
        assert produced == max(0, mel_frames // 4 - gen.lookahead)
    assert gen.latency_s == pytest.approx(0.04 * gen.lookahead + (240 - mel_lead) / 16000)
    assert gen.latency_s <= 0.08  # the bound


def test_reset_gives_the_same_output_as_a_fresh_generator(tiny_checkpoint):
    pcm = _speech(1.0, 16000, seed=1)
    gen = MotionGenerator(tiny_checkpoint, seed=3)
    first = gen.generate(pcm, 16000)
    gen.push_audio(_speech(0.7, 16000, seed=2), 16000)  # interrupted turn
    gen.reset()
    again = MotionLatent.concatenate([gen.push_audio(pcm, 16000), gen.flush()])
    fresh = MotionGenerator(tiny_checkpoint, seed=3).generate(pcm, 16000)
    np.testing.assert_array_equal(again.flat(), first.flat())
    np.testing.assert_array_equal(fresh.flat(), first.flat())


@pytest.mark.parametrize("sr", [8000, 22050, 24000, 44100, 48000])
def test_other_sample_rates_are_resampled(tiny_checkpoint, sr):
    gen = MotionGenerator(tiny_checkpoint)
    motion = _stream(gen, _speech(1.2, sr), sr, 20)
    assert len(motion) == 30
    int16 = MotionGenerator(tiny_checkpoint).generate((_speech(1.2, sr) * 32767).astype(np.int16), sr)
    assert len(int16) == 30


def test_empty_and_tiny_inputs(tiny_checkpoint):
    gen = MotionGenerator(tiny_checkpoint)
    assert len(gen.push_audio(np.zeros(0, np.float32), 16000)) == 0
    assert len(gen.push_audio(np.zeros(160, np.float32), 16000)) == 0  # 10 ms: not a whole frame yet
    assert len(gen.flush()) == 0  # 10 ms rounds to zero frames
    assert len(MotionGenerator(tiny_checkpoint).generate(np.zeros(480, np.float32), 16000)) == 1  # 30 ms -> 1 frame
    with pytest.raises(ValueError):
        gen.push_audio(np.zeros(10, np.float32), 0)


def test_long_stream_keeps_the_kv_cache_bounded(tiny_checkpoint):
    gen = MotionGenerator(tiny_checkpoint)
    gen.push_audio(_speech(3.0, 16000), 16000)  # 75 frames > window 16
    assert gen._backbone.cached <= 16
    assert all(k.shape[1] <= 16 for k in gen._backbone.keys)


def test_missing_and_corrupt_checkpoints(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="config.json missing"):
        load_checkpoint(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_checkpoint.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "generator.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(broken)
    (broken / "generator.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(broken)
    (broken / "generator.safetensors").write_bytes((tiny_checkpoint / "generator.safetensors").read_bytes())
    (broken / "audio_student.safetensors").unlink()
    with pytest.raises(CheckpointError, match="audio_student.safetensors is missing"):
        load_checkpoint(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        MotionGenerator(broken)


@pytest.mark.parametrize("streams", [1, 2])
def test_depth_sampler_matches_the_teacher_forced_depth_head(streams):
    """The inference sampler (batched mouth/head chains) picks exactly the tokens that the training-time
    depth head's logits give for the same uniform draws, with each chain's earlier tokens as teacher."""
    torch.manual_seed(streams)
    cfg = GeneratorConfig(d_model=32, tokens_per_frame=6, mouth_tokens=3, codebook_size=40, depth_streams=streams)
    head = MotionTokenGenerator(cfg).depth.eval()
    temps, top_k = [0.5] * 3 + [1.0] * 3, 7
    sampler = head.sampler(temps, top_k)
    h, uniform = torch.randn(32), torch.rand(6, top_k)
    with torch.no_grad():
        tokens = sampler(h, uniform)
        logits = head(h[None, None], tokens[None, None])[0, 0]  # (K, V), teacher-forced on the sampled tokens
    gumbel = -torch.log(-torch.log(uniform))
    for k in range(6):
        top, idx = logits[k].topk(top_k)
        assert tokens[k] == idx[(top / temps[k] + gumbel[k]).argmax()]


@pytest.mark.parametrize("streams", [1, 2])
def test_depth_sampler_expected_mouth_code_is_the_top_k_mean(streams):
    """With codebooks, the sampler returns the same tokens plus the sum over mouth levels of the codebook
    vectors averaged under the softmax of the top-k logits (each level given the sampled coarser tokens)."""
    torch.manual_seed(10 + streams)
    cfg = GeneratorConfig(d_model=32, tokens_per_frame=6, mouth_tokens=3, codebook_size=40, depth_streams=streams)
    head = MotionTokenGenerator(cfg).depth.eval()
    temps, top_k = [0.3] * 3 + [1.0] * 3, 7
    sampler = head.sampler(temps, top_k)
    h, uniform, codebooks = torch.randn(32), torch.rand(6, top_k), torch.randn(3, 40, 5)
    with torch.no_grad():
        tokens, mean = sampler(h, uniform, codebooks, mean_temperature=0.7)
        assert torch.equal(tokens, sampler(h, uniform))
        logits = head(h[None, None], tokens[None, None])[0, 0]
    want = torch.zeros(5)
    for k in range(3):
        top, idx = logits[k].topk(top_k)
        want += torch.softmax(top / 0.7, -1) @ codebooks[k][idx]
    torch.testing.assert_close(mean, want, rtol=1e-4, atol=1e-5)


def test_lip_mean_changes_only_the_lips(tiny_checkpoint):
    """Decoding the expected mouth codes leaves the sampled tokens, hence head pose, eyes and brows, as they were."""
    from teller_agent.fmlg.tokenizer import MOUTH_DIM, motion_to_features

    pcm = _speech(1.0, 16000, seed=4)
    mean = motion_to_features(MotionGenerator(tiny_checkpoint, seed=2).generate(pcm, 16000))
    sampled = motion_to_features(MotionGenerator(tiny_checkpoint, seed=2, lip_mean=False).generate(pcm, 16000))
    np.testing.assert_allclose(mean[:, MOUTH_DIM:], sampled[:, MOUTH_DIM:], atol=1e-5)
    assert np.abs(mean[:, :MOUTH_DIM] - sampled[:, :MOUTH_DIM]).max() > 1e-4


@pytest.mark.parametrize("streams", [1, 2])
def test_depth_sampler_batch_rows_are_independent(streams):
    """A batch of P rows (the generator's lip particles) gives each row what sampling it alone gives."""
    torch.manual_seed(20 + streams)
    cfg = GeneratorConfig(d_model=32, tokens_per_frame=6, mouth_tokens=3, codebook_size=40, depth_streams=streams)
    sampler = MotionTokenGenerator(cfg).depth.eval().sampler([0.3] * 3 + [1.0] * 3, 7)
    h, uniform, codebooks = torch.randn(3, 32), torch.rand(3, 6, 7), torch.randn(3, 40, 5)
    with torch.no_grad():
        tokens, mean = sampler(h, uniform, codebooks)
        assert tokens.shape == (3, 6) and mean.shape == (3, 5)
        for p in range(3):
            t, m = sampler(h[p], uniform[p], codebooks)
            assert torch.equal(tokens[p], t)
            torch.testing.assert_close(mean[p], m, rtol=1e-5, atol=1e-6)


def test_lip_particles_share_the_first_chain_and_average_the_lips(tiny_checkpoint):
    """Particle 0 is the single-chain generator: head pose, eyes and brows are unchanged by more particles;
    the lips (the particles' mean) change; fewer than one particle is refused."""
    from teller_agent.fmlg.tokenizer import MOUTH_DIM, motion_to_features

    pcm = _speech(1.0, 16000, seed=5)
    one = motion_to_features(MotionGenerator(tiny_checkpoint, seed=3, lip_particles=1).generate(pcm, 16000))
    many = motion_to_features(MotionGenerator(tiny_checkpoint, seed=3, lip_particles=3).generate(pcm, 16000))
    np.testing.assert_allclose(many[:, MOUTH_DIM:], one[:, MOUTH_DIM:], atol=1e-5)
    assert np.abs(many[:, :MOUTH_DIM] - one[:, :MOUTH_DIM]).max() > 1e-4
    with pytest.raises(ValueError, match="lip_particles"):
        MotionGenerator(tiny_checkpoint, lip_particles=0)


def test_old_configs_keep_one_depth_chain_and_unaligned_mel_frames():
    d = GeneratorConfig().to_dict()
    del d["depth_streams"], d["mel_lead"]
    old = GeneratorConfig.from_dict(d)
    assert old.depth_streams == 1 and old.mel_lead == 0
    with pytest.raises(ValueError, match="mouth"):
        MotionTokenGenerator(GeneratorConfig(d_model=32, tokens_per_frame=6, mouth_tokens=2, depth_streams=2))


@pytest.mark.parametrize("lead", [0, HOP_ALIGNED_LEAD])
def test_log_mel_stream_with_a_lead_equals_the_whole_clip(lead):
    pcm = _speech(0.5, 16000)
    whole = log_mel(pcm, lead)
    stream = LogMelStream(lead)
    parts = [stream.push(pcm[i : i + n]) for i, n in zip(range(0, len(pcm), 333), [333] * 100)]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)
    # with the hop-aligned lead, mel frame i is the window that ends at sample 160 (i + 1)
    if lead == HOP_ALIGNED_LEAD:
        assert len(whole) == len(pcm) // 160
        np.testing.assert_allclose(whole[5], log_mel(pcm[160 * 6 - 400 : 160 * 6])[0], atol=1e-6)
    stream.reset()
    np.testing.assert_allclose(stream.push(pcm), whole, atol=1e-6)
    assert clip_mel(pcm, 10, 1, lead).shape == (44, 80)  # 4 (T + lookahead) frames whatever the lead


@pytest.mark.parametrize("chunks", [[1] * 30, [7, 1, 22], [30]])
def test_causal_conv_steps_equal_the_whole_sequence(chunks):
    from teller_agent.modules.causal_conv import CausalConvStack

    torch.manual_seed(0)
    net = CausalConvStack(20, 16, 8, (1, 2, 4)).eval()
    x = torch.randn(2, 30, 20)
    with torch.no_grad():
        full, state, outs, i = net(x), None, [], 0
        for n in chunks:
            y, state = net.step(x[:, i : i + n], state)
            outs.append(y)
            i += n
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)


def test_qwen2_stepper_matches_qwen2model_with_its_cache():
    """The streaming fast path gives Qwen2Model's outputs (with transformers' sliding-window cache) past the window."""
    from transformers.cache_utils import DynamicCache

    from teller_agent.fmlg.qwen2_step import Qwen2Stepper

    torch.manual_seed(0)
    model = MotionTokenGenerator(GeneratorConfig(d_model=32, layers=2, heads=4, kv_heads=2, ffn=64, window=6,
                                                 tokens_per_frame=4, mouth_tokens=2, codebook_size=32,
                                                 audio_hidden=32)).eval()
    backbone = model.backbone
    stepper, cache = Qwen2Stepper(backbone), DynamicCache(config=backbone.config)
    xs = torch.randn(20, 32)
    with torch.no_grad():
        whole = backbone(inputs_embeds=xs[None], use_cache=False).last_hidden_state[0]  # training's path
        for t, x in enumerate(xs):
            ref = backbone(inputs_embeds=x[None, None], past_key_values=cache, use_cache=True).last_hidden_state[0, 0]
            out = stepper(x)
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(out, whole[t], atol=1e-5, rtol=1e-4)
            assert stepper.cached <= 6
        stepper.reset()
        torch.testing.assert_close(stepper(xs[0]), whole[0], atol=1e-5, rtol=1e-4)
        # A batch of B rows steps B independent sequences (the generator's lip particles).
        stepper.reset()
        batch = torch.randn(3, 20, 32)
        outs = torch.stack([stepper(batch[:, t]) for t in range(20)], 1)
        for i in range(3):
            want = backbone(inputs_embeds=batch[i : i + 1], use_cache=False).last_hidden_state[0]
            torch.testing.assert_close(outs[i], want, atol=1e-5, rtol=1e-4)


def _generation_children() -> list:
    import multiprocessing as mp

    return [p for p in mp.active_children() if p.name == "teller-generate"]


def test_background_generation_streams_what_generate_returns(tiny_checkpoint):
    import sys

    from teller_agent.fmlg.worker import BackgroundGeneration

    pcm = _speech(2.0, 22050)
    whole = MotionGenerator(tiny_checkpoint, seed=3).generate(pcm, 22050)
    for fork in (None, False):  # a child process on Linux; in this process
        with BackgroundGeneration(lambda: MotionGenerator(tiny_checkpoint, seed=3), pcm, 22050, chunk_s=0.3,
                                  fork=fork) as chunks:
            assert chunks.forked == (sys.platform.startswith("linux") and fork is None)
            parts = list(chunks)
        assert len(parts) > 1 and sum(len(p) for p in parts) == len(whole) == 50
        np.testing.assert_allclose(MotionLatent.concatenate(parts).flat(), whole.flat(), rtol=0, atol=1e-5)
        assert not _generation_children()


def test_background_generation_raises_the_childs_error_and_stops_it(tmp_path, tiny_checkpoint):
    from teller_agent.fmlg.worker import BackgroundGeneration

    with BackgroundGeneration(lambda: MotionGenerator(tmp_path / "nowhere"), _speech(1.0, 16000), 16000) as chunks:
        with pytest.raises(CheckpointError, match="config.json missing") as info:
            list(chunks)
    if chunks.forked:  # the child's traceback comes along
        assert any("motion generator's process" in note for note in getattr(info.value, "__notes__", []))
    assert not _generation_children()
    # leaving early (e.g. the portrait had no face) stops a child that is still generating
    with BackgroundGeneration(lambda: MotionGenerator(tiny_checkpoint), _speech(60.0, 16000), 16000) as chunks:
        assert len(next(iter(chunks))) > 0
    assert not _generation_children()
