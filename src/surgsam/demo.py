"""``surgsam demo``: the smallest end-to-end run of the image predictor.

Builds the ``nano`` preset with RANDOM weights (no trained demo model ships yet), draws a
synthetic 256 x 256 frame (reddish tissue texture with a grey instrument shaft), segments the
shaft from a box prompt and writes ``mask.png`` and ``overlay.png``. It checks that the
pipeline runs and how fast; the mask itself is meaningless until a trained model lands.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

UNTRAINED_NOTE = "untrained network: masks are not meaningful until the trained demo model lands"


def synthetic_frame(size: int = 256, seed: int = 0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A reddish textured background with a grey shaft-like bar; returns (``H x W x 3`` uint8
    RGB frame, (x0, y0, x1, y1) box around the bar)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # tissue: smooth blotches + fine noise, in reds and pinks
    blobs = sum(np.sin(2 * np.pi * (f * xx + g * yy) + p) for f, g, p in rng.uniform(0.5, 4.0, (6, 3)))
    tex = (blobs - blobs.min()) / (np.ptp(blobs) + 1e-6)
    noise = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    img = np.stack([150 + 80 * tex, 40 + 40 * tex, 45 + 35 * tex], -1) + 8 * noise[..., None]
    # instrument shaft: a thick bar entering from the right, slightly tilted, with metallic shading
    cx, cy, angle, half_w = 0.62, 0.45, np.deg2rad(-18.0), 0.06
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)  # along the shaft
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)  # across it
    bar = (np.abs(v) < half_w) & (u > -0.3)
    shade = 150 + 60 * np.cos(np.pi * v / (2 * half_w))  # brighter along the centre line
    img[bar] = np.stack([shade, shade, shade + 6], -1)[bar] + 4 * noise[bar, None]
    frame = np.clip(img, 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(bar)
    pad = 4
    box = (max(int(xs.min()) - pad, 0), max(int(ys.min()) - pad, 0),
           min(int(xs.max()) + pad + 1, size), min(int(ys.max()) + pad + 1, size))
    return frame, box


def run_demo(out_dir: str | Path = "out/demo", runs: int = 5, seed: int = 0, device: str = "cpu") -> dict[str, float]:
    """Run the demo; returns the median latencies in milliseconds."""
    import torch
    from PIL import Image, ImageDraw

    from .modeling import build_model
    from .predictor import ImagePredictor

    print(f"WARNING: {UNTRAINED_NOTE}")
    torch.manual_seed(seed)
    model = build_model("nano", device=device)
    n_params = sum(p.numel() for p in model.parameters())
    frame, box = synthetic_frame(256, seed)
    pred = ImagePredictor(model)

    def timed(fn) -> list[float]:
        fn()  # warm-up
        times = []
        for _ in range(max(runs, 1)):
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t) * 1e3)
        return times

    t_set = timed(lambda: pred.set_image(frame))
    t_pred = timed(lambda: pred.predict(box=box))
    out = pred.predict(box=box)
    best = out.best
    mask = out.masks[best]

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(out_dir / "mask.png")
    overlay = frame.astype(np.float32)
    overlay[mask] = 0.5 * overlay[mask] + 0.5 * np.array([0, 200, 255], np.float32)
    img = Image.fromarray(overlay.astype(np.uint8))
    ImageDraw.Draw(img).rectangle(box, outline=(255, 255, 0), width=2)
    img.save(out_dir / "overlay.png")
    Image.fromarray(frame).save(out_dir / "frame.png")

    lat = {"set_image_ms": statistics.median(t_set), "predict_ms": statistics.median(t_pred)}
    print(f"model: nano ({n_params / 1e6:.2f}M parameters, random weights), input {model.image_size} px, "
          f"device {model.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"prompt: box {box}; best of {len(out.scores)} masks: #{best}, predicted IoU {out.scores[best]:.3f}, "
          f"{mask.mean() * 100:.1f}% of the frame")
    print(f"latency (median of {max(runs, 1)} runs after 1 warm-up): set_image {lat['set_image_ms']:.1f} ms, "
          f"predict {lat['predict_ms']:.1f} ms")
    print(f"wrote {out_dir / 'mask.png'}, {out_dir / 'overlay.png'} and {out_dir / 'frame.png'}")
    print(f"NOTE: {UNTRAINED_NOTE}")
    return lat


def register(subparsers) -> None:
    """Add ``surgsam demo``."""
    p = subparsers.add_parser("demo", help="run the image predictor on a synthetic frame (untrained nano model)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per step (median reported)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and the frame")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps ...")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    run_demo(args.out, runs=args.runs, seed=args.seed, device=args.device)
    return 0
