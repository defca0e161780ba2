"""Speed and memory of the streaming engine against Meta's SAM2VideoPredictor, in one run.

Every variant runs in its own subprocess (so peak resident memory is its own) on the same
weights (random, saved once), the same synthetic video (JPEG frames on disk, read lazily by
our engine and preloaded by the reference, as each is designed to) and the same prompts
(one mask per object on frame 0). Reported per variant: FPS over the frames after warm-up,
median and p90 per-frame latency, and peak RSS after 100 frames and at the end.

    python benchmarks/bench_engine.py --frames 100 --objects 1 2 --repeats 2
    python benchmarks/bench_engine.py --frames 1000 --variants efp ref  # memory growth

For speed ratios, mask agreement and session memory against Meta's and transformers'
predictors on an equal footing (one process, frames interleaved) use ``surgsam bench``
(:mod:`surgsam.bench.paired`, which replaced ``bench_paired.py``); this script measures what
only separate processes can: each variant's peak resident memory.

Variants: ``encoder`` (image encoder only, the floor), ``fifo``, ``efp``, ``dlm`` (our engine,
fp32), ``*-bf16`` (our engine under bf16 autocast), ``ref`` (Meta's predictor, fp32; needs
the test-only ``sam2==1.1.0``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WARMUP = 5


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB, from /proc."""
    cur = peak = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


