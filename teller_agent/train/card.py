"""Model cards for shipped checkpoints, written from the checkpoint's own metrics (never by hand)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .dataset import read_manifest


def _sources(dataset: dict, shared_manifest: Path | None) -> list[tuple[str, str, float]]:
    """(source repository, license, seconds) of the real clips, grouped by repository."""
    repos: dict[str, tuple[str, float]] = {}
    lookup = {}
    if shared_manifest is not None and shared_manifest.is_file():
        with open(shared_manifest, newline="") as f:
            lookup = {Path(r["file"]).stem: r.get("source_repo", "") for r in csv.DictReader(f, delimiter="\t")}
    for clip in dataset["clips"]:
        if clip["kind"] != "real":
            continue
        repo = lookup.get(clip["id"], "unknown")
        lic, secs = repos.get(repo, (clip.get("license", "unknown"), 0.0))
        repos[repo] = (lic, secs + clip["seconds"])
    return sorted((r, lic, s) for r, (lic, s) in repos.items())


def write_model_card(checkpoint: str | Path, dataset: str | Path, commands: list[str] | None = None) -> Path:
    """Write ``README.md`` (the model card) into ``checkpoint`` from its ``config.json`` and the dataset
    manifest; ``commands`` defaults to the command lines the dataset and both trainings recorded."""
    checkpoint, dataset = Path(checkpoint), Path(dataset)
    config = json.loads((checkpoint / "config.json").read_text())
    info, manifest = config.get("info", {}), read_manifest(dataset)
    if commands is None:
        commands = [c for c in (manifest.get("command"), info.get("tokenizer_command"), info.get("generator_command")) if c]
    minutes = {}
    for c in manifest["clips"]:
        key = f"{c['kind']} / {c['split']}"
        minutes[key] = minutes.get(key, 0.0) + c["seconds"] / 60
    shared = Path(manifest["clips"][0]["source"]).parent.parent / "manifest.tsv" if manifest["clips"] else None
    lines = [
        f"# {checkpoint.name}: FMLG motion tokenizer + generator (face68 space)",
        "",
        "Speech -> motion tokens -> `face68` motion latent, after Teller (arXiv 2503.18429, sec. 3). "
        "Loaded by default by `teller_agent.fmlg.MotionGenerator` and `teller-agent render`.",
        "",
        "## Files",
        "",
        "| file | what |",
        "|---|---|",
    ]
    for f in sorted(checkpoint.iterdir()):
        if f.suffix in (".safetensors", ".json", ".png"):
            lines.append(f"| `{f.name}` | {f.stat().st_size / 2**20:.2f} MiB |")
    tok, gen = config["tokenizer"], config.get("generator") or {}
    lines += [
        "",
        "## Architecture",
        "",
        f"- Tokenizer: two streams (mouth: jaw + lips; head: pose, eyes, brows, nose), each a causal conv encoder, "
        f"`ResidualVQ` with {tok['levels']} levels x {tok['codebook_size']} codes (dim {tok['latent_dim']}), and a causal "
        f"conv decoder: {2 * tok['levels']} motion tokens per frame ({8 * tok['levels']} per 4 frames).",
        f"- Generator: Qwen2 decoder ({gen.get('layers')} layers, width {gen.get('d_model')}, {gen.get('heads')} heads, "
        f"sliding window {gen.get('window')} frames) on `audio embedding + previous tokens`, with a depth head over the "
        f"frame's tokens ({_depth(gen)}); {_audio(gen)} on 80-bin log-mel with {gen.get('lookahead')} frame(s) of "
        f"look-ahead ({_lookahead_ms(gen):.0f} ms of future audio); {info.get('generator_parameters', 0) / 1e6:.2f} M "
        "parameters.",
        f"- Generator training: teacher forcing; previous-frame tokens masked with probability "
        f"{gen.get('prev_mask_mouth')} (mouth) / {gen.get('prev_mask_head')} (head); "
        f"{_share(info)} of the 4 s windows from real clips{_real_augment(info)}; auxiliary mouth-feature regression "
        f"(weight {info.get('generator_aux_mouth', 0)}) from the transformer output and from the audio embedding "
        f"(training-only heads); peak learning rate {info.get('generator_lr', 1e-3)}.",
        "",
        "## Data",
        "",
        f"Dataset `{manifest['name']}` (built {manifest['created']}):",
        "",
        "| kind / split | minutes |",
        "|---|---|",
    ] + [f"| {k} | {v:.1f} |" for k, v in sorted(minutes.items())] + [
        "",
        "Held-out real clips (never trained on): " + ", ".join(f"`{h}`" for h in manifest.get("heldout", [])) + ".",
        "",
        "Real clips come from the example folders of these public repositories. The repositories' licenses are "
        "listed, but the footage inside them (HDTF, VoxCeleb2, LRS2, MEAD, TV and web video) is generally for "
        "**research use only**, and so is this checkpoint:",
        "",
        "| source repository | license | seconds |",
        "|---|---|---|",
    ] + [f"| {r} | {lic} | {s:.0f} |" for r, lic, s in _sources(manifest, shared)] + [
        "",
        "Synthetic clips: eSpeak NG speech in several voices and languages, with phoneme-timed visemes, "
        "augmented (tempo, pitch, noise, gain, reverb).",
        "",
        "## Training commands",
        "",
        "```bash",
    ] + commands + [
        "```",
        "",
        "## Metrics (written by the training commands)",
        "",
        "Tokenizer reconstruction on the held-out clips, decoding from the first k RVQ levels "
        "(mean absolute keypoint error; pixels at 512x512 with the default framing):",
        "",
        "| levels | mouth (face widths) | mouth (px) | head (face widths) | head (px) | pose (deg) |",
        "|---|---|---|---|---|---|",
    ] + [f"| {r['levels']} | {r['mouth_fw']:.4f} | {r['mouth_px']:.2f} | {r['head_fw']:.4f} | {r['head_px']:.2f} | "
         f"{r['pose_deg']:.2f} |" for r in info.get("tokenizer_reconstruction", [])] + [
        "",
        f"Held-out lip sync: Pearson r of mouth opening (inner-lip gap / inter-ocular distance), generated from "
        f"audio alone vs. the clip's own, first 20 s of each held-out clip{_seeds(info)}: "
        f"**r = {_headline(info):.3f}**; the loudness baseline scores r = "
        f"{info.get('heldout_loudness_r', float('nan')):.3f}. The target for lip sync is r >= 0.5.",
        "",
    ] + _lip_decoding(info) + _by_temperature(info) + [
        f"Per clip{_clip_note(info)}:",
        "",
        "| clip | r (generated) | r (loudness baseline) |",
        "|---|---|---|",
    ] + [f"| {k} | {v[0]:.3f} | {v[1]:.3f} |" for k, v in info.get("heldout_clips", {}).items()] + [
        "",
    ] + _variants(info) + [
        f"Training time on the CPU: tokenizer {info.get('tokenizer_minutes')} min ({info.get('tokenizer_steps')} steps), "
        f"generator {info.get('generator_minutes')} min ({info.get('generator_steps')} steps).",
        "",
        "## Limits",
        "",
        "- Trained on under 10 minutes of real talking video plus synthetic speech: lip shapes are plausible, "
        "not person-specific; no emotion control; expression depth (z) is not modelled (not observable from 2D landmarks).",
        "- Head pose is learned as offsets from each training speaker's median pose; blinks and head motion are sampled.",
    ] + ([f"- Held-out lip sync (r = {_headline(info):.3f}) is below the r >= 0.5 target. The real training clips are "
          "few and their dlib inner-lip tracks are noisy on small faces, so audio explains little of the measured "
          "opening; the synthetic (eSpeak NG viseme) clips open the lips wider than the real ones on average."]
         if _headline(info) < 0.5 else []) + [
    ] + (["- One sampled take is a noisy estimate of lip sync (r varies noticeably between sampling seeds); the "
          "figures above average several seeds. There is no separate validation split: the lip temperatures and "
          "particle counts above are compared on the same held-out clips."] if info.get("heldout_eval_seeds") else []) + [
        "- The `face68` space drives the CPU warp renderer; a LivePortrait renderer would need a `liveportrait21` checkpoint.",
        "",
    ]
    path = checkpoint / "README.md"
    path.write_text("\n".join(lines))
    return path


def _lookahead_ms(gen: dict) -> float:
    from ..fmlg.model import GeneratorConfig

    return GeneratorConfig.from_dict(gen).lookahead_ms if gen else float("nan")


def _variants(info: dict) -> list[str]:
    """Other runs of the recipe, each changing one thing (``info["recipe_variants"]``: dicts with
    ``change``, ``option``, ``heldout_mouth_r``, ``heldout_audio_head_mouth_r``, ``minutes``; and
    ``info["recipe_variants_note"]``, what they show)."""
    rows = info.get("recipe_variants") or []
    if not rows:
        return []
    return [
        "Variants of the generator recipe, each trained once from the same dataset and tokenizer with one option "
        "added to the command above and evaluated the same way (held-out r over sampling seeds 0-2; the audio-only "
        "head is deterministic, so it shows a change in the audio encoder without sampling noise). "
        "None was shipped:",
        "",
        "| change | option | held-out r | audio-only head r |",
        "|---|---|---|---|",
        f"| (this checkpoint) | | {_headline(info):.3f} | {info.get('heldout_audio_head_mouth_r', float('nan')):.3f} |",
    ] + [f"| {v['change']} | `{v['option']}` | {v['heldout_mouth_r']:.3f} | {v['heldout_audio_head_mouth_r']:.3f} |"
         for v in rows] + [""] + ([info["recipe_variants_note"], ""] if info.get("recipe_variants_note") else [])


def _default_temperature() -> float:
    from ..config import TellerSettings

    return TellerSettings.model_fields["temperature_mouth"].default


def _depth(gen: dict) -> str:
    if gen.get("depth_streams", 1) == 2:
        return "mouth and head levels as two chains side by side, one batched step per RVQ level"
    return "one chain over all levels, coarse to fine"


def _audio(gen: dict) -> str:
    if gen.get("audio_encoder", "conv") == "whisper":
        return f"frozen Whisper encoder over {gen.get('whisper_window')}-frame causal windows"
    return "causal conv audio encoder"


def _share(info: dict) -> str:
    return f"{100 * info.get('generator_real_fraction', 0.5):.0f}%"


def _real_augment(info: dict) -> str:
    k = info.get("generator_real_augment") or 0
    if not k:
        return ""
    return (f"; a real window's audio is the clip's own or, at random, one of {k} augmented copies of it "
            "(pitch, band limit, reverb, coloured noise, gain; no tempo change, so it stays in sync with the motion)")


def _seeds(info: dict) -> str:
    seeds = info.get("heldout_eval_seeds")
    text = f", mean over sampling seeds {', '.join(map(str, seeds))}" if seeds else ""
    if info.get("heldout_eval_lip_particles"):
        n = info["heldout_eval_lip_particles"]
        text += f", {n} lip particle{'s' if n != 1 else ''}"
    return text + (f", {info['heldout_eval_weights']}" if info.get("heldout_eval_weights") else "")


def _headline(info: dict) -> float:
    """Held-out r at the default lip temperature when it was evaluated, else the recorded r."""
    by_temp = info.get("heldout_mouth_r_by_temperature") or {}
    return by_temp.get(str(_default_temperature()), info.get("heldout_mouth_r", float("nan")))


def _by_temperature(info: dict) -> list[str]:
    by_temp = info.get("heldout_mouth_r_by_temperature") or {}
    if not by_temp:
        return []
    default = str(_default_temperature())
    rows = [f"| {t}{' (default)' if t == default else ''} | {r:.3f} |" for t, r in by_temp.items()]
    lines = ["By lip sampling temperature (`TELLER_TEMPERATURE_MOUTH`; lower is closer to the most likely lips):", "",
             "| lip temperature | held-out r |", "|---|---|"] + rows + [""]
    if info.get("heldout_audio_head_mouth_r") is not None:
        lines += [f"Diagnostic (not used at inference): the training-only linear regression head on the audio embedding "
                  f"alone predicts held-out mouth opening with r = {info['heldout_audio_head_mouth_r']:.3f} "
                  "(with the clips' true head pose and eyes).", ""]
    return lines


def _lip_decoding(info: dict) -> list[str]:
    if info.get("heldout_mouth_r_sampled_lips") is None:
        return []
    lines = [f"The lips are decoded from the expected code of each mouth RVQ level under the top-k distribution "
             f"(`MotionGenerator(lip_mean=True)`, the default); decoding the sampled mouth codes instead gives "
             f"r = {info['heldout_mouth_r_sampled_lips']:.3f} (same seeds, lip temperature "
             f"{info.get('heldout_eval_temperature_mouth')}).", ""]
    by_particles = info.get("heldout_mouth_r_by_particles") or {}
    if len(by_particles) > 1:
        default = str(info.get("heldout_eval_lip_particles"))
        lines += ["Lip particles (`TELLER_LIP_PARTICLES`): token chains sampled side by side from the same audio; "
                  "the lips follow the mean of their expected mouth latents, the head the first chain:", "",
                  "| lip particles | held-out r |", "|---|---|"]
        lines += [f"| {p}{' (default)' if p == default else ''} | {r:.3f} |" for p, r in by_particles.items()] + [""]
    return lines


def _clip_note(info: dict) -> str:
    t = info.get("heldout_eval_temperature_mouth")
    return f" (lip temperature {t})" if t is not None else ""
