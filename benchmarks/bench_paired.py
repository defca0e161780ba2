"""Paired, interleaved speed comparison of memory policies (and the reference predictor) in
ONE process: every variant processes frame t before any variant sees frame t+1, in a
rotating order, so machine noise (other jobs, thermal, turbo) hits all variants alike. The
ratio of median per-frame latencies is then a fair speed-up, unlike FPS from separate runs.

It also times the components the speed-up comes from, alternating per call: the image
encoder, and memory attention over 7 vs 5 spatial memories (+ 16 object pointers), which
gives EFP's ideal bound: fifo frame time / (fifo frame time - (MA7 - MA5)). The bound
printed uses memory attention timed inside the two engines in this run.

    python benchmarks/bench_paired.py --frames 60 --objects 1 --variants fifo efp ref
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_engine import WARMUP, frames_from, make_video  # noqa: E402


def _ours(model, memory: str, frames: list[np.ndarray], masks: list[np.ndarray], attend_s: list[float], **kw):
    """A generator stepping our engine one frame per ``next()``; appends the time spent in
    memory attention on each tracked frame to ``attend_s``."""
    from surgsam.engine import VideoSegmenter

    seg = VideoSegmenter(model, memory=memory, **kw)
    attend = seg._ops.attend_memory

    def timed_attend(*a, **k):
        t0 = time.perf_counter()
        out = attend(*a, **k)
        attend_s.append(time.perf_counter() - t0)
        return out

    seg._ops.attend_memory = timed_attend
    for t, f in enumerate(frames):
        if t == 0:
            for k, m in enumerate(masks):
                seg.add_prompt(f if k == 0 else None, obj_id=k + 1, mask=m)
        else:
            seg.step(f)
        yield t


def _reference(weights: Path, preset: str, size: int, folder: Path, masks: list[np.ndarray]):
    """Meta's SAM2VideoPredictor, one frame per ``next()`` (its frames are preloaded)."""
    from sam2.build_sam import build_sam2_video_predictor

    cfg = {"sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml"}[preset]
    pred = build_sam2_video_predictor(cfg, None, device="cpu", hydra_overrides_extra=[f"++model.image_size={size}"])
    pred.load_state_dict(torch.load(weights, weights_only=True)["model"])
    with torch.inference_mode():
        state = pred.init_state(video_path=str(folder))
        for k, m in enumerate(masks):
            pred.add_new_mask(state, 0, k + 1, m)
        for t, _, _ in pred.propagate_in_video(state):
            yield t


