"""``surgsam segment``: track objects through a video from a mask, clicks or a box."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..options import add_memory_argument


def register(sub) -> None:
    p = sub.add_parser(
        "segment",
        help="segment objects through a video from a mask / clicks / box on one frame",
        description="Track objects through a video file, image folder or stream, or through every video of a "
        "folder of videos (video files and/or frame folders, into OUT/<video>/). Masks are written as DAVIS "
        "palette PNGs (or one folder per object), optionally also as COCO RLE JSON and an overlay mp4.",
    )
    p.add_argument(
        "video",
        help="video file (mp4/avi/mkv/webm), image folder, camera index or stream URL; or a "
        "folder of videos (no images of its own; each video file / frame folder in it is segmented)",
    )
    p.add_argument("--model", default=None, help="preset name (optional with our own checkpoints)")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="weights: Meta's .pt, a bare state dict, ours, or an embedded "
        "model's name (default without --model: the embedded surgsam-nano-synth; see surgsam presets)",
    )
    p.add_argument(
        "--untrained",
        action="store_true",
        help="random weights (of --model, or of the nano preset) instead of the embedded model",
    )
    p.add_argument("--image-size", type=int, default=None, help="model input size (default: the model's)")
    add_prompt_arguments(p, objects=True)
    p.add_argument("--frame", type=int, default=0, help="index of the prompt frame (of --object without @FRAME too)")
    p.add_argument(
        "--direction",
        default="forward",
        choices=["forward", "reverse", "both"],
        help="forward (default): every frame from the first, tracked from the prompted frames on (a "
        "stream; frames before the first prompt get empty masks), as Meta's vos_inference; reverse: from "
        "the last prompted frame down to frame 0; both: forward from the first prompted frame (each object "
        "from its first prompt), then each object in reverse from its first prompt to frame 0 (as Meta's "
        "propagate_in_video twice), so every frame gets every object's mask. "
        "reverse and both are offline: a video file's frames before the start are held in memory",
    )
    p.add_argument(
        "--clicks",
        default="accumulate",
        choices=["accumulate", "replace"],
        help="several click prompts for one object on one frame (a --prompts file): add up (default) or "
        "each replaces the ones before (SAM 2's clear_old_points)",
    )
    add_memory_argument(p)
    p.add_argument(
        "--precision",
        default="auto",
        choices=["fp32", "bf16", "fp16", "auto"],
        help="auto: bf16 autocast on CUDA sm80+, fp16 on older GPUs; on the CPU fp32, except what --fast runs in bf16",
    )
    p.add_argument(
        "--fast",
        default="auto",
        choices=["off", "auto", "on"],
        help="fast path, auto: CUDA sm80+ = bf16 autocast + TF32, eager (on = torch.compile + static memory); a CPU whose bf16 matmuls measure >= 1.5x fp32 = bf16 image-encoder trunk, memory attention and mask convolutions unless --precision fp32 (docs/fast_path_and_export.md)",
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help="replay the per-frame calls from TorchScript traces (the same masks; faster for small models such as "
        "the nano; each trace costs about 0.4 s when made, in the first frames; not with --fast on)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder for the masks (new or empty, unless "
        "--overwrite); for a folder of videos, one subfolder per video",
    )
    p.add_argument("--format", default="palette", choices=["palette", "per-object"], help="mask layout")
    add_coco_argument(p)
    p.add_argument(
        "--overlay",
        type=Path,
        default=None,
        help="also write an overlay mp4 here (for a folder of videos: a folder, one <video>.mp4 each)",
    )
    add_output_arguments(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def add_output_arguments(p) -> None:
    """``--overwrite`` and ``--allow-half-weights`` (shared with ``surgsam refer``)."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty --out (the earlier run's masks are replaced; those this run does "
        "not rewrite are removed at the end) and over an existing --overlay",
    )
    p.add_argument(
        "--allow-half-weights",
        action="store_true",
        help="accept a checkpoint stored in fp16/bf16 (refused by default: it loses precision)",
    )


def add_coco_argument(p) -> None:
    """``--coco`` (shared with ``surgsam refer``)."""
    p.add_argument(
        "--coco",
        action="store_true",
        help="also write the masks as COCO RLE JSON, OUT/coco_rle.json: per frame and object, with the "
        "object score and predicted IoU; one object per pixel, as the palette PNGs (needs the coco extra: "
        'pip install "surgsam[coco]")',
    )


