"""How often a model writes a mask for an object that is not there, and none for one that is.

    surgsam eval --e2e --data data/synth-heldout --split valid --checkpoint surgsam-nano-synth \\
        --memory efp --out results/heldout
    python benchmarks/absent_objects.py results/heldout --data data/synth-heldout

Reads the per-frame scores an evaluation wrote (``frames.csv``: every scored frame of every
prompted object) and the ground truth, and counts the scored object-frames where the object is
absent from the ground truth but the written mask is not empty (J is 0 there; an empty mask
scores 100), and those where the object is present but the written mask misses it entirely
(J is 0: an empty mask, or one wholly elsewhere). The first is the "departed object tracked on a neighbour" failure.

With ``--pred`` (the evaluation's ``--save-pred`` folder) it also says where those wrong masks
lie: on another object of the same category (from the dataset's ``Meta/<video>.json`` where it
has one), on an object of another category, or on background (no object under half the mask),
and how many frames after the object was last seen.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from surgsam.data import open_dataset
from surgsam.data.palette import read_mask
from surgsam.data.refendovis import RefMeta
from surgsam.io.atomic import atomic_write_json


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


def _categories(data: Path, split: str, video: str) -> dict[int, str]:
    """``{obj_id: category}`` from a Ref-EndoVis style ``Meta/<video>.json``; {} without one."""
    for meta in (data / split / "Meta" / f"{video}.json", data / "Meta" / f"{video}.json"):
        if meta.is_file():
            return RefMeta.load(meta).categories
    return {}


def where(out_dir: str | Path, pred_dir: str | Path, data: str | Path, split: str = "valid") -> dict[str, object]:
    """Where the masks on absent objects lie, from the written predictions (one id per pixel).

    Each absent object-frame with a mask is put in one class by the label under most of its
    pixels: ``same_category`` (another object of the object's category), ``other_category``
    (another object, another or unknown category) or ``background`` (no object under at least
    half of the mask). ``frames_since_seen`` counts them by frames since the object was last
    present (``"6+"`` for 6 or more, ``"never"`` before its first appearance).
    """
    videos = {v.name: v for v in open_dataset(data, split)}
    pred_dir = Path(pred_dir)
    classes = {"same_category": 0, "other_category": 0, "background": 0}
    since: dict[str, int] = {}
    rows: dict[str, list[tuple[int, int]]] = {}
    for row in csv.DictReader(open(Path(out_dir) / "frames.csv")):
        rows.setdefault(row["video"], []).append((int(row["frame"]), int(row["obj_id"])))
    for name, scored in rows.items():
        if name not in videos:
            raise SystemExit(f"{out_dir}: video {name!r} is not in {data} ({split}); evaluate and count the same data")
        video = videos[name]
        cats = _categories(Path(data), split, name)
        ids = video.scan()  # object ids per frame, read once (None: not annotated)
        for t, obj in scored:
            if obj in (ids[t] or ()):
                continue
            path = pred_dir / name / f"{video.frame_names[t]}.png"
            if not path.is_file():
                raise SystemExit(f"{path}: no prediction; pass the --save-pred folder of the evaluation {out_dir}")
            mask = read_mask(path) == obj
            if not mask.any():
                continue
            under = np.bincount(video.labels(t)[mask].ravel().astype(np.int64))
            under[0] = 0
            other = int(under.argmax())
            if under[other] * 2 < mask.sum():
                classes["background"] += 1
            elif obj in cats and cats.get(other) == cats[obj]:
                classes["same_category"] += 1
            else:
                classes["other_category"] += 1
            seen = [s for s in range(t) if obj in (ids[s] or ())]
            key = "never" if not seen else str(t - max(seen)) if t - max(seen) < 6 else "6+"
            since[key] = since.get(key, 0) + 1
    order = [str(k) for k in range(1, 6)] + ["6+", "never"]
    return {**classes, "frames_since_seen": {k: since[k] for k in order if k in since}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="a `surgsam eval --out` folder (its frames.csv)")
    p.add_argument("--data", required=True, help="the dataset that was evaluated")
    p.add_argument("--split", default="valid")
    p.add_argument(
        "--pred", default=None, help="the evaluation's --save-pred folder: also say where the wrong masks lie"
    )
    p.add_argument("--json", default=None, help="also write the counts here")
    a = p.parse_args()
    c: dict[str, object] = dict(count(a.out, a.data, a.split))
    print(
        f"absent object-frames with a mask: {c['absent_with_mask']} of {c['absent']} "
        f"({c['absent_with_mask_pct']:.1f} %); present ones whose mask misses them entirely (J 0): "
        f"{c['present_missed']} of {c['present']} ({c['present_missed_pct']:.1f} %)"
    )
    if a.pred:
        w = where(a.out, a.pred, a.data, a.split)
        c["where"] = w
        print(
            f"they lie on an object of the same category: {w['same_category']}, of another category: "
            f"{w['other_category']}, on background: {w['background']}; frames since the object was last seen: "
            + ", ".join(f"{k}: {n}" for k, n in w["frames_since_seen"].items())  # type: ignore[union-attr]
        )
    if a.json:
        atomic_write_json(a.json, c)


if __name__ == "__main__":
    main()
