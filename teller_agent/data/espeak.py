"""Text-to-speech with phoneme timings from libespeak-ng, through ctypes.

The synthetic speech-to-motion corpus (:mod:`teller_agent.data.synthetic`)
needs speech audio *and* the time span of every phoneme in it, in many voices
and languages. eSpeak NG gives both: its phoneme events
(``espeakINITIALIZE_PHONEME_EVENTS``) report each phoneme's mnemonic and its
start in the generated audio. No MBROLA voices (``--pho``) are used.

Public API::

    synthesize(text, voice="en-us", rate=175, pitch=50, range_=50) -> Utterance
    available_voices() -> list[str]       # language voices installed
    voice_variants() -> list[str]         # "+m3", "+f2", ... timbre variants
    espeak_available() -> bool

Install the library with ``apt-get install espeak-ng`` (Debian/Ubuntu; the
package pulls in ``libespeak-ng1`` and the voice data).

eSpeak keeps global state (one voice, one callback, one parameter set), so
every call into it holds a module lock; :func:`synthesize` is thread-safe but
calls are serialised. eSpeak also carries wave-generator state from one
utterance to the next (the same text twice in a row differs by a few samples
and ~1 ms of phoneme timing), so by default each utterance is synthesised in a
forked child of the never-used engine: same arguments, same samples.

Quirks of libespeak-ng 1.51 (Debian 12) handled here:

* ``audio_position`` is in ms from the start of each ``espeak_Synth`` message
  (it restarts at 0 for every call). Only phoneme *starts* are reported: each
  phoneme ends where the next begins, the last at the end of the audio; a
  leading gap (the ~10 ms of silence before the first phoneme) becomes ``_``.
* Pauses come as ``_``, ``_:``, ``_|`` ... (normalised to ``_`` and merged).
  Every clause ends with a zero-length ``_`` event at exactly the end of its
  audio; these and other zero-length events are dropped.
* Language switches inside a text (e.g. digits or Latin letters in ``ru``,
  ``ko``, ``cmn``) emit marker "phonemes" ``(en)``, ``(ru)`` ...: dropped.
* Palatalisation can arrive as a separate ``;`` phoneme with a duration
  (kept; :mod:`~teller_agent.data.visemes` treats it as transparent).
* ``id.string`` is a char[8] that is not zero-terminated for 8-byte names.
* ``espeak_SetVoiceByName`` matches voice *file* names, not language codes:
  ``"en-us"``, ``"de"`` and ``"en-gb-x-rp"`` work, ``"en-gb"`` and ``"fr-fr"``
  do not (their files are ``gmw/en`` and ``roa/fr``); we fall back on the
  voice list's language -> file table. An unknown variant (``"en+zz"``) is
  silently ignored by eSpeak.
* The ``cmn`` voice reads Hanzi as pinyin whose tone digits are then spoken
  in English ("你好" -> "ni three hao three"); use ``cmn-latn-pinyin`` with
  pinyin text (tone digits) instead. ``ja`` reads kana only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pickle
import threading
from dataclasses import dataclass, field

import numpy as np

from ..errors import TellerError

__all__ = [
    "EspeakUnavailableError",
    "Utterance",
    "available_voices",
    "espeak_available",
    "synthesize",
    "voice_variants",
    "ENGLISH_VOICES",
    "OTHER_LANGUAGES",
    "VARIANTS",
]

# -- constants from speak_lib.h ------------------------------------------------

AUDIO_OUTPUT_SYNCHRONOUS = 2
espeakINITIALIZE_PHONEME_EVENTS = 0x0001
espeakINITIALIZE_DONT_EXIT = 0x8000
POS_CHARACTER = 1
espeakCHARS_UTF8 = 1
espeakRATE, espeakVOLUME, espeakPITCH, espeakRANGE = 1, 2, 3, 4

EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_SENTENCE = 2
EVENT_END = 5
EVENT_MSG_TERMINATED = 6
EVENT_PHONEME = 7
EVENT_SAMPLERATE = 8

EE_OK = 0

#: English voices of a stock espeak-ng install (language codes).
ENGLISH_VOICES = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)
#: Other languages the corpus uses when installed.
OTHER_LANGUAGES = ("de", "fr-fr", "es", "it", "ru", "cmn", "ja", "ko", "pt", "nl")
#: Timbre variants (``espeak-ng-data/voices/!v``), appended as ``voice+variant``.
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5")


class EspeakUnavailableError(TellerError, RuntimeError):
    """libespeak-ng is not installed or could not be initialised."""


class _Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    # x86-64 / aarch64 layout: six 4-byte ints (24 bytes), user_data at 24, the union at 32; 40 bytes.
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # priority byte + name pairs: read by hand
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Utterance:
    """Synthesised speech.

    Attributes:
        pcm: (N,) float32 samples in [-1, 1].
        sample_rate: Hz (eSpeak's native 22050).
        phonemes: ``(start_s, end_s, symbol)`` per phoneme in time order, eSpeak
            mnemonics (``_`` = pause); contiguous and covering ``[0, N / sample_rate]``.
        text, voice: what was spoken and by which voice.
    """

    pcm: np.ndarray
    sample_rate: int
    phonemes: list[tuple[float, float, str]] = field(default_factory=list)
    text: str = ""
    voice: str = ""

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.sample_rate


class _Engine:
    """The process-wide libespeak-ng instance (global state behind one lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lib: ctypes.CDLL | None = None
        self.sample_rate = 0
        self.error: str | None = None
        self._samples: list[np.ndarray] = []
        self._events: list[tuple[int, int, str]] = []
        self._callback = _CALLBACK(self._on_synth)  # kept alive for the life of the process
        self._voice: str | None = None
        self._used = False  # whether this process has synthesised (its engine state is no longer pristine)
        self._table: dict[str, str] | None = None

    # Runs inside espeak_Synth on the calling thread (synchronous mode).
    def _on_synth(self, wav, numsamples, events) -> int:  # noqa: ANN001 - ctypes pointers
        if wav and numsamples > 0:
            self._samples.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        if events:
            i = 0
            while True:
                ev = events[i]
                if ev.type == EVENT_LIST_TERMINATED:
                    break
                if ev.type == EVENT_PHONEME:
                    raw = bytes(ev.id.string)  # char[8], not always zero-terminated
                    name = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
                    self._events.append((EVENT_PHONEME, ev.audio_position, name))
                elif ev.type in (EVENT_WORD, EVENT_SENTENCE, EVENT_END, EVENT_MSG_TERMINATED):
                    self._events.append((ev.type, ev.audio_position, ""))
                i += 1
        return 0

    def load(self) -> ctypes.CDLL:
        if self.lib is not None:
            return self.lib
        if self.error is not None:
            raise EspeakUnavailableError(self.error)
        names = [n for n in (ctypes.util.find_library("espeak-ng"), "libespeak-ng.so.1", "libespeak-ng.so") if n]
        lib = None
        for name in names:
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            self.error = (
                "libespeak-ng is not installed (tried " + ", ".join(names) + "). The synthetic speech corpus "
                "needs it: run `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS)."
            )
            raise EspeakUnavailableError(self.error)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        # DONT_EXIT: a missing data directory must not kill the Python process.
        sr = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 200, None, espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_DONT_EXIT
        )
        if sr <= 0:
            self.error = (
                "libespeak-ng was found but failed to initialise (is espeak-ng-data installed?); "
                "run `apt-get install espeak-ng`."
            )
            raise EspeakUnavailableError(self.error)
        lib.espeak_SetSynthCallback(self._callback)
        self.lib, self.sample_rate = lib, sr
        return lib

    def voices(self) -> list[str]:
        return sorted(self.voice_table())

    def voice_table(self) -> dict[str, str]:
        """Language code -> voice file identifier (the first, most preferred, voice for it)."""
        if self._table is not None:
            return self._table
        lib = self.load()
        out: dict[str, str] = {}
        arr = lib.espeak_ListVoices(None)
        i = 0
        while arr[i]:
            v = arr[i].contents
            # languages: repeated (priority byte, zero-terminated name), ended by an empty name.
            # The list ends with a zero priority byte.
            p = v.languages
            while p and ctypes.string_at(p, 1) != b"\0":
                name = ctypes.string_at(p + 1)
                if not name:
                    break
                if v.identifier:
                    out.setdefault(name.decode("utf-8", "replace").lower(), v.identifier.decode("utf-8", "replace"))
                p += 2 + len(name)
            i += 1
        self._table = out
        return out

    def set_voice(self, voice: str) -> None:
        """Select ``voice`` (``name[+variant]``); ``name`` may be a voice file name or a language code.

        ``espeak_SetVoiceByName`` matches voice *file* names only ("en-gb" is
        the file ``gmw/en``), so on failure the language code is looked up in
        the voice list and the file identifier is used instead.
        """
        if voice == self._voice:
            return
        lib = self.load()
        if lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
            base, _, variant = voice.partition("+")
            ident = self.voice_table().get(base.lower())
            if ident is None or lib.espeak_SetVoiceByName(
                (ident + ("+" + variant if variant else "")).encode()
            ) != EE_OK:
                self._voice = None
                raise ValueError(f"espeak-ng has no voice {voice!r}; see available_voices() and VARIANTS")
        self._voice = voice

    def synth(self, text: str, voice: str, rate: int, pitch: int, range_: int, fresh: bool) -> Utterance:
        self.load()
        if fresh and hasattr(os, "fork"):
            return self._synth_forked(text, voice, rate, pitch, range_)
        return self._synth_here(text, voice, rate, pitch, range_)

    def _synth_forked(self, text: str, voice: str, rate: int, pitch: int, range_: int) -> Utterance:
        """Synthesise in a forked child, so eSpeak always starts from this process's pristine state.

        eSpeak's wave generator keeps state from one message to the next
        (pitch flutter phase, noise generator, ...), so the same text spoken
        twice in one process differs by a few samples and the phoneme times by
        a millisecond or so. This process never synthesises; each call forks
        (copy-on-write, about a millisecond) and the child, which inherits the
        freshly initialised engine, speaks and pipes the result back.
        """
        if self._used:
            raise RuntimeError("espeak-ng has synthesised in this process; fresh-state synthesis is not possible")
        self.voice_table()  # resolve the voice list once here, inherited by every child
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: speak, send, exit without running any Python cleanup
            code = 0
            try:
                os.close(read_fd)
                try:
                    payload = pickle.dumps(("ok", self._synth_here(text, voice, rate, pitch, range_)))
                except Exception as exc:  # noqa: BLE001 - sent to the parent
                    payload = pickle.dumps(("error", (type(exc).__name__, str(exc))))
                with os.fdopen(write_fd, "wb") as f:
                    f.write(payload)
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            raise RuntimeError(f"espeak-ng synthesis child exited with status {status} and no result")
        kind, value = pickle.loads(data)
        if kind == "error":
            name, message = value
            raise (ValueError if name == "ValueError" else RuntimeError)(message)
        return value

    def _synth_here(self, text: str, voice: str, rate: int, pitch: int, range_: int) -> Utterance:
        lib = self.load()
        self._used = True
        self.set_voice(voice)
        for param, value in ((espeakRATE, rate), (espeakPITCH, pitch), (espeakRANGE, range_), (espeakVOLUME, 100)):
            lib.espeak_SetParameter(param, int(value), 0)
        self._samples, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        err = lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, espeakCHARS_UTF8, None, None)
        if err != EE_OK:
            raise RuntimeError(f"espeak_Synth failed with error {err}")
        lib.espeak_Synchronize()
        pcm16 = np.concatenate(self._samples) if self._samples else np.zeros(0, np.int16)
        events, self._samples, self._events = self._events, [], []
        pcm = pcm16.astype(np.float32) / 32768.0
        return Utterance(pcm, self.sample_rate, _phoneme_intervals(events, len(pcm) / self.sample_rate), text, voice)


