"""The ``teller-agent`` command line.

Subcommands:
    render            portrait + speech -> lip-synced mp4 (the FMLG generator)
    animate           portrait + procedural or file motion (+ audio) -> mp4
    dataset build     real clips + synthetic speech -> a versioned training dataset
    train tokenizer   fit the RVQ motion tokenizer
    train generator   fit the autoregressive motion-token generator
    bench             the full benchmark: per-stage cost, latency, concurrent sessions, memory
    bench render      render-only frames per second and peak memory
    bench generator   FMLG generator ms per frame
    eval lipsync      generated motion vs. real talking clips, with baselines
    docs readme       regenerate the README's results section from docs/results/*.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .config import FPS, TellerSettings
from .errors import TellerError


def _cmd_animate(args: argparse.Namespace) -> int:
    from .animate import animate

    settings = _settings(args)
    result = animate(
        args.output,
        image=args.image,
        motion=args.motion,
        audio=args.audio,
        seconds=args.seconds,
        contact_sheet_path=args.contact_sheet,
        every=args.every,
        settings=settings,
        progress=not args.quiet,
    )
    print(f"wrote {result.video} ({result.frames} frames, {result.seconds:.2f} s at {FPS} fps)")
    if result.contact_sheet:
        print(f"wrote {result.contact_sheet}")
    return 0


def _settings(args: argparse.Namespace) -> TellerSettings:
    names = {"size": "frame_size", "seed": "seed", "model": "model_dir"}
    return TellerSettings(**{f: getattr(args, a) for a, f in names.items() if getattr(args, a, None) is not None})


def _cmd_render(args: argparse.Namespace) -> int:
    from .render_speech import render_speech

    result = render_speech(args.output, audio=args.audio, image=args.image, say=args.say, voice=args.voice,
                           settings=_settings(args),
                           contact_sheet_path=args.contact_sheet, every=args.every, motion_out=args.save_motion,
                           progress=not args.quiet)
    print(f"wrote {result.video} ({result.frames} frames, {result.seconds:.2f} s at {FPS} fps; "
          f"real-time factor {result.rtf:.2f})")
    if result.contact_sheet:
        print(f"wrote {result.contact_sheet}")
    return 0


def _cmd_dataset(args: argparse.Namespace) -> int:
    from .data.build import build_dataset

    if args.what == "sync":
        from .data.sync import sync_dataset

        table = sync_dataset(args.out, progress=not args.quiet)
        applied = [e for e in table.values() if e.applied]
        print(f"measured {len(table)} clips; {len(applied)} offsets corrected "
              f"({', '.join(f'{e.clip} {e.offset_frames:+d}' for e in applied[:8])}{', ...' if len(applied) > 8 else ''})")
        return 0
    manifest = build_dataset(args.out, real=args.real, synthetic=args.synthetic, speech=args.speech,
                             seed=args.seed, progress=not args.quiet, command=_command_line())
    kinds = {}
    for c in manifest["clips"]:
        key = (c["kind"], c["split"])
        kinds[key] = kinds.get(key, 0.0) + c["seconds"]
    for (kind, split), secs in sorted(kinds.items()):
        print(f"{kind:9s} {split:8s} {secs / 60:6.1f} min")
    print(f"wrote {args.out}/manifest.json ({len(manifest['clips'])} clips)")
    return 0


def _command_line(argv: list[str] | None = None) -> str:
    """The command as typed: ``argv`` (default ``sys.argv[1:]``) after ``teller-agent``."""
    return "teller-agent " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    if args.what == "tokenizer":
        from .train.tokenizer import train_tokenizer

        if args.threads:
            torch.set_num_threads(args.threads)
        metrics = train_tokenizer(args.dataset, args.out, steps=args.steps, seed=args.seed, progress=not args.quiet,
                                  command=_command_line())
        for row in metrics["tokenizer_reconstruction"]:
            print(f"levels {row['levels']}: mouth {row['mouth_fw']:.4f} face widths = {row['mouth_px']:.2f} px "
                  f"@512, head {row['head_fw']:.4f} fw = {row['head_px']:.2f} px, pose {row['pose_deg']:.2f} deg")
    elif args.what == "readout":
        from .train.student import fit_lip_readout

        info = fit_lip_readout(args.dataset, args.out, command=_command_line())
        print(f"lip readout fitted on {info['frames']} frames of {info['clips']} real clips "
              f"({info['speakers']} training speakers), ridge penalty {info['ridge']:g}: {info['path']}")
        for row in info.get("lip_readout_ridge_study", []):
            print(f"validation speakers, ridge penalty {row['ridge']:g} at the default weight: r = {row['r']:.3f} at "
                  f"lag 0, best lag {row['best_lag']:+.2f} frames")
        for row in info.get("lip_readout_study", []):
            print(f"validation speakers, lip readout weight {row['weight']:.2f}: r = {row['r']:.3f} at lag 0, "
                  f"best lag {row['best_lag']:+.2f} frames, std ratio {row['std_ratio']:.2f}")
        for row in info.get("noise_robustness", []):
            print(f"validation speakers, lip readout weight {row['lip_readout']:.2f}, babble at {row['snr_db']:g} dB: "
                  f"r = {row['r_clean']:.3f} as recorded, {row['r_noisy']:.3f} under babble; mean opening "
                  f"{row['open_inflation']:.2f}x, std {row['std_inflation']:.2f}x")
        if "lip_readout_gain" in info:
            print(f"lip_readout_gain calibrated to {info['lip_readout_gain']} at the default weight "
                  f"(blend std ratio {info['validation_blend_std_ratio_at_gain_1']} at gain 1)")
        return 0
    elif args.what == "student":
        from .train.student import train_student

        metrics = train_student(args.dataset, args.out, lookahead=args.lookahead if args.lookahead is not None else 1,
                                steps=args.steps, seed=args.seed, threads=args.threads, progress=not args.quiet,
                                command=_command_line(), whisper_dir=args.whisper_model_dir)
        print(f"validation distillation MSE {metrics['student_validation_mse']}; readout r of the mouth opening on "
              f"the validation speakers: student {metrics.get('validation_readout_r_student')}, "
              f"teacher {metrics.get('validation_readout_r_teacher')}")
    else:
        from .train.generator import train_generator

        from .train.card import write_model_card

        from .fmlg.model import GeneratorConfig

        cfg = GeneratorConfig(audio_encoder=args.audio_encoder)
        if args.prev_mask_mouth is not None:
            cfg.prev_mask_mouth = args.prev_mask_mouth
        if args.prev_mask_head is not None:
            cfg.prev_mask_head = args.prev_mask_head
        if args.audio_encoder == "whisper":
            from .train.student import TEACHER_SLICES

            cfg.whisper_slices = TEACHER_SLICES.to_dict()
        metrics = train_generator(args.dataset, args.out, steps=args.steps, seed=args.seed, progress=not args.quiet,
                                  command=_command_line(), lr=args.lr, batch=args.batch,
                                  real_fraction=args.real_fraction, aux_mouth=args.aux_mouth, threads=args.threads,
                                  eval_every=args.eval_every, config=cfg, whisper_dir=args.whisper_model_dir,
                                  noise_fraction=args.noise_fraction, init=args.init)
        print(f"validation mouth-opening r = {metrics['validation_mouth_r']:.3f} at lag 0 "
              f"(loudness baseline {metrics['validation_loudness_r']:.3f})")
        print(f"wrote {write_model_card(args.out, args.dataset)}")
    print(f"wrote {args.out}")
    return 0


def _record(path: Path | None, result: dict) -> None:
    """``--record PATH``: write ``result`` as JSON (the README's results come from such files)."""
    if path is not None:
        from .eval.lipsync import write_json

        print(f"recorded {write_json(path, result)}")


def _cmd_bench(args: argparse.Namespace) -> int:
    """``teller-agent bench`` with no subcommand: the full benchmark (:func:`teller_agent.bench.run_bench`)."""
    from .bench import SHORT, run_bench
    from .bench.report import terminal_text

    options = dict(seconds=args.seconds, sessions=args.sessions, session_seconds=args.session_seconds,
                   stream_seconds=args.stream_seconds)
    if args.short:
        options.update(SHORT)
    result = run_bench(size=args.size, fast=args.fast, encode=False if args.no_encode else None, audio=args.audio,
                       model_dir=args.model, image=args.image, threads=args.threads,
                       progress=not args.quiet, command=_command_line(args.argv), **options)
    print(json.dumps(result) if args.json else terminal_text(result))
    _record(args.record, result)
    return 0


def _cmd_bench_generator(args: argparse.Namespace) -> int:
    from .bench import bench_generator

    report = bench_generator(seconds=args.seconds, threads=args.threads, model_dir=args.model)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"FMLG generator, {report['threads']} thread(s), {report['frames']} frames in 40 ms chunks "
              f"on {report['machine']}")
        print(f"  median {report['median_ms']:.2f} ms/frame  p95 {report['p95_ms']:.2f} ms  -> "
              f"{report['fps']:.0f} frames/s, real-time factor {report['rtf']:.3f}   peak RSS "
              f"{report['peak_rss_mb']:.0f} MiB")
    return 0


