"""Video files: write H.264/AAC MP4s atomically, read frames at 25 fps, probe.

Frames are RGB ``uint8`` arrays of shape ``(H, W, 3)``; times are in seconds,
rates in Hz (audio) or frames per second (video), sizes in pixels.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
from collections.abc import Iterator
from fractions import Fraction
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from ..config import FPS
from ..utils.atomic import remove_quietly, temp_path_for
from .audio import resample

__all__ = ["VideoWriter", "read_video_frames", "probe", "AAC_SAMPLE_RATES", "AAC_FALLBACK_RATE"]

#: Sample rates (Hz) the AAC encoder accepts; audio at another rate is resampled
#: to :data:`AAC_FALLBACK_RATE`.
AAC_SAMPLE_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350})
AAC_FALLBACK_RATE = 48000
#: Frames a background :class:`VideoWriter` holds before :meth:`~VideoWriter.write` waits.
BACKGROUND_QUEUE = 8
#: x264 speed preset of :class:`VideoWriter`, with :data:`X264_PARAMS` on top: ``superfast`` with
#: ``veryfast``'s macroblock tree and 10-frame look-ahead gives rendered talking heads about the
#: files ``veryfast`` gives for much less encoding time (docs/results/design_measurements.md).
X264_PRESET = "superfast"
X264_PARAMS = "mbtree=1:rc-lookahead=10"

# AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic BT.709 and AVCOL_RANGE_MPEG.
_BT709 = 1
_RANGE_LIMITED = 1


def _fps_fraction(fps: int | float | Fraction) -> Fraction:
    f = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001 * 1000)
    if f <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return f


class VideoWriter:
    """Write RGB frames (and optional audio) to an H.264 + AAC video file.

    Frames are encoded as they are written (nothing is buffered beyond the
    encoder's look-ahead) with libx264, ``yuv420p``, BT.709 limited range
    (tagged in the stream). Video timestamps are exact: time base ``1/fps``,
    frame *i* has pts *i*, i.e. starts at ``i / fps`` seconds. The audio, given
    up front, is encoded as AAC interleaved with the video and in full: the
    audio stream's duration equals ``len(pcm) / sr`` (the muxer's edit list hides
    the AAC encoder's priming samples), whether it is shorter or longer than the
    video. The container is whatever the suffix of ``path`` says (``.mp4``,
    ``.mov``, ``.mkv``); ``.mp4`` gets ``+faststart`` for web playback.

    The file is written to a hidden temporary file next to ``path``
    (``.<stem>.<random>.partial<suffix>``) and moved into place with
    :func:`os.replace` when :meth:`close` succeeds. If anything fails, or the
    ``with`` block exits with an exception (``KeyboardInterrupt`` included), the
    temporary file is deleted and ``path`` is left as it was.

    Example::

        with VideoWriter("out.mp4", size=(512, 512), audio=(pcm, 16000)) as w:
            for frame in frames:
                w.write(frame)

    Args:
        path: Output file. Its folder must exist.
        fps: Frame rate in frames per second (int, float or Fraction; 25 by default).
        size: ``(width, height)`` in pixels, both even and > 0 (yuv420p stores
            chroma at half resolution). ``None``: taken from the first frame.
        audio: ``(pcm, sr)`` with ``pcm`` float in [-1, 1] of shape ``(N,)``
            (mono) or ``(N, 2)`` (stereo) -- int16 is accepted and scaled by
            1/32768 -- and ``sr`` in Hz. Rates AAC supports
            (:data:`AAC_SAMPLE_RATES`: 8k, 16k, 22.05k, 24k, 44.1k, 48k, ...) are
            kept; any other is resampled to 48 kHz. ``None``: no audio stream.
        crf: x264 constant rate factor, 0 (lossless) to 51; lower is better.
        preset: x264 speed preset (``ultrafast`` ... ``veryslow``).
        x264_params: extra x264 options (``key=value:key=value``) applied after ``preset``; None: none.
        audio_bitrate: AAC bit rate in bits per second.
        background: encode in a worker thread: :meth:`write` checks and queues a copy of the frame
            (at most :data:`BACKGROUND_QUEUE` wait) and returns, so the caller renders the next frame
            while this one is encoded (PyAV releases the GIL while encoding). An encoding error is
            raised by the next :meth:`write` or by :meth:`close`.

    Raises:
        ValueError: a suffix FFmpeg does not know; odd, zero or negative ``size``; bad ``fps``, ``crf`` or
            ``audio`` (wrong shape, channels not 1 or 2, empty, non-finite
            values); on :meth:`write`, a frame that is not ``(H, W, 3)`` uint8
            of the writer's size; on :meth:`close`, no frame was written.
        FileNotFoundError: the folder of ``path`` does not exist.
        RuntimeError: :meth:`write` after :meth:`close`.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        fps: int | float | Fraction = FPS,
        size: tuple[int, int] | None = None,
        audio: tuple[np.ndarray, int] | None = None,
        crf: int = 20,
        preset: str = X264_PRESET,
        x264_params: str | None = X264_PARAMS,
        audio_bitrate: int = 128_000,
        background: bool = False,
    ) -> None:
        self.path = Path(path)
        self.fps = _fps_fraction(fps)
        if not 0 <= int(crf) <= 51:
            raise ValueError(f"crf must be in 0..51 (x264), got {crf!r}")
        self.crf = int(crf)
        self.preset = str(preset)
        self.x264_params = x264_params
        self.audio_bitrate = int(audio_bitrate)
        self.size: tuple[int, int] | None = None
        if size is not None:
            self.size = _check_size(size)
        self._pcm, self._sr = _prepare_audio(audio) if audio is not None else (None, 0)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"Output folder does not exist: {self.path.parent}. Create it first.")

        self._tmp = temp_path_for(self.path)
        self._container: Any = None
        self._vstream: Any = None
        self._astream: Any = None
        self._audio_pos = 0  # samples of self._pcm already sent to the encoder
        self._n = 0
        self._frame_tb = Fraction(1) / self.fps
        self._closed = False
        self._queue: queue.Queue | None = queue.Queue(BACKGROUND_QUEUE) if background else None
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None
        self._accepted = 0
        try:
            self._container = av.open(
                str(self._tmp),
                mode="w",
                options={"movflags": "+faststart"} if self.path.suffix.lower() in (".mp4", ".m4v", ".mov") else {},
            )
        except ValueError as e:
            self._closed = True
            raise ValueError(
                f"Cannot tell the container format from {self.path.name!r} ({e}); use a .mp4, .mov or .mkv suffix"
            ) from e

    # -- public ---------------------------------------------------------------

    @property
    def frames_written(self) -> int:
        """Number of frames written so far (with ``background``, accepted by :meth:`write`)."""
        return self._accepted if self._queue is not None else self._n

    def write(self, frame: np.ndarray) -> None:
        """Encode one frame (with ``background``: check it and queue a copy for the worker thread).

        Args:
            frame: RGB image, ``uint8``, shape ``(H, W, 3)`` with ``(W, H)``
                equal to ``size`` (or, for the first frame when ``size`` was
                None, any even width and height).

        Raises:
            ValueError: wrong dtype, shape or size.
            RuntimeError: the writer is closed.
            Any error the worker thread met encoding an earlier frame (the writer is then aborted).
        """
        if self._closed:
            raise RuntimeError(f"VideoWriter for {self.path} is closed; open a new one to write more frames")
        a = np.asarray(frame)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"frame must be an RGB uint8 array of shape (H, W, 3), got {a.dtype} {a.shape}")
        if self.size is None:
            self.size = _check_size((a.shape[1], a.shape[0]))
        if (a.shape[1], a.shape[0]) != self.size:
            raise ValueError(
                f"frame is {a.shape[1]}x{a.shape[0]} (WxH) but the writer was opened for {self.size[0]}x{self.size[1]}"
            )
        if self._queue is not None:
            self._raise_worker_error()
            if self._worker is None:
                self._worker = threading.Thread(target=self._encode_queued, name="teller-encode", daemon=True)
                self._worker.start()
            self._queue.put(np.array(a))
            self._accepted += 1
            return
        try:
            self._encode(a)
        except BaseException:
            self.abort()
            raise

    def _encode(self, a: np.ndarray) -> None:
        """Encode one checked frame (and the audio up to its end); the caller cleans up on errors."""
        if self._vstream is None:
            self._open_streams()
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
        vf = vf.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
        vf.pts = self._n
        # Our own 1/fps, not self._vstream.time_base: the muxer changes the
        # stream's time base when it writes the header (mp4: 1/12800).
        vf.time_base = self._frame_tb
        self._container.mux(self._vstream.encode(vf))
        self._n += 1
        # Keep the audio abreast of the video so the file is interleaved.
        self._feed_audio(upto=self._n / self.fps)

    def close(self) -> Path:
        """Flush the encoders, finish the file and move it to ``path``.

        Returns:
            The final path. Calling it again is a no-op.

        Raises:
            ValueError: no frame was written (the temporary file is deleted).
        """
        if self._closed:
            return self.path
        self._stop_worker()
        self._raise_worker_error()
        try:
            if self._n == 0:
                raise ValueError(f"no frames were written to {self.path}; nothing to save")
            self._feed_audio(upto=None)
            self._container.mux(self._vstream.encode(None))
            if self._astream is not None:
                self._container.mux(self._astream.encode(None))
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Stop without saving: close the encoder and delete the temporary file.
        ``path`` is left untouched. Safe to call more than once."""
        self._closed = True
        self._stop_worker(discard=True)
        c, self._container = self._container, None
        if c is not None:
            with contextlib.suppress(BaseException):  # best effort: we are already failing
                c.close()
        remove_quietly(self._tmp)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # Not closed (no ``with``, no close()): never leave a temp file behind.
        if not getattr(self, "_closed", True):
            self.abort()

    # -- internals ------------------------------------------------------------

    def _encode_queued(self) -> None:
        """The worker thread: encode queued frames until ``None``; after an error only drain the queue."""
        assert self._queue is not None
        while (frame := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._encode(frame)
                except BaseException as exc:  # raised in the caller's thread by write() or close()
                    self._error = exc

    def _stop_worker(self, discard: bool = False) -> None:
        """End the worker after the queued frames (``discard``: drop them) and wait for it."""
        worker, self._worker = self._worker, None
        if worker is None or self._queue is None:
            return
        if discard:
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
        self._queue.put(None)
        worker.join()

    def _raise_worker_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self.abort()
            raise error

    def _open_streams(self) -> None:
        w, h = self.size  # type: ignore[misc]
        options = {"crf": str(self.crf), "preset": self.preset}
        if self.x264_params:
            options["x264-params"] = self.x264_params
        vs = self._container.add_stream("libx264", rate=self.fps, options=options)
        vs.width, vs.height = w, h
        vs.pix_fmt = "yuv420p"
        vs.time_base = self._frame_tb
        cc = vs.codec_context
        cc.time_base = self._frame_tb
        cc.colorspace = _BT709
        cc.color_primaries = _BT709
        cc.color_trc = _BT709
        cc.color_range = _RANGE_LIMITED
        self._vstream = vs
        if self._pcm is not None:
            layout = "mono" if self._pcm.shape[0] == 1 else "stereo"
            a = self._container.add_stream("aac", rate=self._sr, layout=layout)
            a.bit_rate = self.audio_bitrate
            a.time_base = Fraction(1, self._sr)
            self._astream = a

    def _feed_audio(self, upto: Fraction | None) -> None:
        """Encode audio up to ``upto`` seconds (None: all of it)."""
        if self._astream is None or self._pcm is None:
            return
        total = self._pcm.shape[1]
        end = total if upto is None else min(total, math.ceil(upto * self._sr))
        if end <= self._audio_pos:
            return
        chunk = np.ascontiguousarray(self._pcm[:, self._audio_pos : end])
        af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono" if chunk.shape[0] == 1 else "stereo")
        af.sample_rate = self._sr
        af.pts = self._audio_pos
        af.time_base = Fraction(1, self._sr)
        self._container.mux(self._astream.encode(af))
        self._audio_pos = end


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height) in pixels, got {size!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"size must be positive, got {w}x{h}")
    if w % 2 or h % 2:
        raise ValueError(
            f"frame size {w}x{h} has an odd side; H.264 yuv420p needs even width and height. "
            f"Crop or pad the frames to {w + w % 2}x{h + h % 2} or {w - w % 2}x{h - h % 2}."
        )
    return w, h


def _prepare_audio(audio: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    """Validate ``(pcm, sr)``; return planar float32 ``(channels, N)`` at an AAC rate."""
    try:
        pcm, sr = audio
    except (TypeError, ValueError):
        raise ValueError("audio must be a (pcm, sample_rate) tuple") from None
    if not isinstance(sr, int | np.integer) or sr <= 0:
        raise ValueError(f"audio sample rate must be a positive integer in Hz, got {sr!r}")
    x = np.asarray(pcm)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    elif not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"audio PCM must be float in [-1, 1] or int16, got {x.dtype}")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] not in (1, 2):
        raise ValueError(f"audio PCM must have shape (N,) or (N, 2), got {np.asarray(pcm).shape}")
    if x.shape[0] == 0:
        raise ValueError("audio PCM is empty; pass audio=None for a silent video")
    if not np.all(np.isfinite(x)):
        raise ValueError("audio PCM contains NaN or infinite values")
    x = np.clip(x.astype(np.float32), -1.0, 1.0)
    sr = int(sr)
    if sr not in AAC_SAMPLE_RATES:
        n_out = round(x.shape[0] * AAC_FALLBACK_RATE / sr)  # keep the duration
        x = np.stack([resample(x[:, c], sr, AAC_FALLBACK_RATE)[:n_out] for c in range(x.shape[1])], axis=1)
        x = np.clip(x, -1.0, 1.0)
        sr = AAC_FALLBACK_RATE
    return np.ascontiguousarray(x.T), sr


# -- reading ------------------------------------------------------------------


def _open_media(path: str | PathLike[str]) -> Any:
    """Open a media file with PyAV; FileNotFoundError / ValueError name the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Media file not found: {p}")
    try:
        return av.open(str(p))
    except av.FFmpegError as e:
        raise ValueError(f"Cannot open {p} as media ({e}); the file is corrupt or not audio/video") from e


