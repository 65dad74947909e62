"""``teller-agent bench``: the short mode runs in seconds and its JSON has every field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from teller_agent.bench.pipeline import STAGES, StageClock
from teller_agent.cli import main

STAT = {"median", "p95", "mean"}
PIPELINE = {"audio_seconds", "frames", "chunk_ms", "size", "encode", "stage_breakdown", "stages_ms", "generator_ms",
            "frame_ms", "frame_with_encode_ms", "fps", "fps_median", "rtf", "rss_start_mb", "rss_end_mb",
            "rss_max_mb", "rss_growth_mb", "rss_samples", "peak_rss_mb"}
STREAMING = {"audio_seconds", "frames", "chunk_ms", "lookahead_ms", "chunk_to_frame_ms", "audio_to_frame_ms",
             "late_chunks"}
SESSIONS = {"max_sessions", "seconds", "target_fps", "sustained_sessions", "rounds"}


@pytest.fixture
def env(monkeypatch, settings):
    monkeypatch.setenv("TELLER_CACHE_DIR", str(settings.cache_dir))
    monkeypatch.delenv("TELLER_AVATAR_IMAGE", raising=False)


def test_short_bench_json_has_every_field(env, capsys, tmp_path):
    record = tmp_path / "bench.json"
    assert main(["bench", "--short", "--size", "256", "--json", "-q", "--record", str(record)]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.splitlines()[0])
    assert json.loads(record.read_text()) == result
    assert {"kind", "version", "command", "created", "machine", "software", "settings", "pipeline", "streaming",
            "sessions", "load_average_start", "load_average_end", "code"} <= result.keys()
    assert result["command"].startswith("teller-agent bench --short")

    p = result["pipeline"]
    assert PIPELINE <= p.keys()
    assert p["size"] == 256 and p["encode"] is True and p["stage_breakdown"] is True
    assert 45 <= p["frames"] <= 50  # 2 s at 25 fps, minus the frames held back by the look-ahead
    assert set(p["stages_ms"]) == set(STAGES)
    for stage in STAGES:
        assert set(p["stages_ms"][stage]) == STAT and p["stages_ms"][stage]["median"] >= 0
    for key in ("generator_ms", "frame_ms", "frame_with_encode_ms"):
        assert set(p[key]) == STAT
    # The generator's stages add up to its total, frame by frame, so their means do too.
    parts = sum(p["stages_ms"][s]["mean"] for s in ("audio_features", "ar_step", "rvq_decode"))
    assert parts == pytest.approx(p["generator_ms"]["mean"], rel=1e-3, abs=0.01)
    assert p["frame_ms"]["mean"] == pytest.approx(p["generator_ms"]["mean"] + p["stages_ms"]["render"]["mean"],
                                                  rel=1e-3, abs=0.01)
    assert p["fps"] > 0 and p["rtf"] > 0 and p["peak_rss_mb"] >= p["rss_max_mb"] > 0

    s = result["streaming"]
    assert STREAMING <= s.keys() and s["frames"] >= 20
    for key in ("chunk_to_frame_ms", "audio_to_frame_ms"):
        assert set(s[key]) == {"p50", "p95", "max"} and 0 <= s[key]["p50"] <= s[key]["p95"] <= s[key]["max"]
    # A viewer waits at least for the look-ahead beyond the processing.
    assert s["audio_to_frame_ms"]["p50"] >= s["lookahead_ms"] > 0

    se = result["sessions"]
    assert SESSIONS <= se.keys() and se["max_sessions"] == 1 and len(se["rounds"]) == 1
    r = se["rounds"][0]
    assert r["sessions"] == 1 and r["fps_min"] > 0 and r["sustained"] == (r["fps_min"] >= 25)
    assert se["sustained_sessions"] == (1 if r["sustained"] else 0)


def test_fast_mode_skips_the_real_time_parts_and_prints_text(env, capsys):
    assert main(["bench", "--fast", "--seconds", "1", "--size", "128", "-q"]) == 0
    out = capsys.readouterr().out
    assert "| render |" in out and "Memory over" in out and "video encode" not in out and "Streaming" not in out


class _FakeGenerator:
    """Stands in for MotionGenerator: one frame per 640 samples, with the internals StageClock wraps."""

    class _Audio:
        def push(self, x):
            return x

    def __init__(self):
        self._audio = self._Audio()
        self.pending = 0

    def _sample_tokens(self, x):
        return x

    def _decode(self, x):
        return x

    def _advance(self, n):
        for _ in range(n):
            self._decode(self._sample_tokens(self._audio.push(0)))
        return np.zeros(n)

    def push_audio(self, pcm, sample_rate):
        self.pending += len(pcm)
        n, self.pending = divmod(self.pending, 640)
        return self._advance(n)


def test_stage_clock_splits_push_time_and_restores():
    gen = _FakeGenerator()
    clock = StageClock(gen)
    assert clock.available and "_decode" in vars(gen)
    _, per = clock.push(np.zeros(320), 16000)
    assert per is None  # no frame yet: the time is carried over
    motion, per = clock.push(np.zeros(960), 16000)
    assert len(motion) == 2
    assert set(per) == {"generator", "audio_features", "ar_step", "rvq_decode"}
    assert per["audio_features"] + per["ar_step"] + per["rvq_decode"] == pytest.approx(per["generator"])
    clock.restore()
    assert "_decode" not in vars(gen) and "push" not in vars(gen._audio)


def test_stage_clock_without_the_internals_reports_the_total_only():
    class Opaque:
        def push_audio(self, pcm, sample_rate):
            return np.zeros(len(pcm) // 640)

    clock = StageClock(Opaque())
    assert not clock.available
    _, per = clock.push(np.zeros(1280), 16000)
    assert set(per) == {"generator"} and per["generator"] >= 0
