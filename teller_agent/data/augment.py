"""Seeded waveform augmentation for the synthetic speech corpus.

eSpeak's formant voices all share one very recognisable timbre; a
speech-to-motion model trained on them as they are would learn that timbre. The
chain here varies tempo, pitch, spectral tilt, room and noise so that only the
timing and phonetic content remain reliable cues.

Every function works on mono float32 PCM ``(N,)`` and draws randomness only
from the ``numpy.random.Generator`` it is given, so a seed fixes the result.
All steps but :func:`time_stretch` keep the length (and the timing) of the
audio; :func:`time_stretch` changes it by exactly ``round(N / rate)`` samples
and scales time linearly, so phoneme times scale by ``len(out) / len(in)``.

Public API::

    time_stretch(pcm, rate, sr)                 # WSOLA tempo change, pitch kept
    pitch_shift(pcm, sr, semitones)             # resample + time-stretch back
    add_noise(pcm, rng, snr_db, colour="white") # white / pink / brown noise
    add_babble(pcm, rng, snr_db, sources)       # other people talking at once
    apply_gain(pcm, gain_db)
    reverb(pcm, sr, rng, rt60, wet)             # exponentially decaying noise IR
    band_limit(pcm, sr, low_hz, high_hz)        # telephone / cheap-mic colouring
    AugmentConfig, Augmented, augment(pcm, sr, rng, config)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy.fft import next_fast_len
from scipy.signal import butter, fftconvolve, sosfilt

from ..media.audio import resample

__all__ = [
    "AugmentConfig",
    "Augmented",
    "add_babble",
    "add_noise",
    "apply_gain",
    "augment",
    "band_limit",
    "pitch_shift",
    "reverb",
    "time_stretch",
]


def time_stretch(pcm: np.ndarray, rate: float, sr: int = 16000, frame_ms: float = 32.0,
                 tolerance_ms: float = 8.0) -> np.ndarray:
    """Change the tempo by ``rate`` (>1 faster, shorter) without changing pitch.

    WSOLA (Verhelst & Roelands 1993): Hann-windowed frames are overlap-added at a
    fixed synthesis hop; each frame is read from the input near its nominal
    position ``k * hop * rate``, shifted by up to ``tolerance_ms`` to the offset
    whose waveform best continues the previous frame (cross-correlation), so
    pitch periods line up and no phasiness appears. Timing maps linearly
    (within ``tolerance_ms``): input time ``t`` ends up at ``t / rate``.

    Returns:
        float32 array of exactly ``round(len(pcm) / rate)`` samples.
    """
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    x = np.asarray(pcm, np.float32)
    n_out = int(round(len(x) / rate))
    if abs(rate - 1.0) < 1e-6:
        return x.copy()
    if len(x) == 0 or n_out == 0:
        return np.zeros(n_out, np.float32)
    length = max(16, int(sr * frame_ms / 1000) // 2 * 2)
    hop = length // 2
    tol = max(1, int(sr * tolerance_ms / 1000))
    win = np.hanning(length + 2)[1:-1].astype(np.float32)
    pad = length + tol
    xp = np.concatenate([np.zeros(pad, np.float32), x, np.zeros(pad + length + hop, np.float32)])
    n_frames = n_out // hop + 2
    out = np.zeros(n_frames * hop + length, np.float32)
    norm = np.zeros_like(out)
    prev = None  # input position (in xp) of the previous frame
    for k in range(n_frames):
        nominal = pad + int(round(k * hop * rate)) - hop  # frame k is centred on output sample k*hop
        nominal = min(max(nominal, tol), len(xp) - length - tol - 1)
        if prev is None:
            pos = nominal
        else:
            target = xp[prev + hop: prev + hop + length]  # natural continuation of the last frame
            region = xp[nominal - tol: nominal + tol + length]
            if len(target) < length or not target.any() or not region.any():
                pos = nominal
            else:
                corr = np.correlate(region, target, mode="valid")
                pos = nominal - tol + int(np.argmax(corr))
        start = k * hop
        out[start: start + length] += win * xp[pos: pos + length]
        norm[start: start + length] += win
        prev = pos
    y = out / np.maximum(norm, 1e-3)
    # Output sample j corresponds to out index j + hop (frame 0 is centred on -hop... +hop).
    return np.ascontiguousarray(y[hop: hop + n_out], dtype=np.float32)


def pitch_shift(pcm: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Shift pitch (and formants) by ``semitones`` keeping the length: resample, then WSOLA back.

    The ratio ``2 ** (semitones / 12)`` is approximated by a fraction with a
    denominator <= 64 so the polyphase resampler stays cheap.
    """
    x = np.asarray(pcm, np.float32)
    if abs(semitones) < 1e-3 or len(x) == 0:
        return x.copy()
    ratio = Fraction(2.0 ** (semitones / 12.0)).limit_denominator(64)
    # Resample from rate p to rate q (q/p = 1/ratio): played back at sr, pitch rises by ratio.
    shorter = resample(x, ratio.numerator, ratio.denominator)
    y = time_stretch(shorter, len(shorter) / len(x), sr)
    if len(y) < len(x):
        y = np.pad(y, (0, len(x) - len(y)))
    return y[: len(x)].astype(np.float32)


