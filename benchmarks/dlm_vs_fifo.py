"""When does ``dlm`` change anything? Held-out VOS runs of the embedded model with ``fifo``,
``dlm`` as released (IoU threshold 0.95) and ``dlm`` with a lower threshold, counting how
many long-term memories were stored and attended, and how many frames differ from ``fifo``.

    python benchmarks/dlm_vs_fifo.py --data data/synth-heldout --out benchmarks/results_dlm_vs_fifo.json

Mask prompts at each object's first appearance, SurgSAM2 protocol, overlaps resolved as the
written palette PNGs (the same ``run_end_to_end`` as ``surgsam eval --e2e``).
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import dataclass, field

import numpy as np
import torch

from surgsam.data import open_dataset
from surgsam.eval.endtoend import EngineSegmenter, run_end_to_end
from surgsam.memory import DLMPolicy, FifoPolicy, MemoryBank, MemoryEntry, Selection


@dataclass
class Counting(DLMPolicy):
    """``DLMPolicy`` that counts long-term insertions and frames attending a long-term memory."""

    stored: int = 0
    attended_frames: int = 0
    seen: set = field(default_factory=set)

    def commit(self, bank: MemoryBank, entry: MemoryEntry) -> None:
        before = [id(e) for e in self.state(bank).long_term]
        super().commit(bank, entry)
        self.stored += sum(id(e) not in before for e in self.state(bank).long_term)

    def select(self, bank: MemoryBank, frame_idx: int) -> Selection:
        sel = super().select(bank, frame_idx)
        self.attended_frames += any(slot == 0 and not e.is_cond for slot, e in sel.spatial)
        return sel


class Recording(EngineSegmenter):
    """Keeps every yielded mask so runs can be compared frame by frame."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.masks: dict[tuple[str, int, int], np.ndarray] = {}

    def segment(self, video, frames, prompts):
        for t, masks in enumerate(super().segment(video, frames, prompts)):
            for k, m in masks.items():
                self.masks[(video, t, k)] = m
            yield masks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="surgsam-nano-synth")
    p.add_argument("--data", default="data/synth-heldout")
    p.add_argument("--split", default="valid")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    videos = list(open_dataset(a.data, a.split, require_frames=True))
    runs = {
        "fifo": FifoPolicy(),
        "dlm (released, IoU > 0.95)": Counting(),
        "dlm, IoU > 0.8": Counting(iou_threshold=0.8),
    }
    rows, recorded = [], {}
    for label, policy in runs.items():
        seg = Recording(checkpoint=a.checkpoint, memory=policy, prompt="mask")
        s = run_end_to_end(videos, seg, "surgsam2", progress=False).summary()["all"]
        recorded[label] = seg.masks
        row = {"run": label, "J&F": round(s["J&F"], 1), "J": round(s["J"], 1), "F": round(s["F"], 1)}
        if isinstance(policy, Counting):
            base = recorded["fifo"]
            row["long-term memories stored"] = policy.stored
            row["tracked frames attending one"] = policy.attended_frames
            row["object-frames differing from fifo"] = sum(
                not np.array_equal(m, base[key]) for key, m in seg.masks.items()
            )
        rows.append(row)
        print(json.dumps(row))
    print(f"\n{len(videos)} videos, {sum(len(v) for v in videos)} frames, {a.checkpoint}\n")
    keys = list(rows[-1])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |")
    if a.out:
        meta = {
            "checkpoint": a.checkpoint,
            "data": a.data,
            "split": a.split,
            "threads": a.threads,
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
        }
        with open(a.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