def _cmd_bench_render(args: argparse.Namespace) -> int:
    from .bench import bench_render

    report = bench_render(size=args.size, frames=args.frames, threads=args.threads, image=args.image, grid=args.grid)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"render {report['size']}x{report['size']}, {report['threads']} thread(s), grid {report['grid']}, "
              f"{report['frames']} frames on {report['machine']}")
        print(f"  median {report['median_ms']:.2f} ms/frame  p95 {report['p95_ms']:.2f} ms  "
              f"-> {report['fps']:.0f} frames/s   peak RSS {report['peak_rss_mb']:.0f} MiB")
    return 0


def _cmd_bench_room(args: argparse.Namespace) -> int:
    from .live.bench_room import room_text, run_bench_room

    result = run_bench_room(say=args.say, audio=args.audio, worker=args.worker)
    result["command"] = _command_line(args.argv)
    print(json.dumps(result) if args.json else room_text(result))
    _record(args.record, result)
    return 0


def _add_bench_parser(sub) -> None:
    """``bench`` (the full benchmark) and its subcommands. A new one (e.g. ``bench room``) is one more
    ``subs.add_parser(...)`` with its own ``func``; options before the subcommand belong to the full bench."""
    b = sub.add_parser("bench", help="benchmarks that print numbers (no subcommand: the full benchmark)",
                       description="The full benchmark: per-stage ms per frame, fps, real-time factor, RSS, "
                                   "streaming latency and concurrent sessions. Subcommands time one component.")
    b.add_argument("--seconds", type=float, default=20.0, help="seconds of audio for the per-stage run (default 20)")
    b.add_argument("--size", type=int, default=512, help="frame size in pixels (default 512)")
    b.add_argument("--sessions", type=int, default=4,
                   help="try up to N concurrent sessions, one process each (default 4; 0: skip)")
    b.add_argument("--session-seconds", type=float, default=10.0, help="audio per session per round (default 10)")
    b.add_argument("--stream-seconds", type=float,
                   help="seconds of real-time streaming for the latency figures (default: --seconds, at most 20)")
    b.add_argument("--fast", action="store_true",
                   help="only the per-stage run, as fast as possible, no encoding (memory check: --seconds 3600 "
                        "--fast)")
    b.add_argument("--short", action="store_true", help="a few seconds of everything (CI)")
    b.add_argument("--no-encode", action="store_true", help="leave H.264 encoding out of the per-stage run")
    b.add_argument("--audio", type=Path, help="speech file, looped to length (default: synthetic speech-like audio)")
    b.add_argument("--model", type=Path, help="FMLG checkpoint folder (default: the shipped one)")
    b.add_argument("--image", type=Path, help="portrait photo (default: the bundled portrait)")
    b.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1: one core)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--record", type=Path, help="also write the JSON result here (e.g. docs/results/bench.json)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=_cmd_bench)
    subs = b.add_subparsers(dest="bench_command", metavar="{render,generator,room}")

    rm = subs.add_parser("room", help="join time, fps, A/V offset and interruption in a real LiveKit room")
    src = rm.add_mutually_exclusive_group()
    src.add_argument("--say", help="sentence the agent speaks (espeak-ng; default: the demo sentence)")
    src.add_argument("--audio", help="speech file the agent speaks instead")
    rm.add_argument("--worker", action="store_true", help="render on an avatar worker (agent dispatch)")
    rm.add_argument("--json", action="store_true", help="print one JSON object")
    rm.add_argument("--record", type=Path, help="also write the JSON result here (docs/results/bench_room.json)")
    rm.set_defaults(func=_cmd_bench_room)

    r = subs.add_parser("render", help="render-only frames per second and peak memory")
    r.add_argument("--size", type=int, default=512, help="frame size in pixels (default 512)")
    r.add_argument("--frames", type=int, default=300, help="timed frames (default 300, after 20 warm-up)")
    r.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1: one core)")
    r.add_argument("--grid", type=int, help="warp grid cells per side (default TELLER_RENDER_GRID or 64)")
    r.add_argument("--image", type=Path, help="portrait photo (default: the bundled portrait)")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.set_defaults(func=_cmd_bench_render)

    g = subs.add_parser("generator", help="FMLG ms per frame on streamed audio")
    g.add_argument("--seconds", type=float, default=20.0, help="seconds of audio (default 20)")
    g.add_argument("--model", type=Path, help="checkpoint folder (default: the shipped one)")
    g.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one core)")
    g.add_argument("--json", action="store_true", help="print one JSON object")
    g.set_defaults(func=_cmd_bench_generator)


