"""Quick lip-sync check used during training: Pearson r of mouth opening on held-out clips."""

from __future__ import annotations

import numpy as np

from ..audio.features import SAMPLE_RATE, SAMPLES_PER_FRAME
from ..audio.loudness import loudness_envelope
from ..eval.metrics import best_lag, mouth_opening, pearson, speaker_mean, velocity
from ..fmlg.generator import MotionGenerator
from ..fmlg.tokenizer import features_to_motion, motion_to_features
from .dataset import Clip


def clip_mouth_opening(clip: Clip, features: np.ndarray) -> np.ndarray:
    """(T,) inner-lip gap / inter-ocular distance of ``features`` driven on the clip's own rest face."""
    landmarks = clip.portrait.drive(features_to_motion(features))[..., :2]
    return mouth_opening(landmarks)


def mouth_sync(generator: MotionGenerator, clips: list[Clip], max_seconds: float = 20.0,
               seeds: tuple[int, ...] | None = None) -> dict:
    """Generate motion from each clip's audio alone and correlate mouth opening with the clip's own.

    Args:
        generator: the generator to evaluate (its ``seed`` is changed when ``seeds`` is given).
        clips: held-out clips with audio and true motion.
        max_seconds: only the first seconds of each clip are used.
        seeds: sampling seeds to average each clip's r over (None: the generator's own seed only).
            One sampled take is a noisy estimate; averaging several makes checkpoints comparable.

    Returns ``{"r": mean r, "loudness_r": mean r of the loudness baseline, "best_lag": mean best lag (frames,
    positive = generated late), "std_ratio" / "velocity_ratio": the generated mouth opening's standard deviation
    and mean absolute velocity over the real one's (speaker means), "mean_open": the generated mouth opening's mean
    above the clip's rest face (inter-ocular distances, speaker means), "clips": {id: (r, loudness_r)}}`` (a clip's r is its mean over the seeds, at
    lag 0, its best lag the mean over the seeds of :func:`~teller_agent.eval.metrics.best_lag`; the means are
    over speakers, :func:`~teller_agent.eval.metrics.speaker_mean`).
    """
    from ..motion.latent import MotionLatent

    seeds = (generator.seed,) if seeds is None else tuple(seeds)
    per_clip, frames_of, lag_of, amp, opened = {}, {}, {}, {}, {}
    rest_features = motion_to_features(MotionLatent.neutral(1, 68))
    for clip in clips:
        frames = min(clip.num_frames, int(max_seconds * 25))
        audio = clip.audio[: frames * SAMPLES_PER_FRAME]
        rs, lags, amps, opens = [], [], [], []
        for seed in seeds:
            generator.seed = seed
            motion = generator.generate(audio, SAMPLE_RATE)
            n = min(frames, len(motion))
            true = clip_mouth_opening(clip, clip.features[:n])
            gen = clip_mouth_opening(clip, motion_to_features(motion[:n]))
            rs.append(pearson(gen, true))
            lags.append(best_lag(gen, true))
            amps.append((np.std(gen), np.std(true), velocity(gen), velocity(true)))
            opens.append(np.mean(gen))
        lag_of[clip.id] = float(np.mean(lags))
        amp[clip.id] = np.mean(amps, 0)
        opened[clip.id] = float(np.mean(opens)) - float(clip_mouth_opening(clip, rest_features)[0])
        loud = loudness_envelope(audio, SAMPLE_RATE)[:n]
        per_clip[clip.id] = (float(np.mean(rs)), pearson(loud, true))
        frames_of[clip.id] = n
    speakers = [c.speaker or c.id for c in clips]
    weights = [frames_of[c.id] for c in clips]

    def ratio(i: int) -> float:
        pred, true = (speaker_mean([amp[c.id][j] for c in clips], speakers, weights) for j in (i, i + 1))
        return float(pred / true) if true > 0 else float("nan")

    return {"r": speaker_mean([per_clip[c.id][0] for c in clips], speakers, weights),
            "loudness_r": speaker_mean([per_clip[c.id][1] for c in clips], speakers, weights),
            "best_lag": speaker_mean([lag_of[c.id] for c in clips], speakers, weights),
            "std_ratio": ratio(0), "velocity_ratio": ratio(2),
            "mean_open": speaker_mean([opened[c.id] for c in clips], speakers, weights), "clips": per_clip}