def _open_video(path: str | PathLike[str]) -> tuple[Any, Any]:
    p = Path(path)
    container = _open_media(p)
    if not container.streams.video:
        container.close()
        raise ValueError(f"{p} has no video stream")
    return container, container.streams.video[0]


def read_video_frames(path: str | PathLike[str], fps: int | float | Fraction | None = FPS) -> Iterator[np.ndarray]:
    """Yield the frames of a video as RGB arrays, resampled to ``fps`` by time.

    Output frame *k* shows the source frame nearest in time to ``k / fps``
    seconds (ties go to the earlier frame), so a 30 fps or variable-rate clip
    comes out at 25 fps with duplicated/dropped frames, like FFmpeg's ``fps``
    filter; this is decided by presentation timestamps, not frame indices.
    Times are measured from the first decoded frame (which is output frame 0).
    The clip ends at the last frame's timestamp plus its duration, so a 2.0 s
    clip gives ``round(2.0 * fps)`` frames. Decoding is streamed: memory holds
    two frames at a time.

    Args:
        path: Video file.
        fps: Output frame rate in frames per second; ``None`` yields every
            decoded frame unchanged.

    Yields:
        ``uint8`` arrays of shape ``(H, W, 3)``, RGB.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a decodable video, or no video stream.
    """
    container, stream = _open_video(path)
    with container:
        stream.thread_type = "AUTO"
        if fps is None:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
            return
        out_fps = _fps_fraction(fps)
        src_rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        t0: float | None = None
        k = 0  # next output frame index
        prev: Any = None
        prev_t = 0.0
        prev_dur = float(1 / src_rate)
        for i, frame in enumerate(container.decode(stream)):
            t = float(frame.time) if frame.time is not None else float(i / src_rate)
            if t0 is None:
                t0 = t
            t -= t0
            if prev is not None:
                if t <= prev_t:  # out-of-order or duplicate timestamp: ignore the frame
                    continue
                prev_dur = t - prev_t
                mid = (prev_t + t) / 2
                rgb = None
                while k / out_fps <= mid:
                    rgb = prev.to_ndarray(format="rgb24") if rgb is None else rgb
                    yield rgb.copy()
                    k += 1
            prev, prev_t = frame, t
            if frame.duration and frame.time_base is not None:
                prev_dur = float(frame.duration * frame.time_base)
        if prev is not None:
            end = prev_t + prev_dur
            rgb = None
            # Small tolerance so a clip of exactly n/fps seconds yields n frames.
            while float(k / out_fps) < end - 1e-6:
                rgb = prev.to_ndarray(format="rgb24") if rgb is None else rgb
                yield rgb.copy()
                k += 1


