"""The streaming engine: live speech audio in, paired (video frame, audio slice) out at 25 fps.

One :class:`AvatarEngine` serves one avatar session. It joins the pieces a live
avatar needs and that offline rendering does not:

* the FMLG :class:`~teller_agent.fmlg.generator.MotionGenerator` turns speech
  into motion frame by frame (KV cache kept within a turn, emptied on interruption);
* a :class:`~teller_agent.stream.gate.SpeechGate` (Silero VAD) closes the mouth
  in pauses inside a sentence;
* an :class:`~teller_agent.stream.idle.IdleMotion` layer keeps the face alive
  between turns (blinks, breathing, head sway) and is what every transition
  settles to;
* the :class:`~teller_agent.render.WarpRenderer` draws the frames.

Each speech frame comes with the exact 40 ms of audio it shows, so a publisher
that pushes them together (LiveKit's ``AVSynchronizer``) keeps lips and sound
in sync. Interruption (:meth:`AvatarEngine.interrupt`) drops all buffered audio
and settles from the last pose to the idle pose in 3 frames (120 ms), as
Meta's online model does at turn boundaries (arXiv 2510.01176, sec. 3).

The engine is synchronous and not thread-safe: call it from one thread (the
LiveKit plugin runs it on a dedicated worker thread).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..audio.resampler import StreamResampler, as_mono_float
from ..config import DEFAULT_RENDER_GRID, FPS, TellerSettings
from ..fmlg.tokenizer import MOUTH_KEYPOINTS
from ..motion.latent import MotionLatent, blend
from ..face.face68 import lip_gap_delta
from ..render import WarpRenderer
from .gate import SpeechGate
from .idle import IdleMotion
from .stamp import SPEAKING, stamp

logger = logging.getLogger(__name__)

#: Weight of the last speech pose in the frames after an interruption (cosine ease, 3 frames = 120 ms).
INTERRUPT_SETTLE = (0.75, 0.25, 0.0)
#: ... and after a turn ends normally (4 frames = 160 ms).
END_SETTLE = (0.85, 0.5, 0.15, 0.0)
#: Weight of speech motion over idle motion in the first frames of a turn.
ONSET_RAMP = (0.4, 0.75, 1.0)
#: Silero speech probability hysteresis: the mouth gate opens above ON and closes below OFF.
VAD_ON, VAD_OFF = 0.5, 0.3


@dataclass
class AvatarFrame:
    """One output frame.

    Attributes:
        image: (S, S, 3) uint8 RGB; None for a frame rendered with ``draw=False`` (dropped to
            keep up with real time: its motion and audio advanced, its pixels were never drawn).
        audio: (N,) int16 mono at the engine's ``sample_rate``: the audio this frame
            shows (N = sample_rate / 25, the last frame of a turn may differ), or None while idle.
        speaking: whether the frame belongs to a speech turn.
        index: frame number within the turn (speech) or since start (idle).
        mouth: inner-lip opening of the rendered motion, in face widths (0 = closed as photographed).
        latency_s: audio-to-frame latency, seconds: from the arrival of the frame's last audio
            sample to the frame being rendered, including the wait for the generator's look-ahead
            audio, excluding the time a finished motion frame waited for :meth:`AvatarEngine.render`
            (its output slot, when audio arrives faster than real time). Speech frames only.
        generate_ms, render_ms: time spent on this frame's motion and pixels.
    """

    image: np.ndarray | None
    audio: np.ndarray | None
    speaking: bool
    index: int
    mouth: float
    latency_s: float | None = None
    generate_ms: float = 0.0
    render_ms: float = 0.0


class AvatarEngine:
    """Live audio -> (frame, audio slice) pairs for one avatar.

    Args:
        avatar: a :class:`~teller_agent.face.PreparedAvatar`.
        generator: a :class:`~teller_agent.fmlg.generator.MotionGenerator`.
        sample_rate: Hz of the audio slices handed back (what the publisher plays);
            must be a multiple of 25. Input audio of any rate is converted to it.
        seed: seeds the idle layer.
        vad: close the mouth where Silero VAD hears no speech.
        stamp_frames: draw the frame code of :mod:`teller_agent.stream.stamp` (measurement aid).
        render_grid: see ``TellerSettings.render_grid``.

    Raises:
        ValueError: ``sample_rate`` is not a positive multiple of 25.
    """

    def __init__(self, avatar, generator, *, sample_rate: int = 24000, seed: int = 0, vad: bool = True,
                 stamp_frames: bool = False, render_grid: int = DEFAULT_RENDER_GRID):
        if sample_rate <= 0 or sample_rate % FPS:
            raise ValueError(f"sample_rate must be a positive multiple of {FPS} Hz, got {sample_rate}")
        self.avatar = avatar
        self.generator = generator
        self.render_grid = render_grid
        self.renderer = WarpRenderer(avatar, grid=render_grid)
        self.sample_rate = sample_rate
        self.samples_per_frame = sample_rate // FPS
        self.stamp_frames = stamp_frames
        self.gate = SpeechGate() if vad else None
        self.idle = IdleMotion(seed)
        self._last = self.idle.next_frame()
        self._settle: tuple[MotionLatent, tuple[float, ...]] | None = None
        self._idle_count = 0
        self._new_turn()

    @classmethod
    def from_settings(cls, settings: TellerSettings | None = None, image=None, checkpoint=None,
                      **kwargs) -> AvatarEngine:
        """Prepare the avatar photo and load the checkpoint named by ``settings`` (or use
        ``checkpoint``, one already loaded with :func:`~teller_agent.fmlg.checkpoint.load_checkpoint`,
        as an avatar worker does once per process), then warm the engine up.

        Raises:
            NoFaceError, ImageLoadError, ...: from :func:`~teller_agent.face.prepare_avatar`.
            CheckpointError: the checkpoint is missing or corrupt.
        """
        from ..face import prepare_avatar
        from ..fmlg.generator import MotionGenerator
        from ..render import set_render_threads

        settings = settings or TellerSettings()
        set_render_threads(settings.render_threads)
        avatar = prepare_avatar(image if image is not None else settings.avatar_image, settings)
        generator = MotionGenerator.from_settings(settings, checkpoint)
        kwargs.setdefault("seed", settings.seed)
        kwargs.setdefault("render_grid", settings.render_grid)
        engine = cls(avatar, generator, **kwargs)
        engine.warmup()
        return engine

    def warmup(self) -> None:
        """Run every model once on silence and forget it, so the first real turn does not pay for
        one-time work (TorchScript profiling passes of the VAD, allocator growth), which otherwise
        stalls the first turn (``docs/results/design_measurements.md``)."""
        silence = np.zeros(self.sample_rate // 2, np.float32)
        self.push_audio(silence, self.sample_rate)
        self.end_turn()
        self.generator.reset()
        self._settle = None

    def set_avatar(self, avatar) -> None:
        """Render from another prepared portrait from the next frame on (motion, turn and idle
        state carry on, so a switch mid-sentence keeps the lips in sync).

        Args:
            avatar: a :class:`~teller_agent.face.PreparedAvatar` of the same frame size.

        Raises:
            ValueError: its frame size differs from this engine's (the published video track
                has a fixed size).
        """
        size = int(np.asarray(avatar.image).shape[0])
        if size != self.renderer.size:
            raise ValueError(f"the new portrait is prepared at {size}x{size} px but this engine renders "
                             f"{self.renderer.size}x{self.renderer.size}: prepare it with the same settings")
        renderer = WarpRenderer(avatar, grid=self.render_grid)
        self.avatar, self.renderer = avatar, renderer

    # -- state ------------------------------------------------------------------

    @property
    def speaking(self) -> bool:
        """True from the first audio of a turn until its last frame is rendered after
        :meth:`finish` (or :meth:`end_turn`), or :meth:`interrupt`."""
        return self._in_turn

    @property
    def turn_frames(self) -> int:
        """Speech frames handed out by :meth:`render` in the current turn (0 outside a turn, and
        at its start while the first frame's motion waits for its look-ahead audio)."""
        return self._emitted

    @property
    def buffered_s(self) -> float:
        """Seconds of turn audio received but not yet handed back with a frame."""
        return max(0, self._received - self._emitted * self.samples_per_frame) / self.sample_rate

    def _new_turn(self) -> None:
        self._in_turn = False
        self._finishing = False
        self._onset = False
        self._audio = np.zeros(0, np.float32)  # received audio at sample_rate not yet handed back
        self._bad_audio_warned = False  # one warning per turn for NaN / infinite / out-of-range audio
        self._received = 0  # samples received this turn
        self._emitted = 0  # frames handed back this turn
        self._holds: list[tuple[float, float]] = []  # (start, end) perf_counter: audio held back (see feed)
        self._held = 0.0  # their total, seconds
        # (samples received after a push, its arrival on the latency clock: see _latency_clock)
        self._arrivals: deque[tuple[int, float]] = deque()
        # (motion, gen ms, last, ready, audio held before it was ready in seconds: see feed)
        self._pending: deque[tuple[MotionLatent, float, bool, float, float]] = deque()
        self._resampler: StreamResampler | None = None
        self._vad_resampler = StreamResampler(self.sample_rate)
        self._gate_value = 0.0
        self._gate_target = 0.0
        if self.gate is not None:
            self.gate.reset()

    # -- input ------------------------------------------------------------------

    def push_audio(self, pcm: np.ndarray, sample_rate: int) -> list[AvatarFrame]:
        """Feed speech audio; returns the frames it completed (possibly none):
        :meth:`feed` then :meth:`render`.

        Args:
            pcm: (N,) or (N, channels) int16 or float samples.
            sample_rate: Hz of ``pcm`` (8, 16, 24, 48 kHz, ...; converted as needed).

        Raises:
            ValueError: bad shape or sample rate.
        """
        self.feed(pcm, sample_rate)
        return self.render()

    def feed(self, pcm: np.ndarray, sample_rate: int, arrival: float | None = None, held: float = 0.0) -> int:
        """Feed speech audio and run the motion generator on it, without rendering: the motion
        frames it completes wait in the engine until :meth:`render`. A publisher calls this as
        soon as audio arrives and renders each frame when its output slot is free, so frames are
        never rendered far ahead of playout (a 20 s TTS burst costs 20 s of motion, a few KB,
        not 500 rendered images).

        Args:
            pcm, sample_rate: as :meth:`push_audio`.
            arrival: ``time.perf_counter()`` when this audio reached the publisher (default: now);
                audio-to-frame latency is counted from it.
            held: seconds the publisher held this audio back after ``arrival`` because enough motion
                was already waiting to be rendered (audio arriving faster than real time). Like a
                finished frame's wait for its output slot, it is slack, not latency: latency is
                counted on a clock that stands still while audio is held.

        Returns:
            frames now waiting to be rendered.

        Raises:
            ValueError: bad shape or sample rate.
            RuntimeError: called after :meth:`finish` before the turn's last frame was rendered.
        """
        if self._finishing:
            raise RuntimeError("the turn is finishing: render its remaining frames before feeding the next turn")
        now = time.perf_counter() if arrival is None else arrival
        x = self._clean(as_mono_float(pcm))
        if sample_rate != self.sample_rate:
            if self._resampler is None or self._resampler.rate != sample_rate:
                self._resampler = StreamResampler(sample_rate, self.sample_rate)
            x = self._resampler.push(x)
        if not self._in_turn:
            self._in_turn = True
            self._onset = True
        self._consume(x, now, held=held)
        return len(self._pending)

    def _clean(self, x: np.ndarray) -> np.ndarray:
        """(N,) float32 -> the same with NaN / infinite samples replaced by silence and the rest
        clipped to [-1, 1]. A TTS that emits such audio (a failed float conversion, a codec
        glitch) must not take the session down or blast the listener: one warning per turn."""
        finite = np.isfinite(x)
        bad = int(x.size - np.count_nonzero(finite))
        loud = int(np.count_nonzero(np.abs(np.where(finite, x, 0.0)) > 1.0))
        if not bad and not loud:
            return x
        if not self._bad_audio_warned:
            self._bad_audio_warned = True
            logger.warning("speech audio held %d NaN/infinite and %d out-of-range samples in a %d-sample chunk: "
                           "NaN/infinite replaced by silence, the rest clipped to [-1, 1] (warned once per turn; "
                           "check the TTS's output format)", bad, loud, x.size)
        return np.clip(np.where(finite, x, 0.0), -1.0, 1.0).astype(np.float32)

    @property
    def finishing(self) -> bool:
        """:meth:`finish` was called and the turn still has frames to render."""
        return self._finishing

    @property
    def pending(self) -> int:
        """Motion frames generated and waiting for :meth:`render`."""
        return len(self._pending)

    def render(self, max_frames: int | None = None, draw: bool = True) -> list[AvatarFrame]:
        """Render up to ``max_frames`` (default: all) waiting motion frames, oldest first. After
        :meth:`finish`, rendering the turn's last frame ends the turn (the face then settles to
        idle over 4 frames).

        With ``draw=False`` the frames advance the turn (motion, mouth gate, their audio) without
        drawing pixels (``image`` is None): what a player that has fallen behind real time does
        with video frames it cannot show in time, so that their audio still plays without a gap.
        """
        t_request = time.perf_counter()
        n = len(self._pending) if max_frames is None else min(max_frames, len(self._pending))
        frames = [self._speech_frame(*self._pending.popleft(), t_request, draw) for _ in range(n)]
        if self._finishing and not self._pending:
            if self._emitted:
                self._settle = (self._last, END_SETTLE)
            self._new_turn()
        return frames

    def finish(self) -> int:
        """The turn's audio is complete: generate its remaining motion (the last frame will carry
        any leftover audio). The turn ends when :meth:`render` has handed out its last frame;
        :attr:`speaking` stays True until then. No-op outside a turn.

        Returns:
            frames now waiting to be rendered.
        """
        if not self._in_turn or self._finishing:
            return len(self._pending)
        now = time.perf_counter()
        tail = self._resampler.flush() if self._resampler is not None else np.zeros(0, np.float32)
        self._consume(tail, now, final=True)
        self._finishing = True
        return len(self._pending)

    def end_turn(self) -> list[AvatarFrame]:
        """:meth:`finish` then :meth:`render`: returns the turn's remaining frames."""
        if not self._in_turn:
            return []
        self.finish()
        return self.render()

    def interrupt(self) -> None:
        """Drop the turn's buffered audio, empty the generator's KV cache, and settle from the
        last shown pose to idle over 3 frames (120 ms)."""
        if self._in_turn or self._settle is not None:
            self._settle = (self._last, INTERRUPT_SETTLE)
        self.generator.reset()
        self._new_turn()

    # -- output -----------------------------------------------------------------

    def idle_frame(self) -> AvatarFrame:
        """The next frame with no speech (call at 25 fps while idle)."""
        t0 = time.perf_counter()
        motion = self.idle.next_frame()
        if self._settle is not None:
            start, weights = self._settle
            w = weights[0]
            motion = blend(motion, start, w)
            self._settle = (start, weights[1:]) if len(weights) > 1 else None
        frame = self._render(motion, None, False, self._idle_count, t0)
        self._idle_count += 1
        return frame

    def _consume(self, x: np.ndarray, now: float, final: bool = False, held: float = 0.0) -> None:
        t0 = time.perf_counter()
        if len(x):
            self._audio = np.concatenate([self._audio, x])
            self._received += len(x)
        if held > 0:  # it was held until this call
            self._holds.append((t0 - held, t0))
            self._held += held
        self._arrivals.append((self._received, self._latency_clock(now)))
        if self.gate is not None:
            self.gate.push(self._vad_resampler.push(x) if len(x) else x)
            if final:
                self.gate.push(self._vad_resampler.flush())
        motion = self.generator.flush() if final else self.generator.push_audio(x, self.sample_rate)
        ready = time.perf_counter()
        gen_ms = (ready - t0) * 1000 / max(1, len(motion))
        for i in range(len(motion)):
            self._pending.append((motion[i], gen_ms, final and i == len(motion) - 1, ready, self._held))

    def _speech_frame(self, motion: MotionLatent, gen_ms: float, last: bool, ready: float, held: float,
                      t_request: float, draw: bool = True) -> AvatarFrame:
        t0 = time.perf_counter()
        k = self._emitted
        spf = self.samples_per_frame
        take = len(self._audio) if last else min(spf, len(self._audio))
        chunk = self._audio[:take]
        self._audio = self._audio[take:]
        if len(chunk) < spf:
            chunk = np.pad(chunk, (0, spf - len(chunk)))
        motion = self._gate_mouth(motion, k)
        idle = self.idle.next_frame()  # the idle clock runs on under speech, so idle resumes seamlessly
        if self._onset:
            if k < len(ONSET_RAMP) - 1:
                motion = blend(idle, motion, ONSET_RAMP[k])
            else:
                self._onset = False
        if self._settle is not None:  # a new turn right after an interruption: finish the settle first
            start, weights = self._settle
            motion = blend(motion, start, weights[0])
            self._settle = (start, weights[1:]) if len(weights) > 1 else None
        audio = np.clip(np.round(chunk * 32767.0), -32768, 32767).astype(np.int16)
        frame = self._render(motion, audio, True, k, t0, draw)
        frame.generate_ms = gen_ms
        waited = max(0.0, t_request - ready)  # for an output slot (audio arrived faster than real time)
        frame.latency_s = time.perf_counter() - held - self._arrival_of(min((k + 1) * spf, self._received)) - waited
        self._emitted += 1
        return frame

    def _gate_mouth(self, motion: MotionLatent, k: int) -> MotionLatent:
        if self.gate is None:
            return motion
        p = self.gate.frame_probability(k)
        if p >= VAD_ON:
            self._gate_target = 1.0
        elif p < VAD_OFF:
            self._gate_target = 0.0
        rate = 0.7 if self._gate_target > self._gate_value else 0.45
        self._gate_value += rate * (self._gate_target - self._gate_value)
        motion.exp[:, list(MOUTH_KEYPOINTS)] *= self._gate_value
        return motion

    def _latency_clock(self, t: float) -> float:
        """``t`` (perf_counter seconds) less the time audio was held before ``t`` (see :meth:`feed`)."""
        return t - sum(max(0.0, min(end, t) - start) for start, end in self._holds)

    def _arrival_of(self, sample: int) -> float:
        while len(self._arrivals) > 1 and self._arrivals[1][0] <= sample:
            self._arrivals.popleft()
        for received, t in self._arrivals:
            if received >= sample:
                return t
        return self._arrivals[-1][1]

    def _render(self, motion: MotionLatent, audio, speaking: bool, index: int, t0: float,
                draw: bool = True) -> AvatarFrame:
        t1 = time.perf_counter()
        image = self.renderer.render_frame(motion) if draw else None
        if self.stamp_frames and image is not None:
            stamp(image, (SPEAKING if speaking else 0) | (index & 0x7FFF))
        self._last = motion
        return AvatarFrame(image=image, audio=audio, speaking=speaking, index=index,
                           mouth=float(lip_gap_delta(motion.exp)[0]),
                           render_ms=(time.perf_counter() - t1) * 1000)