def default_eval_temperatures() -> tuple[float, ...]:
    """The default lip temperature (what ships)."""
    from ..config import DEFAULT_TEMPERATURE_MOUTH

    return (DEFAULT_TEMPERATURE_MOUTH,)


def default_lip_particles() -> int:
    """The default number of lip particles (what ships)."""
    from ..config import DEFAULT_LIP_PARTICLES

    return DEFAULT_LIP_PARTICLES


def _shipped_sampling(ck, lip_readout: float) -> MotionGenerator:
    """A generator of the loaded checkpoint ``ck`` with the shipped lip temperature and particles, its lips blended
    with the lip readout at weight ``lip_readout``."""
    return MotionGenerator(ck, temperature_mouth=default_eval_temperatures()[0], lip_particles=default_lip_particles(),
                           lip_readout=lip_readout)


def evaluate_checkpoint(checkpoint, clips: list[Clip], temperatures: tuple[float, ...] | None = None,
                        seeds: tuple[int, ...] = (0, 1, 2), whisper_dir=None, particles: int | None = None) -> dict:
    """Held-out lip sync of a *saved* checkpoint folder (its float16 weights, as shipped), recorded in its
    ``config.json``: :func:`mouth_sync` averaged over ``seeds`` at each lip temperature in ``temperatures``
    (default :func:`default_eval_temperatures`), with ``particles`` lip particles (default
    :func:`default_lip_particles`).

    Returns (and merges into the checkpoint's ``info``): ``validation_mouth_r`` / ``validation_loudness_r`` /
    ``validation_best_lag`` / ``validation_mouth_std_ratio`` / ``validation_mouth_velocity_ratio`` /
    ``validation_clips`` at ``temperatures[0]``, ``validation_mouth_r_by_temperature`` ``{str(t): r}``,
    ``validation_eval_seeds``, ``validation_eval_temperature_mouth``, ``validation_eval_lip_particles``,
    ``validation_mouth_r_by_particles`` ``{"1": r, str(particles): r}`` at ``temperatures[0]``,
    ``validation_eval_lip_decoding`` (the lips are decoded from the expected mouth codes,
    :class:`MotionGenerator`'s default). The generator's own lips: no lip readout
    (:func:`lip_readout_study` measures the blend).

    Raises:
        CheckpointError: the folder does not hold a loadable checkpoint.
    """
    from ..fmlg.checkpoint import load_checkpoint, save_checkpoint

    temperatures = tuple(temperatures or default_eval_temperatures())
    particles = particles or default_lip_particles()
    ck = load_checkpoint(checkpoint, whisper_dir=whisper_dir)

    def sync(temperature: float, lip_particles: int = particles, lip_mean: bool = True) -> dict:
        gen = MotionGenerator(ck, temperature_mouth=temperature, lip_mean=lip_mean, lip_particles=lip_particles,
                              lip_readout=0.0)  # the generator's own lips (lip_readout_study: the blend)
        return mouth_sync(gen, clips, seeds=seeds)

    by_temp = {t: sync(t) for t in temperatures}
    first = by_temp[temperatures[0]]
    by_particles = {particles: first["r"]}
    if particles != 1:
        by_particles[1] = sync(temperatures[0], lip_particles=1)["r"]
    result = {
        "validation_mouth_r": first["r"],
        "validation_loudness_r": first["loudness_r"],
        "validation_best_lag": round(first["best_lag"], 3),
        "validation_mouth_std_ratio": round(first["std_ratio"], 3),
        "validation_mouth_velocity_ratio": round(first["velocity_ratio"], 3),
        "validation_clips": {k: [round(v[0], 3), round(v[1], 3)] for k, v in first["clips"].items()},
        "validation_mouth_r_by_temperature": {str(t): round(v["r"], 4) for t, v in by_temp.items()},
        "validation_mouth_r_by_particles": {str(p): round(by_particles[p], 4) for p in sorted(by_particles)},
        "validation_eval_seeds": list(seeds),
        "validation_eval_temperature_mouth": temperatures[0],
        "validation_eval_lip_particles": particles,
        "validation_eval_weights": "saved float16 checkpoint",
        "validation_eval_lip_decoding": "expected mouth codes",
    }
    save_checkpoint(checkpoint, ck.tokenizer, ck.generator, info=result)
    return result


