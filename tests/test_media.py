"""Tests of teller_agent.media: audio decoding/resampling, video writing and
reading, contact sheets. Synthetic media is made on the fly; the real speech in
../shared/data is used when present (tests skip with a reason otherwise)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from teller_agent.config import FPS, SHARED_DATA_DIR
from teller_agent.errors import AudioLoadError, TellerError
from teller_agent.media import (
    VideoWriter,
    contact_sheet,
    load_audio,
    probe,
    read_video_frames,
    resample,
    save_image,
)

SHARED = SHARED_DATA_DIR


# -- helpers ------------------------------------------------------------------


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    n = round(seconds * sr)
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def peak_hz(pcm: np.ndarray, sr: int) -> float:
    """Frequency (Hz) of the strongest FFT bin, Hann-windowed, with parabolic
    interpolation between bins."""
    x = pcm.astype(np.float64) * np.hanning(len(pcm))
    mag = np.abs(np.fft.rfft(x))
    k = int(np.argmax(mag[1:])) + 1
    if 0 < k < len(mag) - 1:
        a, b, c = np.log(mag[k - 1 : k + 2] + 1e-12)
        k = k + 0.5 * (a - c) / (a - 2 * b + c)
    return k * sr / len(pcm)


def frame_for(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    """A frame whose mean brightness encodes its index (i * 4 + 20) plus a
    gradient so the encoder sees texture."""
    img = np.full((h, w, 3), 20 + 4 * i, np.uint8)
    img[:, :, 1] = np.clip(20 + 4 * i + np.linspace(-10, 10, w)[None, :], 0, 255).astype(np.uint8)
    return img


def encode_audio_file(path: Path, pcm: np.ndarray, sr: int, codec: str) -> None:
    """Write mono or stereo (N, 2) float PCM with PyAV using ``codec``."""
    pcm = pcm if pcm.ndim == 2 else pcm[:, None]
    layout = "mono" if pcm.shape[1] == 1 else "stereo"
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=sr, layout=layout)
        fmt = s.codec_context.codec.audio_formats[0].name
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.T), format="fltp", layout=layout)
        f.sample_rate, f.pts, f.time_base = sr, 0, Fraction(1, sr)
        # Let PyAV's encoder-side resampler convert fltp to the codec's format.
        assert fmt
        c.mux(s.encode(f))
        c.mux(s.encode(None))


def write_clip(path: Path, n_frames: int, audio=None, fps=FPS, size=(64, 48)) -> None:
    with VideoWriter(path, fps=fps, size=size, audio=audio) as w:
        for i in range(n_frames):
            w.write(frame_for(i, *size))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- VideoWriter ----------------------------------------------------------------


@pytest.mark.parametrize("sr", [44100, 16000])
def test_writer_clip_decodes_with_exact_frames_and_audio(tmp_path: Path, sr: int) -> None:
    out = tmp_path / "clip.mp4"
    n_frames = 50  # 2.0 s at 25 fps
    pcm = tone(440, 1.96, sr)
    write_clip(out, n_frames, audio=(pcm, sr))
    assert leftovers(tmp_path) == ["clip.mp4"]

    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264"
        assert v.codec_context.pix_fmt == "yuv420p"
        assert v.average_rate == 25
        assert a.codec_context.name == "aac"
        assert a.codec_context.sample_rate == sr
        one_aac_frame = a.codec_context.frame_size / a.codec_context.sample_rate  # s
        assert a.codec_context.frame_size == 1024
        audio_s = float(a.duration * a.time_base)
        assert abs(audio_s - len(pcm) / sr) <= one_aac_frame
        decoded = list(c.decode(v))
    assert len(decoded) == n_frames
    # Exact timestamps: frame i at i/25 s.
    assert [round(f.time * FPS, 6) for f in decoded] == list(range(n_frames))
    # Order and content survive (mean brightness encodes the index).
    means = [f.to_ndarray(format="rgb24")[:, :, 0].mean() for f in decoded]
    assert np.allclose(means, [20 + 4 * i for i in range(n_frames)], atol=3)

    info = probe(out)
    assert info["frame_count"] == n_frames
    assert info["fps"] == 25.0
    assert (info["width"], info["height"]) == (64, 48)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert info["audio_sample_rate"] == sr
    assert abs(info["audio_duration"] - 1.96) <= one_aac_frame
    assert abs(info["duration"] - 2.0) < 0.05


def test_writer_without_audio_and_rgb_fidelity(tmp_path: Path) -> None:
    out = tmp_path / "silent.mp4"
    rng = np.random.default_rng(0)
    img = np.repeat(np.repeat(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), 16, 0), 16, 1)  # 96x128 blocks
    with VideoWriter(out, size=(128, 96), crf=10) as w:
        for _ in range(3):
            w.write(img)
    assert w.frames_written == 3
    frames = list(read_video_frames(out))
    assert len(frames) == 3
    assert frames[0].shape == (96, 128, 3) and frames[0].dtype == np.uint8
    # Colours come back (BT.709 tagged both ways), up to 4:2:0 chroma blur at block edges.
    err = np.abs(frames[0].astype(int) - img.astype(int))
    assert np.median(err) <= 3
    assert probe(out)["audio_codec"] is None


def test_writer_stereo_and_unsupported_rate_resampled_to_48k(tmp_path: Path) -> None:
    out = tmp_path / "stereo.mp4"
    sr = 22000  # not an AAC rate
    mono = tone(440, 1.0, sr)
    write_clip(out, 25, audio=(np.stack([mono, -mono], axis=1), sr))
    info = probe(out)
    assert info["audio_sample_rate"] == 48000 and info["audio_channels"] == 2
    assert abs(info["audio_duration"] - 1.0) <= info["audio_frame_size"] / 48000
    with av.open(str(out)) as c:
        left = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    assert abs(peak_hz(left[:48000], 48000) - 440) < 2


def test_writer_audio_longer_than_video_is_kept_whole(tmp_path: Path) -> None:
    out = tmp_path / "long_audio.mp4"
    write_clip(out, 10, audio=(tone(440, 1.0, 16000), 16000))  # 0.4 s of video, 1.0 s audio
    info = probe(out)
    assert info["frame_count"] == 10
    assert abs(info["audio_duration"] - 1.0) <= 1024 / 16000


@pytest.mark.parametrize("background", [False, True])
@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_writer_exception_leaves_no_file(tmp_path: Path, exc: BaseException, background: bool) -> None:
    import threading

    out = tmp_path / "broken.mp4"
    with pytest.raises(type(exc)), VideoWriter(out, size=(64, 48), audio=(tone(440, 1.0, 16000), 16000),
                                               background=background) as w:
        for i in range(5):
            w.write(frame_for(i))
        raise exc
    assert leftovers(tmp_path) == []
    assert "teller-encode" not in [t.name for t in threading.enumerate()]


def test_background_writer_writes_the_same_video_and_reports_encoder_errors(tmp_path: Path) -> None:
    """``VideoWriter(background=True)``: the same decoded frames and audio as encoding in the caller's
    thread; an error in the worker is raised by the next write (or close), leaving no file and no thread."""
    import threading

    audio = (tone(440, 1.0, 16000), 16000)
    paths = {}
    for background in (False, True):
        paths[background] = tmp_path / f"bg{int(background)}.mp4"
        with VideoWriter(paths[background], size=(64, 48), audio=audio, background=background) as w:
            for i in range(25):
                w.write(frame_for(i))
            assert w.frames_written == 25
    a, b = (np.stack(list(read_video_frames(paths[k]))) for k in (False, True))
    assert a.shape == b.shape == (25, 48, 64, 3) and np.array_equal(a, b)
    assert probe(paths[True])["audio_duration"] == probe(paths[False])["audio_duration"]

    out = tmp_path / "fails.mp4"
    w = VideoWriter(out, size=(64, 48), audio=audio, background=True)
    encode = w._encode

    def failing(frame):
        if w._n == 3:
            raise OSError("disk full")
        encode(frame)

    w._encode = failing
    with pytest.raises(OSError, match="disk full"):
        for i in range(200):
            w.write(frame_for(i % 25))
        w.close()
    assert not out.exists() and leftovers(tmp_path) == ["bg0.mp4", "bg1.mp4"]
    assert "teller-encode" not in [t.name for t in threading.enumerate()]


def test_writer_failure_keeps_previous_file(tmp_path: Path) -> None:
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"previous")
    with pytest.raises(ValueError, match="frame is"), VideoWriter(out, size=(64, 48)) as w:
        w.write(frame_for(0))
        w.write(np.zeros((48, 66, 3), np.uint8))  # wrong size
    assert out.read_bytes() == b"previous"
    assert leftovers(tmp_path) == ["keep.mp4"]


def test_writer_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "odd.mp4", size=(63, 48))
    w = VideoWriter(tmp_path / "odd2.mp4")  # size from the first frame
    with pytest.raises(ValueError, match="even"):
        w.write(np.zeros((48, 63, 3), np.uint8))
    w.abort()
    with pytest.raises(ValueError, match="uint8"), VideoWriter(tmp_path / "f.mp4", size=(64, 48)) as w:
        w.write(np.zeros((48, 64, 3), np.float32))
    with pytest.raises(ValueError, match="no frames"), VideoWriter(tmp_path / "empty.mp4", size=(64, 48)):
        pass
    with pytest.raises(ValueError, match="shape"):
        VideoWriter(tmp_path / "a.mp4", size=(64, 48), audio=(np.zeros((10, 3), np.float32), 16000))
    with pytest.raises(FileNotFoundError):
        VideoWriter(tmp_path / "missing_dir" / "a.mp4", size=(64, 48))
    assert leftovers(tmp_path) == []


# -- read_video_frames ------------------------------------------------------------


def test_read_video_frames_resamples_30_to_25_by_time(tmp_path: Path) -> None:
    out = tmp_path / "thirty.mp4"
    write_clip(out, 30, fps=30)  # 1.0 s
    native = list(read_video_frames(out, fps=None))
    assert len(native) == 30
    at25 = list(read_video_frames(out))
    assert len(at25) == 25
    # Output frame k shows the source frame nearest to k/25 s (ties: earlier).
    idx = [round((f[:, :, 0].mean() - 20) / 4) for f in at25]
    expected = [math.ceil(k * 30 / 25 - 0.5) for k in range(25)]
    assert idx == expected


# -- load_audio ---------------------------------------------------------------------


@pytest.mark.parametrize("sr", [8000, 16000, 24000, 48000])
def test_audio_roundtrip_through_mp4_keeps_tone(tmp_path: Path, sr: int) -> None:
    out = tmp_path / "tone.mp4"
    pcm = tone(440, 1.0, sr)
    write_clip(out, 25, audio=(pcm, sr))

    native, native_sr = load_audio(out, sample_rate=None)
    assert native_sr == sr
    assert native.dtype == np.float32 and native.ndim == 1
    assert len(native) == len(pcm)  # AAC priming and tail padding are both removed
    assert abs(peak_hz(native, sr) - 440) < 2

    x16, sr16 = load_audio(out)
    assert sr16 == 16000
    assert abs(len(x16) - 16000) <= 2
    assert abs(peak_hz(x16, 16000) - 440) < 2
    assert np.abs(x16).max() <= 1.0


@pytest.mark.parametrize(
    ("suffix", "codec", "sr"),
    [
        (".wav", "pcm_s16le", 22050),
        (".flac", "flac", 44100),
        (".mp3", "libmp3lame", 44100),
        (".ogg", "libopus", 48000),
        (".m4a", "aac", 24000),
    ],
)
def test_load_audio_formats(tmp_path: Path, suffix: str, codec: str, sr: int) -> None:
    path = tmp_path / f"tone{suffix}"
    encode_audio_file(path, tone(440, 1.0, sr), sr, codec)
    x, got_sr = load_audio(path)
    assert got_sr == 16000 and x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) / 16000 - 1.0) < 0.06  # within codec priming/padding
    assert abs(peak_hz(x, 16000) - 440) < 3
    native, native_sr = load_audio(path, sample_rate=None)
    assert native_sr == sr


def test_load_audio_downmixes_by_averaging(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    left = tone(440, 0.5, 16000, amp=0.9)
    sf.write(path, np.stack([left, left], axis=1), 16000, subtype="FLOAT")
    x, _ = load_audio(path)
    assert np.allclose(x, left, atol=1e-6)  # mean of L and R, not (L+R)/sqrt(2)
    sf.write(path, np.stack([left, -left], axis=1), 16000, subtype="FLOAT")
    x, _ = load_audio(path)
    assert np.abs(x).max() < 1e-6


def test_load_audio_real_speech() -> None:
    speech = SHARED / "speech"
    if not speech.is_dir():
        pytest.skip(f"real speech data not found at {speech} (shared data folder absent)")
    picked = [
        p
        for p in (speech / "DPE__1.wav", speech / "EAMM__00015.mp3", speech / "dreamtalk__acknowledgement_english.m4a")
        if p.is_file()
    ]
    if not picked:
        pytest.skip(f"none of the expected speech files are in {speech}")
    for p in picked:
        x, sr = load_audio(p)
        assert sr == 16000 and x.dtype == np.float32 and x.ndim == 1, p.name
        assert len(x) > 16000 and np.abs(x).max() <= 1.0, p.name
        assert np.sqrt(np.mean(x**2)) > 1e-3, f"{p.name} decoded to silence"
        if p.suffix == ".wav":
            assert abs(len(x) / sr - sf.info(p).duration) < 1e-3


def test_load_audio_real_talking_video_track() -> None:
    talking = SHARED / "talking"
    videos = sorted(talking.glob("*.mp4")) if talking.is_dir() else []
    with_audio = [v for v in videos if probe(v)["audio_codec"] is not None]
    if not with_audio:
        pytest.skip(f"no talking video with an audio track found in {talking}")
    v = with_audio[0]
    x, sr = load_audio(v)
    info = probe(v)
    assert sr == 16000 and x.ndim == 1 and x.dtype == np.float32
    assert abs(len(x) / sr - info["audio_duration"]) < 0.05


def test_load_audio_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioLoadError, match="not found") as ei:
        load_audio(missing)
    assert "nope.wav" in str(ei.value)
    assert isinstance(ei.value, TellerError)

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(256)) * 8)
    with pytest.raises(AudioLoadError, match="corrupt") as ei:
        load_audio(corrupt)
    assert "corrupt.wav" in str(ei.value)

    garbage_mp3 = tmp_path / "garbage.mp3"
    garbage_mp3.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioLoadError):
        load_audio(garbage_mp3)

    silent = tmp_path / "silent.mp4"
    write_clip(silent, 5)
    with pytest.raises(AudioLoadError, match="no audio stream") as ei:
        load_audio(silent)
    assert "silent.mp4" in str(ei.value)

    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioLoadError, match="no audio samples"):
        load_audio(empty)

    with pytest.raises(AudioLoadError, match="not a file"):
        load_audio(tmp_path)


# -- resample -------------------------------------------------------------------------


@pytest.mark.parametrize(("sr_in", "sr_out"), [(8000, 16000), (44100, 16000), (48000, 16000), (16000, 24000)])
def test_resample_lengths_and_tone(sr_in: int, sr_out: int) -> None:
    assert resample(np.zeros(0, np.float32), sr_in, sr_out).shape == (0,)
    short = tone(440, 0.010, sr_in)  # 10 ms
    y = resample(short, sr_in, sr_out)
    assert y.dtype == np.float32 and y.shape == (math.ceil(len(short) * sr_out / sr_in),)
    y = resample(tone(440, 1.0, sr_in), sr_in, sr_out)
    assert len(y) == sr_out
    assert abs(peak_hz(y, sr_out) - 440) < 1
    mid = y[len(y) // 4 : 3 * len(y) // 4]
    assert abs(np.abs(mid).max() - 0.5) < 0.02  # amplitude kept


def test_resample_identity_and_validation() -> None:
    x = tone(440, 0.1, 16000)
    assert np.array_equal(resample(x, 16000, 16000), x)
    with pytest.raises(ValueError):
        resample(np.zeros((10, 2), np.float32), 16000, 8000)
    with pytest.raises(ValueError):
        resample(x, 0, 16000)


# -- contact sheet ------------------------------------------------------------------


def test_contact_sheet_shape_and_labels(tmp_path: Path) -> None:
    frames = [frame_for(i) for i in range(10)]  # 64x48
    sheet = contact_sheet(frames, every=2, cols=3, thumb=32)
    # 5 thumbnails of 32x24, 3 per row -> 2 rows, 2 px gaps.
    assert sheet.shape == (2 * 24 + 2, 3 * 32 + 2 * 2, 3) and sheet.dtype == np.uint8

    big = contact_sheet(frames, every=3, cols=6, thumb=160)  # frames 0, 3, 6, 9
    assert big.shape == (120, 4 * 160 + 3 * 2, 3)
    plain = contact_sheet(frames, every=3, cols=6, thumb=160, labels=[""] * 4)
    assert not np.array_equal(big, plain)  # labels are drawn
    assert np.array_equal(big[60:, :, :], plain[60:, :, :])  # only at the top of each tile

    native = contact_sheet(frames[:1], thumb=None)
    assert native.shape == (48, 64, 3)
    with pytest.raises(ValueError, match="labels"):
        contact_sheet(frames, every=2, labels=["a", "b"])
    with pytest.raises(ValueError):
        contact_sheet([])


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_save_image(tmp_path: Path, suffix: str) -> None:
    img = contact_sheet([frame_for(i) for i in range(4)], cols=2, thumb=64)
    out = save_image(tmp_path / f"sheet{suffix}", img)
    assert leftovers(tmp_path) == [f"sheet{suffix}"]
    back = np.asarray(Image.open(out).convert("RGB"))
    assert back.shape == img.shape
    if suffix == ".png":
        assert np.array_equal(back, img)
    with pytest.raises(ValueError):
        save_image(tmp_path / "sheet.unknownext", img)
