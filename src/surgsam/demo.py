"""``surgsam demo``: segment a synthetic surgical clip end to end with the streaming engine.

Renders a short procedural endoscopic clip (deterministic; ``surgsam.data.synth``), prompts
every object with its mask at its first appearance (the papers' protocol), tracks them with
the chosen memory policy, writes the clip, the masks (DAVIS palette PNGs, overlaps resolved by
SAM 2's rule) and an overlay mp4, and prints speed, memory and the J&F of exactly those masks,
scored by ``surgsam eval``'s evaluator with its default protocol (``surgsam2``: each object's
prompted first frame and its last frame are not scored).

The network is the embedded model ``surgsam-nano-synth`` (the ``nano`` preset trained by
``surgsam train --recipe nano-synth`` on synthetic videos of another seed than the demo clip),
or ``--checkpoint``; ``--untrained`` (or an installation without the embedded file) runs the
``nano`` preset with random weights, whose masks mean nothing.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from .options import add_memory_argument

#: Same values as ``surgsam.data.synth.DEMO_CLIP_SEED`` and ``surgsam.modeling.embedded.DEMO_MODEL_NAME``
#: (repeated so that building the command-line parser imports neither numpy-heavy package nor torch).
DEMO_CLIP_SEED = 2
DEMO_MODEL_NAME = "surgsam-nano-synth"

__all__ = ["register", "run_demo"]


def run_demo(
    out_dir: str | Path = "out/demo",
    frames: int = 30,
    memory: str = "efp",
    checkpoint: str | None = None,
    seed: int = DEMO_CLIP_SEED,
    device: str = "cpu",
    untrained: bool = False,
) -> dict[str, float]:
    """Run the demo; returns the summary numbers (J&F, fps, latency, peak RSS).

    ``seed`` draws the clip (and the weights with ``untrained``)."""
    import torch

    from .engine import Prompt, segment_video
    from .eval.evaluator import ArrayVideo, evaluate_video
    from .io import OverlayVideoWriter, PaletteMaskWriter, write_video
    from .io.labels import label_map_from_result

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    from .data.synth import render_demo_clip
    from .modeling.embedded import UNTRAINED_NOTE, build_demo_model, demo_checkpoint

    clip = render_demo_clip(frames, seed)
    render_s = time.perf_counter() - t0
    write_video(out_dir / "clip.mp4", clip.frames, fps=10)

    ckpt = demo_checkpoint(checkpoint, untrained)
    if ckpt is None:
        print(f"WARNING: {UNTRAINED_NOTE}")
    model = build_demo_model(ckpt, seed, device, untrained=ckpt is None)
    labels = np.stack(clip.labels)  # T x H x W object ids
    prompts = []
    for k in sorted(int(i) for i in np.unique(labels) if i != 0):
        first = int(np.argmax((labels == k).reshape(len(labels), -1).any(1)))
        prompts.append(Prompt(obj_id=k, frame_idx=first, mask=labels[first] == k))

    masks_out = PaletteMaskWriter(out_dir / "masks")
    written = []  # the id maps of the palette PNGs: what is scored
    lat = []
    t0 = time.perf_counter()
    with OverlayVideoWriter(out_dir / "overlay.mp4", fps=10) as overlay:
        for res in segment_video(clip.frames, prompts, model, memory=memory):
            t = res.frame_idx
            label = label_map_from_result(res)  # overlaps: the highest logit wins (SAM 2's rule)
            masks_out.write_label_map(t, label)
            overlay.write(
                clip.frames[t],
                res.obj_ids,
                np.stack([label == k for k in res.obj_ids]) if res.obj_ids else res.masks,
                text=f"frame {t}  {res.latency_ms:.0f} ms  {memory}",
            )
            lat.append(res.latency_ms)
            written.append(label)
    wall = time.perf_counter() - t0
    # the evaluator and protocol of `surgsam eval` (surgsam2: each object's first and last frame skipped)
    scored = evaluate_video(ArrayVideo("demo", labels, clip.categories), written, "surgsam2")
    s = scored.summary()["all"]
    summary = {
        "J&F": s["J&F"],
        "J": s["J"],
        "F": s["F"],
        "objects_scored": len(scored.objects),
        "fps": len(lat) / wall,
        "median_latency_ms": float(np.median(lat)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"clip: {frames} synthetic frames {clip.frames[0].shape[1]}x{clip.frames[0].shape[0]}, "
        f"{len(prompts)} objects (rendered in {render_s:.1f} s)"
    )
    print(
        f"model: {ckpt or 'untrained'} ({model.cfg.name}, {n_params / 1e6:.2f}M parameters), {model.image_size} px, memory={memory}, "
        f"device {model.device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    if scored.objects:
        print(
            f"J&F {summary['J&F']:.1f} (J {summary['J']:.1f}, F {summary['F']:.1f}) over {len(scored.objects)} objects "
            f"(mask prompt at each object's first appearance; the written masks scored as `surgsam eval` does, "
            f"SurgSAM2 protocol: each object's first and last frame skipped)"
        )
    else:
        print(
            "J&F: no object has frames left to score (the SurgSAM2 protocol skips each object's first and last "
            "frame); use more --frames"
        )
    print(
        f"speed: {summary['fps']:.1f} FPS, median {summary['median_latency_ms']:.1f} ms per frame (all objects); "
        f"peak memory {summary['peak_rss_mb']:.0f} MB RSS"
    )
    print(f"wrote {out_dir / 'clip.mp4'}, {out_dir / 'overlay.mp4'} and {out_dir / 'masks'}/NNNNN.png")
    if ckpt is None:
        print(f"NOTE: {UNTRAINED_NOTE}")
    return summary


def register(subparsers) -> None:
    """Add ``surgsam demo``."""
    p = subparsers.add_parser(
        "demo",
        help="segment a synthetic surgical clip end to end (overlay mp4, masks, J&F, FPS)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--frames", type=int, default=30, help="length of the synthetic clip")
    add_memory_argument(p)
    p.add_argument(
        "--checkpoint",
        default=None,
        help=f"our checkpoint (carries its config); default: the embedded {DEMO_MODEL_NAME}",
    )
    p.add_argument("--untrained", action="store_true", help="random weights instead of the embedded model")
    p.add_argument(
        "--seed",
        type=int,
        default=DEMO_CLIP_SEED,
        help=f"seed of the clip (and of the random weights with --untrained); default {DEMO_CLIP_SEED}",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps ...")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.frames < 2:
        raise ValueError("--frames must be at least 2")
    if args.untrained and args.checkpoint is not None:
        raise ValueError("--untrained and --checkpoint exclude each other")
    run_demo(
        args.out,
        frames=args.frames,
        memory=args.memory,
        checkpoint=args.checkpoint,
        seed=args.seed,
        device=args.device,
        untrained=args.untrained,
    )
    return 0
