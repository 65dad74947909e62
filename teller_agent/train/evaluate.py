"""Quick lip-sync check used during training: Pearson r of mouth opening on held-out clips."""

from __future__ import annotations

import numpy as np

from ..audio.encoder import SAMPLES_PER_FRAME
from ..audio.features import SAMPLE_RATE
from ..audio.loudness import loudness_envelope
from ..eval.metrics import mouth_opening, pearson
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

    Returns ``{"r": mean r, "loudness_r": mean r of the loudness baseline, "clips": {id: (r, loudness_r)}}``
    (a clip's r is its mean over the seeds).
    """
    seeds = (generator.seed,) if seeds is None else tuple(seeds)
    per_clip = {}
    for clip in clips:
        frames = min(clip.num_frames, int(max_seconds * 25))
        audio = clip.audio[: frames * SAMPLES_PER_FRAME]
        rs = []
        for seed in seeds:
            generator.seed = seed
            motion = generator.generate(audio, SAMPLE_RATE)
            n = min(frames, len(motion))
            true = clip_mouth_opening(clip, clip.features[:n])
            gen = clip_mouth_opening(clip, motion_to_features(motion[:n]))
            rs.append(pearson(gen, true))
        loud = loudness_envelope(audio, SAMPLE_RATE)[:n]
        per_clip[clip.id] = (float(np.mean(rs)), pearson(loud, true))
    rs = np.array(list(per_clip.values())) if per_clip else np.zeros((0, 2))
    return {"r": float(rs[:, 0].mean()) if len(rs) else 0.0, "loudness_r": float(rs[:, 1].mean()) if len(rs) else 0.0,
            "clips": per_clip}


def default_eval_temperatures() -> tuple[float, ...]:
    """The default lip temperature (``TellerSettings``' default, what ships) first, then 0.5 for comparison."""
    from ..config import TellerSettings

    default = TellerSettings.model_fields["temperature_mouth"].default
    return (default,) if default == 0.5 else (default, 0.5)


def default_lip_particles() -> int:
    """``TellerSettings``' default number of lip particles (what ships)."""
    from ..config import TellerSettings

    return TellerSettings.model_fields["lip_particles"].default


def evaluate_checkpoint(checkpoint, clips: list[Clip], temperatures: tuple[float, ...] | None = None,
                        seeds: tuple[int, ...] = (0, 1, 2), whisper_dir=None, particles: int | None = None) -> dict:
    """Held-out lip sync of a *saved* checkpoint folder (its float16 weights, as shipped), recorded in its
    ``config.json``: :func:`mouth_sync` averaged over ``seeds`` at each lip temperature in ``temperatures``
    (default :func:`default_eval_temperatures`), with ``particles`` lip particles (default
    :func:`default_lip_particles`).

    Returns (and merges into the checkpoint's ``info``): ``heldout_mouth_r`` / ``heldout_loudness_r`` /
    ``heldout_clips`` at ``temperatures[0]``, ``heldout_mouth_r_by_temperature`` ``{str(t): r}``,
    ``heldout_eval_seeds``, ``heldout_eval_temperature_mouth``, ``heldout_eval_lip_particles``,
    ``heldout_mouth_r_by_particles`` ``{"1": r, str(particles): r}`` at ``temperatures[0]``,
    ``heldout_eval_lip_decoding`` (the lips are decoded from the expected mouth codes,
    :class:`MotionGenerator`'s default) and ``heldout_mouth_r_sampled_lips`` (the same at ``temperatures[0]``
    with the sampled codes decoded instead).

    Raises:
        CheckpointError: the folder does not hold a loadable checkpoint.
    """
    from ..fmlg.checkpoint import load_checkpoint, save_checkpoint

    temperatures = tuple(temperatures or default_eval_temperatures())
    particles = particles or default_lip_particles()
    ck = load_checkpoint(checkpoint, whisper_dir=whisper_dir)

    def sync(temperature: float, lip_particles: int = particles, lip_mean: bool = True) -> dict:
        gen = MotionGenerator(ck, temperature_mouth=temperature, lip_mean=lip_mean, lip_particles=lip_particles)
        return mouth_sync(gen, clips, seeds=seeds)

    by_temp = {t: sync(t) for t in temperatures}
    first = by_temp[temperatures[0]]
    by_particles = {particles: first["r"]}
    if particles != 1:
        by_particles[1] = sync(temperatures[0], lip_particles=1)["r"]
    sampled = sync(temperatures[0], lip_mean=False)
    result = {
        "heldout_mouth_r": first["r"],
        "heldout_loudness_r": first["loudness_r"],
        "heldout_clips": {k: [round(v[0], 3), round(v[1], 3)] for k, v in first["clips"].items()},
        "heldout_mouth_r_by_temperature": {str(t): round(v["r"], 4) for t, v in by_temp.items()},
        "heldout_mouth_r_by_particles": {str(p): round(by_particles[p], 4) for p in sorted(by_particles)},
        "heldout_eval_seeds": list(seeds),
        "heldout_eval_temperature_mouth": temperatures[0],
        "heldout_eval_lip_particles": particles,
        "heldout_eval_weights": "saved float16 checkpoint",
        "heldout_eval_lip_decoding": "expected mouth codes",
        "heldout_mouth_r_sampled_lips": round(sampled["r"], 4),
    }
    save_checkpoint(checkpoint, ck.tokenizer, ck.generator, info=result)
    return result
