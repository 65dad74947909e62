"""Per-session numbers of a Teller avatar."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

#: Participant attribute under which an avatar worker publishes its :class:`TellerMetrics` (JSON).
METRICS_ATTRIBUTE = "teller.metrics"
#: Seconds between the avatar worker's updates of :data:`METRICS_ATTRIBUTE`: also its heartbeat
#: (the frame counts change every update, so every update reaches the agent).
HEARTBEAT_S = 1.0
#: RPC method an avatar worker answers at once (payload ignored, answer ``"ok"``). The agent calls it
#: when a heartbeat is late: LiveKit's RPC acknowledges a request from the callee's native client
#: before its Python handler runs, so an acknowledgement proves the worker process is alive even
#: while its event loop is held up, and no acknowledgement means it is gone.
PING_RPC = "teller.ping"


@dataclass
class TellerMetrics:
    """A snapshot of one avatar session.

    Attributes:
        frames_rendered: video frames rendered and handed to the AVSynchronizer.
        speech_frames, idle_frames: of which while speaking / idle.
        frames_dropped: frames not shown because rendering fell behind 25 fps: idle slots skipped,
            and speech frames whose audio was published without their picture.
        frames_discarded: speech frames thrown away by interruptions.
        interruptions: ``clear_buffer`` calls.
        generate_ms_p50, generate_ms_p95: motion generation per speech frame, ms.
        render_ms_p50, render_ms_p95: rendering per frame, ms.
        latency_ms_p50, latency_ms_p95: audio-to-frame latency of speech frames, ms: from the
            arrival of a frame's last audio sample at the avatar (or, in a TTS burst, from when
            the motion generator was done with the audio before it) to the frame being rendered,
            including the wait for the generator's look-ahead audio and excluding the wait of a
            finished frame for its output slot (``AvatarFrame.latency_s``).
        fps: frames per second actually captured by the AVSynchronizer (0 before the first frames).
    (Percentiles over the last 1000 frames; NaN before any.)
    """

    frames_rendered: int = 0
    speech_frames: int = 0
    idle_frames: int = 0
    frames_dropped: int = 0
    frames_discarded: int = 0
    interruptions: int = 0
    generate_ms_p50: float = float("nan")
    generate_ms_p95: float = float("nan")
    render_ms_p50: float = float("nan")
    render_ms_p95: float = float("nan")
    latency_ms_p50: float = float("nan")
    latency_ms_p95: float = float("nan")
    fps: float = 0.0

    def to_json(self) -> str:
        return json.dumps({k: (None if isinstance(v, float) and np.isnan(v) else round(v, 3) if isinstance(v, float)
                               else v) for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> TellerMetrics:
        data = json.loads(text)
        return cls(**{k: (float("nan") if v is None else v) for k, v in data.items() if k in cls.__dataclass_fields__})


class MetricsRecorder:
    """Accumulates frame timings into :class:`TellerMetrics`."""

    def __init__(self, window: int = 1000):
        self.counts = TellerMetrics()
        self._gen: deque[float] = deque(maxlen=window)
        self._render: deque[float] = deque(maxlen=window)
        self._latency: deque[float] = deque(maxlen=window)

    def frame(self, speaking: bool, generate_ms: float, render_ms: float, latency_s: float | None) -> None:
        c = self.counts
        c.frames_rendered += 1
        self._render.append(render_ms)
        if speaking:
            c.speech_frames += 1
            self._gen.append(generate_ms)
            if latency_s is not None:
                self._latency.append(latency_s * 1000)
        else:
            c.idle_frames += 1

    def snapshot(self, fps: float = 0.0) -> TellerMetrics:
        def pct(values, q):
            return float(np.percentile(values, q)) if values else float("nan")

        c = self.counts
        return TellerMetrics(
            frames_rendered=c.frames_rendered, speech_frames=c.speech_frames, idle_frames=c.idle_frames,
            frames_dropped=c.frames_dropped, frames_discarded=c.frames_discarded, interruptions=c.interruptions,
            generate_ms_p50=pct(self._gen, 50), generate_ms_p95=pct(self._gen, 95),
            render_ms_p50=pct(self._render, 50), render_ms_p95=pct(self._render, 95),
            latency_ms_p50=pct(self._latency, 50), latency_ms_p95=pct(self._latency, 95),
            fps=fps,
        )