def component_times(model, repeats: int) -> dict[str, float]:
    """Median ms of the image encoder and of memory attention over 7 and 5 spatial memories
    (one object), calls alternated so that both see the same machine state."""
    s, c, cm = model.cfg.feat_size, model.hidden_dim, model.mem_dim
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, model.image_size, model.image_size, generator=g)
    cur, pos = torch.randn(1, s * s, c, generator=g), torch.randn(1, s * s, c, generator=g)
    n_ptr_tok = 16 * (c // cm)
    mems = {n: (torch.randn(1, n * s * s + n_ptr_tok, cm, generator=g), torch.randn(1, n * s * s + n_ptr_tok, cm, generator=g)) for n in (7, 5)}
    calls = {
        "encoder": lambda: model.encode_image(image),
        "memory_attention_7": lambda: model.memory_attention(cur, pos, *mems[7], n_ptr_tok),
        "memory_attention_5": lambda: model.memory_attention(cur, pos, *mems[5], n_ptr_tok),
    }
    times: dict[str, list[float]] = {k: [] for k in calls}
    with torch.inference_mode():
        for fn in calls.values():
            fn()
        for r in range(repeats):
            order = list(calls)[r % 3:] + list(calls)[: r % 3]
            for k in order:
                t0 = time.perf_counter()
                calls[k]()
                times[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="sam2.1_hiera_small")
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--objects", type=int, default=1)
    ap.add_argument("--variants", nargs="+", default=["fifo", "efp", "ref"],
                    help="fifo, efp, dlm (ours; suffix -static for the static-shape memory, -bf16 for bf16 "
                    "autocast, e.g. efp-static-bf16) and ref")
    ap.add_argument("--component-repeats", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None, help="append the result (JSON) here")
    args = ap.parse_args()

    import surgsam

    torch.manual_seed(0)
    model = surgsam.build_model(args.preset, image_size=args.image_size).eval()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "video"
        masks = make_video(folder, args.frames, args.image_size, args.objects)
        frames = list(frames_from(folder))
        weights = Path(tmp) / "weights.pt"
        torch.save({"model": model.state_dict()}, weights)
        runners = {}
        attend: dict[str, list[float]] = {v: [] for v in args.variants}
        for v in args.variants:
            if v == "ref":
                runners[v] = _reference(weights, args.preset, args.image_size, folder, masks)
            else:
                memory, *opts = v.split("-")
                runners[v] = _ours(model, memory, frames, masks, attend[v], static_memory="static" in opts,
                                   precision="bf16" if "bf16" in opts else "fp32")
        lat: dict[str, list[float]] = {v: [] for v in runners}
        names = list(runners)
        for t in range(args.frames):
            k = t % len(names)
            for v in names[k:] + names[:k]:
                t0 = time.perf_counter()
                got = next(runners[v])
                lat[v].append(time.perf_counter() - t0)
                assert got == t, (v, got, t)
    comp = component_times(model, args.component_repeats)

    med = {v: 1000 * statistics.median(x[WARMUP:]) for v, x in lat.items()}
    attend_ms = {v: 1000 * statistics.median(x[WARMUP:]) for v, x in attend.items() if x}
    p90 = {v: 1000 * float(np.percentile(x[WARMUP:], 90)) for v, x in lat.items()}
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads",
        "torch": torch.__version__, "preset": args.preset, "image_size": args.image_size,
        "frames": args.frames, "objects": args.objects, "median_ms": med, "p90_ms": p90, "components_ms": comp,
        "memory_attention_in_engine_ms": attend_ms,
    }
    print(json.dumps({k: result[k] for k in ("machine", "preset", "image_size", "frames", "objects")}))
    for v in names:
        print(f"  {v:12s} median {med[v]:7.1f} ms  p90 {p90[v]:7.1f} ms  ({1000 / med[v]:.2f} FPS)")
    print("  components: " + ", ".join(f"{k} {x:.1f} ms" for k, x in comp.items()))
    print("  memory attention inside the engine: " + ", ".join(f"{k} {x:.1f} ms" for k, x in attend_ms.items()))
    if "fifo" in med and "efp" in med:
        # ideal: efp saves exactly the memory-attention time of the pruned memories, measured
        # in the same run (inside the engine; the isolated component times are printed above)
        saved = attend_ms["fifo"] - attend_ms["efp"]
        bound = med["fifo"] / (med["fifo"] - saved)
        speedup = med["fifo"] / med["efp"]
        # the same frame's two latencies share the machine's state: their ratio is less noisy
        paired = statistics.median(a / b for a, b in zip(lat["fifo"][WARMUP:], lat["efp"][WARMUP:]))
        result.update(efp_bound=bound, efp_speedup=speedup, efp_speedup_paired=paired,
                      efp_gain_fraction=(speedup - 1) / (bound - 1), efp_gain_fraction_paired=(paired - 1) / (bound - 1))
        print(f"  efp vs fifo: {speedup:.3f}x (ratio of medians), {paired:.3f}x (median per-frame ratio); "
              f"ideal bound {bound:.3f}x; {100 * (speedup - 1) / (bound - 1):.0f}% / {100 * (paired - 1) / (bound - 1):.0f}% "
              f"of the ideal gain")
    if "ref" in med:
        for v in names:
            if v != "ref":
                paired = statistics.median(r / x for r, x in zip(lat["ref"][WARMUP:], lat[v][WARMUP:]))
                result.setdefault("vs_ref", {})[v] = med["ref"] / med[v]
                result.setdefault("vs_ref_paired", {})[v] = paired
                print(f"  {v:12s} {med['ref'] / med[v]:.2f}x the reference's speed (median per-frame ratio {paired:.2f}x)")
    result["latencies_ms"] = {v: [round(1000 * x, 2) for x in lat[v]] for v in names}
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
