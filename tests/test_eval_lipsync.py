"""``teller-agent eval lipsync``: the method glue on synthetic clips with known answers, then one real clip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from teller_agent.bench.common import speech_like
from teller_agent.eval import lipsync as L
from teller_agent.eval import metrics as M
from teller_agent.motion import FACE68, MotionLatent, procedural_motion

SHORT_CLIP = "deep_avsr__00022"  # 3.2 s, 160x160, held out from training


@pytest.fixture(scope="module")
def clip(avatar) -> L.RealClip:
    """A synthetic "real" clip: the default portrait's rest face driven by procedural talking motion."""
    portrait = FACE68.lift(np.asarray(avatar.landmarks, np.float32), avatar.size)
    motion = procedural_motion(150, seed=3)
    landmarks = portrait.drive(motion)[..., :2].astype(np.float64)
    return L.RealClip("synthetic", Path("synthetic.mp4"), motion, portrait, landmarks, speech_like(6.0), 16000,
                      1.0, 0.0, (0.0, 0.0, 512.0))


def _shifted(motion: MotionLatent, k: int) -> MotionLatent:
    return MotionLatent.from_flat(M.shift(motion.flat(), k), motion.num_keypoints, motion.space)


def test_generated_equal_to_the_truth_scores_perfectly(clip):
    row, series = L.evaluate_clip(clip, clip.motion)
    assert list(row["metrics"]) == [m for m in L.METHODS if m != "readout"] == list(series)  # no readout given
    g = row["metrics"]["generated"]
    assert g["mouth_r"] == pytest.approx(1.0) and g["lve"] == 0.0 and g["best_lag"] == 0
    assert g["mouth_velocity_pred"] == pytest.approx(g["mouth_velocity_true"]) and g["mouth_velocity_true"] > 0
    assert g["blink_rate_pred"] == g["blink_rate_true"] > 0  # procedural motion blinks
    assert row["metrics"]["real"] == g
    assert row["frames"] == 150 and row["seconds"] == 6.0


def test_the_readout_baseline_is_scored_like_the_generator(clip):
    row, series = L.evaluate_clip(clip, _shifted(clip.motion, 2), readout=clip.motion)
    assert list(row["metrics"]) == list(L.METHODS) == list(series)
    assert row["metrics"]["readout"]["mouth_r"] == pytest.approx(1.0) and row["metrics"]["readout"]["best_lag"] == 0
    assert row["metrics"]["generated"]["best_lag"] == 2


@pytest.mark.parametrize("k", [1, 2, -3])
def test_a_late_generator_shows_its_lag(clip, k):
    row, _ = L.evaluate_clip(clip, _shifted(clip.motion, k))
    g = row["metrics"]["generated"]
    assert g["best_lag"] == k and g["lve"] > 0 and g["mouth_r"] < 1.0


def test_baselines_have_their_known_answers(clip, no_nan_warnings):
    row, series = L.evaluate_clip(clip, clip.motion)
    met = row["metrics"]
    assert met[f"true_shift_+{L.SHIFT_FRAMES}"]["best_lag"] == L.SHIFT_FRAMES
    assert met[f"true_shift_-{L.SHIFT_FRAMES}"]["best_lag"] == -L.SHIFT_FRAMES
    frozen = met["frozen_mouth"]
    assert np.ptp(series["frozen_mouth"]) == 0.0  # constant: r, lag, velocity, jitter, blinks are all 0
    assert frozen["mouth_r"] == 0.0 and frozen["best_lag"] == 0 and frozen["mouth_jitter_pred"] == 0.0
    assert frozen["blink_rate_pred"] == 0.0 and frozen["lve"] > 0
    # The loudness baseline's jaw follows the audio's 3 Hz syllables, not the procedural mouth.
    loud = L.loudness_motion(clip.audio, 16000, 150)
    assert len(loud) == 150 and met["loudness"]["mouth_r"] < 0.9
    assert all(math.isfinite(v) for s in met.values() for v in s.values())


@pytest.fixture
def no_nan_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_generated_length_decides_the_frames(clip):
    row, series = L.evaluate_clip(clip, clip.motion[:140])
    assert row["frames"] == 140 and all(len(s) == 140 for s in series.values())


