"""The ``teller-agent`` command line.

Subcommands:
    render            portrait + speech -> lip-synced mp4 (the FMLG generator)
    animate           portrait + procedural or file motion (+ audio) -> mp4
    dataset build     real clips + synthetic speech -> a versioned training dataset
    train tokenizer   fit the RVQ motion tokenizer
    train generator   fit the autoregressive motion-token generator
    bench render      render-only frames per second and peak memory
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

    manifest = build_dataset(args.out, real=args.real, synthetic=args.synthetic, heldout=args.heldout,
                             seed=args.seed, progress=not args.quiet, command=_command_line())
    kinds = {}
    for c in manifest["clips"]:
        key = (c["kind"], c["split"])
        kinds[key] = kinds.get(key, 0.0) + c["seconds"]
    for (kind, split), secs in sorted(kinds.items()):
        print(f"{kind:9s} {split:8s} {secs / 60:6.1f} min")
    print(f"wrote {args.out}/manifest.json ({len(manifest['clips'])} clips)")
    return 0


def _command_line() -> str:
    return "teller-agent " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _cmd_train(args: argparse.Namespace) -> int:
    if args.what == "tokenizer":
        from .train.tokenizer import train_tokenizer

        metrics = train_tokenizer(args.dataset, args.out, steps=args.steps, seed=args.seed, progress=not args.quiet,
                                  command=_command_line())
        for row in metrics["tokenizer_reconstruction"]:
            print(f"levels {row['levels']}: mouth {row['mouth_fw']:.4f} face widths = {row['mouth_px']:.2f} px "
                  f"@512, head {row['head_fw']:.4f} fw = {row['head_px']:.2f} px, pose {row['pose_deg']:.2f} deg")
    else:
        from .train.generator import train_generator

        from .train.card import write_model_card

        metrics = train_generator(args.dataset, args.out, steps=args.steps, seed=args.seed, progress=not args.quiet,
                                  command=_command_line())
        print(f"held-out mouth-opening r = {metrics['heldout_mouth_r']:.3f} "
              f"(loudness baseline {metrics['heldout_loudness_r']:.3f})")
        print(f"wrote {write_model_card(args.out, args.dataset)}")
    print(f"wrote {args.out}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import bench_generator, bench_render

    if args.what == "generator":
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
    report = bench_render(size=args.size, frames=args.frames, threads=args.threads, image=args.image, grid=args.grid)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"render {report['size']}x{report['size']}, {report['threads']} thread(s), grid {report['grid']}, "
              f"{report['frames']} frames on {report['machine']}")
        print(f"  median {report['median_ms']:.2f} ms/frame  p95 {report['p95_ms']:.2f} ms  "
              f"-> {report['fps']:.0f} frames/s   peak RSS {report['peak_rss_mb']:.0f} MiB")
    return 0


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
    r.add_argument("--model", type=Path, help="FMLG checkpoint folder (default TELLER_MODEL_DIR or models/fmlg-face68)")
    r.add_argument("--size", type=int, help="frame size in pixels (default TELLER_FRAME_SIZE or 512)")
    r.add_argument("--seed", type=int, help="sampling seed (default TELLER_SEED or 0)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_render)

    d = sub.add_parser("dataset", help="build training data")
    d.add_argument("what", choices=["build"])
    d.add_argument("--real", type=Path, help="folder of real talking clips (e.g. ../shared/data/talking)")
    d.add_argument("--synthetic", type=int, default=0, help="number of synthetic espeak-ng clips")
    d.add_argument("--heldout", nargs="*", help="stems of real clips held out for evaluation (default: a fixed set)")
    d.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("-q", "--quiet", action="store_true")
    d.set_defaults(func=_cmd_dataset)

    t = sub.add_parser("train", help="train the motion tokenizer or the generator")
    t.add_argument("what", choices=["tokenizer", "generator"])
    t.add_argument("--dataset", type=Path, required=True, help="dataset folder from `dataset build`")
    t.add_argument("--out", type=Path, required=True, help="checkpoint folder (the generator needs its tokenizer there)")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=_cmd_train)

    b = sub.add_parser("bench", help="benchmarks that print numbers")
    b.add_argument("what", choices=["render", "generator"],
                   help="render: render-only frames per second; generator: FMLG ms per frame on streamed audio")
    b.add_argument("--seconds", type=float, default=20.0, help="generator: seconds of audio (default 20)")
    b.add_argument("--model", type=Path, help="generator: checkpoint folder (default: the shipped one)")
    b.add_argument("--size", type=int, default=512, help="frame size in pixels (default 512)")
    b.add_argument("--frames", type=int, default=300, help="timed frames (default 300, after 20 warm-up)")
    b.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1: one core)")
    b.add_argument("--grid", type=int, help="warp grid cells per side (default TELLER_RENDER_GRID or 64)")
    b.add_argument("--image", type=Path, help="portrait photo (default: the bundled portrait)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TellerError as exc:
        print(f"teller-agent: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
