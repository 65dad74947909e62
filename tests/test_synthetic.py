"""Synthetic speech-to-motion corpus: eSpeak bindings, visemes, augmentation, clips."""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
import pytest

from teller_agent.config import FPS
from teller_agent.data import espeak
from teller_agent.data.augment import AugmentConfig, augment, pitch_shift, time_stretch
from teller_agent.face.face68 import MIDLINE_LIP_PAIR, lip_gap_delta
from teller_agent.data.visemes import (
    articulation_tracks,
    phoneme_to_visemes,
    phonemes_to_expression,
)

needs_espeak = pytest.mark.skipif(
    not espeak.espeak_available(),
    reason="libespeak-ng is not installed (apt-get install espeak-ng); synthetic speech cannot be made",
)

BILABIAL = {"p", "b", "m"}
CLOSED, OPEN = 0.003, 0.03  # inner-lip gap change in face widths


def _bilabial_checks(phonemes, exp):
    """Closed lips at the middle of every p/b/m, open lips during every vowel of >= 80 ms."""
    gap = lip_gap_delta(exp, MIDLINE_LIP_PAIR)
    closures = opens = 0
    for start, end, sym in phonemes:
        if sym in BILABIAL:
            k = min(int(0.5 * (start + end) * FPS), len(gap) - 1)
            assert gap[k] < CLOSED, f"{sym} at {start:.3f}-{end:.3f} s: lips not closed (gap {gap[k]:.4f})"
            closures += 1
        elif phoneme_to_visemes(sym)[0] in {"aa", "E", "O"} and end - start >= 0.08:
            frames = [i for i in range(len(gap)) if start <= (i + 0.5) / FPS < end]
            assert frames and gap[frames].max() > OPEN, f"vowel {sym} at {start:.3f}-{end:.3f} s stays closed"
            opens += 1
    return closures, opens


def _closure_dips(phonemes, exp):
    """The clip's shipped motion is scaled and smoothed like the real clips' fitted motion
    (:func:`teller_agent.data.synthetic.make_clip`), so a one-frame closure no longer reaches 0: each p/b/m
    must still nearly close the lips: within a frame of its middle, the inner-lip gap falls below a quarter of
    the clip's widest opening."""
    gap = lip_gap_delta(exp, MIDLINE_LIP_PAIR)
    dips = 0
    for start, end, sym in phonemes:
        if sym in BILABIAL:
            k = min(int(0.5 * (start + end) * FPS), len(gap) - 1)
            near = gap[max(0, k - 1): k + 2]
            assert near.min() < gap.max() / 4, (
                f"{sym} at {start:.3f}-{end:.3f} s: no lip closure (gap {near.min():.4f}, max {gap.max():.4f})")
            dips += 1
    return dips


# -- no espeak needed ---------------------------------------------------------