def _cmd_eval(args: argparse.Namespace) -> int:
    from .eval.lipsync import default_clips_dir, evaluate_lipsync, list_clips, markdown_tables

    clips_dir = args.clips or default_clips_dir()
    split = "heldout" if args.heldout else "validation" if args.validation else None
    clips = list_clips(clips_dir, split=split, names=args.clip, limit=args.limit)
    settings = _settings(args)
    result = evaluate_lipsync(clips, args.out, model=args.model, seed=settings.seed, image=args.image,
                              max_seconds=args.max_seconds, sheets=not args.no_sheets, settings=settings,
                              progress=not args.quiet, command=_command_line(args.argv), split=split)
    print(markdown_tables(result), end="")
    for item in result["skipped"]:
        print(f"skipped {item['name']}: {item['reason']}")
    print(f"wrote {args.out}/lipsync.md, lipsync.json, plots/" + ("" if args.no_sheets else ", sheets/"))
    _record(args.record, result)
    return 0 if result["clips"] else 2


def _cmd_eval_identity(args: argparse.Namespace) -> int:
    import json

    from .data.speakers import talking_videos
    from .eval.identity import (
        PORTRAIT_SUFFIXES,
        SPEECH_SUFFIXES,
        default_portraits_dir,
        default_speech_dir,
        default_real_clips,
        evaluate_identity,
        list_media,
        markdown_table,
        real_video_identity,
    )

    try:
        portraits = list_media(args.portraits or default_portraits_dir(), PORTRAIT_SUFFIXES, args.limit)
        speech = list_media(args.speech or default_speech_dir(), SPEECH_SUFFIXES)
    except FileNotFoundError as e:
        raise TellerError(f"{e}; pass --portraits and --speech folders") from None
    if not args.no_real_video and args.real_clips and not args.real_clips.is_dir():
        raise TellerError(f"--real-clips {args.real_clips} is not a folder of talking clips (*.mp4)")
    settings = _settings(args)
    result = evaluate_identity(portraits, speech, settings, seconds=args.seconds, every=args.every,
                               progress=not args.quiet, mouth_interior=not args.no_mouth_interior)
    if not args.no_real_video:
        clips = talking_videos(args.real_clips) if args.real_clips else default_real_clips(args.seconds)
        result["real_video"] = real_video_identity(clips, args.seconds, args.every, progress=not args.quiet)
    result["command"] = _command_line(args.argv)
    table = markdown_table(result)
    print(table, end="")
    for item in result["skipped"]:
        print(f"skipped {item['name']}: {item['reason']}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.sheet_portraits:
        from .media.contact_sheet import save_image
        from .render.states import states_sheet

        measured = [p for p in portraits if p.name in {r["name"] for r in result["portraits"]}]
        print(f"wrote {save_image(args.out / 'states.jpg', states_sheet(measured[: args.sheet_portraits], settings))}")
    (args.out / "identity.md").write_text(table)
    (args.out / "identity.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}/identity.md, identity.json")
    _record(args.record, result)
    return 0 if result["mean"] is not None else 2


def _cmd_sheet(args: argparse.Namespace) -> int:
    from .media.contact_sheet import save_image
    from .render.states import states_sheet

    portraits = args.image or [None]
    print(f"wrote {save_image(args.out, states_sheet(portraits, _settings(args), thumb=args.thumb))}")
    return 0


def _add_sheet_parser(sub) -> None:
    s = sub.add_parser("sheet", help="a sheet to judge faces by eye: photo, rest, open/round/spread vowel, blink")
    s.add_argument("--image", type=Path, action="append", help="portrait (repeatable; default: the bundled one)")
    s.add_argument("-o", "--out", type=Path, default=Path("out/states.jpg"), help="image to write (default out/states.jpg)")
    s.add_argument("--size", type=int, help="frame size in pixels (default TELLER_FRAME_SIZE or 512)")
    s.add_argument("--thumb", type=int, default=200, help="cell width in pixels (default 200)")
    s.set_defaults(func=_cmd_sheet)


def _add_eval_parser(sub) -> None:
    e = sub.add_parser("eval", help="measure the generator against real talking clips")
    subs = e.add_subparsers(dest="eval_command", required=True)
    ident = subs.add_parser("identity", help="dlib face-descriptor distance of rendered frames to each portrait")
    ident.add_argument("--portraits", type=Path, help="folder of portraits (default ../shared/data/portraits)")
    ident.add_argument("--speech", type=Path, help="folder of speech files (default ../shared/data/speech)")
    ident.add_argument("--limit", type=int, help="at most N portraits")
    ident.add_argument("--seconds", type=float, default=3.0, help="seconds of speech per portrait (default 3)")
    ident.add_argument("--every", type=int, default=3, help="measure every N-th frame (default 3)")
    ident.add_argument("--seed", type=int, help="sampling seed (default TELLER_SEED or 0)")
    ident.add_argument("--out", type=Path, default=Path("out/identity"), help="output folder (default out/identity)")
    ident.add_argument("--record", type=Path, help="also write the JSON result here (e.g. docs/results/identity.json)")
    ident.add_argument("--real-clips", type=Path,
                       help="folder of real talking clips (*.mp4) for the reference rows (default: the held-out speakers' "
                            "clips of ../shared/data/talking at least --seconds long)")
    ident.add_argument("--no-real-video", action="store_true", help="skip the real-video reference")
    ident.add_argument("--no-mouth-interior", action="store_true",
                       help="render without the painted mouth interior (the warp's own pixels between the lips): "
                            "what the interior itself costs in identity")
    ident.add_argument("--sheet-portraits", type=int, default=6,
                       help="also write states.jpg (photo, rest, vowels, blink) for the first N portraits (default 6)")
    ident.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ident.set_defaults(func=_cmd_eval_identity)
    ls = subs.add_parser("lipsync", help="mouth sync, LVE, lag, smoothness and blinks vs. real clips, with baselines")
    ls.add_argument("--clips", type=Path, help="folder of talking clips (default ../shared/data/talking)")
    ls.add_argument("--model", type=Path, help="FMLG checkpoint folder (default TELLER_MODEL_DIR or the shipped one)")
    ls.add_argument("--out", type=Path, default=Path("out/lipsync"), help="output folder (default out/lipsync)")
    which = ls.add_mutually_exclusive_group()
    which.add_argument("--heldout", action="store_true",
                       help="the held-out speakers' clips (never trained on; report these, once)")
    which.add_argument("--validation", action="store_true",
                       help="the validation speakers' clips (never trained on; choose settings on these)")
    ls.add_argument("--clip", action="append", help="only this clip (stem); repeatable")
    ls.add_argument("--limit", type=int, help="at most N clips")
    ls.add_argument("--max-seconds", type=float, help="only the first seconds of each clip")
    ls.add_argument("--seed", type=int, help="sampling seed (default TELLER_SEED or 0)")
    ls.add_argument("--image", type=Path, help="portrait for the contact sheets (default: the bundled portrait)")
    ls.add_argument("--no-sheets", action="store_true", help="skip the rendered contact sheets")
    ls.add_argument("--record", type=Path, help="also write the JSON result here (e.g. docs/results/lipsync.json)")
    ls.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ls.set_defaults(func=_cmd_eval)


def _cmd_docs(args: argparse.Namespace) -> int:
    from .docs import README, RESULTS_DIR, update_readme

    if args.docs_command == "card":
        from .train.card import write_model_card

        print(f"wrote {write_model_card(args.model, args.dataset, heldout=args.heldout)}")
        return 0

    readme, results = args.readme or README, args.results or RESULTS_DIR
    changed = update_readme(readme, results, check=args.check)
    if args.check:
        print(f"{readme}: the results section is {'OUT OF DATE' if changed else 'up to date'}")
        return 1 if changed else 0
    print(f"{'updated' if changed else 'unchanged'} {readme}")
    return 0


def _add_docs_parser(sub) -> None:
    d = sub.add_parser("docs", help="regenerate documentation from recorded results")
    subs = d.add_subparsers(dest="docs_command", required=True)
    r = subs.add_parser("readme", help="rewrite the README's results section from docs/results/*.json")
    r.add_argument("--check", action="store_true", help="exit 1 if the section is out of date; write nothing")
    r.add_argument("--readme", type=Path, help="README to update (default: the repository's)")
    r.add_argument("--results", type=Path, help="results folder (default: docs/results)")
    r.set_defaults(func=_cmd_docs)
    c = subs.add_parser("card", help="rewrite a checkpoint's model card (README.md) from its recorded metrics")
    c.add_argument("--model", type=Path, required=True, help="checkpoint folder")
    c.add_argument("--dataset", type=Path, required=True, help="the dataset it was trained on")
    c.add_argument("--heldout", type=Path, help="lipsync.json of `eval lipsync --heldout` on this checkpoint")
    c.set_defaults(func=_cmd_docs)



def _cmd_demo(args: argparse.Namespace) -> int:
    import json

    try:
        import livekit.plugins.teller  # noqa: F401
    except ImportError as e:
        raise TellerError(f"the demo needs the LiveKit plugin ({e}); install it with "
                          "`pip install -e plugins/livekit-plugins-teller`") from e
    from .live.demo import asdict, run_demo

    result = run_demo(args.output, say=args.say, audio=args.audio, image=args.image, worker=args.worker,
                      stamp=not args.no_stamp)
    if args.json:
        print(json.dumps(asdict(result)))
    return 0


def _add_demo_parser(sub) -> None:
    d = sub.add_parser("demo", help="the avatar end to end in a LiveKit room (local server if LIVEKIT_URL is unset)")
    d.add_argument("-o", "--output", type=Path, default=Path("demo.mp4"), help="recording of what the viewer received")
    src = d.add_mutually_exclusive_group()
    src.add_argument("--say", help="sentence for the agent to speak (espeak-ng)")
    src.add_argument("--audio", help="speech file for the agent to speak instead")
    d.add_argument("--image", type=Path, help="portrait photo (default: the bundled one)")
    d.add_argument("--worker", action="store_true", help="render on a separate avatar worker (agent dispatch)")
    d.add_argument("--no-stamp", action="store_true",
                   help="no frame counter on the bottom edge (then no A/V offset figure)")
    d.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    d.set_defaults(func=_cmd_demo)


def _cmd_playground(args: argparse.Namespace) -> int:
    try:
        import livekit.plugins.teller  # noqa: F401
    except ImportError as e:
        raise TellerError(f"the playground needs the LiveKit plugin ({e}); install it with "
                          "`pip install -e plugins/livekit-plugins-teller`") from e
    from .playground import PlaygroundOptions, run_playground

    run_playground(PlaygroundOptions(port=args.port, host=args.host, worker=args.worker, image=args.image))
    return 0


def _add_playground_parser(sub) -> None:
    from .playground import DEFAULT_PORT

    p = sub.add_parser("playground", help="the avatar in your browser: a web page to watch it, make it speak, "
                                          "interrupt it and switch its photo")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"web page port (default {DEFAULT_PORT}; 0: any free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface the page listens on (default 127.0.0.1; anyone who reaches it can join the room)")
    p.add_argument("--worker", action="store_true", help="render on a separate avatar worker (agent dispatch)")
    p.add_argument("--image", type=Path, help="portrait photo (default: TELLER_AVATAR_IMAGE or the bundled one)")
    p.set_defaults(func=_cmd_playground)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="teller-agent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("animate", help="animate a portrait to an mp4")
    p.add_argument("--image", type=Path, help="portrait photo (default: TELLER_AVATAR_IMAGE or the bundled portrait)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--procedural", action="store_true", help="procedural motion (the default)")
    src.add_argument("--motion", type=Path, help="motion latent .npz (face68 space)")
    p.add_argument("--audio", type=Path, help="audio to mux; the video lasts as long as it")
    p.add_argument("--seconds", type=float, default=5.0, help="length without audio or motion file (default 5)")
    p.add_argument("-o", "--output", type=Path, default=Path("avatar.mp4"), help="output mp4 (default avatar.mp4)")
    p.add_argument("--contact-sheet", type=Path, help="also write a PNG grid of every Nth frame")
    p.add_argument("--every", type=int, default=10, help="contact sheet: every Nth frame (default 10)")
    p.add_argument("--size", type=int, help="frame size in pixels (default TELLER_FRAME_SIZE or 512)")
    p.add_argument("--seed", type=int, help="procedural motion seed (default TELLER_SEED or 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_animate)

    r = sub.add_parser("render", help="lip-synced talking video from a portrait and speech")
    speech = r.add_mutually_exclusive_group(required=True)
    speech.add_argument("--audio", type=Path, help="speech (WAV/MP3/M4A/OGG/...)")
    speech.add_argument("--say", help="text to speak with eSpeak NG (needs `apt-get install espeak-ng`)")
    r.add_argument("--voice", default="en-us", help="eSpeak NG voice for --say (default en-us)")
    r.add_argument("--image", type=Path, help="portrait photo (default: TELLER_AVATAR_IMAGE or the bundled portrait)")
    r.add_argument("-o", "--output", type=Path, default=Path("talking.mp4"), help="output mp4 (default talking.mp4)")
    r.add_argument("--contact-sheet", type=Path, help="also write a PNG grid of every Nth frame")
    r.add_argument("--every", type=int, default=10, help="contact sheet: every Nth frame (default 10)")
    r.add_argument("--save-motion", type=Path, help="also save the generated motion latent (.npz)")
    r.add_argument("--model", type=Path, help="FMLG checkpoint folder (default TELLER_MODEL_DIR or teller_agent/models/fmlg-face68)")
    r.add_argument("--size", type=int, help="frame size in pixels (default TELLER_FRAME_SIZE or 512)")
    r.add_argument("--seed", type=int, help="sampling seed (default TELLER_SEED or 0)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_render)

    d = sub.add_parser("dataset", help="build training data; measure the real clips' audio/video offsets")
    d.add_argument("what", choices=["build", "sync"],
                   help="build: real clips (split by speaker, teller_agent/data/speakers.tsv) + speech + synthetic "
                   "speech -> a dataset folder; sync: measure every real clip's audio/video offset with Whisper "
                   "features (cross-fitted by speaker), write teller_agent/data/av_offsets.tsv and the manifest")
    d.add_argument("--real", type=Path, help="folder of real talking clips (e.g. ../shared/data/talking)")
    d.add_argument("--speech", type=Path, help="folder of speech audio without video (e.g. ../shared/data/speech): "
                   "audio student corpus only")
    d.add_argument("--synthetic", type=int, default=0, help="number of synthetic espeak-ng clips")
    d.add_argument("--out", type=Path, required=True, help="dataset folder to write (sync: to measure)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("-q", "--quiet", action="store_true")
    d.set_defaults(func=_cmd_dataset)

    t = sub.add_parser("train", help="train the motion tokenizer, the audio student or the generator")
    t.add_argument("what", choices=["tokenizer", "student", "readout", "generator"],
                   help="tokenizer: RVQ motion tokens; student: the causal audio encoder distilled from Whisper "
                   "(needs the Whisper weights; also fits its lip readout); readout: refit only the lip readout of the "
                   "student in --out (student features -> mouth expression deltas); generator: the AR generator on "
                   "the student's features")
    t.add_argument("--dataset", type=Path, required=True, help="dataset folder from `dataset build`")
    t.add_argument("--out", type=Path, required=True, help="checkpoint folder (the generator needs its tokenizer there)")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: one core; 0 = torch's default)")
    g = t.add_argument_group("generator only")
    g.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the one-cycle schedule (default 1e-3)")
    g.add_argument("--batch", type=int, default=12, help="windows of 4 s per step (default 12)")
    g.add_argument("--real-fraction", type=float, default=0.8,
                   help="share of the windows drawn from real clips (default 0.8)")
    g.add_argument("--aux-mouth", type=float, default=1.0,
                   help="weight of the auxiliary mouth-feature regression loss (default 1; 0 = off)")
    g.add_argument("--noise-fraction", type=float, default=0.0,
                   help="share of the real clips' windows that hear the clip's speech under babble or coloured noise "
                   "(SNR range: NOISE_SNR_DB in teller_agent.train.generator; default 0)")
    g.add_argument("--init", type=Path,
                   help="checkpoint folder whose generator weights training starts from (fine-tuning)")
    g.add_argument("--prev-mask-mouth", type=float,
                   help="chance a previous-frame mouth token is masked in training (default: GeneratorConfig's)")
    g.add_argument("--prev-mask-head", type=float,
                   help="chance a previous-frame head token is masked in training (default: GeneratorConfig's)")
    t.add_argument("--lookahead", type=int, choices=(0, 1, 2, 3, 4, 5),
                   help="student only: video frames of future audio it sees, 40 ms each (default 1); all of it adds to "
                   "live audio-to-frame latency")
    g.add_argument("--eval-every", type=int, default=1000, help="steps between held-out evaluations (default 1000)")
    g.add_argument("--audio-encoder", choices=["student", "whisper"], default="student",
                   help="student: the features of the checkpoint's audio student (default; train it first with `train "
                   "student`); whisper: the Whisper encoder itself on 200 ms slices (the teacher; up to 360 ms of "
                   "look-ahead, a reference rather than a live setting)")
    t.add_argument("--whisper-model-dir", type=Path,
                   help="Whisper model folder for the teacher features (default TELLER_WHISPER_MODEL_DIR, else Whisper "
                   "base from its PyPI wheels)")
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=_cmd_train)

    _add_bench_parser(sub)
    _add_eval_parser(sub)
    _add_docs_parser(sub)
    _add_demo_parser(sub)
    _add_playground_parser(sub)
    _add_sheet_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except TellerError as exc:
        print(f"teller-agent: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
