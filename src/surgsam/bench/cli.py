"""``surgsam bench``: our engine (fast path off and on), Meta's and transformers' SAM 2 video
predictors, interleaved frame by frame in one process (:mod:`surgsam.bench.paired`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(sub) -> None:
    from . import DEFAULT_VARIANTS

    p = sub.add_parser(
        "bench",
        help="speed, mask agreement and session memory of our engine against Meta's and transformers' predictors",
        description="Runs every variant on the same synthetic clip with the same weights, one frame at a time in "
        "rotating order (fair ratios on a noisy machine), and prints a Markdown table and, with --json, "
        "all numbers. Meta's predictor (sam2) and transformers' Sam2VideoModel run when installed.",
    )
    p.add_argument("--model", default="sam2.1_hiera_small", help="preset (default sam2.1_hiera_small)")
    p.add_argument(
        "--checkpoint", default=None, help="weights (file or embedded model name); default: random weights, seeded"
    )
    p.add_argument("--image-size", type=int, default=512, help="model input size (default 512; 0: the preset's)")
    p.add_argument("--frame-size", type=int, default=None, help="side of the synthetic frames (default: image size)")
    p.add_argument("--frames", type=int, default=25, help="timed frames per object count (default 25)")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames after the prompt frame (default 3)")
    p.add_argument(
        "--block",
        type=int,
        default=1,
        help="frames each variant runs in a row before the next one's turn (default 1: frame by frame, the "
        "fairest against drift; frame by frame each session finds its data evicted from the CPU caches by the "
        "others', so small models run slower than alone: blocks of ~20 time them as they run alone)",
    )
    p.add_argument("--objects", type=int, nargs="+", default=[1], help="object counts to run, e.g. 1 2")
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        help="fifo efp dlm (our fp32 engine), <memory>-fast (fast path auto), <memory>-bf16 (eager bf16 autocast), "
        "<memory>-static (static-shape memory alone), <memory>-compiled (torch.compile + static memory forced), "
        "<memory>-compiled-fp32 (the same in fp32), <memory>-trace (fp32, calls replayed from TorchScript traces), "
        "<memory>-fast-bf16 (fast path with bf16 asked for: the CPU recipe), <memory>-fast-bf16-trace, meta, hf",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", default="2", help="torch CPU threads (a number or auto; default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write every number (latencies included) here")
    p.add_argument("--verbose", action="store_true", help="print each timed frame")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..io.atomic import atomic_write_text
    from ..runtime import torch_threads
    from .paired import BenchConfig, run_bench

    cfg = BenchConfig(
        model=args.model,
        image_size=args.image_size or None,
        checkpoint=args.checkpoint,
        frames=args.frames,
        warmup=args.warmup,
        objects=tuple(args.objects),
        variants=tuple(args.variants),
        frame_size=args.frame_size,
        device=args.device,
        seed=args.seed,
        block=args.block,
    )
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.verbose else None
    with torch_threads(args.threads):
        result = run_bench(cfg, log=log)
    print(result.table())
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(result.to_json(), indent=1) + "\n")
        print(f"\nwrote {args.json}")
    return 0
