"""A synthetic speech-to-motion corpus: eSpeak NG speech with viseme-driven face motion.

Real talking-head clips cover few speakers and little phonetic variety; this
module makes any number of extra (audio, motion) pairs in many voices,
languages and speaking rates:

* **Text** from :func:`sentence`: hand-written English sentences with a high
  phonetic coverage (pangrams and Harvard-style sentences written for this
  project), plus sentences assembled from small per-language phrase lists
  (subject + object + place/time) for English, German, French, Spanish,
  Italian, Portuguese, Dutch, Russian, Mandarin (pinyin with tone digits: the
  Debian espeak-ng ``cmn`` voice reads Hanzi tone digits in English), Japanese
  (kana) and Korean.
* **Speech** from :func:`teller_agent.data.espeak.synthesize` with random voice
  variant (male/female timbres), rate, pitch and pitch range, resampled to
  16 kHz and augmented (:mod:`teller_agent.data.augment`: tempo, pitch shift,
  band limit, reverb, noise, gain).
* **Face motion** in the ``face68`` space, frame-aligned with the *augmented*
  audio (``T = round(duration * 25)``; phoneme times are scaled by the tempo
  change): the mouth from the coarticulated visemes
  (:mod:`teller_agent.data.visemes`), with vowel opening scaled by loudness,
  scaled to the real clips' amplitude and smoothed like their fitted motion
  (:data:`MOUTH_SCALE`); head nods on stressed syllables (peaks of the speech energy envelope); head
  lift and brow raise with pitch (F0); slow sway and breathing
  (:func:`~teller_agent.motion.procedural.sway_track`); blinks from
  :func:`~teller_agent.motion.procedural.blink_track`, more often at pauses.

Public API::

    LANGUAGES, LANGUAGE_VOICES, ENGLISH_SENTENCES
    sentence(language, rng) -> str
    make_clip(text, voice, rng, rate=None, pitch=None, range_=None, augment=True, language=None)
        -> SyntheticClip
    make_corpus(n_clips, seed=0, progress=True, languages=None, augment=True) -> Iterator[SyntheticClip]

Everything is seeded: the same text, voice and generator state give the same
clip (eSpeak itself is deterministic).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
from scipy.signal import find_peaks

from ..config import FPS
from ..media.audio import resample
from ..motion.articulation import expression
from ..motion.latent import MotionLatent
from ..motion.procedural import blink_track, sway_track
from ..motion.space import FACE68
from .augment import AugmentConfig, augment as augment_audio
from .espeak import VARIANTS, available_voices, synthesize
from .visemes import articulation_tracks, tracks_to_expression

__all__ = [
    "ENGLISH_SENTENCES",
    "LANGUAGES",
    "LANGUAGE_VOICES",
    "SAMPLE_RATE",
    "SyntheticClip",
    "make_clip",
    "make_corpus",
    "sentence",
]

#: Sample rate of the corpus audio (the speech front end's rate).
SAMPLE_RATE = 16000

# -- text --------------------------------------------------------------------

#: Hand-written English sentences covering the English phoneme inventory in
#: many contexts (bilabial, labiodental and dental runs, affricates, clusters,
#: diphthongs, rounded vowels), in the style of pangrams and Harvard sentences.
ENGLISH_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs.",
    "How vexingly quick daft zebras jump!",
    "Sphinx of black quartz, judge my vow.",
    "Bright vixens jump; dozy fowl quack.",
    "A wizard's job is to vex chumps quickly in fog.",
    "The thick fog rolled over the harbour before dawn.",
    "Maybe the bumblebee prefers purple blossoms by the pond.",
    "Five brave foxes waved from the valley floor.",
    "She sells sea shells beside the chilly shore.",
    "Judge Jeffrey measured the beige garage with a ruler.",
    "Each child chose a cheap watch at the church fair.",
    "Those three thin thieves thought the theatre was theirs.",
    "Will you pour the warm soup into the blue bowl?",
    "The old rowing boat drifted slowly toward the rocks.",
    "Eight grey geese flew away over the quiet lake.",
    "Put the box of books by the papers on my desk.",
    "Few people knew how the huge news would move them.",
    "Her voice was soft, but her words were firm.",
    "A pleasant breeze moved through the open window.",
    "We need more milk, bread, and a pound of butter.",
    "The yellow yacht is moored near the youth hostel.",
    "Oh, I'm so pleased you came to visit us today!",
    "Why would anyone buy nine hundred pairs of boots?",
    "Red wine and blue cheese make a fine evening meal.",
    "The map shows a path up the mountain, past the lake.",
    "Please remember to lock the back door when you leave.",
    "Good judgement comes from experience, and experience from bad judgement.",
    "Vivid photographs of whales were found in the archive.",
    "My brother moved to Boston in February.",
    "Thank you, that was a very thoughtful gift.",
    "The pilot spoke calmly while the plane bumped through the clouds.",
    "Could you explain that once more, but a bit more slowly?",
    "Bubbles burst when the puppy pawed at the soapy bath.",
    "Measure twice, cut once, and never rush the final step.",
    "Autumn leaves fell softly on the wet pavement.",
    "The museum opens at nine, and the tours begin at ten.",
    "Mum made a marvellous plum pie for my birthday.",
    "The shy giraffe chewed the juicy leaves with pleasure.",
    "Whoever whistles while working will finish faster.",
    "Is it true that the zoo has a new baby hippo?",
    "Our neighbour's parrot imitates the phone perfectly.",
)

_EN = {
    "subject": ["My sister", "The old farmer", "Our teacher", "A tired doctor", "Every child", "The new manager",
                "His grandmother", "That young pilot", "Nobody", "The quiet boy", "A famous painter", "My friend Paul"],
    "verb": ["bought", "found", "painted", "borrowed", "carried", "forgot", "ordered", "opened", "fixed",
             "photographed", "moved", "shared"],
    "object": ["a bright red umbrella", "the heavy wooden box", "some fresh oranges", "a pair of blue shoes",
               "the broken music player", "three warm loaves of bread", "an old map of the city",
               "a bottle of sparkling water", "the yellow bicycle", "two thick books about birds"],
    "place": ["at the market", "near the harbour", "in the garden", "behind the school", "on the busy bridge",
              "inside the museum", "by the river", "at the train station"],
    "time": ["this morning", "last Thursday", "before lunch", "after midnight", "every weekend", "in the spring",
             "at about half past seven", "on the fourth of July"],
    "opener": ["", "", "", "Yesterday, ", "I think ", "Honestly, ", "Apparently, ", "Oh, "],
}

#: Phrase lists per language: each sentence is opener + subject + verb + object + place (+ time),
#: chosen so that any combination is grammatical.
_PHRASES: dict[str, dict[str, list[str]]] = {
    "de": {
        "subject": ["Meine Schwester", "Der alte Bauer", "Unser Lehrer", "Ein müder Arzt", "Jedes Kind",
                    "Die neue Chefin", "Mein Freund Peter", "Die junge Pilotin"],
        "verb": ["kaufte", "fand", "malte", "trug", "vergaß", "öffnete", "reparierte", "fotografierte"],
        "object": ["einen roten Regenschirm", "die schwere Holzkiste", "frische Orangen", "ein Paar blaue Schuhe",
                   "das kaputte Fahrrad", "drei warme Brote", "eine alte Karte der Stadt"],
        "place": ["auf dem Markt", "am Hafen", "im Garten", "hinter der Schule", "auf der Brücke", "am Bahnhof"],
        "time": ["heute Morgen", "letzten Donnerstag", "vor dem Mittagessen", "nach Mitternacht", "im Frühling"],
        "opener": ["", "", "Ich glaube, ", "Also, ", "Ach, "],
    },
    "fr": {
        "subject": ["Ma sœur", "Le vieux fermier", "Notre professeur", "Un médecin fatigué", "Chaque enfant",
                    "La nouvelle directrice", "Mon ami Pierre", "La jeune pilote"],
        "verb": ["a acheté", "a trouvé", "a peint", "a porté", "a oublié", "a ouvert", "a réparé", "a photographié"],
        "object": ["un parapluie rouge", "la lourde boîte en bois", "des oranges fraîches", "une paire de chaussures bleues",
                   "le vélo cassé", "trois pains chauds", "une vieille carte de la ville"],
        "place": ["au marché", "près du port", "dans le jardin", "derrière l'école", "sur le pont", "à la gare"],
        "time": ["ce matin", "jeudi dernier", "avant le déjeuner", "après minuit", "au printemps"],
        "opener": ["", "", "Hier, ", "Je crois que ", "Oh, "],
    },
    "es": {
        "subject": ["Mi hermana", "El viejo granjero", "Nuestro profesor", "Un médico cansado", "Cada niño",
                    "La nueva directora", "Mi amigo Pablo", "La joven piloto"],
        "verb": ["compró", "encontró", "pintó", "llevó", "olvidó", "abrió", "arregló", "fotografió"],
        "object": ["un paraguas rojo", "la pesada caja de madera", "naranjas frescas", "un par de zapatos azules",
                   "la bicicleta rota", "tres panes calientes", "un viejo mapa de la ciudad"],
        "place": ["en el mercado", "cerca del puerto", "en el jardín", "detrás de la escuela", "en el puente",
                  "en la estación"],
        "time": ["esta mañana", "el jueves pasado", "antes del almuerzo", "después de medianoche", "en primavera"],
        "opener": ["", "", "Ayer ", "Creo que ", "¡Vaya! "],
    },
    "it": {
        "subject": ["Mia sorella", "Il vecchio contadino", "Il nostro maestro", "Un medico stanco", "Ogni bambino",
                    "La nuova direttrice", "Il mio amico Paolo", "La giovane pilota"],
        "verb": ["ha comprato", "ha trovato", "ha dipinto", "ha portato", "ha dimenticato", "ha aperto",
                 "ha riparato", "ha fotografato"],
        "object": ["un ombrello rosso", "la pesante cassa di legno", "arance fresche", "un paio di scarpe blu",
                   "la bicicletta rotta", "tre pagnotte calde", "una vecchia mappa della città"],
        "place": ["al mercato", "vicino al porto", "in giardino", "dietro la scuola", "sul ponte", "alla stazione"],
        "time": ["stamattina", "giovedì scorso", "prima di pranzo", "dopo mezzanotte", "in primavera"],
        "opener": ["", "", "Ieri ", "Credo che ", "Beh, "],
    },
    "pt": {
        "subject": ["A minha irmã", "O velho agricultor", "O nosso professor", "Um médico cansado", "Cada criança",
                    "A nova diretora", "O meu amigo Paulo", "A jovem piloto"],
        "verb": ["comprou", "encontrou", "pintou", "levou", "esqueceu", "abriu", "consertou", "fotografou"],
        "object": ["um guarda-chuva vermelho", "a pesada caixa de madeira", "laranjas frescas",
                   "um par de sapatos azuis", "a bicicleta partida", "três pães quentes", "um velho mapa da cidade"],
        "place": ["no mercado", "perto do porto", "no jardim", "atrás da escola", "na ponte", "na estação"],
        "time": ["esta manhã", "na quinta passada", "antes do almoço", "depois da meia-noite", "na primavera"],
        "opener": ["", "", "Ontem ", "Acho que ", "Olha, "],
    },
    "nl": {
        "subject": ["Mijn zus", "De oude boer", "Onze leraar", "Een moeie dokter", "Elk kind", "De nieuwe directeur",
                    "Mijn vriend Pieter", "De jonge piloot"],
        "verb": ["kocht", "vond", "schilderde", "droeg", "vergat", "opende", "repareerde", "fotografeerde"],
        "object": ["een rode paraplu", "de zware houten kist", "verse sinaasappels", "een paar blauwe schoenen",
                   "de kapotte fiets", "drie warme broden", "een oude kaart van de stad"],
        "place": ["op de markt", "bij de haven", "in de tuin", "achter de school", "op de brug", "op het station"],
        "time": ["vanochtend", "vorige donderdag", "voor de lunch", "na middernacht", "in de lente"],
        "opener": ["", "", "Gisteren ", "Ik denk dat ", "Nou, "],
    },
    "ru": {
        "subject": ["Моя сестра", "Старый фермер", "Наш учитель", "Усталый врач", "Каждый ребёнок",
                    "Новая директор", "Мой друг Павел", "Молодой пилот"],
        "verb": ["покупает", "находит", "рисует", "приносит", "забывает", "открывает", "чинит", "фотографирует"],
        "object": ["красный зонтик", "тяжёлый деревянный ящик", "свежие апельсины", "пару синих ботинок",
                   "сломанный велосипед", "три тёплых батона", "старую карту города"],
        "place": ["на рынке", "возле порта", "в саду", "за школой", "на мосту", "на вокзале"],
        "time": ["сегодня утром", "каждый четверг", "перед обедом", "после полуночи", "весной"],
        "opener": ["", "", "Иногда ", "Кажется, ", "Ну, "],
    },
    "cmn": {
        "subject": ["wo3 de jie3jie", "na4 ge4 lao3 nong2min2", "wo3men de lao3shi1", "yi2 ge4 lei4 de yi1sheng1",
                    "mei3 ge4 hai2zi", "xin1 lai2 de jing1li3", "wo3 de peng2you3 xiao3 ming2"],
        "verb": ["mai3 le", "zhao3 dao4 le", "hua4 le", "na2 zou3 le", "wang4 le", "da3 kai1 le", "xiu1 hao3 le"],
        "object": ["yi4 ba3 hong2 san3", "na4 ge4 zhong4 mu4 xiang1", "xin1xian1 de ju2zi", "yi4 shuang1 lan2 xie2",
                   "na4 liang4 huai4 zi4xing2che1", "san1 ge4 re4 mian4bao1", "yi4 zhang1 jiu4 di4tu2"],
        "place": ["zai4 shi4chang3", "zai4 gang3kou3 fu4jin4", "zai4 hua1yuan2 li3", "zai4 xue2xiao4 hou4mian4",
                  "zai4 qiao2 shang4", "zai4 huo3che1zhan4"],
        "time": ["jin1tian1 zao3shang4", "shang4 ge4 xing1qi1si4", "wu3fan4 yi3qian2", "ban4ye4", "chun1tian1"],
        "opener": ["", "", "zuo2tian1 ", "wo3 jue2de ", "ai1, "],
    },
    "ja": {
        "subject": ["わたしの あねは", "としよりの のうふは", "わたしたちの せんせいは", "つかれた いしゃは",
                    "こどもたちは", "あたらしい ぶちょうは", "ともだちの けんじは"],
        "object": ["あかい かさを", "おもい きの はこを", "あたらしい オレンジを", "あおい くつを",
                   "こわれた じてんしゃを", "あたたかい パンを", "ふるい ちずを"],
        "place": ["いちばで", "みなとの ちかくで", "にわで", "がっこうの うしろで", "はしの うえで", "えきで"],
        "time": ["けさ", "せんしゅうの もくようびに", "ひるごはんの まえに", "よなかに", "はるに"],
        "verb": ["かいました", "みつけました", "かきました", "もってきました", "わすれました", "なおしました"],
        "opener": ["", "", "きのう ", "ええと、 ", "あのう、 "],
    },
    "ko": {
        "subject": ["제 언니는", "늙은 농부는", "우리 선생님은", "피곤한 의사는", "아이들은", "새 부장님은",
                    "제 친구 민수는"],
        "object": ["빨간 우산을", "무거운 나무 상자를", "신선한 오렌지를", "파란 신발을", "고장 난 자전거를",
                   "따뜻한 빵을", "오래된 지도를"],
        "place": ["시장에서", "항구 근처에서", "정원에서", "학교 뒤에서", "다리 위에서", "기차역에서"],
        "time": ["오늘 아침에", "지난 목요일에", "점심 전에", "한밤중에", "봄에"],
        "verb": ["샀어요", "찾았어요", "그렸어요", "가져왔어요", "잊어버렸어요", "고쳤어요"],
        "opener": ["", "", "어제 ", "음, ", "아, "],
    },
}
_PHRASES["en"] = _EN
_VERB_FINAL = {"ja", "ko"}

#: Languages :func:`sentence` and :func:`make_corpus` know.
LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "ru", "cmn", "ja", "ko")

#: eSpeak voices per language (the first installed one is used when a voice is missing).
LANGUAGE_VOICES: dict[str, tuple[str, ...]] = {
    "en": ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc"),
    "de": ("de",),
    "fr": ("fr", "fr-be", "fr-ch"),
    "es": ("es", "es-419"),
    "it": ("it",),
    "pt": ("pt", "pt-br"),
    "nl": ("nl",),
    "ru": ("ru",),
    "cmn": ("cmn-latn-pinyin",),
    "ja": ("ja",),
    "ko": ("ko",),
}

# Corpus schedule: English every other clip, the others in turn.
_SCHEDULE = tuple(x for other in LANGUAGES[1:] for x in ("en", other))
_RATES = (120, 150, 175, 200, 230, 270)


def sentence(language: str, rng: np.random.Generator) -> str:
    """A random sentence in ``language`` (one of :data:`LANGUAGES`).

    English: half the time a hand-written sentence from
    :data:`ENGLISH_SENTENCES`, else a template sentence. Other languages:
    template sentences; sometimes a question or an exclamation, sometimes
    two sentences joined.
    """
    if language not in _PHRASES:
        raise ValueError(f"no sentences for language {language!r}; known: {', '.join(LANGUAGES)}")
    if language == "en" and rng.uniform() < 0.5:
        text = str(rng.choice(ENGLISH_SENTENCES))
    else:
        ph = _PHRASES[language]
        pick = {k: str(rng.choice(v)) for k, v in ph.items()}
        extra = pick["time"] if rng.uniform() < 0.5 else ""
        if language in _VERB_FINAL:
            parts = [pick["subject"], extra, pick["place"], pick["object"], pick["verb"]]
        else:
            parts = [pick["subject"], pick["verb"], pick["object"], pick["place"], extra]
        body = " ".join(p for p in parts if p)
        opener = pick["opener"]
        text = opener + (body[0].lower() + body[1:] if opener else body)
        end = rng.choice([".", ".", ".", "?", "!"])
        text = text + ("。" if language == "ja" and end == "." else end)
    if rng.uniform() < 0.15:
        text = text + " " + sentence(language, rng)
    return text


# -- motion -----------------------------------------------------------------


@dataclass
class SyntheticClip:
    """One synthetic training pair.

    Attributes:
        motion: ``face68`` :class:`MotionLatent` of ``T = round(duration * FPS)`` frames.
        audio: (N,) float32 augmented speech at :attr:`sample_rate`.
        sample_rate: 16000.
        phonemes: ``(start_s, end_s, symbol)`` in the time of :attr:`audio`.
        text, voice, language: what was said, by which eSpeak voice.
        params: synthesis and augmentation settings, for bookkeeping.
    """

    motion: MotionLatent
    audio: np.ndarray
    sample_rate: int
    phonemes: list[tuple[float, float, str]]
    text: str
    voice: str
    language: str = ""
    params: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


def _frame_energy_db(pcm: np.ndarray, sr: int, num_frames: int) -> np.ndarray:
    """(T,) RMS level in dB of each video frame's audio."""
    hop = sr / FPS
    out = np.full(num_frames, -100.0)
    for i in range(num_frames):
        seg = pcm[int(i * hop): int((i + 1) * hop)]
        if len(seg):
            out[i] = 10.0 * np.log10(float(np.mean(seg.astype(np.float64) ** 2)) + 1e-10)
    return out