def make_video(folder: Path, n: int, size: int, objects: int) -> list[np.ndarray]:
    """Write n JPEG frames of moving discs on a texture; returns the frame-0 masks."""
    from PIL import Image

    rng = np.random.default_rng(0)
    tex = np.kron(rng.integers(40, 160, (size // 8, size // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    masks = []
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n):
        img = tex.copy()
        for k in range(objects):
            cx = size * (0.3 + 0.4 * k / max(objects - 1, 1)) + 20 * np.sin(t / 10 + k)
            cy = size * 0.5 + 30 * np.cos(t / 13 + k)
            disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (size * 0.08) ** 2
            img[disc] = (200, 40 + 60 * k, 60)
            if t == 0:
                masks.append(disc)
        Image.fromarray(img).save(folder / f"{t:05d}.jpg", quality=90)
    return masks


def frames_from(folder: Path):
    from PIL import Image

    for p in sorted(folder.glob("*.jpg")):
        yield np.asarray(Image.open(p).convert("RGB"))


def run_worker(args) -> dict:
    import torch

    torch.manual_seed(0)
    folder = Path(args.video)
    masks = [np.load(folder / f"mask{k}.npy") for k in range(args.objects)]
    lat: list[float] = []
    mem_at: dict[int, float] = {}
    variant = args.worker

    def record(t: int, dt: float) -> None:
        lat.append(dt)
        if t + 1 in (100, args.frames):
            mem_at[t + 1] = rss_mb()[1]

    if variant == "ref":
        from sam2.build_sam import build_sam2_video_predictor

        cfg = {
            "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
            "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
        }[args.preset]
        pred = build_sam2_video_predictor(
            cfg, None, device="cpu", hydra_overrides_extra=[f"++model.image_size={args.image_size}"]
        )
        pred.load_state_dict(torch.load(args.weights, weights_only=True)["model"])
        with torch.inference_mode():
            t_setup = time.perf_counter()
            state = pred.init_state(video_path=str(folder))
            setup = time.perf_counter() - t_setup
            for k, m in enumerate(masks):
                pred.add_new_mask(state, 0, k + 1, m)
            t0 = time.perf_counter()
            for t, _, _ in pred.propagate_in_video(state):
                now = time.perf_counter()
                record(t, now - t0)
                t0 = now
    else:
        import surgsam
        from surgsam.engine import VideoSegmenter

        model = surgsam.build_model(args.preset, image_size=args.image_size, checkpoint=args.weights)
        setup = 0.0
        if variant == "encoder":
            with torch.inference_mode():
                t0 = time.perf_counter()
                for t, f in enumerate(frames_from(folder)):
                    model.encode_image(model.preprocess(torch.from_numpy(f).permute(2, 0, 1)[None]))
                    now = time.perf_counter()
                    record(t, now - t0)
                    t0 = now
        else:
            memory, _, prec = variant.partition("-")
            seg = VideoSegmenter(model, memory=memory, precision=prec or "fp32")
            t0 = time.perf_counter()
            for t, f in enumerate(frames_from(folder)):
                if t == 0:
                    for k, m in enumerate(masks):
                        seg.add_prompt(f if k == 0 else None, obj_id=k + 1, mask=m)
                else:
                    seg.step(f)
                now = time.perf_counter()
                record(t, now - t0)
                t0 = now
    steady = lat[WARMUP:]
    return {
        "variant": variant,
        "objects": args.objects,
        "frames": len(lat),
        "fps": len(steady) / sum(steady),
        "median_ms": 1000 * statistics.median(steady),
        "p90_ms": 1000 * float(np.percentile(steady, 90)),
        "peak_rss_mb": mem_at,
        "setup_s": setup,
        "threads": torch.get_num_threads(),
        "latencies_s": steady,
    }


def pool(runs: list[dict]) -> dict:
    """One result from repeated runs of a variant: all steady-state frames together."""
    lat = [x for r in runs for x in r["latencies_s"]]
    out = {k: v for k, v in runs[0].items() if k != "latencies_s"}
    out.update(
        fps=len(lat) / sum(lat),
        median_ms=1000 * statistics.median(lat),
        p90_ms=1000 * float(np.percentile(lat, 90)),
        runs=len(runs),
        peak_rss_mb={k: max(r["peak_rss_mb"].get(k, 0.0) for r in runs) for k in runs[0]["peak_rss_mb"]},
        fps_per_run=[round(r["fps"], 3) for r in runs],
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="sam2.1_hiera_small")
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--objects", type=int, nargs="+", default=[1])
    ap.add_argument("--variants", nargs="+", default=["encoder", "fifo", "efp", "dlm", "efp-bf16", "fifo-bf16", "ref"])
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run the variants this many times, round-robin, and pool the frames (evens out machine noise)",
    )
    ap.add_argument("--out", type=Path, default=None, help="append the results (JSON lines) here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--video", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.objects = args.objects[0]
        print("RESULT " + json.dumps(run_worker(args)), flush=True)
        return 0

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = tmp / "weights.pt"
        torch.manual_seed(0)
        import surgsam

        torch.save({"model": surgsam.build_model(args.preset, image_size=args.image_size).state_dict()}, weights)
        results = []
        for n_obj in args.objects:
            video = tmp / f"video{n_obj}"
            for k, m in enumerate(make_video(video, args.frames, args.image_size, n_obj)):
                np.save(video / f"mask{k}.npy", m)
            runs: dict[str, list[dict]] = {}
            for rep in range(args.repeats):
                for v in args.variants:
                    if v == "encoder" and n_obj != args.objects[0]:
                        continue
                    cmd = [
                        sys.executable,
                        __file__,
                        "--worker",
                        v,
                        "--video",
                        str(video),
                        "--weights",
                        str(weights),
                        "--preset",
                        args.preset,
                        "--image-size",
                        str(args.image_size),
                        "--frames",
                        str(args.frames),
                        "--objects",
                        str(n_obj),
                    ]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                    if proc.returncode or not line:
                        print(f"{v}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                        continue
                    r = json.loads(line[0][7:])
                    runs.setdefault(v, []).append(r)
                    print(
                        f"  run {rep + 1}: {v:10s} obj={n_obj} fps={r['fps']:.2f} median={r['median_ms']:.0f}ms",
                        flush=True,
                    )
            for v, rs in runs.items():
                r = pool(rs)
                results.append(r)
                print(
                    f"{v:10s} obj={n_obj} fps={r['fps']:.2f} median={r['median_ms']:.0f}ms p90={r['p90_ms']:.0f}ms "
                    f"peak_rss={r['peak_rss_mb']} (runs: {len(rs)})",
                    flush=True,
                )
    header = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "preset": args.preset,
        "image_size": args.image_size,
        "frames": args.frames,
    }
    print(json.dumps(header))
    for n_obj in args.objects:
        ref = next((r for r in results if r["variant"] == "ref" and r["objects"] == n_obj), None)
        for r in results:
            if r["objects"] == n_obj and ref:
                print(f"  {r['variant']:10s} x{n_obj}: {r['fps'] / ref['fps']:.2f}x the reference's FPS")
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps({"header": header, "results": results}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
