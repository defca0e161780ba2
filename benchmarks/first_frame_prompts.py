"""Where the box prompt loses against the mask prompt (issue 19): the first frame.

    python benchmarks/first_frame_prompts.py --checkpoint surgsam-nano-synth --data /work/data/synth-nano \
        --split valid --prompts box click --threads 1 --out first_frame.json

Every object of the split is prompted alone, in a fresh ``VideoSegmenter`` (efp, fp32), on the
frame where it first appears, with its tight box (``box``, as ``surgsam eval --e2e --prompt box``
gives it), one click at its deepest pixel (``click``) or its mask (``mask``); then the engine
tracks it over the next ``--track`` frames. Reported per prompt: the mean and median IoU of the
prompted frame's mask with the ground truth, the share of objects below IoU 0.5 there, how much
of a failed mask lies on the other objects of that frame (a box that takes its neighbour), the
mean IoU over the tracked frames for objects that start below 0.5 and from 0.8 up, and per
category the prompted frame's mean IoU. Single objects, no overlaps resolved: it isolates the
prompt, so its numbers are not the end-to-end J&F of ``surgsam eval --e2e``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np
import torch

PROMPTS = ("box", "click", "mask")


@dataclass
class ObjectRow:
    """One object under one prompt."""

    video: str
    obj_id: int
    category: str
    prompt: str
    first_iou: float  # IoU on the prompted frame
    on_others: float  # share of the prompted frame's predicted pixels that lie on other objects
    track_iou: float | None  # mean IoU over the tracked frames (None: none had the object or a mask)
    box_fill: float  # object pixels / tight-box pixels


def iou(a: np.ndarray, b: np.ndarray) -> float:
    u = int((a | b).sum())
    return 1.0 if u == 0 else float((a & b).sum()) / u


def run(model, videos, prompts: list[str], track: int) -> list[ObjectRow]:
    from surgsam.engine import VideoSegmenter
    from surgsam.eval.endtoend import interior_point, mask_box
    from surgsam.train.aux_types import video_categories

    rows = []
    for v in videos:
        cats = video_categories(v) or {}  # the dataset's Meta categories (Ref-EndoVis layout)
        for k, p in sorted(v.prompts().items()):
            x0, y0, x1, y1 = mask_box(p.mask)
            fill = float(p.mask.sum()) / ((x1 - x0 + 1) * (y1 - y0 + 1))
            first_labels = v.labels(p.frame_idx)
            others = (first_labels > 0) & (first_labels != k) if first_labels is not None else np.zeros_like(p.mask)
            for kind in prompts:
                seg = VideoSegmenter(model, memory="efp")
                kw: dict = {"mask": p.mask}
                if kind == "box":
                    kw = {"box": (x0, y0, x1, y1)}
                elif kind == "click":
                    kw = {"points": [interior_point(p.mask)], "labels": [1]}
                m = seg.add_prompt(v.frames[p.frame_idx], obj_id=1, **kw).masks[0]
                on_others = float((m & others).sum()) / max(int(m.sum()), 1)
                ious = []
                for t in range(p.frame_idx + 1, min(len(v), p.frame_idx + 1 + track)):
                    r = seg.step(v.frames[t])
                    lab = v.labels(t)
                    if lab is None:
                        continue
                    g = lab == k
                    if g.any() or r.masks[0].any():
                        ious.append(iou(r.masks[0], g))
                cat = cats.get(k, "?")
                rows.append(
                    ObjectRow(
                        v.name, k, cat, kind, iou(m, p.mask), on_others, float(np.mean(ious)) if ious else None, fill
                    )
                )
    return rows


def summarise(rows: list[ObjectRow]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for kind in dict.fromkeys(r.prompt for r in rows):
        rs = [r for r in rows if r.prompt == kind]
        first = np.array([r.first_iou for r in rs])
        low = [r for r in rs if r.first_iou < 0.5]
        high = [r for r in rs if r.first_iou >= 0.8]

        def track_mean(sel: list[ObjectRow]) -> float | None:
            vals = [r.track_iou for r in sel if r.track_iou is not None]
            return round(float(np.mean(vals)), 3) if vals else None

        per_cat: dict[str, list[float]] = defaultdict(list)
        for r in rs:
            per_cat[r.category].append(r.first_iou)
        out[kind] = {
            "objects": len(rs),
            "first_iou_mean": round(float(first.mean()), 3),
            "first_iou_median": round(float(np.median(first)), 3),
            "share_below_0.5": round(float((first < 0.5).mean()), 3),
            "failed_on_others": round(float(np.mean([r.on_others for r in low])), 3) if low else None,
            "failed_box_fill": round(float(np.mean([r.box_fill for r in low])), 3) if low else None,
            "all_box_fill": round(float(np.mean([r.box_fill for r in rs])), 3),
            "track_iou": track_mean(rs),
            "track_iou_first_below_0.5": track_mean(low),
            "track_iou_first_from_0.8": track_mean(high),
            "per_category": {c: [len(v), round(float(np.mean(v)), 3)] for c, v in sorted(per_cat.items())},
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="surgsam-nano-synth")
    ap.add_argument("--model", default="nano")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="valid")
    ap.add_argument("--prompts", nargs="+", choices=PROMPTS, default=["box", "click", "mask"])
    ap.add_argument("--track", type=int, default=11, help="frames tracked after the prompted one")
    ap.add_argument("--videos", type=int, default=None, help="only the first N videos")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="also write the summary and every object's row as JSON")
    a = ap.parse_args(argv)

    import surgsam
    from surgsam.data import open_dataset
    from surgsam.io.atomic import atomic_path

    torch.set_num_threads(a.threads)
    model = surgsam.build_model(a.model, image_size=a.image_size, checkpoint=a.checkpoint).eval()
    videos = list(open_dataset(a.data, a.split))[: a.videos]
    rows = run(model, videos, a.prompts, a.track)
    summary = summarise(rows)
    print(f"{a.checkpoint} on {a.data} ({a.split}, {len(videos)} videos), each object alone, efp, fp32")
    print(
        "| prompt | objects | first-frame IoU mean / median | below 0.5 | failed: on other objects / box fill "
        f"| IoU over the next {a.track} frames: all / first < 0.5 / first >= 0.8 |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for kind, s in summary.items():
        failed = f"{s['failed_on_others']} / {s['failed_box_fill']}" if s["failed_on_others"] is not None else "-"
        print(
            f"| {kind} | {s['objects']} | {s['first_iou_mean']:.3f} / {s['first_iou_median']:.3f} | "
            f"{s['share_below_0.5']:.0%} | {failed} | {s['track_iou']} / {s['track_iou_first_below_0.5']} / "
            f"{s['track_iou_first_from_0.8']} |"
        )
    print("\nfirst-frame IoU per category (objects, mean):")
    cats = sorted({c for s in summary.values() for c in s["per_category"]})
    print("| category | " + " | ".join(summary) + " |")
    print("|---|" + "---:|" * len(summary))
    for c in cats:
        cells = [summary[k]["per_category"].get(c) for k in summary]
        print(f"| {c} | " + " | ".join(f"{x[1]:.3f} ({x[0]})" if x else "-" for x in cells) + " |")
    if a.out:
        payload = {"args": vars(a), "summary": summary, "objects": [asdict(r) for r in rows]}
        with atomic_path(a.out, what="results") as tmp:  # a failure keeps an earlier file
            tmp.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