def _speech_power(x: np.ndarray) -> float:
    """Mean power of the louder half of 20 ms blocks (ignores pauses)."""
    n = len(x) // 320 * 320
    if n == 0:
        return float(np.mean(x ** 2)) if len(x) else 0.0
    blocks = (x[:n].reshape(-1, 320) ** 2).mean(1)
    top = np.sort(blocks)[len(blocks) // 2:]
    return float(top.mean())


def _coloured_noise(n: int, rng: np.random.Generator, colour: str) -> np.ndarray:
    if colour == "white" or n < 4:
        return rng.standard_normal(n)
    m = next_fast_len(n, real=True)  # odd lengths can make the FFT very slow
    spec = np.fft.rfft(rng.standard_normal(m))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    if colour == "pink":
        spec /= np.sqrt(f)
    elif colour == "brown":
        spec /= f
    else:
        raise ValueError(f"unknown noise colour {colour!r}: white, pink or brown")
    return np.fft.irfft(spec, m)[:n]


def add_noise(pcm: np.ndarray, rng: np.random.Generator, snr_db: float, colour: str = "white") -> np.ndarray:
    """Add ``colour`` noise at ``snr_db`` dB below the speech power (pauses excluded)."""
    x = np.asarray(pcm, np.float32)
    if len(x) == 0:
        return x.copy()
    noise = _coloured_noise(len(x), rng, colour)
    p_speech = _speech_power(x)
    p_noise = float(np.mean(noise ** 2)) + 1e-20
    noise *= np.sqrt(p_speech / p_noise / 10.0 ** (snr_db / 10.0))
    return (x + noise).astype(np.float32)


#: Voices in :func:`add_babble`'s babble unless told otherwise.
BABBLE_TALKERS = 4


def add_babble(pcm: np.ndarray, rng: np.random.Generator, snr_db: float, sources: list[np.ndarray],
               talkers: int = BABBLE_TALKERS) -> np.ndarray:
    """Add babble, ``talkers`` other voices talking at once, at ``snr_db`` dB below the speech power
    (pauses excluded on both sides): the noise of a cafe, an open office or a meeting room.

    Each talker is a random excerpt of one of ``sources`` (mono float32 PCM at the same rate; a
    source shorter than ``pcm`` is looped), scaled to the same speech power before they are summed,
    so no single voice stands out.

    Raises:
        ValueError: ``sources`` is empty or ``talkers`` < 1.
    """
    if not sources or talkers < 1:
        raise ValueError("add_babble needs at least one source and one talker")
    x = np.asarray(pcm, np.float32)
    if len(x) == 0:
        return x.copy()
    noise = np.zeros(len(x), np.float64)
    for k in rng.choice(len(sources), size=talkers, replace=len(sources) < talkers):
        src = np.asarray(sources[k], np.float64)
        if len(src) == 0:
            continue
        reps = -(-len(x) // len(src)) + 1
        src = np.tile(src, reps)
        start = int(rng.integers(0, len(src) - len(x) + 1))
        voice = src[start : start + len(x)]
        noise += voice / np.sqrt(_speech_power(voice) + 1e-20)
    p_noise = _speech_power(noise)
    if p_noise <= 0:
        return x.copy()
    noise *= np.sqrt(_speech_power(x) / p_noise / 10.0 ** (snr_db / 10.0))
    return (x + noise).astype(np.float32)


def apply_gain(pcm: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by ``gain_db``; if that would clip, scale down to a 0.99 peak instead (no distortion)."""
    y = np.asarray(pcm, np.float32) * np.float32(10.0 ** (gain_db / 20.0))
    peak = float(np.abs(y).max()) if len(y) else 0.0
    if peak > 0.99:
        y *= np.float32(0.99 / peak)
    return y


def reverb(pcm: np.ndarray, sr: int, rng: np.random.Generator, rt60: float = 0.3, wet: float = 0.4) -> np.ndarray:
    """Room reverberation from a synthetic impulse response.

    The IR is a unit direct path at t = 0 (so timing is unchanged) plus
    Gaussian noise decaying by 60 dB over ``rt60`` seconds, starting after a
    2-10 ms pre-delay, scaled so the tail carries ``wet`` of the direct energy.
    Output is trimmed to the input length and matched in RMS to the input.
    """
    x = np.asarray(pcm, np.float32)
    if len(x) == 0 or wet <= 0 or rt60 <= 0:
        return x.copy()
    n = max(2, int(rt60 * sr))
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)  # ln(1000) = 6.908: -60 dB at rt60
    predelay = int(rng.uniform(0.002, 0.010) * sr)
    tail[:predelay] = 0.0
    tail *= np.sqrt(wet / (np.sum(tail ** 2) + 1e-20))
    ir = tail
    ir[0] = 1.0
    y = fftconvolve(x, ir.astype(np.float32))[: len(x)]
    rms_in, rms_out = np.sqrt(np.mean(x ** 2)), np.sqrt(np.mean(y ** 2))
    if rms_out > 0:
        y *= rms_in / rms_out
    return y.astype(np.float32)


def band_limit(pcm: np.ndarray, sr: int, low_hz: float | None, high_hz: float | None) -> np.ndarray:
    """Butterworth (4th order) high-pass at ``low_hz`` and/or low-pass at ``high_hz`` (None = off)."""
    y = np.asarray(pcm, np.float64)
    if low_hz:
        y = sosfilt(butter(4, low_hz, "highpass", fs=sr, output="sos"), y)
    if high_hz and high_hz < sr / 2:
        y = sosfilt(butter(4, high_hz, "lowpass", fs=sr, output="sos"), y)
    return y.astype(np.float32)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation (each applied independently)."""

    tempo_prob: float = 0.7
    tempo_range: tuple[float, float] = (0.8, 1.25)
    pitch_prob: float = 0.6
    pitch_semitones: tuple[float, float] = (-4.0, 4.0)
    band_prob: float = 0.3
    reverb_prob: float = 0.4
    rt60_range: tuple[float, float] = (0.15, 0.7)
    wet_range: tuple[float, float] = (0.1, 0.6)
    noise_prob: float = 0.7
    snr_db_range: tuple[float, float] = (5.0, 35.0)
    gain_db_range: tuple[float, float] = (-15.0, 3.0)


@dataclass
class Augmented:
    """Result of :func:`augment`.

    Attributes:
        pcm: the augmented audio.
        clean: the audio after the tempo change only (before pitch, room,
            noise, gain): for deriving motion cues from clean speech.
        time_scale: ``len(pcm) / len(input)``: multiply input times by it.
        params: what was applied, for bookkeeping.
    """

    pcm: np.ndarray
    clean: np.ndarray
    time_scale: float
    params: dict = field(default_factory=dict)


def augment(pcm: np.ndarray, sr: int, rng: np.random.Generator, config: AugmentConfig | None = None) -> Augmented:
    """Tempo, pitch shift, band limiting, reverb, noise and gain, each with its probability.

    The draws are made in a fixed order whatever is applied, so one seed always
    decides the same things.
    """
    cfg = config or AugmentConfig()
    x = np.asarray(pcm, np.float32)
    u = rng.uniform(size=6)
    tempo = float(np.exp(rng.uniform(*np.log(cfg.tempo_range))))
    semis = float(rng.uniform(*cfg.pitch_semitones))
    low = float(rng.uniform(150, 400)) if rng.uniform() < 0.6 else None
    high = float(rng.uniform(3000, 7000))
    rt60, wet = float(rng.uniform(*cfg.rt60_range)), float(rng.uniform(*cfg.wet_range))
    snr = float(rng.uniform(*cfg.snr_db_range))
    colour = str(rng.choice(["white", "pink", "brown"]))
    gain = float(rng.uniform(*cfg.gain_db_range))
    reverb_rng = np.random.default_rng(rng.integers(2 ** 63))
    noise_rng = np.random.default_rng(rng.integers(2 ** 63))

    params: dict = {}
    if u[0] < cfg.tempo_prob and len(x):
        x = time_stretch(x, tempo, sr)
        params["tempo"] = tempo
    clean = x.copy()
    if u[1] < cfg.pitch_prob:
        x = pitch_shift(x, sr, semis)
        params["pitch_semitones"] = semis
    if u[2] < cfg.band_prob:
        x = band_limit(x, sr, low, high)
        params["band"] = (low, high)
    if u[3] < cfg.reverb_prob:
        x = reverb(x, sr, reverb_rng, rt60, wet)
        params["reverb"] = (rt60, wet)
    if u[4] < cfg.noise_prob:
        x = add_noise(x, noise_rng, snr, colour)
        params["noise"] = (snr, colour)
    x = apply_gain(x, gain)
    params["gain_db"] = gain
    scale = len(x) / len(pcm) if len(pcm) else 1.0
    return Augmented(x.astype(np.float32), clean, scale, params)