def test_missing_library_error_names_the_package(monkeypatch):
    engine = espeak._Engine()
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)

    def no_lib(*args, **kwargs):
        raise OSError("cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_lib)
    with pytest.raises(espeak.EspeakUnavailableError, match="apt-get install espeak-ng"):
        engine.load()


def test_phoneme_to_viseme_mapping_and_fallbacks():
    assert phoneme_to_visemes("_:") == ["sil"]
    assert [phoneme_to_visemes(s)[0] for s in ("p", "b", "m", "f", "v", "T", "t", "k", "tS", "s", "r")] == [
        "PP", "PP", "PP", "FF", "FF", "TH", "DD", "kk", "CH", "SS", "RR"]
    assert phoneme_to_visemes("aI") == ["aa", "I"]  # diphthong split in time
    assert phoneme_to_visemes("u:") == ["U"] and phoneme_to_visemes("A:") == ["aa"]
    assert phoneme_to_visemes("tS;h") == ["CH"]  # palatal mark and aspiration are modifiers
    assert phoneme_to_visemes("n^") == ["nn"] and phoneme_to_visemes("&~") == ["aa"]
    # Unknown symbols never fail: vowel-like letters give a vowel, anything else a consonant.
    assert phoneme_to_visemes("%%")[0] in {"hh", "DD"}
    assert phoneme_to_visemes("\u00e6")[0] == "DD"


def test_coarticulation_closes_lips_for_short_bilabials():
    # 30 ms /p/ falling between frame centres, between two open vowels.
    phonemes = [(0.0, 0.1, "_"), (0.1, 0.3, "A:"), (0.3, 0.33, "p"), (0.33, 0.55, "A:"), (0.55, 0.8, "_")]
    n = round(0.8 * FPS)
    exp = phonemes_to_expression(phonemes, n)
    assert exp.shape == (n, 68, 3)
    assert _bilabial_checks(phonemes, exp) == (1, 2)
    tracks = articulation_tracks(phonemes, n)
    # Anticipation: the jaw starts opening before the vowel's first frame.
    assert tracks["jaw_open"][1] > 0.05
    assert tracks["jaw_open"][-1] < 0.05  # and rests in the long final pause


def test_time_stretch_keeps_pitch_and_has_exact_length():
    sr = 16000
    t = np.arange(sr) / sr
    x = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    for rate in (0.8, 1.25):
        y = time_stretch(x, rate, sr)
        assert len(y) == round(len(x) / rate)
        spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
        assert abs(np.argmax(spec) * sr / len(y) - 200) < 3
    y = pitch_shift(x, sr, 12.0)
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert len(y) == len(x) and abs(np.argmax(spec) * sr / len(y) - 400) < 6


def test_augment_is_seeded():
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    a, b = augment(x, 16000, np.random.default_rng(3)), augment(x, 16000, np.random.default_rng(3))
    assert np.array_equal(a.pcm, b.pcm) and a.params == b.params
    assert len(a.pcm) == round(len(x) * a.time_scale)


# -- with espeak --------------------------------------------------------------


@needs_espeak
def test_phoneme_events_monotonic_and_cover_audio():
    utt = espeak.synthesize("The quick brown fox jumps over the lazy dog. Pack my box!", "en-us")
    assert utt.sample_rate == 22050 and utt.pcm.dtype == np.float32 and utt.duration > 2.0
    ph = utt.phonemes
    assert ph[0][0] == 0.0 and ph[-1][1] == pytest.approx(utt.duration)
    for (s0, e0, _), (s1, e1, _) in zip(ph, ph[1:]):
        assert s0 < e0 == s1 < e1  # contiguous, strictly increasing
    assert len([p for p in ph if p[2] != "_"]) > 30
    # Timing is right: the sentence pause is near silent, vowels are loud.
    sr, x = utt.sample_rate, utt.pcm

    def rms(s, e):
        seg = x[int(s * sr): int(e * sr)]
        return float(np.sqrt(np.mean(seg ** 2)))

    pauses = [rms(s, e) for s, e, p in ph[1:-1] if p == "_" and e - s > 0.05]
    vowels = [rms(s, e) for s, e, p in ph if phoneme_to_visemes(p)[0] in {"aa", "O", "E"}]
    assert pauses and max(pauses) < 0.1 * np.median(vowels)


@needs_espeak
def test_voices_listed_and_variants_differ():
    voices = espeak.available_voices()
    assert {"en-us", "en-gb", "de"} <= set(voices)
    male = espeak.synthesize("How are you today?", "en-us+m3")
    female = espeak.synthesize("How are you today?", "en-us+f3")
    other = espeak.synthesize("How are you today?", "en-gb")  # language code resolved to its voice file
    assert len(other.pcm) > 0
    n = min(len(male.pcm), len(female.pcm))
    assert not np.allclose(male.pcm[:n], female.pcm[:n], atol=1e-3)
    from teller_agent.data.synthetic import _frame_f0

    f0_m = np.nanmedian(_frame_f0(male.pcm, male.sample_rate, int(male.duration * FPS)))
    f0_f = np.nanmedian(_frame_f0(female.pcm, female.sample_rate, int(female.duration * FPS)))
    assert f0_f > 1.3 * f0_m
    with pytest.raises(ValueError, match="no voice"):
        espeak.synthesize("hi", "xx-nonexistent")


@needs_espeak
def test_bilabial_word_closes_and_opens_lips():
    from teller_agent.data.synthetic import make_clip

    clip = make_clip("mama papa", "en-us", np.random.default_rng(0), rate=140, augment=False)
    closures, opens = _bilabial_checks(clip.phonemes, phonemes_to_expression(clip.phonemes, clip.motion.num_frames))
    assert closures == 4 and opens >= 3
    assert _closure_dips(clip.phonemes, clip.motion.exp) == 4


@needs_espeak
@pytest.mark.parametrize("tempo", [0.8, 1.25])
def test_motion_stays_aligned_after_tempo_change(tempo):
    from teller_agent.data.synthetic import make_clip

    cfg = AugmentConfig(tempo_prob=1.0, tempo_range=(tempo, tempo), pitch_prob=1.0, noise_prob=1.0,
                        reverb_prob=1.0)
    plain = make_clip("Bob may buy a map.", "en-gb+f2", np.random.default_rng(1), rate=150, augment=False)
    clip = make_clip("Bob may buy a map.", "en-gb+f2", np.random.default_rng(1), rate=150, augment=cfg)
    assert clip.sample_rate == 16000 and clip.audio.dtype == np.float32
    assert len(clip.audio) == pytest.approx(len(plain.audio) / tempo, abs=1)
    assert clip.motion.num_frames == round(len(clip.audio) / clip.sample_rate * FPS)
    assert clip.phonemes[-1][1] == pytest.approx(clip.duration)
    assert clip.params["tempo"] == pytest.approx(tempo)
    closures, _ = _bilabial_checks(clip.phonemes, phonemes_to_expression(clip.phonemes, clip.motion.num_frames))
    assert closures == 6  # b, b, m, b, m, p
    assert _closure_dips(clip.phonemes, clip.motion.exp) == 6


@needs_espeak
def test_same_seed_same_clip_and_corpus_cycles_languages():
    from teller_agent.data.synthetic import make_clip, make_corpus

    a = make_clip("Five brave foxes waved.", "en-us+m2", np.random.default_rng(5))
    b = make_clip("Five brave foxes waved.", "en-us+m2", np.random.default_rng(5))
    c = make_clip("Five brave foxes waved.", "en-us+m2", np.random.default_rng(6))
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.motion.flat(), b.motion.flat())
    assert a.phonemes == b.phonemes and a.params == b.params
    assert not (len(a.audio) == len(c.audio) and np.array_equal(a.audio, c.audio))

    first = list(make_corpus(4, seed=2, progress=False))
    again = list(make_corpus(4, seed=2, progress=False))
    assert [x.language for x in first] == ["en", "de", "en", "fr"]
    for x, y in zip(first, again):
        assert x.text == y.text and x.voice == y.voice and np.array_equal(x.audio, y.audio)
        assert x.motion.num_frames == round(x.duration * FPS) and x.motion.space == "face68"
        assert np.isfinite(x.motion.flat()).all()
