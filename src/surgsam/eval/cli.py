"""``surgsam eval``: score predictions against ground truth, or run a segmenter end to end.

Folder mode::

    surgsam eval --pred PRED_DIR --gt DATA_DIR [--split valid] [--protocol surgsam2|resurgsam2|davis]

End-to-end mode (mask prompt at each object's first appearance, then scoring)::

    surgsam eval --e2e --data DATA_DIR --split valid --segmenter engine --model sam2.1_hiera_s
    torchrun --nproc_per_node 2 -m surgsam.eval --e2e --data DATA_DIR --segmenter copy

Referring mode (each expression of a Ref-EndoVis video segmented from its text, ReSurgSAM2
protocol by default)::

    surgsam eval --e2e --segmenter referring --data DATA_DIR --split valid --checkpoint CKPT [--no-cifs]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..options import add_memory_argument
from ..runtime import process_device

__all__ = ["add_eval_arguments", "main", "register", "run_eval"]


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    from ..options import add_layout_argument
    from ..referring.cifs import SEARCH_OUTPUTS
    from .endtoend import SEGMENTERS
    from .evaluator import PROTOCOLS

    p.add_argument(
        "--gt",
        "--data",
        dest="gt",
        metavar="DIR",
        help="ground-truth dataset (VOS, Ref-EndoVis or raw EndoVis folder, or an Annotations folder)",
    )
    p.add_argument(
        "--pred",
        metavar="DIR",
        help="predictions: DIR/<video>/<frame>.png palette maps or DIR/<video>/<obj_id>/<frame>.png per-object masks",
    )
    p.add_argument("--split", default=None, help="split subfolder or EndoVis split (train, valid, fold0..3)")
    add_layout_argument(p)
    p.add_argument(
        "--protocol",
        default=None,
        choices=sorted(PROTOCOLS),
        help="surgsam2 (default; resurgsam2 with --segmenter referring): skip each track's first/last "
        "frame; resurgsam2: all frames, instruments/tissue reported separately; davis: all frames "
        "minus first/last",
    )
    p.add_argument(
        "--level",
        default="instance",
        choices=["instance", "category"],
        help="classes of the EndoVis IoU family: object ids (papers' CIoU) or categories (ISINet)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="write objects.csv, videos.csv, frames.csv, summary.csv, results.json here"
    )
    p.add_argument(
        "--plots",
        metavar="DIR",
        help="also draw jf_per_video.png (J&F per video) and j_over_time.png "
        '(J per frame, a line per video) here (needs the plots extra: pip install "surgsam[plots]")',
    )
    p.add_argument("--videos", help="comma-separated subset of videos")
    p.add_argument("--allow-missing", action="store_true", help="a missing prediction frame counts as empty")
    p.add_argument("--no-strict", action="store_true", help="score only the videos that have predictions")
    p.add_argument("--summary-only", action="store_true", help="print the summary without per-object rows")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    e = p.add_argument_group("end-to-end mode")
    e.add_argument("--e2e", action="store_true", help="run a segmenter on the dataset, then score it")
    e.add_argument(
        "--segmenter",
        default="engine",
        choices=sorted(SEGMENTERS),
        help="; ".join(f"{k}: {v}" for k, v in SEGMENTERS.items()),
    )
    e.add_argument(
        "--model",
        default=None,
        help="model preset (default: the checkpoint's own; engine: else sam2.1_hiera_s; referring: else nano)",
    )
    e.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint file for the model (referring: without it an "
        "UNTRAINED nano + tiny referring network runs, and the output says so)",
    )
    e.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="model input size (default: the checkpoint's own; engine: "
        "else 512, as both papers; referring: else the model's default)",
    )
    e.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ... (torchrun: NCCL on cuda, else gloo)")
    e.add_argument(
        "--prompt",
        default="mask",
        choices=["mask", "click", "box"],
        help="engine: prompt each object at its first appearance with its mask (the papers' "
        "protocol), one positive click at its deepest pixel, or its tight box",
    )
    add_memory_argument(e, default=None, help="engine: efp when not given; referring: dlm")
    r = p.add_argument_group("referring segmenter (--segmenter referring)")
    r.add_argument(
        "--referring",
        default=None,
        help="referring preset (default: tiny without --checkpoint, resurgsam2 for ReSurgSAM2's files)",
    )
    r.add_argument(
        "--text-encoder",
        default=None,
        help="minilm | clip | clip-tiny | a local CLIP/BERT directory (default: the model's own)",
    )
    r.add_argument("--no-cifs", action="store_true", help="track from the first frame passing both thresholds")
    r.add_argument(
        "--search-output",
        default="detection",
        choices=SEARCH_OUTPUTS,
        help="what an expression emits before it is credibly found: its detections (default, as "
        "ReSurgSAM2), only those passing both CIFS thresholds, or empty masks",
    )
    r.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "auto"])
    r.add_argument("--seed", type=int, default=0, help="weights seed of the untrained network (no --checkpoint)")
    e.add_argument(
        "--save-pred",
        metavar="DIR",
        help="also save the predictions as palette PNGs (one id per pixel: exactly the map that is scored)",
    )


def register(subparsers) -> None:
    """Add the ``eval`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "eval",
        help="score predictions (J, F, J&F, Dice, challenge IoU) or run a segmenter end to end",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_eval_arguments(p)
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Entry point of ``surgsam eval``; returns the exit code."""
    from ..data import open_dataset
    from ..data.vos import DatasetError

    if not args.gt:
        print("error: --gt/--data DIR is required", file=sys.stderr)
        return 2
    if not args.e2e and not args.pred:
        print("error: give --pred DIR to score predictions, or --e2e to run a segmenter", file=sys.stderr)
        return 2
    videos = [v for v in args.videos.split(",") if v] if args.videos else None
    if args.plots:
        from .plots import require_matplotlib

        require_matplotlib()  # a missing extra is refused before any work
    try:
        if args.e2e:
            return _run_e2e(args, videos)
        from .evaluator import evaluate_folders

        gt = open_dataset(args.gt, args.split, layout=args.layout, require_frames=False, videos=videos)
        result = evaluate_folders(
            gt,
            args.pred,
            args.protocol or "surgsam2",
            level=args.level,
            allow_missing=args.allow_missing,
            strict=not args.no_strict and videos is None,
            progress=not args.no_progress,
        )
    except (DatasetError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _report(result, args)
    return 0


def _run_e2e(args: argparse.Namespace, videos: list[str] | None) -> int:
    from ..data import open_dataset
    from .distributed import gather_results, init_distributed, shard, shutdown_distributed
    from .endtoend import make_segmenter, run_end_to_end

    if args.prompt != "mask" and args.segmenter != "engine":
        raise ValueError(f"--prompt {args.prompt} applies to --segmenter engine only")
    if args.segmenter == "referring":
        return _run_referring(args, videos)
    env = init_distributed(args.device)
    if args.segmenter == "engine" and args.checkpoint is None and env.is_main:
        print(untrained_engine_warning(args.model, args.image_size), file=sys.stderr, flush=True)
    try:
        data = open_dataset(
            args.gt, args.split, layout=args.layout, require_frames=args.segmenter == "engine", videos=videos
        )
        all_videos = list(data)
        mine = [all_videos[i] for i in shard([len(v) for v in all_videos], env.rank, env.world_size)]
        seg = (
            make_segmenter(
                args.segmenter,
                all_videos,
                model=args.model,
                image_size=args.image_size,
                checkpoint=args.checkpoint,
                device=str(process_device(args.device, env.local_rank)),
                memory=args.memory or "efp",
                prompt=args.prompt,
            )
            if args.segmenter == "engine"
            else make_segmenter(args.segmenter, all_videos)
        )
        desc = "e2e" if not env.distributed else f"e2e rank {env.rank}/{env.world_size}"
        part = run_end_to_end(
            mine,
            seg,
            args.protocol or "surgsam2",
            level=args.level,
            save_dir=args.save_pred,
            progress=not args.no_progress and env.is_main,
            desc=desc,
        )
        result = gather_results(part, env)
    finally:
        shutdown_distributed()
    if result is not None:
        if env.distributed:
            print(f"merged {len({o.video for o in result.objects})} videos from {env.world_size} ranks")
        _report(result, args)
    return 0


def untrained_engine_warning(model: str | None, image_size: int | None) -> str:
    """The line ``eval --e2e --segmenter engine`` prints without ``--checkpoint``: what runs
    (random weights of the preset) and how to evaluate a trained model instead."""
    name, size = model or "sam2.1_hiera_s", image_size or 512
    return (
        f"warning: no --checkpoint: the engine runs an UNTRAINED {name} at {size} px (random weights: its scores "
        "mean nothing); pass --checkpoint surgsam-nano-synth (bundled, trained on synthetic videos) or an "
        "official checkpoint (surgsam download --list)"
    )


def referring_segmenter_from_args(args: argparse.Namespace, device: str | None = None, **kw):
    """A :class:`ReferringEvalSegmenter` from the eval (or ablation) command line."""
    from ..referring.cifs import CIFSConfig
    from .referring import ReferringEvalSegmenter

    kw.setdefault("memory", args.memory or "dlm")
    kw.setdefault("cifs", CIFSConfig(enabled=not args.no_cifs))
    kw.setdefault("search_output", args.search_output)
    return ReferringEvalSegmenter(
        checkpoint=args.checkpoint,
        model=args.model,
        referring=args.referring,
        image_size=args.image_size,
        text_encoder=args.text_encoder,
        device=device or args.device,
        precision=args.precision,
        seed=args.seed,
        **kw,
    )


def _run_referring(args: argparse.Namespace, videos: list[str] | None) -> int:
    from ..data import open_dataset
    from ..referring.build import UNTRAINED_NOTE
    from .distributed import gather_payloads, init_distributed, shard, shutdown_distributed
    from .referring import ReferringRun, run_referring

    env = init_distributed(args.device)
    try:
        data = open_dataset(args.gt, args.split, layout=args.layout, require_frames=True, videos=videos)
        all_videos = list(data)
        mine = [all_videos[i] for i in shard([len(v) for v in all_videos], env.rank, env.world_size)]
        seg = referring_segmenter_from_args(args, device=str(process_device(args.device, env.local_rank)))
        if seg.untrained and env.is_main:
            print(
                "WARNING: " + UNTRAINED_NOTE.format(sam=args.model or "nano", ref=args.referring or "tiny"),
                file=sys.stderr,
            )
        desc = "refer-eval" if not env.distributed else f"refer-eval rank {env.rank}/{env.world_size}"
        part = run_referring(
            mine,
            seg,
            args.protocol or "resurgsam2",
            level=args.level,
            save_dir=args.save_pred,
            progress=not args.no_progress and env.is_main,
            desc=desc,
        )
        parts = gather_payloads(part.to_dict(), env)
    finally:
        shutdown_distributed()
    if parts is not None:
        run = ReferringRun.merge([ReferringRun.from_dict(p) for p in parts if p is not None])
        if env.distributed:
            print(f"merged {len({e.video for e in run.expressions})} videos from {env.world_size} ranks")
        print(run.table(per_object=not args.summary_only))
        if args.out:
            paths = run.write(Path(args.out))
            print("wrote " + ", ".join(str(p) for p in paths.values()))
        _plots(run.result, args)
    return 0


def _report(result, args: argparse.Namespace) -> None:
    print(result.table(per_object=not args.summary_only))
    if args.out:
        paths = result.write(Path(args.out))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    _plots(result, args)


def _plots(result, args: argparse.Namespace) -> None:
    if args.plots:
        from .plots import plot_eval

        drawn = plot_eval(result, Path(args.plots))
        print("wrote " + ", ".join(str(p) for p in drawn.paths.values()))


def main(argv: list[str] | None = None) -> int:
    """``python -m surgsam.eval ...`` (the ``eval`` subcommand on its own, e.g. under torchrun)."""
    p = argparse.ArgumentParser(
        prog="surgsam eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_eval_arguments(p)
    return run_eval(p.parse_args(argv))
