"""Audio decoding and resampling.

Everything here works on **mono float32 PCM in [-1, 1]**, shape ``(N,)``, at an
explicit sample rate in Hz. :func:`load_audio` decodes any file FFmpeg (PyAV)
can read; :func:`resample` converts PCM already in memory.
"""

from __future__ import annotations

import math
from os import PathLike
from pathlib import Path

import av
import numpy as np

from ..errors import AudioLoadError

__all__ = ["load_audio", "resample", "DEFAULT_SAMPLE_RATE"]

#: Sample rate (Hz) the audio front end works at (speech features are 16 kHz).
DEFAULT_SAMPLE_RATE = 16000
#: Largest peak (full scale 1.0) a decoded file may have. Lossy decoders and resampling overshoot
#: a little and are clipped; a float file far above it holds unscaled samples, not speech to clip.
MAX_PEAK = 2.0

# Demuxers whose stream duration is exact (edit list / sample tables). For these
# the decoded tail is trimmed to the stream duration: FFmpeg's AAC decoder drops
# the encoder priming at the start (via the edit list) but returns the zero
# padding of the last 1024-sample frame, so without this a clip we wrote with
# 31 360 samples would decode to 31 744.
_EXACT_DURATION_FORMATS = ("mov", "mp4", "m4a")