def probe(path: str | PathLike[str]) -> dict[str, Any]:
    """Describe a media file without decoding its frames (packets are counted
    when the container does not store a frame count).

    Returns:
        A dict with keys:
        ``duration`` (s, the container's, or the longest stream's),
        ``video_codec`` (e.g. ``"h264"``, None without video),
        ``width``, ``height`` (pixels), ``fps`` (average frames per second, float),
        ``frame_count`` (video frames), ``video_duration`` (s),
        ``pix_fmt``,
        ``audio_codec`` (e.g. ``"aac"``, None without audio),
        ``audio_sample_rate`` (Hz), ``audio_channels``,
        ``audio_duration`` (s, from the stream header: for MP4s written by
        :class:`VideoWriter` exactly the PCM length given, priming excluded;
        some other encoders' files count the ~44 ms of AAC priming in it;
        None when the container does not state it, e.g. MKV),
        ``audio_frame_size`` (samples per codec frame,
        1024 for AAC; 0 when variable, e.g. PCM).
        Fields that do not apply or are unknown are None.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be opened as media.
    """
    container = _open_media(path)
    info: dict[str, Any] = dict.fromkeys(
        (
            "duration",
            "video_codec",
            "width",
            "height",
            "fps",
            "frame_count",
            "video_duration",
            "pix_fmt",
            "audio_codec",
            "audio_sample_rate",
            "audio_channels",
            "audio_duration",
            "audio_frame_size",
        )
    )
    with container:

        def stream_seconds(s: Any) -> float | None:
            return float(s.duration * s.time_base) if s.duration is not None and s.time_base is not None else None

        if container.streams.video:
            v = container.streams.video[0]
            cc = v.codec_context
            info.update(
                video_codec=cc.name,
                width=cc.width,
                height=cc.height,
                fps=float(v.average_rate) if v.average_rate else (float(v.guessed_rate) if v.guessed_rate else None),
                video_duration=stream_seconds(v),
                pix_fmt=cc.pix_fmt,
            )
            info["frame_count"] = v.frames or None
        if container.streams.audio:
            a = container.streams.audio[0]
            acc = a.codec_context
            info.update(
                audio_codec=acc.name,
                audio_sample_rate=acc.sample_rate,
                audio_channels=acc.channels,
                audio_duration=stream_seconds(a),
                audio_frame_size=acc.frame_size,
            )
        durations = [d for d in (info["video_duration"], info["audio_duration"]) if d is not None]
        if container.duration is not None:
            info["duration"] = container.duration / av.time_base
        elif durations:
            info["duration"] = max(durations)
        if container.streams.video and info["frame_count"] is None:
            info["frame_count"] = sum(1 for pkt in container.demux(container.streams.video[0]) if pkt.size)
    return info
