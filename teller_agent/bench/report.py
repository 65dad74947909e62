"""Markdown and terminal text of :func:`~teller_agent.bench.run_bench` results."""

from __future__ import annotations

from typing import Any

from .pipeline import STAGE_NOTES, STAGES


def _ms(stats: dict | None, key: str = "median") -> str:
    return "-" if not stats else f"{stats[key]:.2f}"


def markdown_tables(result: dict[str, Any]) -> str:
    """Markdown tables of one :func:`~teller_agent.bench.run_bench` result: stages, totals, latency, sessions."""
    p = result["pipeline"]
    s = result["settings"]
    load = result.get("load_average_start"), result.get("load_average_end")
    lines = []
    if None not in load:
        lines += [f"Load average (other work on the machine) {load[0]:.1f} at the start, {load[1]:.1f} at the end.", ""]
    lines += [
        f"{p['frames']} frames of {p['size']}x{p['size']} video from {p['audio_seconds']:.0f} s of "
        f"{s['audio']} audio in {p['chunk_ms']:.0f} ms chunks, one thread each for torch and OpenCV, "
        f"medians after a 1 s warm-up:",
        "",
        "| stage | median ms/frame | p95 ms/frame | what |",
        "|---|---|---|---|",
    ]
    for stage in STAGES:
        st = p["stages_ms"].get(stage)
        if st is None:  # not measured (no encoding, or the generator's stages could not be timed)
            continue
        lines.append(f"| {stage.replace('_', ' ')} | {_ms(st)} | {_ms(st, 'p95')} | {STAGE_NOTES[stage]} |")
    lines.append(f"| **generator total** | {_ms(p['generator_ms'])} | {_ms(p['generator_ms'], 'p95')} | "
                 "audio features + AR step + RVQ decode |")
    lines.append(f"| **live frame** | {_ms(p['frame_ms'])} | {_ms(p['frame_ms'], 'p95')} | generator + render |")
    if p.get("frame_with_encode_ms"):
        lines.append(f"| **frame written to mp4** | {_ms(p['frame_with_encode_ms'])} | "
                     f"{_ms(p['frame_with_encode_ms'], 'p95')} | generator + render + encode |")
    lines += [
        "",
        f"Throughput {p['fps']:.0f} frames/s over the whole run ({'with' if p['encode'] else 'without'} encoding), "
        f"real-time factor {p['rtf']:.3f} (wall seconds per second of audio); RSS {p['rss_start_mb']:.0f} MiB "
        f"after warm-up, {p['rss_end_mb']:.0f} MiB at the end; peak RSS {p['peak_rss_mb']:.0f} MiB.",
    ]
    st = result.get("streaming")
    if st:
        c, a = st["chunk_to_frame_ms"], st["audio_to_frame_ms"]
        lines += [
            "",
            f"Streaming: {st['audio_seconds']:.0f} s of audio pushed in {st['chunk_ms']:.0f} ms chunks in real time, "
            f"each frame rendered as soon as the generator returns it ({st['late_chunks']} chunks late):",
            "",
            "| latency | p50 ms | p95 ms | max ms |",
            "|---|---|---|---|",
            f"| chunk arrival -> frame ready (processing) | {c['p50']:.1f} | {c['p95']:.1f} | {c['max']:.1f} |",
            f"| end of the frame's audio -> frame ready (incl. {st['lookahead_ms']:.0f} ms look-ahead) | "
            f"{a['p50']:.1f} | {a['p95']:.1f} | {a['max']:.1f} |",
        ]
    se = result.get("sessions")
    if se:
        lines += [
            "",
            f"Concurrent sessions (one process each, {se['seconds']:.0f} s of audio each, as fast as possible, "
            f"no encoding): **{se['sustained_sessions']}** sustain {se['target_fps']:.0f} fps each.",
            "",
            "| sessions | slowest fps | mean fps | sustains 25 fps |",
            "|---|---|---|---|",
        ]
        for r in se["rounds"]:
            ok = "yes" if r["sustained"] else "no"
            lines.append(f"| {r['sessions']} | {r['fps_min']:.0f} | {r['fps_mean']:.0f} | {ok} |")
    return "\n".join(lines) + "\n"


def memory_line(result: dict[str, Any]) -> str:
    """One markdown paragraph on RSS over a long ``--fast`` run."""
    p = result["pipeline"]
    hours = p["audio_seconds"] / 3600
    return (f"Memory over {p['audio_seconds'] / 60:.0f} min of audio ({p['frames']} frames"
            f"{', ' + format(hours, '.1f') + ' h' if hours >= 1 else ''}, run as fast as possible in "
            f"{p['audio_seconds'] * p['rtf'] / 60:.1f} min): RSS {p['rss_start_mb']:.0f} MiB after warm-up, "
            f"{p['rss_end_mb']:.0f} MiB at the end (largest sample {p['rss_max_mb']:.0f} MiB, "
            f"change {p['rss_growth_mb']:+.0f} MiB).\n")


def terminal_text(result: dict[str, Any]) -> str:
    """The result as printed by ``teller-agent bench`` without ``--json``."""
    head = f"teller-agent bench on {result['machine']} ({result['software']['torch']} torch)\n\n"
    body = markdown_tables(result)
    if result["settings"].get("fast"):
        body += "\n" + memory_line(result)
    return head + body
