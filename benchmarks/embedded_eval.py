"""Held-out evaluation of a trained demo model: the README's table for issue #5.

    python benchmarks/embedded_eval.py --checkpoint surgsam-nano-synth --data data/synth-heldout \
        --out benchmarks/results_embedded_eval.json

Runs the engine end to end on every video of the split (SurgSAM2 protocol: each object's
first and last frames skipped) with a mask prompt at each object's first appearance for the
fifo, efp and dlm memory policies, with a single positive click (``efp``), and the
copy-first-mask baseline; prints a markdown table (J&F, J, F, frames per second of the whole
run) and writes the numbers as JSON. The held-out data must come from another seed than the
training data, e.g. ``surgsam synth data/synth-heldout --videos 16 --seed 1 --valid 16``.

Each run also saves its palette PNGs and re-scores them from disk with ``surgsam eval --pred``'s
code (``evaluate_folders``); the script stops if that differs from the run's own score, so the
table is the score of the masks a user gets (overlaps resolved by SAM 2's rule).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import torch

from surgsam.data import open_dataset
from surgsam.eval import evaluate_folders
from surgsam.eval.endtoend import CopyFirstMaskSegmenter, EngineSegmenter, run_end_to_end

RUNS = [  # (label, memory, prompt)
    ("fifo, mask prompt", "fifo", "mask"),
    ("efp, mask prompt", "efp", "mask"),
    ("dlm, mask prompt", "dlm", "mask"),
    ("efp, one positive click", "efp", "click"),
    ("box prompt (efp)", "efp", "box"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="surgsam-nano-synth")
    p.add_argument("--data", default="data/synth-heldout")
    p.add_argument("--split", default="valid")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--resize",
        default="pil",
        choices=["pil", "antialias"],
        help="the engine's frame resize (pil: Meta's video predictor, the default; antialias: as training clips)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "auto"],
        help="the engine's precision (bf16 with --fast auto: the CPU fast path's bf16 recipe)",
    )
    p.add_argument("--fast", default="off", choices=["off", "auto"], help="the engine's fast path")
    p.add_argument(
        "--runs", nargs="+", default=None, help="only the runs whose label starts with one of these (e.g. 'efp, mask')"
    )
    p.add_argument("--out", default=None, help="write the results as JSON here")
    a = p.parse_args()
    fast = "auto" if a.fast == "auto" else False
    torch.set_num_threads(a.threads)
    videos = list(open_dataset(a.data, a.split, require_frames=True))
    frames = sum(len(v) for v in videos)
    rows = []
    for label, memory, prompt in [*RUNS, ("copy first mask (baseline)", None, "mask")]:
        if a.runs and not any(label.startswith(r) for r in a.runs):
            continue
        seg = (
            CopyFirstMaskSegmenter()
            if memory is None
            else EngineSegmenter(
                checkpoint=a.checkpoint, memory=memory, prompt=prompt, resize=a.resize, precision=a.precision, fast=fast
            )
        )
        with tempfile.TemporaryDirectory() as pred:
            t0 = time.perf_counter()
            s = run_end_to_end(videos, seg, "surgsam2", progress=False, save_dir=pred).summary()["all"]
            wall = time.perf_counter() - t0
            disk = evaluate_folders(videos, pred, "surgsam2", progress=False).summary()["all"]
        if not all(math.isclose(s[k], disk[k], abs_tol=1e-9) for k in ("J&F", "J", "F")):
            raise SystemExit(f"{label}: the written masks score J&F {disk['J&F']:.4f}, the run {s['J&F']:.4f}")
        rows.append(
            {
                "run": label,
                "memory": memory,
                "prompt": prompt,
                "J&F": s["J&F"],
                "J": s["J"],
                "F": s["F"],
                "objects": s.get("n_objects"),
                "fps": frames / wall,
                "written_masks_J&F": disk["J&F"],
            }
        )
        print(f"{label}: J&F {s['J&F']:.1f} (the written PNGs re-scored: {disk['J&F']:.1f})", flush=True)
    print(f"\n{len(videos)} videos, {frames} frames ({a.data}, split {a.split}); checkpoint {a.checkpoint}\n")
    print("| run | J&F | J | F | FPS (whole run) |\n| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['run']} | {r['J&F']:.1f} | {r['J']:.1f} | {r['F']:.1f} | {r['fps']:.1f} |")
    if a.out:
        Path(a.out).write_text(
            json.dumps(
                {
                    "checkpoint": a.checkpoint,
                    "data": a.data,
                    "split": a.split,
                    "videos": len(videos),
                    "frames": frames,
                    "threads": a.threads,
                    "resize": a.resize,
                    "precision": a.precision,
                    "fast": a.fast,
                    "torch": torch.__version__,
                    "machine": platform.processor() or platform.machine(),
                    "date": time.strftime("%Y-%m-%d"),
                    "rows": rows,
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