def calibrate_mouth_gain(checkpoint, clips: list[Clip], seeds: tuple[int, ...] = (0,), whisper_dir=None) -> dict:
    """Set the checkpoint's ``mouth_gain`` (:class:`~teller_agent.fmlg.model.GeneratorConfig`) so that the
    generated mouth opening has the real speakers' amplitude on ``clips`` (the validation speakers): the
    gain is the real over the generated standard deviation of the mouth opening (speaker means, shipped
    sampling settings, ``mouth_gain`` 1, the generator's own lips without the lip readout). Pearson r and
    lags do not change with the gain.

    Returns (and merges into the checkpoint's ``info``): ``mouth_gain``, ``validation_mouth_std_ratio_at_gain_1``.

    Raises:
        CheckpointError: the folder does not hold a loadable checkpoint.
    """
    return _calibrate_gain(checkpoint, clips, seeds, "mouth_gain", "validation_mouth_std_ratio_at_gain_1",
                           lip_readout=0.0, whisper_dir=whisper_dir)


def calibrate_lip_readout_gain(checkpoint, clips: list[Clip], seeds: tuple[int, ...] = (0,)) -> dict:
    """Set the checkpoint's ``lip_readout_gain`` (:class:`~teller_agent.fmlg.model.GeneratorConfig`) so that
    the lips blended with the lip readout at the default weight (:data:`~teller_agent.config.DEFAULT_LIP_READOUT`)
    have the real speakers' amplitude on ``clips``, as :func:`calibrate_mouth_gain` does for the generator alone.

    Returns (and merges into the checkpoint's ``info``): ``lip_readout_gain``,
    ``validation_blend_std_ratio_at_gain_1``.

    Raises:
        CheckpointError: the folder does not hold a loadable checkpoint; ValueError: it has no lip readout.
    """
    from ..config import DEFAULT_LIP_READOUT

    return _calibrate_gain(checkpoint, clips, seeds, "lip_readout_gain", "validation_blend_std_ratio_at_gain_1",
                           lip_readout=DEFAULT_LIP_READOUT)


def _calibrate_gain(checkpoint, clips: list[Clip], seeds: tuple[int, ...], gain: str, ratio_key: str,
                    lip_readout: float, whisper_dir=None) -> dict:
    """Set the generator config's field ``gain`` to the real over the generated mouth-opening standard
    deviation measured with it at 1 (shipped sampling settings, ``lip_readout`` weight); save and return
    ``{gain: value, ratio_key: ratio at 1}``."""
    from ..fmlg.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(checkpoint, whisper_dir=whisper_dir)
    if lip_readout > 0 and ck.lip_readout is None:
        raise ValueError(f"{checkpoint} has no lip readout; fit one with `teller-agent train readout`")
    setattr(ck.generator.cfg, gain, 1.0)
    gen = _shipped_sampling(ck, lip_readout)
    ratio = mouth_sync(gen, clips, seeds=seeds)["std_ratio"]
    setattr(ck.generator.cfg, gain, round(1.0 / ratio, 3))
    info = {gain: getattr(ck.generator.cfg, gain), ratio_key: round(ratio, 3)}
    save_checkpoint(checkpoint, ck.tokenizer, ck.generator, info=info)
    return info


LIP_READOUT_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _variant_sync(clips: list[Clip], seeds: tuple[int, ...], max_seconds: float, variants) -> tuple[dict, float]:
    """Lip sync of several variants of generated motion features on each clip, averaged over ``seeds``.

    Args:
        variants: ``(clip, audio, frames, seed) -> {key: (T, F) motion features}`` for the first ``frames``
            frames of the clip (``audio``: their 16 kHz samples).

    Returns ``({key: {"r", "best_lag", "std"}}, real std)``: speaker means
    (:func:`~teller_agent.eval.metrics.speaker_mean`) of each clip's seed-mean r at lag 0, best lag (frames)
    and mouth-opening standard deviation, and of the real mouth opening's standard deviation.
    """
    per_clip: dict = {}  # key -> {"r": [], "best_lag": [], "std": []}, one entry per clip
    true_std = []
    for clip in clips:
        frames = min(clip.num_frames, int(max_seconds * 25))
        audio = clip.audio[: frames * SAMPLES_PER_FRAME]
        takes: dict = {}  # key -> (r, best lag, std) per seed
        for seed in seeds:
            feats = variants(clip, audio, frames, seed)
            n = min([frames] + [len(f) for f in feats.values()])
            true = clip_mouth_opening(clip, clip.features[:n])
            for key, f in feats.items():
                pred = clip_mouth_opening(clip, f[:n])
                takes.setdefault(key, []).append((pearson(pred, true), best_lag(pred, true), np.std(pred)))
        true_std.append(float(np.std(true)))
        for key, rows in takes.items():
            stats = per_clip.setdefault(key, {"r": [], "best_lag": [], "std": []})
            for name, values in zip(("r", "best_lag", "std"), zip(*rows)):
                stats[name].append(float(np.mean(values)))
    speakers = [c.speaker or c.id for c in clips]
    counts = [min(c.num_frames, int(max_seconds * 25)) for c in clips]
    return ({key: {name: speaker_mean(values, speakers, counts) for name, values in stats.items()}
             for key, stats in per_clip.items()}, speaker_mean(true_std, speakers, counts))


