"""The README's results section is exactly what ``teller-agent docs readme`` writes from docs/results/*.json."""

from __future__ import annotations

import json
import shutil

import pytest

from teller_agent import docs
from teller_agent.cli import main
from teller_agent.errors import TellerError


def test_readme_results_section_matches_the_recorded_results():
    assert docs.readme_section(docs.README) == docs.render_section(docs.RESULTS_DIR).rstrip("\n") + "\n", (
        "the README's results section is out of date: run `teller-agent docs readme`")
    assert docs.update_readme(docs.README, docs.RESULTS_DIR, check=True) is False


def test_every_recorded_result_says_how_it_was_made():
    for name, result in docs.load_results(docs.RESULTS_DIR).items():
        if result is not None:
            assert result["command"].startswith("teller-agent "), name
            assert result["machine"] and result["created"], name


@pytest.fixture
def sandbox(tmp_path):
    """A copy of the README and the results folder."""
    readme = tmp_path / "README.md"
    shutil.copy(docs.README, readme)
    results = tmp_path / "results"
    if docs.RESULTS_DIR.is_dir():
        shutil.copytree(docs.RESULTS_DIR, results)
    else:
        results.mkdir()
    return readme, results


def _bench_result() -> dict:
    stat = {"median": 12.5, "p95": 20.25, "mean": 13.0}
    return {
        "kind": "bench", "command": "teller-agent bench --seconds 7", "created": "2030-01-02T03:04:05Z",
        "machine": "Test CPU, 3 logical cores", "software": {"torch": "x"},
        "settings": {"audio": "synthetic speech-like", "fast": False},
        "pipeline": {"audio_seconds": 7.0, "frames": 173, "chunk_ms": 20.0, "size": 512, "encode": True,
                     "stage_breakdown": True,
                     "stages_ms": dict.fromkeys(("audio_features", "ar_step", "rvq_decode", "render",
                                                 "video_encode"), stat),
                     "generator_ms": stat, "frame_ms": stat, "frame_with_encode_ms": stat, "fps": 41.0,
                     "fps_median": 80.0, "rtf": 0.61, "rss_start_mb": 900.0, "rss_end_mb": 901.0, "rss_max_mb": 902.0,
                     "rss_growth_mb": 1.0, "rss_samples": [], "peak_rss_mb": 950.0},
        "streaming": {"audio_seconds": 7.0, "frames": 170, "chunk_ms": 20.0, "lookahead_ms": 55.0, "late_chunks": 0,
                      "chunk_to_frame_ms": {"p50": 21.5, "p95": 33.5, "max": 40.0},
                      "audio_to_frame_ms": {"p50": 81.5, "p95": 93.5, "max": 99.0}},
        "sessions": {"max_sessions": 2, "seconds": 5.0, "target_fps": 25.0, "sustained_sessions": 1,
                     "rounds": [{"sessions": 1, "fps_min": 40.0, "fps_mean": 40.0, "fps_each": [40.0],
                                 "sustained": True},
                                {"sessions": 2, "fps_min": 20.0, "fps_mean": 21.0, "fps_each": [20.0, 22.0],
                                 "sustained": False}]},
    }


def test_docs_readme_rewrites_the_section_from_the_json(sandbox, capsys):
    readme, results = sandbox
    before = readme.read_text()
    (results / "bench.json").write_text(json.dumps(_bench_result()))
    args = ["docs", "readme", "--readme", str(readme), "--results", str(results)]
    assert main(args + ["--check"]) == 1
    assert readme.read_text() == before  # --check writes nothing
    assert main(args) == 0
    text = readme.read_text()
    section = docs.readme_section(readme)
    # The numbers and the command come from the JSON; the rest of the README is untouched.
    for expected in ("teller-agent bench --seconds 7", "Test CPU, 3 logical cores", "| 12.50 | 20.25 |",
                     "**1** sustain 25 fps", "| 2 | 20 | 21 | no |", "| chunk arrival -> frame ready (processing) | 21.5"):
        assert expected in section, expected
    head = before.split(docs.BEGIN)[0]
    tail = before.split(docs.END)[1]
    assert text.startswith(head) and text.endswith(tail)
    assert main(args + ["--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_missing_results_and_markers(sandbox):
    readme, results = sandbox
    for f in results.glob("*.json"):
        f.unlink()
    assert "Not measured yet" in docs.render_section(results)
    readme.write_text("# no markers\n")
    with pytest.raises(TellerError, match="markers"):
        docs.update_readme(readme, results)
    (results / "bench.json").write_text("{not json")
    with pytest.raises(TellerError, match="not valid JSON"):
        docs.load_results(results)
