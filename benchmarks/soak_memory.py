"""Soak: live mode over a long scripted stream, resident memory sampled as it goes.

A synthetic endoscopic clip (128 x 96 by default) is played in a loop as a camera would deliver
it (a scripted capture: every frame in order, nothing dropped, no pacing) through ``run_live``
with the embedded ``surgsam-nano-synth`` model (the ``nano`` preset), objects prompted with their
masks on the first frame. Every ``--every`` frames it prints the process's resident memory
(VmRSS), the live torch tensors found by walking the garbage collector's objects (counted here,
not by the session), their bytes, and Python's own allocations (tracemalloc, with --tracemalloc).

    python benchmarks/soak_memory.py                    # 2,000 frames, a line every 200
    python benchmarks/soak_memory.py --frames 5000 --memory dlm --json soak.json

Flat means: after the first sample (warm-up: allocator pools, the memory bank filling), RSS
moves by no more than ``--tolerance-mb`` and the tensor count does not grow. Exit code 1 if not.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def rss_mb() -> float:
    """Resident set size of this process (Linux /proc; ru_maxrss elsewhere is a peak, not a level)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def live_tensors() -> tuple[int, float]:
    """(count, MB) of the torch tensors reachable by the garbage collector, storages counted once."""
    import torch

    gc.collect()
    count, seen, nbytes = 0, set(), 0
    with warnings.catch_warnings():  # touching some module objects warns (deprecated aliases)
        warnings.simplefilter("ignore")
        objs = [o for o in gc.get_objects() if _is_tensor(torch, o)]
    for obj in objs:
        count += 1
        storage = obj.untyped_storage()
        key = (storage.data_ptr(), obj.device.type)
        if key not in seen:
            seen.add(key)
            nbytes += storage.nbytes()
    return count, nbytes / 2**20


def _is_tensor(torch, obj) -> bool:
    try:
        return torch.is_tensor(obj)
    except ReferenceError:  # a dead weak proxy
        return False


class LoopCapture:
    """A ``cv2.VideoCapture`` stand-in: ``frames`` (RGB) in a loop as BGR, ``total`` of them, then
    the end of the stream."""

    def __init__(self, frames: list[np.ndarray], total: int, fps: float = 25.0):
        self.frames = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames]
        self.total, self.fps, self.sent = total, fps, 0

    def read(self):
        if self.sent >= self.total:
            return False, None
        frame = self.frames[self.sent % len(self.frames)].copy()  # a new buffer, as a camera gives
        self.sent += 1
        return True, frame

    def get(self, prop: int) -> float:
        h, w = self.frames[0].shape[:2]
        return {3: float(w), 4: float(h), 5: self.fps}.get(prop, 0.0)

    def release(self) -> None:
        pass


def soak(
    frames: int = 2000,
    every: int = 200,
    width: int = 128,
    height: int = 96,
    memory: str = "efp",
    objects: int = 2,
    trace: bool = False,
    log=print,
) -> dict:
    """Run the soak; returns the samples and the run's report (see the module docstring)."""
    import torch

    from surgsam.app.live import open_live, run_live
    from surgsam.data.synth import SynthConfig
    from surgsam.data.synth.writer import render_video
    from surgsam.modeling.embedded import build_demo_model
    from surgsam.engine import Prompt, VideoSegmenter

    clip = render_video(SynthConfig(width=width, height=height, frames=60), seed=5, index=0, name="soak")
    first = clip.labels[0]
    ids = [int(i) for i in np.unique(first) if i != 0][:objects]
    if not ids:
        raise SystemExit("the synthetic clip's first frame has no object; try another size")
    prompts = [Prompt(obj_id=i, frame_idx=0, mask=first == i) for i in ids]
    model = build_demo_model()
    seg = VideoSegmenter(model, memory=memory)
    src = open_live("soak-camera", capture=LoopCapture(clip.frames, frames), drop_frames=False, realtime=False)
    samples: list[dict] = []
    t0 = time.perf_counter()
    if trace:
        tracemalloc.start()

    def sample(n: int) -> None:
        count, mb = live_tensors()
        row = {
            "frame": n,
            "rss_mb": round(rss_mb(), 1),
            "tensors": count,
            "tensor_mb": round(mb, 2),
            "elapsed_s": round(time.perf_counter() - t0, 1),
        }
        if trace:
            row["python_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 2)
        samples.append(row)
        log("  ".join(f"{k} {v}" for k, v in row.items()))

    processed = [1]  # the prompt frame

    def on_frame(res, ms: float) -> None:
        processed[0] += 1
        if processed[0] % every == 0:
            sample(processed[0])

    with torch.inference_mode():
        report = run_live(src, seg, prompts, on_frame=on_frame, read_timeout_s=120)
    if trace:
        tracemalloc.stop()
    return {
        "samples": samples,
        "report": report.to_dict(),
        "objects": ids,
        "memory": memory,
        "frame_size": [height, width],
        "image_size": model.image_size,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def verdict(samples: list[dict], tolerance_mb: float) -> tuple[bool, str]:
    """Flat after the first sample: RSS within ``tolerance_mb`` and no more tensors than then."""
    if len(samples) < 3:
        return False, "too few samples"
    steady = samples[1:]
    rss = [s["rss_mb"] for s in steady]
    growth = rss[-1] - rss[0]
    spread = max(rss) - min(rss)
    tensors = [s["tensors"] for s in steady]
    ok = spread <= tolerance_mb and max(tensors) <= tensors[0]
    return ok, (
        f"RSS from frame {steady[0]['frame']} to {steady[-1]['frame']}: {rss[0]:.1f} -> {rss[-1]:.1f} MB "
        f"(growth {growth:+.1f} MB, spread {spread:.1f} MB, tolerance {tolerance_mb:g}); live tensors "
        f"{min(tensors)}..{max(tensors)} (first steady sample {tensors[0]})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--every", type=int, default=200)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--memory", default="efp", choices=["fifo", "efp", "dlm"])
    p.add_argument("--objects", type=int, default=2)
    p.add_argument("--tracemalloc", action="store_true", help="also track Python's allocations (slower)")
    p.add_argument("--tolerance-mb", type=float, default=16.0)
    p.add_argument("--json", type=Path, default=None, help="write the samples and the report here")
    args = p.parse_args(argv)
    out = soak(args.frames, args.every, args.width, args.height, args.memory, args.objects, args.tracemalloc)
    ok, text = verdict(out["samples"], args.tolerance_mb)
    rep = out["report"]
    print(
        f"{rep['processed']} frames ({rep['end']}), {rep['fps']:.1f} FPS, engine median "
        f"{rep['engine_median_ms']:.1f} ms; objects {out['objects']}, memory {out['memory']}, frames "
        f"{out['frame_size'][1]}x{out['frame_size'][0]} -> model {out['image_size']} px, torch {out['torch']} "
        f"on {out['threads']} thread(s)"
    )
    print(("FLAT: " if ok else "NOT FLAT: ") + text)
    if args.json is not None:
        args.json.write_text(json.dumps({**out, "flat": ok, "verdict": text}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
