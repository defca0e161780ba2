"""``python -m surgsam.export.run EXPORT VIDEO --mask first.png --out masks/``: segment a video
with the folder ``surgsam export`` wrote, through onnxruntime alone (PyTorch is never imported).

The prompt is on one frame (``--frame``, default 0): ``--mask`` (a binary PNG, or a palette PNG
whose ids are the objects), ``--points`` (+ ``--labels``) or ``--box``; the objects are tracked
forward from it (earlier frames get empty masks, as ``surgsam segment``'s default direction).
The masks are written as DAVIS palette PNGs (one per frame, overlaps resolved by the highest
logit, as ``surgsam segment`` does), with a ``surgsam_manifest.json`` manifest; a JSON summary
goes to stdout and progress to stderr.

What the runner lacks (:data:`ENGINE_ONLY`: reverse / both directions, prompts files and
``--object``, corrections, the ``dlm`` memory, text prompts) is refused with a specific error
that names ``surgsam segment`` (or ``surgsam refer``) instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: ``surgsam segment`` / ``surgsam refer`` options the ONNX runner does not have, and why; given
#: one, the runner stops with this reason instead of argparse's generic "unrecognized arguments".
ENGINE_ONLY = {
    "--direction": "the ONNX runner tracks forward only; reverse and both directions need the engine "
    "(surgsam segment --direction)",
    "--prompts": "the ONNX runner takes one prompt (--mask, --points or --box, on --frame); prompts files "
    "for several objects on several frames need the engine (surgsam segment --prompts)",
    "--object": "the ONNX runner takes one prompt (--mask, --points or --box, on --frame); --object specs "
    "need the engine (surgsam segment --object)",
    "--clicks": "the ONNX runner takes no corrections (no second prompt for a tracked object), so it has no "
    "click modes; use the engine (surgsam segment --clicks)",
    "--text": "the ONNX runner has no text prompts (the referring network is not exported); use surgsam refer",
}

#: The runner's limits, as ``--help`` states them.
LIMITS = (
    "Limits (use surgsam segment for these): one prompt set on one frame (--frame), tracked forward "
    "only; no corrections of a tracked object; memory fifo or efp (no dlm); no text prompts (surgsam "
    "refer); the model, weights and input size are the export's."
)


def build_parser() -> argparse.ArgumentParser:
    from ..io.prompt_args import add_single_prompt_arguments

    p = argparse.ArgumentParser(
        prog="python -m surgsam.export.run",
        description="Segment a video with an ONNX export folder (surgsam export) using onnxruntime only, "
        "from a prompt on one frame (--frame, default 0), tracked forward; masks are written as DAVIS "
        "palette PNGs.",
        epilog=LIMITS,
    )
    p.add_argument("export", type=Path, help="the folder `surgsam export --out` wrote")
    p.add_argument("video", help="video file, image folder, camera index or stream URL")
    add_single_prompt_arguments(p)
    p.add_argument(
        "--frame",
        type=int,
        default=0,
        help="index of the prompt frame (default 0); earlier frames get empty masks (forward tracking only)",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="output folder for the masks (new or empty, unless --overwrite)"
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument(
        "--memory",
        type=_memory_policy,
        default=None,
        metavar="{fifo,efp}",
        help="memory policy (default: the one the folder was exported for); dlm needs the engine",
    )
    p.add_argument(
        "--memory-dtype",
        choices=["bfloat16", "float32"],
        default="bfloat16",
        help="how memories are stored (bfloat16: as the engine does by default)",
    )
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: its own)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _memory_policy(text: str) -> str:
    from .runner import POLICIES

    if text in POLICIES:
        return text
    if text == "dlm":
        raise argparse.ArgumentTypeError(
            "the ONNX runner has no dlm memory (fifo and efp only); use the engine: surgsam segment --memory dlm"
        )
    raise argparse.ArgumentTypeError(f"the ONNX runner's memory policies are {', '.join(POLICIES)}, not {text!r}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The runner's arguments; an option only the engine has is refused with its reason
    (:data:`ENGINE_ONLY`), any other unknown one as argparse does."""
    p = build_parser()
    args, unknown = p.parse_known_args(argv)
    for tok in unknown:
        name = tok.split("=", 1)[0]
        if name in ENGINE_ONLY:
            p.error(f"{name}: {ENGINE_ONLY[name]}")
    if unknown:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def run(args) -> dict:
    """Segment ``args.video``; returns the summary (frames, fps, ...)."""
    from ..io.labels import label_map_from_result
    from ..io.outdir import OutputFolder
    from ..io.prompt_args import read_prompt_args
    from ..io.sources import open_source
    from ..io.writers import PaletteMaskWriter
    from .runner import OnnxVideoSegmenter

    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.frame < 0:
        raise ValueError(f"--frame must be >= 0, got {args.frame}")
    if args.max_frames is not None and args.max_frames <= args.frame:
        raise ValueError(
            f"--max-frames {args.max_frames} stops before the prompt on frame {args.frame} (frames are counted from 0)"
        )
    prompts = read_prompt_args(args)  # refused before anything is opened
    src = open_source(int(args.video) if args.video.isdigit() else args.video)
    known = src.num_frames if getattr(src, "num_frames_exact", True) and not src.is_live else None
    if known is not None and args.frame >= known:
        src.close()
        raise ValueError(f"{args.video} has {known} frames (0..{known - 1}); --frame {args.frame} is beyond its end")
    try:
        seg = OnnxVideoSegmenter(
            args.export,
            memory=args.memory,
            memory_dtype=args.memory_dtype,
            threads=args.threads,
            num_frames=src.num_frames,  # as `surgsam segment`: the length scales the pointers' temporal encoding
        )
    except BaseException:
        src.close()
        raise
    man = seg.onnx.manifest
    say = (lambda line: None) if args.no_progress else (lambda line: print(line, file=sys.stderr, flush=True))
    say(
        f"onnxruntime: {man.model} at {man.image_size}px from {args.export}, memory {seg.memory}; "
        f"{len(prompts)} object(s) on frame {args.frame}"
    )
    paths = getattr(src, "paths", None)
    stems = [p.stem for p in paths] if paths else None
    names = stems if stems and len(set(stems)) == len(stems) else None
    n, ms, ids = 0, [], set()
    t_start = time.perf_counter()
    try:
        with OutputFolder(args.out, overwrite=args.overwrite) as folder:
            writer = PaletteMaskWriter(args.out, names=names)
            for frame in src:
                t0 = time.perf_counter()
                if n == args.frame:
                    res = None
                    for i, p in enumerate(prompts):
                        res = seg.add_prompt(frame if i == 0 else None, **p.kwargs())
                else:
                    res = seg.step(frame)  # before the prompt frame: no object yet, an empty result
                assert res is not None
                ms.append((time.perf_counter() - t0) * 1000)
                folder.will_write()
                folder.record(writer.write_label_map(res.frame_idx, label_map_from_result(res)))
                ids.update(res.obj_ids)
                n += 1
                if n % 50 == 0:
                    say(f"frame {n}: {1000 / float(np.median(ms[-50:])):.1f} frames/s")
                if args.max_frames is not None and n >= args.max_frames:
                    break
            if n == 0:
                raise ValueError(f"{args.video} has no frame")
            if n <= args.frame:
                raise ValueError(
                    f"{args.video} has {n} frames (0..{n - 1}); the prompt on frame {args.frame} was never used"
                )
            folder.finish(
                {
                    "command": "python -m surgsam.export.run",
                    "export": str(args.export),
                    "video": str(args.video),
                    "model": man.model,
                    "image_size": man.image_size,
                    "memory": seg.memory,
                    "memory_dtype": seg.memory_dtype,
                    "prompt_frame": args.frame,
                    "frames_written": n,
                    "objects": sorted(ids),
                }
            )
    finally:
        src.close()
    wall = time.perf_counter() - t_start
    return {
        "frames": n,
        "fps": n / wall if wall > 0 else 0.0,
        "median_ms": float(np.median(ms)),
        "objects": sorted(ids),
        "memory": seg.memory,
        "model": man.model,
        "image_size": man.image_size,
        "out": str(args.out),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = run(args)
    except (ValueError, OSError, ImportError) as e:  # bad input, unreadable files, onnxruntime missing
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
