"""Data subcommands: ``synth`` (generate a synthetic dataset), ``synth-stats`` (statistics and a
contact sheet of any dataset folder) and ``data-check`` (validate a dataset folder).

    surgsam synth OUT --videos 8 --frames 40 --size 320x256 --seed 0 --stats --contact-sheet OUT/sheet.png
    surgsam synth OUT --seed 2 --valid 16 --style alt --phrasing paraphrase    # a second, differently styled held-out set
    surgsam synth-stats OUT [--json] [--contact-sheet sheet.png]
    surgsam data-check DIR [--split valid] [--layout vos]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

__all__ = ["register", "run_check", "run_synth", "run_synth_stats"]


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 320x256, got {text!r}") from None
    return w, h


def register(subparsers) -> None:
    """Add ``synth``, ``synth-stats`` and ``data-check`` to an argparse subparsers object."""
    from ..options import add_layout_argument
    from .paraphrase import PHRASINGS
    from .synth.style import STYLES

    p = subparsers.add_parser(
        "synth",
        help="generate a synthetic surgical video dataset (Ref-EndoVis layout)",
        description="Render procedural endoscopic videos with instruments, tissue, smoke, "
        "blur and camera motion; write frames, palette annotations, Meta json and expressions.",
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--videos", type=int, default=4, help="number of videos (default 4)")
    p.add_argument("--frames", type=int, default=40, help="frames per video (default 40)")
    p.add_argument("--size", type=_size, default=(320, 256), help="frame size WxH (default 320x256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed and options = same dataset)")
    p.add_argument(
        "--version",
        type=int,
        choices=(17, 18),
        default=18,
        help="17: EndoVis17 instruments only; 18: EndoVis18 instruments plus tissue (default)",
    )
    p.add_argument("--valid", type=int, default=None, help="videos in the valid split (default: a quarter)")
    p.add_argument(
        "--layout",
        choices=("ref", "vos"),
        default="ref",
        help="ref: {train,valid}/{JPEGImages,Annotations,Meta}; vos: JPEGImages/Annotations only",
    )
    p.add_argument("--instruments", type=_size, default=None, metavar="MINxMAX", help="instruments per video, e.g. 2x4")
    p.add_argument("--no-smoke", action="store_true", help="no cautery smoke")
    p.add_argument("--no-blur", action="store_true", help="no motion blur")
    p.add_argument("--static-camera", action="store_true", help="no camera motion or tissue breathing")
    p.add_argument("--format", choices=("jpg", "png"), default="jpg", help="frame file format (default jpg)")
    p.add_argument(
        "--style",
        choices=STYLES,
        default="default",
        help="look: default (the training data's) or alt (other light colour and vignetting, tissue colours and "
        "texture, instrument finishes; same scenes, ids and labels) for a differently styled held-out set",
    )
    p.add_argument(
        "--phrasing",
        choices=PHRASINGS,
        default="standard",
        help="expressions: standard (the Ref-EndoVis grammar) or paraphrase (EndoVis names, synonyms, other "
        "templates, partly never used by training augmentation; Meta unchanged)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes rendering videos in parallel")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in OUT")
    p.add_argument("--stats", action="store_true", help="print dataset statistics afterwards")
    p.add_argument("--contact-sheet", metavar="PNG", help="also write a contact sheet of frames with masks")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_synth)

    s = subparsers.add_parser(
        "synth-stats",
        help="statistics (objects per frame, occlusion, sizes, re-entries) "
        "of a dataset folder, and optionally a contact sheet",
    )
    s.add_argument("root", help="dataset folder (synthetic, Ref-EndoVis or VOS)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.add_argument("--contact-sheet", metavar="PNG", help="write a contact sheet of frames with mask overlays")
    s.add_argument("--sheet-videos", type=int, default=3)
    s.add_argument("--sheet-frames", type=int, default=4)
    s.add_argument("--sheet-width", type=int, default=200, help="thumbnail width in pixels")
    s.set_defaults(func=run_synth_stats)

    c = subparsers.add_parser("data-check", help="validate a dataset folder (frames, annotations, sizes, ids, json)")
    c.add_argument("root")
    c.add_argument("--split", default=None)
    add_layout_argument(c)
    c.set_defaults(func=run_check)


def run_synth(args: argparse.Namespace) -> int:
    from .synth import SynthConfig, contact_sheet, dataset_stats, format_stats, generate

    w, h = args.size
    kw = {}
    if args.instruments:
        kw["min_instruments"], kw["max_instruments"] = args.instruments
    try:
        cfg = SynthConfig(
            width=w,
            height=h,
            frames=args.frames,
            version=args.version,
            smoke=0.0 if args.no_smoke else SynthConfig.smoke,
            motion_blur=not args.no_blur,
            camera_motion=0.0 if args.static_camera else 1.0,
            frame_format=args.format,
            style=args.style,
            phrasing=args.phrasing,
            **kw,
        )
        t0 = time.time()
        info = generate(
            args.out,
            cfg,
            videos=args.videos,
            seed=args.seed,
            valid=args.valid,
            layout=args.layout,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = sum(len(v) for v in info["splits"].values())
    print(
        f"wrote {n} videos x {args.frames} frames ({w}x{h}) to {args.out} in {time.time() - t0:.1f} s "
        f"({', '.join(f'{k}: {len(v)}' for k, v in info['splits'].items())})"
    )
    if args.stats:
        print(format_stats(dataset_stats(args.out)))
    if args.contact_sheet:
        print(f"contact sheet: {contact_sheet(args.out, args.contact_sheet)}")
    return 0


def run_synth_stats(args: argparse.Namespace) -> int:
    from .synth import contact_sheet, dataset_stats, format_stats
    from .vos import DatasetError

    try:
        st = dataset_stats(args.root)
        print(json.dumps(st.to_dict(), indent=1) if args.json else format_stats(st))
        if args.contact_sheet:
            p = contact_sheet(
                args.root,
                args.contact_sheet,
                videos=args.sheet_videos,
                frames=args.sheet_frames,
                thumb_width=args.sheet_width,
            )
            print(f"contact sheet: {p}", file=sys.stderr if args.json else sys.stdout)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def run_check(args: argparse.Namespace) -> int:
    from . import open_dataset
    from .vos import DatasetError

    try:
        ds = open_dataset(args.root, args.split, layout=args.layout)
        frames = 0
        for v in ds:
            v.validate()
            frames += len(v)
            exps = v.expressions() if hasattr(v, "expressions") else []
            print(f"{v.name}: {len(v)} frames, objects {v.object_ids}" + (f", {len(exps)} expressions" if exps else ""))
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {len(ds)} videos, {frames} frames ({type(ds).__name__})")
    return 0