def _frame_f0(pcm: np.ndarray, sr: int, num_frames: int, fmin: float = 60.0, fmax: float = 450.0) -> np.ndarray:
    """(T,) F0 in Hz per video frame by normalised autocorrelation (NaN where unvoiced)."""
    win = int(0.05 * sr)
    lo, hi = int(sr / fmax), int(sr / fmin)
    out = np.full(num_frames, np.nan)
    padded = np.pad(pcm.astype(np.float64), (win, win))
    window = np.hanning(win)
    nfft = 1 << (2 * win - 1).bit_length()
    for i in range(num_frames):
        c = int((i + 0.5) * sr / FPS) + win
        seg = padded[c - win // 2: c - win // 2 + win] * window
        e = float(np.dot(seg, seg))
        if e < 1e-6:
            continue
        spec = np.fft.rfft(seg, nfft)
        ac = np.fft.irfft(np.abs(spec) ** 2, nfft)[: hi + 1]
        ac /= ac[0]
        lag = lo + int(np.argmax(ac[lo: hi + 1]))
        if ac[lag] > 0.45:
            out[i] = sr / lag
    return out


def _smooth(x: np.ndarray, frames: int) -> np.ndarray:
    if len(x) == 0 or frames <= 1:
        return x
    k = np.hanning(frames + 2)[1:-1]
    k /= k.sum()
    return np.convolve(np.pad(x, (frames, frames), mode="edge"), k, mode="same")[frames:-frames]


def _phoneme_emphasis(clean: np.ndarray, sr: int, phonemes: Sequence[tuple[float, float, str]]) -> np.ndarray:
    """Per-phoneme jaw factor from loudness: stressed (louder) vowels open wider."""
    levels = np.array([
        10 * np.log10(float(np.mean(clean[int(s * sr): max(int(e * sr), int(s * sr) + 1)] ** 2)) + 1e-10)
        for s, e, _ in phonemes
    ])
    speech = [lv for lv, (_, _, sym) in zip(levels, phonemes) if not sym.startswith("_")]
    ref = float(np.median(speech)) if speech else 0.0
    return np.clip(1.0 + (levels - ref) / 20.0, 0.7, 1.25)


def _head_motion(clean: np.ndarray, sr: int, num_frames: int, rng: np.random.Generator,
                 phonemes: Sequence[tuple[float, float, str]]) -> dict[str, np.ndarray]:
    """Pitch/yaw/roll/translation/scale and brow track from the clean speech."""
    n = num_frames
    energy = _frame_energy_db(clean, sr, n)
    speaking = energy > (energy.max() - 35.0)
    env = _smooth(np.clip(energy - (energy.max() - 35.0), 0, None) / 35.0, 3)
    # Nods: a dip of the head on the loudest syllables (prominent energy peaks), ~0.35 s each.
    peaks, props = find_peaks(env, prominence=0.12, distance=int(0.25 * FPS))
    nod = np.zeros(n)
    nod_gain = rng.uniform(1.0, 3.0)
    shape = np.hanning(int(0.36 * FPS) + 2)[1:-1]
    for p, prom in zip(peaks, props["prominences"]):
        if rng.uniform() < 0.35:
            continue  # not every stressed syllable gets a nod
        amp = nod_gain * min(1.0, prom / 0.4) * rng.uniform(0.6, 1.2)
        a = p - len(shape) // 2 + int(rng.integers(-1, 2))
        for j, w in enumerate(shape):
            if 0 <= a + j < n:
                nod[a + j] += amp * w
    # Pitch (F0): the head lifts a little and the brows rise with high pitch.
    f0 = _frame_f0(clean, sr, n)
    voiced = ~np.isnan(f0)
    if voiced.sum() >= 3:
        logf = np.log(f0[voiced])
        z = np.interp(np.arange(n), np.flatnonzero(voiced), (logf - logf.mean()) / (logf.std() + 1e-6))
        z = _smooth(z, 7) * speaking
    else:
        z = np.zeros(n)
    brow = np.clip(z, 0, None) * rng.uniform(0.05, 0.3)
    t = np.arange(n) / FPS
    trans = np.zeros((n, 3))
    trans[:, 0] = sway_track(n, rng, 0.006)
    trans[:, 1] = 0.004 * np.sin(2 * np.pi * rng.uniform(0.2, 0.3) * t + rng.uniform(0, 2 * np.pi)) \
        + sway_track(n, rng, 0.003) + 0.002 * nod / max(nod_gain, 1e-6)
    style = rng.uniform(0.5, 1.5)  # some speakers move their head more
    return {
        "pitch": style * (sway_track(n, rng, 1.5) + 0.6 * z) - nod,
        "yaw": style * (sway_track(n, rng, 3.0) + 0.8 * _smooth(rng.standard_normal(n), 15) * env),
        "roll": style * (sway_track(n, rng, 1.2) + 0.4 * z),
        "t": trans,
        "scale": 1.0 + sway_track(n, rng, 0.006),
        "brow": brow,
        "energy_env": env,
    }


def _blinks(num_frames: int, rng: np.random.Generator, phonemes: Sequence[tuple[float, float, str]]) -> np.ndarray:
    """Blink track: a Poisson process plus, sometimes, a blink at the start of a long pause."""
    blink = blink_track(num_frames, rng, rate_per_min=rng.uniform(10, 26))
    profile = np.array([0.35, 0.8, 1.0, 1.0, 0.7, 0.4, 0.15], np.float32)
    for s, e, sym in phonemes:
        if sym.startswith("_") and e - s > 0.25 and s > 0.3 and rng.uniform() < 0.4:
            a = int(s * FPS)
            if blink[max(0, a - 12): a + 12].max(initial=0.0) > 0:
                continue  # a blink happened just now
            end = min(a + len(profile), num_frames)
            blink[a:end] = np.maximum(blink[a:end], profile[: end - a])
    return blink


def make_clip(
    text: str,
    voice: str,
    rng: np.random.Generator,
    rate: int | None = None,
    pitch: int | None = None,
    range_: int | None = None,
    augment: bool | AugmentConfig = True,
    language: str = "",
) -> SyntheticClip:
    """Synthesise ``text`` in ``voice`` and build frame-aligned ``face68`` motion for it.

    Args:
        text: what to say.
        voice: eSpeak voice, e.g. ``"en-us+f3"`` (see :mod:`teller_agent.data.espeak`).
        rng: every random choice (unset synthesis settings, augmentation,
            motion style, blinks, sway) comes from it.
        rate, pitch, range_: eSpeak settings; None draws them (rate 130-260
            wpm, pitch 25-75, range 20-90).
        augment: True for the default :class:`AugmentConfig`, a config, or
            False for the clean 16 kHz speech.
        language: recorded in the clip.

    Returns:
        :class:`SyntheticClip` whose motion has ``round(len(audio) / 16000 * 25)`` frames.
    """
    rate = int(rng.integers(130, 261)) if rate is None else int(rate)
    pitch = int(rng.integers(25, 76)) if pitch is None else int(pitch)
    range_ = int(rng.integers(20, 91)) if range_ is None else int(range_)
    utt = synthesize(text, voice, rate=rate, pitch=pitch, range_=range_)
    pcm = resample(utt.pcm, utt.sample_rate, SAMPLE_RATE)
    params: dict = {"rate": rate, "pitch": pitch, "range": range_}
    if augment is not False and len(pcm):
        aug = augment_audio(pcm, SAMPLE_RATE, rng, augment if isinstance(augment, AugmentConfig) else None)
        audio, clean, scale = aug.pcm, aug.clean, aug.time_scale
        params.update(aug.params)
    else:
        audio, clean, scale = pcm, pcm, 1.0
    duration = len(audio) / SAMPLE_RATE
    phonemes = [(min(s * scale, duration), min(e * scale, duration), sym) for s, e, sym in utt.phonemes]
    if phonemes:
        s, _, sym = phonemes[-1]
        phonemes[-1] = (s, duration, sym)
    num_frames = int(round(duration * FPS))

    # Mouth: coarticulated visemes, vowels scaled by loudness, per-speaker articulation style.
    tracks = articulation_tracks(phonemes, num_frames, emphasis=_phoneme_emphasis(clean, SAMPLE_RATE, phonemes))
    style = {"jaw_open": rng.uniform(0.75, 1.25), "lip_round": rng.uniform(0.7, 1.2),
             "lip_spread": rng.uniform(0.6, 1.3)}
    for k, v in style.items():
        tracks[k] = tracks[k] * v
    exp = tracks_to_expression(tracks) if num_frames else np.zeros((0, 68, 3), np.float32)
    exp = _like_real_mouth(exp)
    head = _head_motion(clean, SAMPLE_RATE, num_frames, rng, phonemes)
    blink = _blinks(num_frames, rng, phonemes)
    if num_frames:
        exp = exp + expression(blink_left=blink, blink_right=blink, brow_raise=head["brow"])
    motion = MotionLatent(exp=exp, pitch=head["pitch"], yaw=head["yaw"], roll=head["roll"], t=head["t"],
                          scale=head["scale"], space=FACE68.name)
    params["style"] = style
    return SyntheticClip(motion, audio.astype(np.float32), SAMPLE_RATE, phonemes, text, voice, language, params)


#: Scale of the viseme mouth motion: eSpeak's visemes opened the mouth about twice as wide as the real
#: training clips (median per-clip std of the mouth opening, MediaPipe lips: 0.087 vs 0.043 IOD).
MOUTH_SCALE = 0.5


def _like_real_mouth(exp: np.ndarray) -> np.ndarray:
    """Viseme mouth deltas scaled by :data:`MOUTH_SCALE` and smoothed in time like the real clips' fitted
    motion (Savitzky-Golay, :data:`~teller_agent.data.extract.EXPRESSION_WINDOW` frames), so that the two
    kinds of training data move the lips alike."""
    from scipy.signal import savgol_filter

    from .extract import EXPRESSION_WINDOW, SMOOTH_ORDER

    exp = exp * MOUTH_SCALE
    if len(exp) >= EXPRESSION_WINDOW:
        exp = savgol_filter(exp, EXPRESSION_WINDOW, SMOOTH_ORDER, axis=0).astype(np.float32)
    return exp


def _installed_voices() -> dict[str, tuple[str, ...]]:
    installed = set(available_voices())
    out = {}
    for lang, voices in LANGUAGE_VOICES.items():
        ok = tuple(v for v in voices if v.lower() in installed)
        if ok:
            out[lang] = ok
    return out


def make_corpus(
    n_clips: int,
    seed: int = 0,
    progress: bool = True,
    languages: Sequence[str] | None = None,
    augment: bool | AugmentConfig = True,
) -> Iterator[SyntheticClip]:
    """Yield ``n_clips`` synthetic clips, cycling languages, voices and speaking rates.

    Clip ``i`` depends only on ``(seed, i)`` (its generator is
    ``default_rng([seed, i])``), so a corpus can be made in parallel chunks
    or resumed. English is every other clip, the other languages take turns;
    each clip gets a random voice of its language, a random timbre variant
    (none, ``+m1..m7`` or ``+f1..f5``), a rate from a cycle of 120-270 wpm with
    jitter, and random pitch and range.

    Args:
        n_clips: how many clips.
        seed: corpus seed.
        progress: show a tqdm bar on stderr.
        languages: restrict to these languages (default: all of
            :data:`LANGUAGES` whose voices are installed).
        augment: as in :func:`make_clip`.
    """
    voices = _installed_voices()
    wanted = [lang for lang in (languages or LANGUAGES) if lang in voices]
    if not wanted:
        raise ValueError(f"none of the languages {list(languages or LANGUAGES)} has an installed espeak-ng voice")
    schedule = [lang for lang in _SCHEDULE if lang in wanted] or wanted
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=n_clips, desc="synthetic clips", unit="clip", file=sys.stderr)
        except ImportError:  # pragma: no cover - tqdm is a dependency of the project's extras
            bar = None
    try:
        for i in range(n_clips):
            rng = np.random.default_rng([seed, i])
            lang = schedule[i % len(schedule)]
            base = str(rng.choice(voices[lang]))
            variant = "" if rng.uniform() < 0.2 else "+" + str(rng.choice(VARIANTS))
            rate = int(_RATES[(i // len(schedule) + i) % len(_RATES)] * rng.uniform(0.9, 1.1))
            text = sentence(lang, rng)
            yield make_clip(text, base + variant, rng, rate=rate, augment=augment, language=lang)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
