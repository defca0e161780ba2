"""What each CPU lever gives, interleaved in one process (docs/fast_path_and_export.md).

Every variant is our engine (``fifo``) on the same synthetic clip (``surgsam.bench.paired``'s)
with the same weights; frame t goes through all variants, in a rotating order, before frame
t+1. Reported per variant and object count: median wall-clock ms per frame and FPS, median
process CPU ms per frame (all threads; less sensitive to other jobs than wall time), the
speed-up of both against the reference variant (``base`` when given, else ``fp32``), and the
mask IoU against ``fp32`` (mean and minimum over objects and frames; ``exact`` when every mask
and logit equals ``fp32``'s).

    python benchmarks/cpu_levers.py --threads 2                      # sam2.1_hiera_small at 512, 1 object
    python benchmarks/cpu_levers.py --model nano --checkpoint surgsam-nano-synth --image-size 256 \\
        --objects 1 2 4 --frames 40 --baseline-rev 242d2a7 --variants base fp32

Variants: ``base`` (the engine as it was at git revision ``--baseline-rev``, imported from that
revision's ``src/surgsam`` as a second package: the "before" of this tree's levers, with the
same weights), ``fp32`` (this tree's engine, eager float32: the default), ``trace``
(``trace=True``: the per-frame calls replayed from ``torch.jit.trace`` recordings; the
tracing itself falls in the first frames, give ``--warmup`` enough of them), ``static``
(``static_memory=True``: every frame's memory padded to the policy's capacity, all objects in
one batch), ``fp32+cached`` (cached memory projections), ``autocast-bf16``
(``precision="bf16"`` without the fast path: bf16 autocast over the whole network), ``recipe``
(the CPU fast path's bf16 trunk and memory attention, float32 heads), ``recipe+cached``,
``bf16-trunk`` / ``bf16-memattn`` (the recipe on the trunk only / the memory attention only),
``int8-trunk`` (the recipe with the trunk's linear layers as dynamic int8, ``torch.ao``
per-channel weights), ``compile`` (``fast=True, precision="fp32"``: ``torch.compile`` of the
four per-frame networks and the static memory; the first frames include minutes of
compilation and are left out by ``--warmup``); and the other memory policies, default engine:
``efp`` (Surgical SAM 2's pruning: at most 5 memories attended instead of ``fifo``'s 7),
``efp+trace``, ``dlm`` (up to 3 long-term memories on top of ``fifo``'s); their masks differ
from ``fifo``'s by design, so their IoU column says how much, not whether they agree.
``--repeats N`` runs the whole interleaved
comparison N times and also reports the spread of each variant's median over the runs; for
``trace`` the traces made and the slowest frame (tracing falls in it) are printed.
``--breakdown`` then times each part of ``step()`` for ``base`` and ``fp32`` (each session
alone on the clip, the timing itself included).
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

import surgsam
from surgsam.bench.paired import synthetic_clip
from surgsam.engine import VideoSegmenter
from surgsam.engine.cpufast import LowPrecisionLinear, _lowp_linears, bf16_attention, fast_model
from surgsam.engine.fastpath import TracedCall
from surgsam.modeling.hiera import MultiScaleAttention
from surgsam.modeling.two_way_transformer import Attention

VARIANTS = (
    "base",
    "fp32",
    "trace",
    "static",
    "fp32+cached",
    "autocast-bf16",
    "recipe",
    "recipe+cached",
    "bf16-trunk",
    "bf16-memattn",
    "int8-trunk",
    "compile",
    "efp",
    "efp+trace",
    "dlm",
)
REPO = Path(__file__).resolve().parents[1]


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


def bf16_part(model, part: str):
    """The recipe on one part only: ``"trunk"`` (the image encoder's trunk) or ``"memattn"``
    (the memory attention) computes its linear layers and attention products in bf16."""
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    fast = copy.deepcopy(model, memo).eval()
    root = fast.image_encoder.trunk if part == "trunk" else fast.memory_attention
    _lowp_linears(root, torch.bfloat16)
    for m in root.modules():
        if isinstance(m, (Attention, MultiScaleAttention)):
            m.kernel = bf16_attention
    return fast


def load_revision(rev: str) -> ModuleType:
    """The ``surgsam`` package as it was at git revision ``rev``, imported as ``surgsam_rev``
    (a copy of that revision's ``src/surgsam`` in a temporary folder; its imports are relative,
    so it runs beside this tree's package without touching it)."""
    tar = subprocess.run(["git", "archive", rev, "src/surgsam"], cwd=REPO, check=True, capture_output=True).stdout
    root = Path(tempfile.mkdtemp(prefix="surgsam-rev-"))
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        for member in tf.getmembers():
            member.name = member.name.replace("src/surgsam", "surgsam_rev", 1)
            tf.extract(member, root, filter="data")
    sys.path.insert(0, str(root))
    return importlib.import_module("surgsam_rev")


def session(model, variant: str, n: int, base_model=None, base_pkg: ModuleType | None = None):
    kw = dict(memory="fifo", num_frames=n)
    if variant == "base":
        assert base_pkg is not None and base_model is not None
        return importlib.import_module(f"{base_pkg.__name__}.engine").VideoSegmenter(base_model, **kw)
    if variant == "fp32":
        return VideoSegmenter(model, **kw)
    if variant == "trace":
        return VideoSegmenter(model, trace=True, **kw)
    if variant == "static":
        return VideoSegmenter(model, static_memory=True, **kw)
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
    if variant in ("bf16-trunk", "bf16-memattn"):
        return VideoSegmenter(bf16_part(model, variant.removeprefix("bf16-")), **kw)
    if variant == "compile":
        return VideoSegmenter(model, fast=True, precision="fp32", **kw)
    if variant in ("efp", "efp+trace", "dlm"):  # another memory policy: other masks, by design
        return VideoSegmenter(model, trace=variant.endswith("trace"), **dict(kw, memory=variant.split("+")[0]))
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")


def run_once(a, model, base_model, base_pkg, objects: int) -> dict[str, dict]:
    """One interleaved pass over the clip with ``objects`` objects: per variant its wall and CPU
    ms of every timed frame, its mask IoUs against ``fp32`` and whether it matched exactly."""
    n = 1 + a.warmup + a.frames
    frames, masks = synthetic_clip(n, model.image_size, objects)
    segs = {v: session(model, v, n, base_model, base_pkg) for v in a.variants}
    out = {v: {"wall": [], "cpu": [], "iou": [], "exact": True, "every_wall": []} for v in segs}
    names = list(segs)
    for t, f in enumerate(frames):
        res = {}
        for v in names[t % len(names) :] + names[: t % len(names)]:
            s = segs[v]
            w0, c0 = time.perf_counter(), time.process_time()
            if t == 0:
                for k, m in enumerate(masks):
                    r = s.add_prompt(f if k == 0 else None, obj_id=k + 1, mask=m)
            else:
                r = s.step(f)
            wall = 1000 * (time.perf_counter() - w0)
            out[v]["every_wall"].append(wall)
            if t > a.warmup:
                out[v]["wall"].append(wall)
                out[v]["cpu"].append(1000 * (time.process_time() - c0))
            res[v] = r
        if "fp32" in res and t > 0:
            ref = res["fp32"]
            for v in names:
                same = np.array_equal(ref.masks, res[v].masks) and torch.equal(
                    ref.low_res_logits, res[v].low_res_logits
                )
                out[v]["exact"] = out[v]["exact"] and same
                for x, y in zip(ref.masks, res[v].masks):
                    u = (x | y).sum()
                    out[v]["iou"].append(1.0 if u == 0 else float((x & y).sum() / u))
        if a.verbose and t > a.warmup:
            print(
                f"{objects} obj frame {t}: " + ", ".join(f"{v} {out[v]['wall'][-1]:.0f}" for v in names),
                file=sys.stderr,
            )
    for v, seg in segs.items():
        calls = [c for c in vars(getattr(seg, "_ops", None) or object()).values() if isinstance(c, TracedCall)]
        out[v]["traces"] = sum(len(c) for c in calls) if calls else None
    return out


#: What --breakdown times inside step(): (object path, method, part).
PARTS = (
    ("model", "preprocess", "pre-processing"),
    ("model.image_encoder", "forward", "image encoder"),
    ("model", "memory_tokens", "memory tokens"),
    ("seg", "_memory_tokens", "memory tokens"),
    ("model.memory_attention", "forward", "memory attention"),
    ("model", "decode_prompts", "prompt encoder + mask decoder"),
    ("model", "select_masks", "best mask, upsampled for the memory encoder"),
    ("model.memory_encoder", "forward", "memory encoder"),
    ("seg", "_result", "result (frame-size logits, masks to numpy)"),
    ("seg", "step", "session bookkeeping (the rest of step)"),
)


def breakdown(seg, model, frames, masks, clock=time.perf_counter) -> dict[str, float]:
    """Median ms per frame of each part of :data:`PARTS` (time in parts nested inside a part is
    not counted twice) over ``frames[1:]``, the objects prompted with ``masks`` on frame 0."""
    acc: dict[str, list[float]] = {}
    stack: list[float] = []
    frame: dict[str, float] = {}

    def wrap(owner, name, part):
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t0 = clock()
            stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                dt = clock() - t0
                inner = stack.pop()
                frame[part] = frame.get(part, 0.0) + 1000 * (dt - inner)
                if stack:
                    stack[-1] += dt

        setattr(owner, name, timed)

    for path, name, part in PARTS:
        root, *attrs = path.split(".")
        owner = functools.reduce(getattr, attrs, {"model": model, "seg": seg}[root])
        if hasattr(owner, name):
            wrap(owner, name, part)
    for k, m in enumerate(masks):
        seg.add_prompt(frames[0] if k == 0 else None, obj_id=k + 1, mask=m)
    for t, f in enumerate(frames[1:], 1):
        frame.clear()
        seg.step(f)
        if t > len(frames) // 3:  # the banks are full
            for part, ms in frame.items():
                acc.setdefault(part, []).append(ms)
    return {part: statistics.median(v) for part, v in acc.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sam2.1_hiera_small")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--objects", type=int, nargs="+", default=[1], help="object counts, e.g. 1 2 4")
    ap.add_argument("--frames", type=int, default=15, help="timed frames")
    ap.add_argument("--warmup", type=int, default=3, help="untimed frames after the prompt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="interleaved runs per object count (spread over runs)")
    ap.add_argument("--baseline-rev", default=None, help="git revision whose engine is the variant 'base'")
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["fp32", "fp32+cached", "autocast-bf16", "recipe", "recipe+cached", "int8-trunk"],
    )
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--verbose", action="store_true", help="print every timed frame")
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also time each part of step() (ms per frame) for 'base' and 'fp32', each alone on the clip",
    )
    a = ap.parse_args()
    if "base" in a.variants and a.baseline_rev is None:
        ap.error("the variant 'base' needs --baseline-rev")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = surgsam.build_model(a.model, image_size=a.image_size, checkpoint=a.checkpoint)
    base_pkg = base_model = None
    if "base" in a.variants:
        base_pkg = load_revision(a.baseline_rev)
        base_model = base_pkg.build_model(a.model, image_size=a.image_size, checkpoint=a.checkpoint)
        base_model.load_state_dict(model.state_dict())
    ref = "base" if "base" in a.variants else "fp32"
    print(
        f"{a.model} at {model.image_size} px, {a.frames} timed frames (+{a.warmup} warm-up), {a.threads} threads, "
        f"{a.repeats} interleaved run(s) per object count, torch {torch.__version__}"
        + (f", base = git {a.baseline_rev}" if base_pkg else "")
    )
    print(
        f"| objects | variant | wall ms/frame | FPS | CPU ms/frame | speed-up vs {ref} (wall / CPU) | "
        "spread of the run medians (wall ms) | mask IoU vs fp32 (mean / min) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for k in a.objects:
        runs = [run_once(a, model, base_model, base_pkg, k) for _ in range(a.repeats)]
        pooled = {v: {key: [x for r in runs for x in r[v][key]] for key in ("wall", "cpu", "iou")} for v in a.variants}
        med = {v: (statistics.median(pooled[v]["wall"]), statistics.median(pooled[v]["cpu"])) for v in a.variants}
        for v in a.variants:
            w, c = med[v]
            run_meds = [statistics.median(r[v]["wall"]) for r in runs]
            exact = all(r[v]["exact"] for r in runs)
            ious = pooled[v]["iou"]
            up = f"{med[ref][0] / w:.2f}x / {med[ref][1] / c:.2f}x" if ref in med else ""
            iou = "exact" if exact and ious else f"{np.mean(ious):.4f} / {np.min(ious):.4f}" if ious else ""
            spread = f"{min(run_meds):.1f}-{max(run_meds):.1f}" if len(runs) > 1 else ""
            print(f"| {k} | {v} | {w:.1f} | {1000 / w:.1f} | {c:.1f} | {up} | {spread} | {iou} |")
            rows.append(
                {
                    "objects": k,
                    "variant": v,
                    "wall_ms": w,
                    "fps": 1000 / w,
                    "cpu_ms": c,
                    "run_medians_wall_ms": run_meds,
                    "exact_vs_fp32": exact,
                    "iou_mean": float(np.mean(ious)) if ious else None,
                    "iou_min": float(np.min(ious)) if ious else None,
                    "wall_all": pooled[v]["wall"],
                    "cpu_all": pooled[v]["cpu"],
                }
            )
        for v in a.variants:
            traces = [r[v]["traces"] for r in runs]
            if traces[0] is not None:
                slowest = max(x for r in runs for x in r[v]["every_wall"])
                print(f"\n{k} object(s), {v}: {traces} traces made per run; the slowest frame took {slowest:.0f} ms")
    parts = {}
    if a.breakdown:
        for k in a.objects:
            n = 1 + a.warmup + a.frames
            frames, masks = synthetic_clip(n, model.image_size, k)
            for v in [v for v in ("base", "fp32") if v in a.variants]:
                mdl = base_model if v == "base" else model
                parts[f"{k}/{v}"] = breakdown(session(model, v, n, base_model, base_pkg), mdl, frames, masks)
            print(
                f"\nwhere a frame's time goes, {k} object(s), ms per frame (median over the frames after the first third):"
            )
            names = [v for v in ("base", "fp32") if f"{k}/{v}" in parts]
            print("| part | " + " | ".join(names) + " |")
            print("|---|" + "---|" * len(names))
            order = sorted(parts[f"{k}/{names[-1]}"], key=lambda p: -parts[f"{k}/{names[-1]}"][p])
            for part in order:
                print(f"| {part} | " + " | ".join(f"{parts[f'{k}/{v}'].get(part, 0.0):.2f}" for v in names) + " |")
            print("| sum | " + " | ".join(f"{sum(parts[f'{k}/{v}'].values()):.2f}" for v in names) + " |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"args": vars(a), "torch": torch.__version__, "rows": rows, "breakdown": parts}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
