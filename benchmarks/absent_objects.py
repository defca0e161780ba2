"""How often a model writes a mask for an object that is not there, and none for one that is.

    surgsam eval --e2e --data data/synth-heldout --split valid --checkpoint surgsam-nano-synth \\
        --memory efp --out results/heldout
    python benchmarks/absent_objects.py results/heldout --data data/synth-heldout

Reads the per-frame scores an evaluation wrote (``frames.csv``: every scored frame of every
prompted object) and the ground truth, and counts the scored object-frames where the object is
absent from the ground truth but the written mask is not empty (J is 0 there; an empty mask
scores 100), and those where the object is present but the written mask misses it entirely
(J is 0: an empty mask, or one wholly elsewhere). The first is the "departed object tracked on a neighbour" failure.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from surgsam.data import open_dataset


def count(out_dir: str | Path, data: str | Path, split: str = "valid") -> dict[str, float]:
    """``absent`` / ``absent_with_mask`` / ``present`` / ``present_missed`` object-frames."""
    videos = {v.name: v for v in open_dataset(data, split)}
    absent = absent_masked = present = missed = 0
    labels: dict[tuple[str, int], np.ndarray] = {}
    for row in csv.DictReader(open(Path(out_dir) / "frames.csv")):
        name, frame, obj, j = row["video"], int(row["frame"]), int(row["obj_id"]), float(row["J"])
        if name not in videos:
            raise SystemExit(f"{out_dir}: video {name!r} is not in {data} ({split}); evaluate and count the same data")
        key = (name, frame)
        if key not in labels:
            labels = {key: videos[name].labels(frame)}  # frames.csv is sorted by video and frame
        if (labels[key] == obj).any():
            present += 1
            missed += j == 0.0
        else:
            absent += 1
            absent_masked += j < 100.0
    return {
        "absent": absent,
        "absent_with_mask": absent_masked,
        "absent_with_mask_pct": 100.0 * absent_masked / max(1, absent),
        "present": present,
        "present_missed": missed,
        "present_missed_pct": 100.0 * missed / max(1, present),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="a `surgsam eval --out` folder (its frames.csv)")
    p.add_argument("--data", required=True, help="the dataset that was evaluated")
    p.add_argument("--split", default="valid")
    p.add_argument("--json", default=None, help="also write the counts here")
    a = p.parse_args()
    c = count(a.out, a.data, a.split)
    print(
        f"absent object-frames with a mask: {c['absent_with_mask']} of {c['absent']} "
        f"({c['absent_with_mask_pct']:.1f} %); present ones whose mask misses them entirely (J 0): "
        f"{c['present_missed']} of {c['present']} ({c['present_missed_pct']:.1f} %)"
    )
    if a.json:
        Path(a.json).write_text(json.dumps(c, indent=1) + "\n")


if __name__ == "__main__":
    main()
