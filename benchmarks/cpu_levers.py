"""What each CPU fast-path lever gives, interleaved in one process (docs/fast_path_and_export.md).

Every variant is our engine (``fifo``) on the same synthetic clip (``surgsam.bench.paired``'s)
with the same weights; frame t goes through all variants, in a rotating order, before frame
t+1. Reported per variant: median wall-clock ms per frame, median process CPU ms per frame
(all threads; less sensitive to other jobs than wall time), the speed-up of both against
``fp32``, and the mask IoU against ``fp32`` (mean and minimum over objects and frames).

    python benchmarks/cpu_levers.py --threads 2                      # sam2.1_hiera_small at 512, 1 object
    python benchmarks/cpu_levers.py --model nano --checkpoint surgsam-nano-synth --image-size 256 \\
        --objects 4 --frames 40 --variants fp32 fp32+cached recipe autocast-bf16 compile

Variants: ``fp32`` (eager float32), ``fp32+cached`` (cached memory projections),
``autocast-bf16`` (``precision="bf16"`` without the fast path: bf16 autocast over the whole
network), ``recipe`` (the CPU fast path's bf16 trunk and memory attention, float32 heads),
``recipe+cached``, ``int8-trunk`` (the recipe with the trunk's linear layers as dynamic int8,
``torch.ao`` per-channel weights), ``compile`` (``fast=True, precision="fp32"``:
``torch.compile`` of the four per-frame networks and the static memory; the first frames
include minutes of compilation and are left out by ``--warmup``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings

import numpy as np
import torch
from torch import nn

import surgsam
from surgsam.bench.paired import synthetic_clip
from surgsam.engine import VideoSegmenter
from surgsam.engine.cpufast import LowPrecisionLinear, fast_model

VARIANTS = ("fp32", "fp32+cached", "autocast-bf16", "recipe", "recipe+cached", "int8-trunk", "compile")


class _DynamicInt8(nn.Module):
    """A LowPrecisionLinear replaced by torch.ao's dynamic int8 linear (float32 in and out)."""

    def __init__(self, lin: LowPrecisionLinear) -> None:
        super().__init__()
        ref = nn.Linear(lin.in_features, lin.out_features)
        ref.weight.data = lin.weight.float()
        ref.bias.data = lin.bias.float() if lin.bias is not None else torch.zeros(lin.out_features)
        ref.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.q = torch.ao.nn.quantized.dynamic.Linear.from_float(ref)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(x.float())


def int8_trunk(model):
    fast = fast_model(model, "bf16")
    for parent in list(fast.image_encoder.trunk.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LowPrecisionLinear):
                setattr(parent, name, _DynamicInt8(child))
    return fast


def session(model, variant: str, n: int):
    kw = dict(memory="fifo", num_frames=n)
    if variant == "fp32":
        return VideoSegmenter(model, **kw)
    if variant == "fp32+cached":
        return VideoSegmenter(model, cached_memory=True, **kw)
    if variant == "autocast-bf16":
        return VideoSegmenter(model, precision="bf16", **kw)
    if variant in ("recipe", "recipe+cached"):
        seg = VideoSegmenter(model, precision="bf16", fast="auto", cached_memory=variant.endswith("cached"), **kw)
        assert seg.fast_path.matmul == "bf16"
        return seg
    if variant == "int8-trunk":
        return VideoSegmenter(int8_trunk(model), **kw)
    if variant == "compile":
        return VideoSegmenter(model, fast=True, precision="fp32", **kw)
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sam2.1_hiera_small")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--objects", type=int, default=1)
    ap.add_argument("--frames", type=int, default=15, help="timed frames")
    ap.add_argument("--warmup", type=int, default=3, help="untimed frames after the prompt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["fp32", "fp32+cached", "autocast-bf16", "recipe", "recipe+cached", "int8-trunk"],
    )
    ap.add_argument("--json", default=None, help="also write the numbers here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = surgsam.build_model(a.model, image_size=a.image_size, checkpoint=a.checkpoint)
    n = 1 + a.warmup + a.frames
    frames, masks = synthetic_clip(n, model.image_size, a.objects)
    segs = {v: session(model, v, n) for v in a.variants}
    wall: dict[str, list[float]] = {v: [] for v in segs}
    cpu: dict[str, list[float]] = {v: [] for v in segs}
    ious: dict[str, list[float]] = {v: [] for v in segs}
    names = list(segs)
    for t, f in enumerate(frames):
        out = {}
        for v in names[t % len(names) :] + names[: t % len(names)]:
            s = segs[v]
            w0, c0 = time.perf_counter(), time.process_time()
            if t == 0:
                for k, m in enumerate(masks):
                    r = s.add_prompt(f if k == 0 else None, obj_id=k + 1, mask=m)
            else:
                r = s.step(f)
            if t > a.warmup:
                wall[v].append(1000 * (time.perf_counter() - w0))
                cpu[v].append(1000 * (time.process_time() - c0))
            out[v] = r.masks
        if "fp32" in out and t > 0:
            for v in names:
                for x, y in zip(out["fp32"], out[v]):
                    u = (x | y).sum()
                    ious[v].append(1.0 if u == 0 else float((x & y).sum() / u))
        print(
            f"frame {t}: " + ", ".join(f"{v} {wall[v][-1]:.0f}" for v in names if wall[v]), file=sys.stderr, flush=True
        )
    med = {v: (statistics.median(wall[v]), statistics.median(cpu[v])) for v in names}
    print(
        f"{a.model} at {model.image_size} px, {a.objects} object(s), {a.frames} timed frames, {a.threads} threads, "
        f"torch {torch.__version__}"
    )
    print("| variant | wall ms/frame | CPU ms/frame | speed-up vs fp32 (wall / CPU) | mask IoU vs fp32 (mean / min) |")
    print("|---|---|---|---|---|")
    rows = []
    for v in names:
        w, c = med[v]
        up = f"{med['fp32'][0] / w:.2f}x / {med['fp32'][1] / c:.2f}x" if "fp32" in med else ""
        iou = f"{np.mean(ious[v]):.4f} / {np.min(ious[v]):.4f}" if ious[v] else ""
        print(f"| {v} | {w:.1f} | {c:.1f} | {up} | {iou} |")
        rows.append(
            {
                "variant": v,
                "wall_ms": w,
                "cpu_ms": c,
                "iou_mean": float(np.mean(ious[v])) if ious[v] else None,
                "iou_min": float(np.min(ious[v])) if ious[v] else None,
                "wall_all": wall[v],
                "cpu_all": cpu[v],
            }
        )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"args": vars(a), "torch": torch.__version__, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
