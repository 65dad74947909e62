"""``teller-agent bench room``: the avatar measured in a real LiveKit room by a viewer participant.

One run: the agent joins with the avatar (in-process, or on an avatar worker with ``worker=True``),
idles 1 s, speaks a sentence to the end, idles 1 s, speaks it again and is interrupted
``interrupt_at`` seconds in. The viewer's records give:

* ``join_s``: ``AvatarSession.start`` called -> first avatar video frame at the viewer;
* ``received_fps``: video frames per second at the viewer over the whole run;
* ``av_offset_ms`` / ``av_offset_abs_p95_ms``: received video vs the audio it shows (median,
  + = video late; p95 of the absolute value), from stamped frames and the received audio
  aligned piece by piece with the sent audio (:func:`~teller_agent.live.viewer.align_audio`);
* ``audio_gaps_ms``: how much longer than it lasts the first turn's audio took to arrive at
  the viewer (gaps and jitter-buffer stretching inside the turn; 0 is continuous audio);
* ``audio_tail_ms``: how long agent audio kept reaching the viewer after the interruption;
* ``settle_ms``: interruption -> the third idle frame at the viewer (the engine's face is
  neutral by its third frame after a clear);
* ``position_error_ms``: reported ``playback_finished`` position minus the audio the viewer heard;
* ``viewer_jitter_buffer_delay_ms`` / ``viewer_concealed_ms``: the viewer's WebRTC audio
  statistics over the run (mean jitter-buffer delay; non-silent audio it had to conceal);
* the avatar's own metrics: audio-to-frame latency p50/p95 over the first turn, whose audio is
  streamed in real time (the worst case: each frame waits for its look-ahead audio), and over
  the whole run, whose second turn arrives at once like a TTS running ahead; generator and
  render ms per frame.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from . import viewer as V
from .demo import DEFAULT_SENTENCE, _speech, livekit_endpoint
from .harness import AgentHarness


async def _measure(url, key, secret, pcm, sr, worker: bool, interrupt_at: float) -> dict:
    kwargs = {"stamp_frames": True, "mode": "worker" if worker else "local"}
    async with AgentHarness(url, key, secret, f"teller-bench-{int(time.time())}", avatar_kwargs=kwargs) as h:
        await h.start_avatar()
        join = await h.wait_first_frame(timeout=60)
        await asyncio.sleep(1.0)
        t_say = time.perf_counter()
        await h.say(pcm, sr, realtime=True)
        streamed = h.avatar.metrics()
        await asyncio.sleep(1.0)
        t_second = time.perf_counter()
        h.say(pcm, sr)
        await asyncio.sleep(interrupt_at)
        t_clear = h.interrupt()
        await asyncio.sleep(1.5)
        metrics = h.avatar.metrics()
        stats = await h.viewer.audio_stats()
    rec = h.viewer.rec
    out: dict = {"mode": kwargs["mode"], "join_s": join, "received_fps": V.received_fps(rec),
                 "speech_seconds": len(pcm) / sr}
    turns = V.speech_turns(rec)
    aligned = V.align_audio(rec, pcm, sr, after=t_say, before=t_second)
    if turns and aligned is not None:
        off = V.av_offsets(turns[0], aligned) * 1000
        out["av_offset_ms"] = float(np.median(off))
        out["av_offset_abs_p95_ms"] = float(np.percentile(np.abs(off), 95))
        out["audio_gaps_ms"] = 1000 * aligned.stretch_s
    last = V.last_loud_audio(rec, after=t_clear)
    out["audio_tail_ms"] = 1000 * (last - t_clear) if last is not None else 0.0
    idle_after = [v.t for v in rec.video if v.t > t_clear and v.code is not None and not v.code & 0x8000]
    out["settle_ms"] = 1000 * (idle_after[2] - t_clear) if len(idle_after) >= 3 else None
    second = V.locate(rec, pcm, sr, after=t_second)
    finished = [p for p in h.run.playbacks if p.interrupted]
    if second is not None and finished:
        heard = (last if last is not None else t_clear) - second
        out["position_error_ms"] = 1000 * (finished[-1].position - heard)
    for name in ("jitter_buffer_delay_ms", "concealed_ms"):
        out[f"viewer_{name}"] = stats.get(name)
    if metrics is not None:
        for name in ("generate_ms_p50", "render_ms_p50", "frames_dropped"):
            out[name] = getattr(metrics, name)
        out["latency_ms_p50"], out["latency_ms_p95"] = streamed.latency_ms_p50, streamed.latency_ms_p95
        out["burst_latency_ms_p50"], out["burst_latency_ms_p95"] = metrics.latency_ms_p50, metrics.latency_ms_p95
    return out


def run_bench_room(*, say: str | None = None, audio: str | None = None, worker: bool = False,
                   interrupt_at: float = 1.5) -> dict:
    """Run the room benchmark (see the module docstring); returns its numbers.

    Raises:
        LiveKitServerError: ``LIVEKIT_URL`` is unset and no server binary is installed.
    """
    import torch

    import datetime as _dt

    from ..bench.common import code_version, machine

    torch.set_num_threads(1)
    pcm, sr = _speech(say or DEFAULT_SENTENCE if audio is None else None, audio)
    with livekit_endpoint(worker) as ep:
        result = asyncio.run(_measure(ep.url, ep.api_key, ep.api_secret, pcm, sr, worker, interrupt_at))
    result["created"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    result["code"] = code_version()
    result["machine"] = machine()
    result["server"] = "local livekit-server --dev" if ep.local else ep.url
    return result


def room_text(r: dict) -> str:
    """Terminal lines for a :func:`run_bench_room` result."""
    def ms(name):
        v = r.get(name)
        return "n/a" if v is None or v != v else f"{v:.1f} ms"

    return "\n".join([
        f"bench room ({r['mode']} mode, {r['server']}) on {r['machine']}",
        f"  start to first video frame at the viewer  {r['join_s']:.2f} s",
        f"  received video                             {r['received_fps']:.1f} fps",
        f"  A/V offset at the viewer                   {ms('av_offset_ms')} median (+ = video late), "
        f"|p95| {ms('av_offset_abs_p95_ms')}",
        f"  audio gaps inside the turn at the viewer   {ms('audio_gaps_ms')}",
        f"  viewer jitter buffer: mean delay {ms('viewer_jitter_buffer_delay_ms')}, concealed {ms('viewer_concealed_ms')}",
        f"  audio-to-frame latency, real-time stream   p50 {ms('latency_ms_p50')}  p95 {ms('latency_ms_p95')}",
        f"  audio-to-frame latency, whole run          p50 {ms('burst_latency_ms_p50')}  p95 {ms('burst_latency_ms_p95')}",
        f"  interruption: agent audio at the viewer    {ms('audio_tail_ms')} after the clear",
        f"  interruption: neutral face at the viewer   {ms('settle_ms')} after the clear",
        f"  interruption: playback position error      {ms('position_error_ms')}",
    ])


def markdown_table(r: dict) -> str:
    """The README table for a :func:`run_bench_room` result (targets from the plugin issue)."""
    def v(name, fmt="{:.1f}"):
        x = r.get(name)
        return "n/a" if x is None or x != x else fmt.format(x)

    rows = [
        ("start to first avatar frame at the viewer", v("join_s", "{:.2f} s"), "<= 1 s"),
        ("received video", v("received_fps", "{:.1f} fps"), ">= 24 fps"),
        ("A/V offset at the viewer (median, + = video late)", v("av_offset_ms", "{:+.1f} ms"), "abs(offset) <= 20 ms"),
        ("A/V offset, p95 of the absolute value", v("av_offset_abs_p95_ms", "{:.1f} ms"), ""),
        ("audio gaps inside a turn at the viewer", v("audio_gaps_ms", "{:.0f} ms"), ""),
        ("audio-to-frame latency p50 / p95, speech streamed in real time",
         f"{v('latency_ms_p50')} / {v('latency_ms_p95')} ms", "p95 <= 80 ms"),
        ("audio-to-frame latency p50 / p95, whole run (second turn sent as a TTS burst)",
         f"{v('burst_latency_ms_p50')} / {v('burst_latency_ms_p95')} ms", ""),
        ("agent audio at the viewer after an interruption", v("audio_tail_ms", "{:.0f} ms"), "<= 60 ms"),
        ("interruption to neutral face at the viewer", v("settle_ms", "{:.0f} ms"), ""),
        ("playback position reported vs heard", v("position_error_ms", "{:+.0f} ms"), "within 60 ms"),
    ]
    lines = [f"{r.get('mode', '?')} mode, {r.get('server', '?')}:", "", "| | measured | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"