def _phoneme_intervals(events: list[tuple[int, int, str]], duration: float) -> list[tuple[float, float, str]]:
    """Contiguous ``(start, end, symbol)`` intervals over ``[0, duration]`` from raw events."""
    starts: list[tuple[float, str]] = []
    for kind, pos_ms, name in events:
        if kind != EVENT_PHONEME or not name or name.startswith("("):
            continue  # "(en)", "(cmn)": language-switch markers, not sounds
        t = min(max(pos_ms / 1000.0, 0.0), duration)
        if starts and t < starts[-1][0]:  # never go back in time
            t = starts[-1][0]
        starts.append((t, name))
    out: list[tuple[float, float, str]] = []
    if not starts or starts[0][0] > 0.0:
        first = starts[0][0] if starts else duration
        out.append((0.0, first, "_"))
    for i, (t, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else duration
        out.append((t, end, name))
    # Drop zero-length events (boundary markers), merge adjacent pauses.
    merged: list[tuple[float, float, str]] = []
    for s, e, name in out:
        if e - s <= 1e-6:
            continue
        if merged and name.startswith("_") and merged[-1][2].startswith("_") and abs(merged[-1][1] - s) < 1e-9:
            merged[-1] = (merged[-1][0], e, "_")
            continue
        merged.append((s, e, "_" if name.startswith("_") else name))
    if not merged:
        merged = [(0.0, duration, "_")]
    # Ensure exact coverage.
    merged[0] = (0.0, merged[0][1], merged[0][2])
    merged[-1] = (merged[-1][0], duration, merged[-1][2])
    return merged


_ENGINE = _Engine()


def espeak_available() -> bool:
    """Whether libespeak-ng can be loaded and initialised."""
    try:
        with _ENGINE.lock:
            _ENGINE.load()
        return True
    except EspeakUnavailableError:
        return False


def available_voices() -> list[str]:
    """Language codes of the installed espeak-ng voices (e.g. ``"en-us"``, ``"de"``), sorted.

    Raises:
        EspeakUnavailableError: libespeak-ng is missing (install ``espeak-ng``).
    """
    with _ENGINE.lock:
        return _ENGINE.voices()


def voice_variants() -> list[str]:
    """Variant suffixes usable as ``voice + "+" + variant`` (male ``m*`` and female ``f*``)."""
    return list(VARIANTS)


def synthesize(
    text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50, range_: int = 50, fresh: bool = True
) -> Utterance:
    """Speak ``text`` with espeak-ng and return the audio with per-phoneme timings.

    Args:
        text: UTF-8 text (plain text, no SSML).
        voice: an espeak-ng voice name or language code, optionally with a
            variant, e.g. ``"en-us"``, ``"en-gb+f3"``, ``"de+m2"``.
        rate: words per minute (espeak accepts about 80-450).
        pitch: base pitch 0-100 (50 = the voice's normal).
        range_: pitch range 0-100 (0 = monotone, 50 = normal).
        fresh: synthesise from eSpeak's freshly initialised state (in a forked
            child; POSIX only), so the same arguments always give the same
            samples. eSpeak carries wave-generator state between messages,
            so with ``fresh=False`` (in-process, slightly faster) a repeated
            call differs by a few samples. Once a ``fresh=False`` call has
            run, fresh calls are impossible in this process (RuntimeError).

    Returns:
        :class:`Utterance` with float32 PCM at eSpeak's native rate (22050 Hz)
        and contiguous phoneme intervals covering the whole audio.

    Raises:
        EspeakUnavailableError: libespeak-ng is not installed; the message says
            ``apt-get install espeak-ng``.
        ValueError: unknown voice.
    """
    with _ENGINE.lock:
        return _ENGINE.synth(text, voice, rate, pitch, range_, fresh)