def run_manifest(args, **fields) -> dict:
    """The manifest a mask-writing command leaves in ``--out``: the command, its arguments and
    ``fields`` (checkpoint, model, frames written, ...)."""
    arguments = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("func", "command") and (v is None or isinstance(v, (str, int, float, bool, list, Path)))
    }
    return {"command": args.command, "arguments": arguments, **fields}


def add_prompt_arguments(p, required: bool = True, objects: bool = False) -> None:
    """``--mask`` / ``--points`` (+ ``--labels``) / ``--box`` / ``--prompts`` and ``--obj-id``
    (and with ``objects``, the repeatable ``--object``), read back by :func:`build_prompts`
    (which also needs ``args.frame``). The one-object options are
    :func:`surgsam.io.prompt_args.add_single_prompt_arguments`, shared with the ONNX runner."""
    from ..io.prompt_args import add_single_prompt_arguments

    g = p.add_mutually_exclusive_group(required=required)
    add_single_prompt_arguments(p, g)
    g.add_argument(
        "--prompts",
        type=Path,
        help="JSON file of prompts for several objects on any frames "
        '(obj_id, frame, and mask / points+labels / box each; or {"videos": {name: [...]}} for a folder '
        "of videos; see surgsam.engine.prompt_file)",
    )
    if objects:
        g.add_argument(
            "--object",
            action="append",
            metavar="ID[@FRAME]:KEY=VALUE",
            help='one object\'s prompt, repeatable: "2:box=10,20,80,90", "3@5:points=60,70;10,10:labels=1,0", '
            '"1:mask=first.png" (mask_id=K picks a palette id); FRAME defaults to --frame',
        )


def build_prompts(args, video: str | None = None) -> list:
    """The prompts the command line gives; ``video`` (the video's name) picks its entry in a
    prompts file that maps video names to prompts."""
    from ..io.prompt_args import read_prompt_args
    from .offline import Prompt

    if getattr(args, "object", None):
        from .prompt_file import parse_object_specs

        if args.labels:
            raise ValueError(
                "--labels goes with --points; with --object give the labels inside it: "
                '"2:points=60,70;10,10:labels=1,0"'
            )
        return parse_object_specs(args.object, args.frame)
    if getattr(args, "prompts", None) is not None:
        from .prompt_file import read_prompt_file

        if args.labels:
            raise ValueError("--labels goes with --points; in a prompts file give each prompt its own labels")
        pf = read_prompt_file(args.prompts)
        if pf.videos is None:
            assert pf.shared is not None
            return pf.shared
        if video is None:
            raise ValueError(
                f"{args.prompts} maps video names to prompts ({', '.join(pf.videos)}); this source "
                "has no name to look up: give a prompts file with one list"
            )
        return pf.for_video(video)
    return [
        Prompt(a.obj_id, args.frame, points=a.points, labels=a.labels, box=a.box, mask=a.mask)
        for a in read_prompt_args(args)
    ]


def run(args) -> int:
    import torch

    from ..io import open_source
    from ..io.outdir import OutputFolder, check_output_file
    from ..io.video_folder import find_videos

    if args.coco:
        from ..io.coco import require_pycocotools

        require_pycocotools()  # a missing extra is refused before any work
    if getattr(args, "trace", False) and args.fast == "on":
        raise ValueError("--trace replays the eager per-frame calls; it does not combine with --fast on (compiled)")
    if args.overlay is not None and args.direction != "forward":
        raise ValueError(
            f"--overlay needs --direction forward (an overlay video is written in frame order; "
            f"--direction {args.direction} visits frames out of order)"
        )
    videos = find_videos(args.video) if not args.video.isdigit() else None
    if videos is not None:
        return _run_folder(args, videos)
    prompts = build_prompts(args, video=_source_name(args.video))
    if args.overlay is not None:
        check_output_file(args.overlay, args.overwrite, "--overlay")
    src = open_source(int(args.video) if args.video.isdigit() else args.video)  # not a video: refused first
    try:
        with OutputFolder(args.out, overwrite=args.overwrite) as folder:  # refused before any work if in use
            model, ckpt = _build(args)
            summary = _segment(args, prompts, src, model, folder, ckpt, args.out, args.overlay)
    finally:
        src.close()
    summary["torch_threads"] = torch.get_num_threads()
    print(json.dumps(summary))
    return 0


def _source_name(spec: str) -> str | None:
    """The name a prompts file may use for this source: a video file's stem, a folder's name."""
    if spec.isdigit() or "://" in spec:
        return None
    path = Path(spec)
    return path.name if path.is_dir() else path.stem


