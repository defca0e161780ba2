"""``python -m surgsam.export.run EXPORT VIDEO --mask first.png --out masks/``: segment a video
with the folder ``surgsam export`` wrote, through onnxruntime alone (PyTorch is never imported).

The prompt is on the first frame: ``--mask`` (a binary PNG, or a palette PNG whose ids are the
objects), ``--points`` (+ ``--labels``) or ``--box``. The masks are written as DAVIS palette
PNGs (one per frame, overlaps resolved by the highest logit, as ``surgsam segment`` does), with
a ``surgsam_manifest.json`` manifest; a JSON summary goes to stdout and progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m surgsam.export.run",
        description="Segment a video with an ONNX export folder (surgsam export) using onnxruntime only, "
        "from a prompt on the first frame; masks are written as DAVIS palette PNGs.",
    )
    p.add_argument("export", type=Path, help="the folder `surgsam export --out` wrote")
    p.add_argument("video", help="video file, image folder, camera index or stream URL")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--mask", type=Path, help="PNG on the first frame: binary, or a palette PNG whose ids are the objects"
    )
    g.add_argument("--points", help='clicks "x,y;x,y" in frame pixels (with --labels, default all positive)')
    g.add_argument("--box", help='box "x0,y0,x1,y1" in frame pixels')
    p.add_argument("--labels", help='click labels "1,0,..." (1 positive, 0 negative)')
    p.add_argument("--obj-id", type=int, default=1, help="object id for --points/--box/a binary --mask")
    p.add_argument(
        "--out", type=Path, required=True, help="output folder for the masks (new or empty, unless --overwrite)"
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument(
        "--memory",
        choices=["fifo", "efp"],
        default=None,
        help="memory policy (default: the one the folder was exported for)",
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


def _pairs(text: str, n: int, what: str) -> np.ndarray:
    """'x,y;x,y' -> P x n float32, with a clear error."""
    try:
        rows = [[float(v) for v in part.split(",")] for part in text.replace(" ", "").split(";") if part]
    except ValueError:
        raise ValueError(f"cannot parse {what} {text!r}") from None
    if not rows or any(len(r) != n for r in rows):
        raise ValueError(f"{what} must be groups of {n} comma-separated numbers, got {text!r}")
    return np.asarray(rows, dtype=np.float32)


def _prompts(args) -> list[dict]:
    """The first frame's prompts as ``add_prompt`` keyword arguments, one per object."""
    if args.mask is not None:
        from ..io.writers import read_palette_png

        if not args.mask.is_file():
            raise FileNotFoundError(f"mask not found: {args.mask}")
        ids = read_palette_png(args.mask, allow_rgb=True)
        objs = [int(i) for i in np.unique(ids) if i != 0]
        if not objs:
            raise ValueError(f"{args.mask} has no foreground pixel")
        if objs in ([1], [255]):  # a binary mask: one object
            return [{"obj_id": args.obj_id, "mask": ids > 0}]
        return [{"obj_id": k, "mask": ids == k} for k in objs]
    if args.points is not None:
        pts = _pairs(args.points, 2, "--points")
        labels = np.ones(len(pts), dtype=np.int64)
        if args.labels:
            try:
                labels = np.array([int(v) for v in args.labels.split(",")])
            except ValueError:
                raise ValueError(f"cannot parse --labels {args.labels!r}") from None
        return [{"obj_id": args.obj_id, "points": pts, "labels": labels}]
    if args.labels:
        raise ValueError("--labels goes with --points")
    return [{"obj_id": args.obj_id, "box": _pairs(args.box, 4, "--box")[0]}]


def run(args) -> dict:
    """Segment ``args.video``; returns the summary (frames, fps, ...)."""
    from ..io.labels import label_map_from_result
    from ..io.outdir import OutputFolder
    from ..io.sources import open_source
    from ..io.writers import PaletteMaskWriter
    from .runner import OnnxVideoSegmenter

    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    prompts = _prompts(args)  # refused before anything is opened
    seg = OnnxVideoSegmenter(args.export, memory=args.memory, memory_dtype=args.memory_dtype, threads=args.threads)
    src = open_source(int(args.video) if args.video.isdigit() else args.video)
    man = seg.onnx.manifest
    say = (lambda line: None) if args.no_progress else (lambda line: print(line, file=sys.stderr, flush=True))
    say(
        f"onnxruntime: {man.model} at {man.image_size}px from {args.export}, memory {seg.memory}; "
        f"{len(prompts)} object(s) on frame 0"
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
                if n == 0:
                    res = None
                    for i, p in enumerate(prompts):
                        res = seg.add_prompt(frame if i == 0 else None, **p)
                else:
                    res = seg.step(frame)
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
            folder.finish(
                {
                    "command": "python -m surgsam.export.run",
                    "export": str(args.export),
                    "video": str(args.video),
                    "model": man.model,
                    "image_size": man.image_size,
                    "memory": seg.memory,
                    "memory_dtype": seg.memory_dtype,
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
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except (ValueError, OSError, ImportError) as e:  # bad input, unreadable files, onnxruntime missing
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