def load_audio(path: str | PathLike[str], sample_rate: int | None = DEFAULT_SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Decode the audio of a file to mono float32 PCM.

    Reads anything FFmpeg decodes: WAV, MP3, M4A/AAC, OGG/Opus, FLAC, and the
    audio track of a video (MP4, MOV, MKV, WebM). The first/best audio stream is
    used. Channels are downmixed by averaging them (so a full-scale stereo file
    stays within [-1, 1]); resampling uses FFmpeg's ``libswresample`` through
    :class:`av.AudioResampler`. The result is clipped to [-1, 1] (lossy decoders
    and resampling can overshoot slightly).

    Length: FFmpeg drops encoder priming (MP3 LAME/gapless info, Opus
    pre-skip, the MP4 edit list for AAC). For MP4/MOV/M4A the zero padding that
    AAC adds to fill its last 1024-sample frame is trimmed too, using the
    stream's stated duration, so a clip written by
    :class:`~teller_agent.media.VideoWriter` decodes to exactly the samples
    given. Other containers (e.g. MKV with AAC) may keep up to one codec frame
    of trailing silence.

    Args:
        path: Audio or video file.
        sample_rate: Output rate in Hz (default 16000). ``None`` keeps the
            file's native rate.

    Returns:
        ``(pcm, sr)``: ``pcm`` is a float32 array of shape ``(N,)`` with values
        in [-1, 1], ``sr`` the sample rate of ``pcm`` in Hz (``sample_rate``, or
        the native rate when ``sample_rate`` is None). Duration in seconds is
        ``N / sr``.

    Raises:
        AudioLoadError: the file is missing or is a folder; it cannot be opened
            or decoded (corrupt, truncated, not media); it has no audio stream
            (e.g. a silent video); it decodes to zero samples; it holds NaN or
            infinite samples, or peaks above ``MAX_PEAK`` times full scale.
        ValueError: ``sample_rate`` is not a positive integer.
    """
    if sample_rate is not None and (not isinstance(sample_rate, int | np.integer) or sample_rate <= 0):
        raise ValueError(f"sample_rate must be a positive integer in Hz or None, got {sample_rate!r}")
    p = Path(path)
    if not p.exists():
        raise AudioLoadError(
            f"Audio file not found: {p}. Check the path (relative paths are resolved from {Path.cwd()})."
        )
    if not p.is_file():
        raise AudioLoadError(f"Audio path is not a file: {p}. Pass the path of an audio file such as speech.wav.")

    try:
        container = av.open(str(p), mode="r")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise AudioLoadError(
            f"Cannot open {p} as audio ({e}). The file is corrupt or not a media file; "
            "re-export it as WAV/MP3/M4A/OGG/FLAC (e.g. `ffmpeg -i in -ac 1 -ar 16000 out.wav`)."
        ) from e

    with container:
        if not container.streams.audio:
            raise AudioLoadError(
                f"{p} has no audio stream (a silent video or an image?). Pass a file that contains "
                "speech, or the separate .wav that goes with this video."
            )
        stream = container.streams.best("audio") or container.streams.audio[0]
        end_s = _exact_end_seconds(container, stream)
        try:
            pcm, native_sr = _decode(container, stream, sample_rate, end_s)
        except (av.FFmpegError, ValueError) as e:
            raise AudioLoadError(
                f"Cannot decode the audio of {p} ({e}). The file is corrupt or truncated; "
                "re-export it (e.g. `ffmpeg -i in -ac 1 -ar 16000 out.wav`)."
            ) from e

    if pcm.size == 0:
        raise AudioLoadError(
            f"{p} contains no audio samples (empty or zero-length audio stream). Pass a non-empty recording."
        )
    bad = int(pcm.size - np.count_nonzero(np.isfinite(pcm)))
    if bad:
        raise AudioLoadError(
            f"{p} holds {bad} NaN or infinite samples (a float file written from a failed computation?). "
            "Fix the step that wrote it, or re-export it as 16-bit PCM WAV."
        )
    peak = float(np.abs(pcm).max())
    if peak > MAX_PEAK:
        raise AudioLoadError(
            f"{p} peaks at {peak:.1f}x full scale: its float samples are not in [-1, 1] (int16 values "
            "stored as float?). Normalise it, or re-export it as 16-bit PCM WAV."
        )
    np.clip(pcm, -1.0, 1.0, out=pcm)
    return pcm, (sample_rate if sample_rate is not None else native_sr)


def _exact_end_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    """End time (seconds) of ``stream`` when the container states it exactly."""
    fmt = container.format.name or ""
    if not any(name in fmt.split(",") for name in _EXACT_DURATION_FORMATS):
        return None
    if stream.duration is None or stream.time_base is None:
        return None
    start = stream.start_time or 0
    return float((start + stream.duration) * stream.time_base)


def _decode(
    container: av.container.InputContainer,
    stream: av.AudioStream,
    sample_rate: int | None,
    end_s: float | None,
) -> tuple[np.ndarray, int]:
    """Decode ``stream`` to mono float32 at ``sample_rate`` (None: native)."""
    chunks: list[np.ndarray] = []
    resampler: av.AudioResampler | None = None
    template: tuple | None = None  # (format, layout, rate) the resampler was built for
    native_sr: int | None = None

    def drain(frames: list) -> None:
        for f in frames:
            a = f.to_ndarray()  # fltp: (channels, samples)
            chunks.append(a.mean(axis=0, dtype=np.float32) if a.shape[0] > 1 else a[0].astype(np.float32))

    for frame in container.decode(stream):
        if frame.samples == 0:
            continue
        if end_s is not None and frame.pts is not None and frame.time_base is not None:
            keep = round((end_s - float(frame.pts * frame.time_base)) * frame.sample_rate)
            if keep <= 0:
                continue
            if keep < frame.samples:
                frame = _head(frame, keep)
        if native_sr is None:
            native_sr = frame.sample_rate
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != template:  # first frame, or the stream changed parameters mid-way
            if resampler is not None:
                drain(resampler.resample(None))
            resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=sample_rate or native_sr)
            template = key
        frame.pts = None  # we concatenate; avoid timestamp-gap handling in the filter graph
        drain(resampler.resample(frame))
    if resampler is not None:
        drain(resampler.resample(None))

    if native_sr is None:
        native_sr = stream.codec_context.sample_rate or stream.rate or 0
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return np.ascontiguousarray(pcm, dtype=np.float32), int(native_sr)


def _head(frame: av.AudioFrame, n: int) -> av.AudioFrame:
    """A copy of ``frame`` keeping only its first ``n`` samples."""
    arr = frame.to_ndarray()
    fmt = frame.format
    # planar: (channels, samples); packed: (1, samples * channels)
    arr = arr[:, :n] if fmt.is_planar else arr[:, : n * frame.layout.nb_channels]
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt.name, layout=frame.layout)
    out.sample_rate = frame.sample_rate
    out.pts = frame.pts
    out.time_base = frame.time_base
    return out


def resample(pcm: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono PCM held in memory.

    Uses polyphase filtering, :func:`scipy.signal.resample_poly` (Kaiser-windowed
    FIR, zero-phase, no delay), chosen over a streaming FFmpeg resampler because
    it is stateless, deterministic and has an exact output length: no priming
    delay or flush to manage, so empty and 10 ms inputs just work. For whole
    utterances or files; for an unbounded real-time stream use a stateful
    resampler (e.g. :class:`av.AudioResampler`) instead, as independently
    resampled chunks do not join seamlessly.

    Args:
        pcm: Samples, shape ``(N,)``, any real dtype (computed in float32/64,
            returned as float32). Integer input is *not* rescaled: convert int16
            to float (``x / 32768``) first.
        sr_in: Rate of ``pcm`` in Hz (> 0).
        sr_out: Wanted rate in Hz (> 0).

    Returns:
        float32 array of shape ``(ceil(N * sr_out / sr_in),)``; the same values
        (as float32) when ``sr_in == sr_out``. Not clipped.

    Raises:
        ValueError: ``pcm`` is not 1-D, or a rate is not a positive integer.
    """
    for name, sr in (("sr_in", sr_in), ("sr_out", sr_out)):
        if not isinstance(sr, int | np.integer) or sr <= 0:
            raise ValueError(f"{name} must be a positive integer in Hz, got {sr!r}")
    x = np.asarray(pcm)
    if x.ndim != 1:
        raise ValueError(f"resample expects mono PCM of shape (N,), got shape {x.shape}; average the channels first")
    if sr_in == sr_out:
        return x.astype(np.float32, copy=True)
    g = math.gcd(int(sr_in), int(sr_out))
    up, down = int(sr_out) // g, int(sr_in) // g
    n_out = -(-x.shape[0] * up // down)
    if x.shape[0] == 0:
        return np.zeros(0, np.float32)
    from scipy.signal import resample_poly  # here, not at import: scipy.signal takes seconds to import

    y = resample_poly(x.astype(np.float64 if x.dtype == np.float64 else np.float32), up, down)
    return np.ascontiguousarray(y[:n_out], dtype=np.float32)