def _run_folder(args, videos: list) -> int:
    """``segment`` on a folder of videos: each (name, path) into ``OUT/<name>/`` with the same
    model; the prompts file's per-video entries (or the same prompts for all). Everything that
    can be refused (prompts, output folders, overlay files) is refused before the first video."""
    import torch

    from ..io import open_source
    from ..io.outdir import OutputFolder, check_output_file, check_output_folder

    pf = None
    if getattr(args, "prompts", None) is not None:
        from .prompt_file import read_prompt_file

        pf = read_prompt_file(args.prompts)
    if pf is not None and pf.videos is not None:
        have = {name for name, _ in videos}
        unknown = [k for k in pf.videos if k not in have]
        if unknown:
            raise ValueError(
                f"{args.prompts} names videos that are not in {args.video}: {', '.join(unknown)} "
                f"(found: {', '.join(sorted(have))})"
            )
        skipped = [name for name, _ in videos if name not in pf.videos]
        if skipped:
            print(f"surgsam segment: {args.prompts} has no prompts for {', '.join(skipped)}: skipped", file=sys.stderr)
        plan = [(name, path, pf.videos[name]) for name, path in videos if name in pf.videos]
    else:
        shared = pf.shared if pf is not None and pf.shared is not None else build_prompts(args)
        plan = [(name, path, shared) for name, path in videos]
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; for a folder of videos give a folder (one subfolder per video)")
    if args.overlay is not None and args.overlay.exists() and not args.overlay.is_dir():
        raise ValueError(
            f"--overlay {args.overlay} is a file; for a folder of videos give a folder (one <video>.mp4 per video)"
        )
    for name, _, _ in plan:
        check_output_folder(args.out / name, args.overwrite)
        if args.overlay is not None:
            check_output_file(args.overlay / f"{name}.mp4", args.overwrite, "--overlay")
    print(f"surgsam segment: {len(plan)} videos in {args.video}: {', '.join(n for n, _, _ in plan)}", file=sys.stderr)
    model, ckpt = _build(args)
    done = []
    for i, (name, path, prompts) in enumerate(plan):
        try:
            src = open_source(path)
            try:
                with OutputFolder(args.out / name, overwrite=args.overwrite) as folder:
                    overlay = args.overlay / f"{name}.mp4" if args.overlay is not None else None
                    done.append(
                        dict(
                            video=name,
                            **_segment(args, prompts, src, model, folder, ckpt, args.out / name, overlay, video=path),
                        )
                    )
            finally:
                src.close()
        except BaseException:
            print(
                f"surgsam segment: stopped at video {name!r} ({i + 1} of {len(plan)}); the {i} before it are finished",
                file=sys.stderr,
            )
            raise
    print(
        json.dumps(
            {
                "videos": done,
                "frames": sum(d["frames"] for d in done),
                "out": str(args.out),
                "checkpoint": ckpt,
                "model": model.cfg.name,
                "torch_threads": torch.get_num_threads(),
            }
        )
    )
    return 0


def _build(args) -> tuple:
    """The network ``segment`` runs: ``--checkpoint``; without it and without ``--model`` the
    embedded ``surgsam-nano-synth`` (as ``demo``, ``refer`` and ``app``); random weights of
    ``--model`` (or ``nano``) with ``--untrained`` or a bare ``--model``, said on stderr.
    Returns ``(model, checkpoint name or "untrained")``."""
    from ..modeling.embedded import UNTRAINED_NOTE, demo_checkpoint
    from ..modeling import build_model

    if args.untrained and args.checkpoint is not None:
        raise ValueError("--untrained and --checkpoint contradict each other: give one")
    ckpt = args.checkpoint
    if ckpt is None and args.model is None:
        ckpt = demo_checkpoint(None, args.untrained)
    if ckpt is None:
        print(f"surgsam segment: {UNTRAINED_NOTE}", file=sys.stderr)
        return build_model(args.model or "nano", image_size=args.image_size, device=args.device), "untrained"
    return build_model(
        args.model, image_size=args.image_size, checkpoint=ckpt, device=args.device, allow_half=args.allow_half_weights
    ), str(ckpt)


