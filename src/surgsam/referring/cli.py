"""``surgsam refer``: segment objects described by text through a video (ReSurgSAM2)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..engine.cli import add_coco_argument, add_output_arguments, run_manifest
from ..options import add_memory_argument
from .build import (
    DEFAULT_REFERRING_MODEL,
    NEVER_FOUND,
    UNTRAINED_NOTE,
    build_referring,
    default_referring_checkpoint,
    expression_statuses,
    never_found_masks,
)
from .cifs import SEARCH_OUTPUTS

__all__ = [
    "DEFAULT_REFERRING_MODEL",
    "NEVER_FOUND",
    "UNTRAINED_NOTE",
    "build",
    "build_referring",
    "default_referring_checkpoint",
    "expression_statuses",
    "never_found_masks",
    "register",
    "run",
]


def register(sub) -> None:
    p = sub.add_parser(
        "refer",
        help="segment objects described by text (referring expressions) through a video",
        description="Text-referred video segmentation (ReSurgSAM2): each --text is searched for frame by frame "
        "until credible initial frame selection (CIFS) finds it, then tracked with memory. Object ids are 1..N "
        "in --text order. Masks are written as DAVIS palette PNGs (empty while an object is not found), "
        "optionally an overlay mp4; a JSON summary ends the output.",
    )
    p.add_argument("video", help="video file (mp4/avi/mkv/webm), image folder, camera index or stream URL")
    p.add_argument(
        "--text",
        action="append",
        required=True,
        metavar="EXPRESSION",
        help='a referring expression, e.g. "the bipolar forceps on the left"; repeat for several objects',
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder for the palette PNG masks (new or empty, unless --overwrite)",
    )
    p.add_argument("--overlay", type=Path, default=None, help="also write an overlay mp4 (masks with ids) here")
    add_coco_argument(p)
    add_output_arguments(p)
    p.add_argument(
        "--checkpoint",
        default=None,
        help="referring weights: ReSurgSAM2's sam2.1_hiera_s_ref17/18.pth (with --model sam2.1_hiera_s), "
        f"ours, or an embedded model's name (default: the embedded {DEFAULT_REFERRING_MODEL}, trained on "
        "synthetic videos only)",
    )
    p.add_argument(
        "--untrained",
        action="store_true",
        help="an UNTRAINED network instead (random weights from --seed; nano + tiny referring preset "
        "unless --model/--referring say otherwise)",
    )
    p.add_argument("--model", default=None, help="SAM preset (with --untrained: default nano; optional with ours)")
    p.add_argument(
        "--referring",
        default=None,
        help="referring preset (with --untrained: default tiny; resurgsam2 for ReSurgSAM2's files)",
    )
    p.add_argument("--image-size", type=int, default=None, help="model input size (512 for ReSurgSAM2)")
    p.add_argument(
        "--text-encoder",
        default=None,
        help="minilm | clip | clip-tiny | a local CLIP/BERT directory (default: the model's own; "
        "minilm with --untrained)",
    )
    p.add_argument("--no-cifs", action="store_true", help="start tracking on the first frame passing both thresholds")
    p.add_argument(
        "--search-output",
        default="detection",
        choices=SEARCH_OUTPUTS,
        help="masks of an expression not credibly found yet: its detections (default, as ReSurgSAM2), "
        "only those passing both CIFS thresholds, or none (empty until tracking starts)",
    )
    add_memory_argument(p, default="dlm", help="of the tracking stage")
    p.add_argument(
        "--precision",
        default="auto",
        choices=["fp32", "bf16", "fp16", "auto"],
        help="auto: bf16 autocast on CUDA sm80+, fp16 on older GPUs, fp32 on the CPU",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="weights seed of the --untrained network")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def build(args):
    """(model, text encoder, untrained?, checkpoint) from the command line's model options."""
    ckpt = default_referring_checkpoint(args.checkpoint, args.untrained, args.model, args.referring)
    net, enc, untrained = build_referring(
        checkpoint=ckpt,
        model=args.model,
        referring=args.referring,
        image_size=args.image_size,
        text_encoder=args.text_encoder,
        device=args.device,
        seed=args.seed,
        allow_half=getattr(args, "allow_half_weights", False),
    )
    return net, enc, untrained, ckpt


