"""The ONNX runner (:class:`surgsam.export.OnnxVideoSegmenter`, no PyTorch) against the engine on
the demo's synthetic clip: how far its mask logits are from the engine's, the smallest mask IoU,
and the time per frame of each.

    surgsam export --checkpoint surgsam-nano-synth --memory fifo --out export/nano
    python benchmarks/onnx_runner_parity.py export/nano --frames 30

Every object of the clip's first frame is prompted with its mask on frame 0; each setting
(memory policy x stored memory precision) runs the engine built the same way
(``VideoSegmenter(model, memory=..., memory_dtype=...)``, fp32 compute) and the runner in this
process, ``--threads`` each, one after the other over the whole clip (side by side, frame by
frame, their thread pools would take the cores from each other). Prints one row per setting
(the median ms of the frames after the first) and, last, the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export", help="folder written by `surgsam export` (of the model given by --checkpoint)")
    p.add_argument("--checkpoint", default="surgsam-nano-synth", help="the exported model, for the engine")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    args = p.parse_args()

    import torch

    from surgsam.data.synth import render_demo_clip
    from surgsam.engine import VideoSegmenter
    from surgsam.export import OnnxModel, OnnxVideoSegmenter
    from surgsam.modeling import build_model

    torch.set_num_threads(args.threads)
    model = build_model(checkpoint=args.checkpoint)
    clip = render_demo_clip(frames=args.frames)
    frames, labels = clip.frames, clip.labels
    ids = [int(i) for i in np.unique(labels[0]) if i]
    onnx_model = OnnxModel(args.export, threads=args.threads)
    rows = []
    for memory, dtype in (("fifo", "bfloat16"), ("efp", "bfloat16"), ("fifo", "float32"), ("efp", "float32")):
        engine = VideoSegmenter(
            model, memory=memory, memory_dtype=torch.bfloat16 if dtype == "bfloat16" else torch.float32
        )
        runner = OnnxVideoSegmenter(onnx_model, memory=memory, memory_dtype=dtype)
        # each side alone over the whole clip: run side by side, onnxruntime's spinning threads
        # and torch's take the same two cores from each other and both times come out wrong
        outs: list[list] = []
        times: list[list[float]] = []
        for seg in (engine, runner):
            results, ms = [], []
            for t, frame in enumerate(frames):
                t0 = time.perf_counter()
                if t == 0:
                    for i, k in enumerate(ids):
                        res = seg.add_prompt(frame if i == 0 else None, obj_id=k, mask=labels[0] == k)
                else:
                    res = seg.step(frame)
                ms.append((time.perf_counter() - t0) * 1000)
                results.append(res)
            outs.append(results)
            times.append(ms)
        t_engine, t_runner = times
        diff, worst_iou = 0.0, 1.0
        for a, b in zip(*outs):
            diff = max(diff, float(np.abs(np.asarray(a.low_res_logits) - b.low_res_logits).max()))
            for i in range(len(ids)):
                union = (a.masks[i] | b.masks[i]).sum()
                if union:
                    worst_iou = min(worst_iou, float((a.masks[i] & b.masks[i]).sum() / union))
        rows.append(
            {
                "memory": memory,
                "memory_dtype": dtype,
                "frames": len(frames),
                "objects": len(ids),
                "max_logit_diff": diff,
                "min_mask_iou": worst_iou,
                "engine_ms_per_frame": float(np.median(t_engine[1:])),
                "onnx_ms_per_frame": float(np.median(t_runner[1:])),
            }
        )
        r = rows[-1]
        print(
            f"{memory:4s} {dtype:8s}  max |logit diff| {r['max_logit_diff']:.1e}  min IoU {r['min_mask_iou']:.4f}  "
            f"engine {r['engine_ms_per_frame']:.0f} ms/frame, onnxruntime {r['onnx_ms_per_frame']:.0f} ms/frame",
            flush=True,
        )
    print(json.dumps({"checkpoint": args.checkpoint, "threads": args.threads, "rows": rows}))


if __name__ == "__main__":
    main()