def _segment(
    args, prompts, src, model, folder, checkpoint: str, out: Path, overlay_path: Path | None, video: Path | None = None
) -> dict:
    """The per-frame loop of :func:`run`: masks (and the COCO file, the overlay) into ``folder``
    (``out``), then its manifest; returns the JSON summary. The overlay is renamed into place
    only when complete and discarded on failure, so an earlier file at that path survives a
    failed run."""
    from ..io import OverlayVideoWriter, PaletteMaskWriter, PerObjectMaskWriter
    from ..io.coco import COCO_FILE, CocoRleWriter
    from ..io.labels import label_map_from_result
    from .fastpath import FastMode, resolve_fast_path
    from .offline import Direction
    from .offline import segment_video

    names = _frame_names(src)
    writer: PaletteMaskWriter | PerObjectMaskWriter = (
        PaletteMaskWriter(out, names=names) if args.format == "palette" else PerObjectMaskWriter(out, names=names)
    )
    coco = CocoRleWriter(out / COCO_FILE, names=names, info={"video": str(video or args.video)}) if args.coco else None
    overlay = None
    tee = _Tee(src)
    n, t0, lat, ids = 0, time.perf_counter(), [], set()
    try:
        overlay = OverlayVideoWriter(overlay_path, fps=src.fps or 25.0) if overlay_path else None
        fast_modes: dict[str, FastMode] = {"off": False, "auto": "auto", "on": True}
        fast = fast_modes[args.fast]
        notice = resolve_fast_path(fast, args.precision, model.device, width=model.hidden_dim).notice
        if notice:
            print(notice, file=sys.stderr)
        # reverse passes read src by index where it can
        direction: Direction = getattr(args, "direction", "forward")
        for res in segment_video(
            tee if direction == "forward" else src,
            prompts,
            model,
            memory=args.memory,
            precision=args.precision,
            progress=not args.no_progress,
            fast=fast,
            direction=direction,
            clicks=getattr(args, "clicks", "accumulate"),
            trace=getattr(args, "trace", False),
        ):
            folder.will_write()
            # one id per pixel, overlaps resolved by SAM 2's rule (highest logit): the palette PNG and the COCO masks
            palette = isinstance(writer, PaletteMaskWriter)
            label = label_map_from_result(res) if palette or coco is not None else None
            if isinstance(writer, PaletteMaskWriter):
                folder.record(writer.write_label_map(res.frame_idx, label))
            else:
                folder.record(writer.write_result(res))
            if coco is not None:
                coco.add_result(res, label)
            if overlay is not None:
                overlay.write(
                    tee.current, res.obj_ids, res.masks, text=f"frame {res.frame_idx}  {res.latency_ms:.0f} ms"
                )
            lat.append(res.latency_ms)
            ids.update(res.obj_ids)
            n += 1
        if coco is not None:
            folder.will_write()
            folder.record(coco.write())
        if overlay is not None:
            overlay.close()
    except BaseException:
        if overlay is not None:
            overlay.abort()
        raise
    wall = time.perf_counter() - t0
    folder.finish(
        run_manifest(
            args,
            checkpoint=checkpoint,
            model=model.cfg.name,
            image_size=model.image_size,
            format=args.format,
            frames_written=n,
            objects=sorted(ids),
            video=str(video or args.video),
            coco=COCO_FILE if coco is not None else None,
            overlay=str(overlay_path) if overlay_path else None,
        )
    )
    return {
        "frames": n,
        "fps": n / wall if wall else 0.0,
        "median_latency_ms": float(np.median(lat)) if lat else 0.0,
        "memory": args.memory,
        "precision": args.precision,
        "checkpoint": checkpoint,
        "model": model.cfg.name,
        "image_size": model.image_size,
        "out": str(out),
        "overlay": str(overlay_path) if overlay_path else None,
        "coco": str(out / COCO_FILE) if coco is not None else None,
    }


def _frame_names(src) -> list[str] | None:
    """The input frames' own names (file stems) for an image folder whose stems are unique,
    so the masks keep them (``frame100.jpg`` -> ``frame100.png``); None for videos and streams."""
    paths = getattr(src, "paths", None)
    if not paths:
        return None
    stems = [p.stem for p in paths]
    return stems if len(set(stems)) == len(stems) else None


class _Tee:
    """A frame source that remembers the frame it handed out last (for the overlay)."""

    def __init__(self, src) -> None:
        self.src, self.current = src, None
        self.num_frames = src.num_frames
        self.num_frames_exact = getattr(src, "num_frames_exact", True)

    def __iter__(self):
        for f in self.src:
            self.current = f
            yield f

    def close(self) -> None:
        self.src.close()