def run(args) -> int:
    import torch

    from ..io import OverlayVideoWriter, PaletteMaskWriter, open_source
    from ..io.outdir import OutputFolder, check_output_file
    from .cifs import CIFSConfig
    from .segmenter import ReferringSegmenter

    from ..io.coco import COCO_FILE, CocoRleWriter, require_pycocotools

    if args.coco:
        require_pycocotools()  # a missing extra is refused before any work
    if args.overlay is not None:
        check_output_file(args.overlay, args.overwrite, "--overlay")
    src = open_source(int(args.video) if args.video.isdigit() else args.video)  # a missing video fails first
    try:
        with OutputFolder(args.out, overwrite=args.overwrite) as folder:  # refused before any work if in use
            model, enc, untrained, ckpt = build(args)
            if untrained:
                print(f"WARNING: {UNTRAINED_NOTE.format(sam=model.sam.cfg.name, ref=model.cfg.name)}", file=sys.stderr)
            seg = ReferringSegmenter(
                model,
                enc,
                memory=args.memory,
                cifs=CIFSConfig(enabled=not args.no_cifs),
                precision=args.precision,
                num_frames=src.num_frames,
                search_output=args.search_output,
            )
            seg.add_texts({i + 1: text for i, text in enumerate(args.text)})  # bad expressions fail before any frame
            coco = (
                CocoRleWriter(
                    args.out / COCO_FILE,
                    categories={i + 1: t for i, t in enumerate(args.text)},
                    info={"video": str(args.video)},
                )
                if args.coco
                else None
            )
            summary = _segment(
                args,
                seg,
                src,
                PaletteMaskWriter(args.out),
                OverlayVideoWriter(args.overlay, fps=src.fps or 25.0) if args.overlay else None,
                folder,
                coco,
            )
            folder.finish(
                run_manifest(
                    args,
                    checkpoint=ckpt,
                    model=model.sam.cfg.name,
                    referring=model.cfg.name,
                    image_size=model.sam.image_size,
                    format="palette",
                    frames_written=summary["frames"],
                    objects=list(range(1, len(args.text) + 1)),
                    texts=list(args.text),
                    untrained=untrained,
                    overlay=summary["overlay"],
                    coco=COCO_FILE if coco is not None else None,
                )
            )
    finally:
        src.close()
    summary.update(
        precision=seg.tracker.precision,
        checkpoint=ckpt,
        model=model.sam.cfg.name,
        referring=model.cfg.name,
        image_size=model.sam.image_size,
        text_encoder=enc.name,
        untrained=untrained,
        torch_threads=torch.get_num_threads(),
    )
    for e in summary["expressions"]:
        if e["tracking_from"] == NEVER_FOUND:
            what = never_found_masks(e["detections_shown"])
            print(
                f"notice: expression {e['obj_id']} ({e['text']!r}) was never credibly found in {summary['frames']} "
                f"frames: {what}",
                file=sys.stderr,
            )
    print(json.dumps(summary))
    return 0


def _segment(args, seg, src, writer, overlay, folder=None, coco=None) -> dict:
    """The per-frame loop; returns the summary (without the model fields). ``folder`` (an
    :class:`~surgsam.io.outdir.OutputFolder`) is told which files were written; ``coco`` (a
    :class:`~surgsam.io.coco.CocoRleWriter`) gets each frame's id map and is written at the end.
    The overlay is renamed into place only when complete, and discarded on failure."""
    from tqdm import tqdm

    from ..io.labels import label_map_from_result

    bar = tqdm(total=src.num_frames, unit="frame", desc="refer", disable=args.no_progress)
    n = 0
    lat: list[float] = []
    det_lat: list[float] = []
    trk_lat: list[float] = []
    t0 = time.perf_counter()
    try:
        for frame in src:
            res = seg.step(frame)
            if folder is not None:
                folder.will_write()
            label = label_map_from_result(res)  # overlaps resolved by the highest logit, as rvos_inference.py
            written = writer.write_label_map(res.frame_idx, label)
            if coco is not None:
                coco.add_result(res, label)
            if folder is not None:
                folder.record(written)
            detected = bool(res.searching) or any(s.found_frame == res.frame_idx for s in seg.statuses())
            (det_lat if detected else trk_lat).append(res.latency_ms)
            lat.append(res.latency_ms)
            if overlay is not None:
                lines = [f"frame {res.frame_idx}  {res.latency_ms:.0f} ms"]
                if res.searching:
                    lines.append("searching: " + ", ".join(str(k) for k in res.searching))
                overlay.write(frame, res.obj_ids, res.masks, text=lines)
            n += 1
            bar.update(1)
            bar.set_postfix(ms=f"{res.latency_ms:.0f}", searching=len(res.searching))
        if coco is not None:
            if folder is not None:
                folder.will_write()
            written = coco.write()
            if folder is not None:
                folder.record(written)
        if overlay is not None:
            overlay.close()
    except BaseException:
        if overlay is not None:
            overlay.abort()  # an earlier overlay at that path stays as it was
        raise
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    med = lambda v: float(np.median(v)) if v else None  # noqa: E731
    return {
        "frames": n,
        "fps": n / wall if wall else 0.0,
        "median_latency_ms": med(lat),
        "detection_latency_ms": med(det_lat),
        "tracking_latency_ms": med(trk_lat),
        "memory": args.memory,
        "cifs": not args.no_cifs,
        "search_output": args.search_output,
        "expressions": expression_statuses(seg),
        "out": str(args.out),
        "overlay": str(args.overlay) if args.overlay else None,
        "coco": str(coco.path) if coco is not None else None,
    }