def lip_readout_ridge_study(checkpoint, clips: list[Clip], readouts: dict, seeds: tuple[int, ...] = (0, 1, 2),
                            max_seconds: float = 20.0) -> list[dict]:
    """Validation lip sync of the blend at the default weight (:data:`~teller_agent.config.DEFAULT_LIP_READOUT`)
    for each candidate lip readout, e.g. one per ridge penalty.

    Each clip and seed is generated once with the generator's lips alone (shipped sampling settings); the
    readout's lips are its map of the student's features of the whole clip (which streaming reproduces
    frame by frame) and are mixed in.

    Args:
        readouts: ``{key: Readout}``, each mapping (T, student width) features to (T, ``MOUTH_DIM``) deltas.

    Returns one row per readout: ``{"ridge": key, "r", "best_lag"}`` (speaker means, as in
    :func:`lip_readout_study`).

    Raises:
        CheckpointError: the folder does not hold a loadable checkpoint with an audio student.
    """
    from ..config import DEFAULT_LIP_READOUT
    from ..errors import CheckpointError
    from ..fmlg.checkpoint import load_checkpoint
    from ..fmlg.tokenizer import MOUTH_DIM
    from .student import student_features

    ck = load_checkpoint(checkpoint)
    if ck.student is None:
        raise CheckpointError(f"{checkpoint} has no audio student for a lip readout")
    gen = _shipped_sampling(ck, 0.0)
    w = DEFAULT_LIP_READOUT

    def variants(clip: Clip, audio: np.ndarray, frames: int, seed: int) -> dict:
        gen.seed = seed
        f0 = motion_to_features(gen.generate(audio, SAMPLE_RATE))
        student = student_features(ck.student, audio, frames)
        out = {}
        for key, ro in readouts.items():
            f = f0[:frames].copy()
            f[:, :MOUTH_DIM] = (1 - w) * f[:, :MOUTH_DIM] + w * ro(student)[: len(f)]
            out[key] = f
        return out

    stats, _ = _variant_sync(clips, seeds, max_seconds, variants)
    return [{"ridge": key, "r": round(stats[key]["r"], 4), "best_lag": round(stats[key]["best_lag"], 3)}
            for key in readouts]


def lip_readout_study(checkpoint, clips: list[Clip], weights: tuple[float, ...] = LIP_READOUT_WEIGHTS,
                      seeds: tuple[int, ...] = (0, 1, 2), max_seconds: float = 20.0) -> list[dict]:
    """Validation lip sync of the lips ``(1 - w)`` generator + ``w`` lip readout
    (:class:`~teller_agent.fmlg.generator.MotionGenerator`, module docstring item 6) for each weight ``w``.

    The blend is linear in ``w`` and leaves the token chains alone, so each clip and seed is generated twice
    (``w`` = 0 and 1, shipped sampling settings) and every weight is mixed from those two.

    Returns one row per weight: ``{"weight", "r", "best_lag", "std_ratio"}`` (r at lag 0 and best lag,
    frames, averaged over ``seeds``; std ratio: the generated over the real mouth opening's standard
    deviation at the checkpoint's gains, as in :func:`mouth_sync`;
    speaker means, :func:`~teller_agent.eval.metrics.speaker_mean`).

    Raises:
        CheckpointError: the folder does not hold a loadable checkpoint; ValueError: it has no lip readout.
    """
    from ..fmlg.checkpoint import load_checkpoint
    from ..fmlg.tokenizer import MOUTH_DIM

    ck = load_checkpoint(checkpoint)
    if ck.lip_readout is None:
        raise ValueError(f"{checkpoint} has no lip readout; fit one with `teller-agent train readout`")
    blend_gain, ck.generator.cfg.lip_readout_gain = ck.generator.cfg.lip_readout_gain, 1.0  # mixed here
    ends = [_shipped_sampling(ck, w) for w in (0.0, 1.0)]

    def variants(clip: Clip, audio: np.ndarray, frames: int, seed: int) -> dict:
        for gen in ends:
            gen.seed = seed
        f0, f1 = (motion_to_features(gen.generate(audio, SAMPLE_RATE)) for gen in ends)
        out = {}
        for w in weights:
            f = f0.copy()
            f[:, :MOUTH_DIM] = ((1 - w) * f0[:, :MOUTH_DIM] + w * f1[:, :MOUTH_DIM]) * (blend_gain if w > 0 else 1.0)
            out[w] = f
        return out

    stats, real_std = _variant_sync(clips, seeds, max_seconds, variants)
    return [{"weight": w, "r": round(stats[w]["r"], 4), "best_lag": round(stats[w]["best_lag"], 3),
             "std_ratio": round(stats[w]["std"] / real_std, 3)} for w in weights]