def test_tables_plot_and_sheet_indices(clip, tmp_path):
    row, series = L.evaluate_clip(clip, _shifted(clip.motion, 1), readout=clip.motion)
    result = {"mean": {k: M.mean_summary([row["metrics"][k]], [row["speaker"]]) for k in L.METHODS}, "clips": [row],
              "languages": L.group_rows([row], "language"), "speakers": L.group_rows([row], "speaker")}
    md = L.markdown_tables(result, per_clip=True)
    for label in L.METHODS.values():
        assert f"| {label} |" in md
    assert md.startswith("**Mouth-opening r at lag 0: ")
    wins = int(row["metrics"]["generated"]["mouth_r"] > row["metrics"]["loudness"]["mouth_r"])
    assert f"speakers and {wins} of 1 clips" in md
    assert "| clips | count | FMLG | readout |" in md
    assert f"| {row['language']} | 1 | 6 |" in md  # per language
    assert f"| {row['speaker']} | {row['language']} | 1 | 6.0 | +0 |" in md  # per speaker
    assert f"| synthetic | {row['speaker']} | 6.0 | 100% | +0 |" in md and "| +1 |" in md  # per clip
    png = L.plot_mouth(tmp_path / "p.png", "synthetic", series, row["metrics"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    idx = L.sheet_indices(series["real"], 6)
    assert len(idx) == 6 and idx == sorted(idx) and all(0 <= i < 150 for i in idx)
    assert L.sheet_indices(np.zeros(3), 6) == [0, 1, 2] and L.sheet_indices(np.zeros(0)) == []


def test_list_clips_filters(tmp_path):
    for stem in ("a", "b", "deep_avsr__00022"):
        (tmp_path / f"{stem}.mp4").write_bytes(b"")
    (tmp_path / "a.wav").write_bytes(b"")
    assert [p.stem for p in L.list_clips(tmp_path)] == ["a", "b", "deep_avsr__00022"]
    assert [p.stem for p in L.list_clips(tmp_path, split="heldout")] == ["deep_avsr__00022"]  # speakers.tsv
    assert [p.stem for p in L.list_clips(tmp_path, names=["b"])] == ["b"]
    assert len(L.list_clips(tmp_path, limit=2)) == 2
    from teller_agent.errors import TellerError

    with pytest.raises(TellerError, match="does not exist"):
        L.list_clips(tmp_path / "missing")
    with pytest.raises(TellerError, match="no talking clip"):
        L.list_clips(tmp_path, names=["zzz"])


def test_eval_lipsync_on_a_real_clip(shared_data, tmp_path, settings, monkeypatch, capsys):
    """End to end through the CLI on one short held-out clip (skips without ../shared/data)."""
    from teller_agent.cli import main

    monkeypatch.setenv("TELLER_CACHE_DIR", str(settings.cache_dir))
    clips = shared_data / "talking"
    if not (clips / f"{SHORT_CLIP}.mp4").is_file():
        pytest.skip(f"{SHORT_CLIP}.mp4 is not in {clips}")
    out, record = tmp_path / "ls", tmp_path / "results" / "lipsync.json"
    assert main(["eval", "lipsync", "--clips", str(clips), "--clip", SHORT_CLIP, "--out", str(out),
                 "--record", str(record), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "| lrs2_00022 | en | 1 |" in printed  # the clip's speaker (teller_agent/data/speakers.tsv)
    assert f"| {SHORT_CLIP} | lrs2_00022 |" in (out / "lipsync.md").read_text()
    result = json.loads((out / "lipsync.json").read_text())
    assert json.loads(record.read_text()) == result
    assert result["command"].startswith("teller-agent eval lipsync") and not result["skipped"]
    assert len(result["model"]["generator.safetensors"]) == 12
    (row,) = result["clips"]
    assert row["name"] == SHORT_CLIP and 75 <= row["frames"] <= 82 and row["valid_fraction"] > 0.9
    met = row["metrics"]
    assert set(met) == set(L.METHODS) - ({"readout"} if "readout" not in met else set()) == set(
        k for k, v in result["mean"].items() if v.get("clips", 0))
    assert met["real"]["mouth_r"] == pytest.approx(1.0) and met["real"]["lve"] == 0.0
    # Real speech: the true mouth moves, and shifting it by 4 frames is found as a 4-frame lag.
    assert met["real"]["mouth_velocity_true"] > 0.005
    assert met[f"true_shift_+{L.SHIFT_FRAMES}"]["best_lag"] == L.SHIFT_FRAMES
    assert met[f"true_shift_-{L.SHIFT_FRAMES}"]["best_lag"] == -L.SHIFT_FRAMES
    g = met["generated"]
    assert -1.0 <= g["mouth_r"] <= 1.0 and 0.0 < g["lve"] < 1.0 and abs(g["best_lag"]) <= 8
    for name in ("plots", "sheets"):
        png = out / row["plot" if name == "plots" else "sheet"]
        assert png.parent.name == name and png.read_bytes()[:4] == b"\x89PNG"
    assert "| FMLG, from audio alone |" in (out / "lipsync.md").read_text()


def test_ridge_readout_recovers_a_linear_map_and_an_anchor_holds_its_prediction_at_zero(tmp_path):
    """The readout (teller_agent/eval/readout.py): a free intercept recovers ``y = x W + b``; with an anchor
    the anchor's prediction is exactly 0 and the fit is still close where the data lie; save/load round-trips."""
    from teller_agent.eval.readout import Readout, fit_readout

    rng = np.random.default_rng(0)
    w_true, b_true = rng.normal(size=(6, 2)), np.array([0.5, -1.0])
    xs = [rng.normal(size=(200, 6)) + 3.0 for _ in range(3)]
    ys = [x @ w_true + b_true for x in xs]
    free = fit_readout(xs, ys, lam=1e-6)
    assert np.allclose(free(xs[0]), ys[0], atol=1e-4)
    anchor = np.full(6, 3.0)
    anchored = fit_readout(xs, [y - (anchor @ w_true + b_true) for y in ys], lam=1e-6, anchor=anchor)
    assert np.abs(anchored(anchor[None])).max() < 1e-5 and np.allclose(anchored.bias, 0)
    assert np.allclose(anchored(xs[1]), ys[1] - (anchor @ w_true + b_true), atol=1e-4)
    # a strong penalty shrinks toward the anchor's prediction (0), not toward the targets' mean
    shrunk = fit_readout(xs, ys, lam=1e9, anchor=anchor)
    assert np.abs(shrunk(xs[2])).max() < 1e-3
    assert np.allclose(fit_readout(xs, ys, lam=1e9)(xs[2]), np.mean(np.concatenate(ys), 0), atol=1e-3)
    loaded = Readout.load(anchored.save(tmp_path / "r.npz"))
    assert np.array_equal(loaded(xs[0]), anchored(xs[0]))
    with pytest.raises(ValueError, match="anchor"):
        fit_readout(xs, ys, anchor=np.zeros(5))


def test_clips_above_loudness_counts_wins_by_clip_length():
    from teller_agent.data.sync import MIN_GROUP_FRAMES

    def row(frames, **r):
        metrics = {m: {"mouth_r": v} for m, v in r.items()}
        return {"frames": frames, "metrics": metrics}

    late, early = f"true_shift_+{L.SHIFT_FRAMES}", f"true_shift_-{L.SHIFT_FRAMES}"
    short, long_ = MIN_GROUP_FRAMES - 1, MIN_GROUP_FRAMES
    rows = [row(short, generated=0.5, readout=0.1, loudness=0.2, **{late: 0.3, early: 0.2}),  # a tie is no win
            row(short, generated=0.1, readout=0.3, loudness=0.2, **{late: 0.1, early: 0.1}),
            row(long_, generated=0.6, readout=0.7, loudness=0.2, **{late: 0.1, early: 0.3})]
    short_, longer, every = L.clips_above_loudness(rows)
    assert short_["label"].startswith("shorter than") and longer["label"].endswith("or longer")
    assert (short_["clips"], short_["generated"], short_["readout"], short_[late], short_[early]) == (2, 1, 1, 1, 0)
    assert (longer["clips"], longer["generated"], longer["readout"], longer[late], longer[early]) == (1, 1, 1, 0, 1)
    assert (every["clips"], every["generated"], every["readout"]) == (3, 2, 2)
    # A method missing from one clip of a group is not counted there; a group without clips is left out.
    del rows[0]["metrics"]["readout"]
    counts = L.clips_above_loudness(rows[:2])
    assert [c["label"] for c in counts] == [short_["label"], "all"] and "readout" not in counts[0]
    assert L.clips_above_loudness([]) == []
