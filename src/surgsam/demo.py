"""``surgsam demo``: segment a synthetic surgical clip end to end with the streaming engine.

Renders a short procedural endoscopic clip (deterministic; ``surgsam.data.synth``), prompts
every object with its mask at its first appearance (the papers' protocol), tracks them with
the chosen memory policy, writes the clip, the masks (DAVIS palette PNGs) and an overlay mp4,
and prints J&F, speed and memory.

The network is the ``nano`` preset with RANDOM weights (or ``--checkpoint``): no trained demo
model ships yet, so its masks are not meaningful; the demo shows that the whole pipeline runs
and how fast.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

UNTRAINED_NOTE = "untrained network (random weights): masks are not meaningful until the trained demo model lands"


def build_demo_model(checkpoint: str | Path | None = None, seed: int = 0, device: str = "cpu"):
    """The demo's network: our ``checkpoint`` (it carries its config), or by default the
    ``nano`` preset with random weights drawn from ``seed`` (see :data:`UNTRAINED_NOTE`)."""
    import torch

    from .modeling import build_model

    if checkpoint is not None:
        return build_model(checkpoint=checkpoint, device=device)
    torch.manual_seed(seed)
    return build_model("nano", device=device)


def render_demo_clip(frames: int = 30, seed: int = 0):
    """The demo's synthetic endoscopic clip (320 x 256, deterministic in ``seed``)."""
    from .data.synth import SynthConfig, render_video

    return render_video(SynthConfig(width=320, height=256, frames=frames), seed=seed, index=0, name="demo")


def run_demo(
    out_dir: str | Path = "out/demo",
    frames: int = 30,
    memory: str = "efp",
    checkpoint: str | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, float]:
    """Run the demo; returns the summary numbers (J&F, fps, latency, peak RSS)."""
    import torch

    from .engine import Prompt, segment_video
    from .eval.metrics import frame_scores
    from .io import OverlayVideoWriter, PaletteMaskWriter, write_video

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    clip = render_demo_clip(frames, seed)
    render_s = time.perf_counter() - t0
    write_video(out_dir / "clip.mp4", clip.frames, fps=10)

    if checkpoint is None:
        print(f"WARNING: {UNTRAINED_NOTE}")
    model = build_demo_model(checkpoint, seed, device)
    labels = np.stack(clip.labels)  # T x H x W object ids
    prompts = []
    for k in sorted(int(i) for i in np.unique(labels) if i != 0):
        first = int(np.argmax((labels == k).reshape(len(labels), -1).any(1)))
        prompts.append(Prompt(obj_id=k, frame_idx=first, mask=labels[first] == k))

    masks_out = PaletteMaskWriter(out_dir / "masks")
    scores: dict[int, list[tuple[float, float]]] = {p.obj_id: [] for p in prompts}
    lat = []
    t0 = time.perf_counter()
    with OverlayVideoWriter(out_dir / "overlay.mp4", fps=10) as overlay:
        for res in segment_video(clip.frames, prompts, model, memory=memory):
            t = res.frame_idx
            masks_out.write(t, res.obj_ids, res.masks)
            overlay.write(clip.frames[t], res.obj_ids, res.masks, text=f"frame {t}  {res.latency_ms:.0f} ms  {memory}")
            lat.append(res.latency_ms)
            for i, k in enumerate(res.obj_ids):
                j, f, _ = frame_scores(res.masks[i], labels[t] == k)
                scores[k].append((j, f))
    wall = time.perf_counter() - t0
    per_obj = {k: np.mean(v, axis=0) for k, v in scores.items() if v}
    jf = 100 * float(np.mean([v.mean() for v in per_obj.values()]))
    summary = {
        "J&F": jf,
        "J": 100 * float(np.mean([v[0] for v in per_obj.values()])),
        "F": 100 * float(np.mean([v[1] for v in per_obj.values()])),
        "fps": len(lat) / wall,
        "median_latency_ms": float(np.median(lat)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    n_params = sum(p.numel() for p in model.parameters())
    print(f"clip: {frames} synthetic frames {clip.frames[0].shape[1]}x{clip.frames[0].shape[0]}, "
          f"{len(prompts)} objects (rendered in {render_s:.1f} s)")
    print(f"model: {model.cfg.name} ({n_params / 1e6:.2f}M parameters), {model.image_size} px, memory={memory}, "
          f"device {model.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"J&F {summary['J&F']:.1f} (J {summary['J']:.1f}, F {summary['F']:.1f}) over {len(per_obj)} objects, "
          f"mask prompt at each object's first appearance")
    print(f"speed: {summary['fps']:.1f} FPS, median {summary['median_latency_ms']:.1f} ms per frame (all objects); "
          f"peak memory {summary['peak_rss_mb']:.0f} MB RSS")
    print(f"wrote {out_dir / 'clip.mp4'}, {out_dir / 'overlay.mp4'} and {out_dir / 'masks'}/NNNNN.png")
    if checkpoint is None:
        print(f"NOTE: {UNTRAINED_NOTE}")
    return summary


def register(subparsers) -> None:
    """Add ``surgsam demo``."""
    p = subparsers.add_parser("demo", help="segment a synthetic surgical clip end to end (overlay mp4, masks, J&F, FPS)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--frames", type=int, default=30, help="length of the synthetic clip")
    p.add_argument("--memory", default="efp", choices=["fifo", "efp", "dlm"])
    p.add_argument("--checkpoint", default=None, help="our checkpoint (carries its config); default: untrained nano")
    p.add_argument("--seed", type=int, default=0, help="seed of the clip and of the random weights")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps ...")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.frames < 2:
        raise ValueError("--frames must be at least 2")
    run_demo(args.out, frames=args.frames, memory=args.memory, checkpoint=args.checkpoint, seed=args.seed,
             device=args.device)
    return 0