#: SNR (dB) of the babble in :func:`noise_robustness`.
NOISE_CHECK_SNR_DB = 0.0


def noise_robustness(generator: MotionGenerator, clips: list[Clip], sources: list[np.ndarray],
                     snr_db: float = NOISE_CHECK_SNR_DB, seeds: tuple[int, ...] = (0, 1, 2),
                     max_seconds: float = 20.0) -> dict:
    """Lip sync on ``clips`` (the validation speakers) with their speech as recorded and under babble
    (:func:`~teller_agent.data.augment.add_babble` of ``sources``, other speakers' speech, at ``snr_db``;
    the same mixture for a given clip).

    The same words under noise should move the mouth as they do in quiet: ``open_inflation`` (the generated
    mouth's mean opening above the rest face under noise over that in quiet) and ``std_inflation`` (the same
    for its standard deviation; speaker means) are 1 for a generator that ignores the noise, above 1 for one
    that opens the mouth to it.

    Returns:
        ``{"r_clean", "r_noisy", "std_ratio_clean", "std_ratio_noisy", "std_inflation", "open_inflation",
        "snr_db"}`` (r at lag 0 against the real mouth; std ratios generated over real, as :func:`mouth_sync`).
    """
    import dataclasses
    import zlib

    from ..data.augment import add_babble

    noisy = [dataclasses.replace(c, audio=add_babble(c.audio, np.random.default_rng(zlib.crc32(c.id.encode())),
                                                      snr_db, sources)) for c in clips]
    clean_sync = mouth_sync(generator, clips, max_seconds, seeds)
    noisy_sync = mouth_sync(generator, noisy, max_seconds, seeds)
    return {"r_clean": clean_sync["r"], "r_noisy": noisy_sync["r"], "std_ratio_clean": clean_sync["std_ratio"],
            "std_ratio_noisy": noisy_sync["std_ratio"],
            "std_inflation": noisy_sync["std_ratio"] / clean_sync["std_ratio"],
            "open_inflation": noisy_sync["mean_open"] / clean_sync["mean_open"], "snr_db": snr_db}


def shipped_noise_robustness(checkpoint, clips: list[Clip], sources: list[np.ndarray],
                             seeds: tuple[int, ...] = (0, 1, 2)) -> list[dict]:
    """:func:`noise_robustness` of a saved checkpoint with the shipped sampling settings, for the generator's own
    lips (lip readout weight 0) and for the shipped blend (:data:`~teller_agent.config.DEFAULT_LIP_READOUT`, when
    the checkpoint has a lip readout): ``[{"lip_readout": w, **noise_robustness(...)}]``, rounded to 4 places.

    Raises:
        CheckpointError: the folder does not hold a loadable checkpoint.
    """
    from ..config import DEFAULT_LIP_READOUT
    from ..fmlg.checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint)
    weights = (0.0, DEFAULT_LIP_READOUT) if ck.lip_readout is not None else (0.0,)
    rows = []
    for w in weights:
        measured = noise_robustness(_shipped_sampling(ck, w), clips, sources, seeds=seeds)
        rows.append({"lip_readout": w, **{k: round(float(v), 4) for k, v in measured.items()}})
    return rows
