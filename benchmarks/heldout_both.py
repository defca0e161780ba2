"""A tracking checkpoint and a referring checkpoint on BOTH held-out sets (issue 19): a new
embedded model ships only if it is better on both.

    python benchmarks/heldout_both.py --threads 1 --out benchmarks/results_heldout_both.json
    python benchmarks/heldout_both.py --checkpoint runs/nano/checkpoints/step_0012000.pt \
        --ref-checkpoint runs/ref/checkpoints/step_0003000.pt --threads 1 \
        --against benchmarks/results_2026-12-02_heldout_both.json

The sets (both 16 videos x 40 frames, 320x256, valid split)::

    A  surgsam synth data/synth-heldout --videos 16 --frames 40 --size 320x256 --seed 1 --valid 16
    B  surgsam synth data/synth-heldout-b --videos 16 --frames 40 --size 320x256 --seed 2 --valid 16 \
           --style alt --phrasing paraphrase

A is the training data's look and grammar (another seed); B another look (light, tissue,
instrument finishes) and reworded expressions, partly in wording that training augmentation
never uses. Runs, each exactly as ``surgsam eval --e2e`` does it with its defaults (fp32):

* ``mask``: the tracking checkpoint, efp memory, each object's mask at its first appearance,
  surgsam2 protocol (first and last frame of each track skipped);
* ``box``: the same with the object's tight box as the prompt;
* ``refer``: the referring checkpoint, every expression segmented from its text alone, CIFS +
  dlm, detections shown until an expression is found, resurgsam2 protocol (every frame);
  also instruments / tissue J&F and how many targets (and instrument targets) were found.

Prints one table (a row per run and measure, a column per set) and writes the numbers as JSON.
``--against OLD.json`` (an earlier output) adds the J&F differences and, per run, whether the
new checkpoints beat the old ones on both sets, and, where both outputs kept per-object
scores, the paired difference over the same objects with a 95 % bootstrap interval over
videos (``surgsam.eval.compare``: with 16 videos a difference inside it is noise). ``--runs`` / ``--sets`` restrict the work.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from surgsam.eval.compare import PairedDifference, paired_difference, score_map

RUNS = ("mask", "box", "refer")
DEFAULT_SETS = {"A": "data/synth-heldout", "B": "data/synth-heldout-b"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="surgsam-nano-synth", help="tracking checkpoint (mask and box runs)")
    p.add_argument("--ref-checkpoint", default="surgsam-ref-nano-synth", help="referring checkpoint (refer run)")
    p.add_argument("--a", default=DEFAULT_SETS["A"], help=f"held-out set A (default {DEFAULT_SETS['A']})")
    p.add_argument("--b", default=DEFAULT_SETS["B"], help=f"held-out set B (default {DEFAULT_SETS['B']})")
    p.add_argument("--sets", nargs="+", choices=("A", "B"), default=["A", "B"])
    p.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    p.add_argument("--split", default="valid")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--against", default=None, help="an earlier JSON output: print differences and the verdict")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _engine_row(videos, checkpoint: str, prompt: str, progress: bool) -> dict:
    from surgsam.eval.endtoend import EngineSegmenter, run_end_to_end

    seg = EngineSegmenter(checkpoint=checkpoint, memory="efp", prompt=prompt)  # surgsam eval --e2e's defaults
    t0 = time.perf_counter()
    result = run_end_to_end(videos, seg, "surgsam2", progress=progress, desc=prompt)
    s = result.summary()["all"]
    return {
        "J&F": s["J&F"],
        "J": s["J"],
        "F": s["F"],
        "objects": s.get("n_objects"),
        "wall_s": time.perf_counter() - t0,
        "per_object": _per_object(result.objects),
    }


def _per_object(objects) -> list[list]:
    """``[video, obj_id, J&F]`` of every scored object: what the paired comparison needs."""
    return [[o.video, o.obj_id, o.JF] for o in objects]


def _refer_row(videos, seg, progress: bool) -> dict:
    from surgsam.eval.referring import run_referring

    t0 = time.perf_counter()
    run = run_referring(videos, seg, "resurgsam2", progress=progress, desc="refer")
    s = run.result.summary()
    nan = float("nan")
    row = {
        "J&F": s["all"]["J&F"],
        "J": s["all"]["J"],
        "F": s["all"]["F"],
        "instruments J&F": s.get("instruments", {}).get("J&F", nan),
        "tissue J&F": s.get("tissue", {}).get("J&F", nan),
        "wall_s": time.perf_counter() - t0,
        "per_object": _per_object(run.result.objects),
    }
    for group in ("all", "instruments", "tissue"):
        exps = [e for e in run.expressions if group == "all" or e.group == group]
        row[f"{group} found"] = sum(e.tracking_from is not None for e in exps)
        row[f"{group} targets"] = len(exps)
    row["expressions"] = sum(len(v.expressions()) for v in videos)
    return row


MEASURES = {  # run -> (label, key or formatter)
    "mask": [("J&F", "J&F"), ("J", "J"), ("F", "F")],
    "box": [("J&F", "J&F"), ("J", "J"), ("F", "F")],
    "refer": [
        ("J&F", "J&F"),
        ("instruments J&F", "instruments J&F"),
        ("tissue J&F", "tissue J&F"),
        ("targets found", lambda r: f"{r['all found']}/{r['all targets']}"),
        ("instrument targets found", lambda r: f"{r['instruments found']}/{r['instruments targets']}"),
        ("expressions", lambda r: str(r["expressions"])),
    ],
}


def _cell(row: dict | None, key) -> str:
    if row is None:
        return "-"
    if callable(key):
        return key(row)
    return f"{row[key]:.1f}"


def format_table(results: dict, sets: list[str], old: dict | None = None) -> str:
    """Markdown table: a line per run and measure, a column per set (and its change vs ``old``)."""
    head = ["run", "measure"] + [f"set {s}" for s in sets]
    if old is not None:
        head += [f"vs old, set {s}" for s in sets]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for run, measures in MEASURES.items():
        if not any(run in results.get(s, {}) for s in sets):
            continue
        for label, key in measures:
            cells = [run, label] + [_cell(results.get(s, {}).get(run), key) for s in sets]
            if old is not None:
                for s in sets:
                    new_r, old_r = results.get(s, {}).get(run), old.get(s, {}).get(run)
                    ok = new_r is not None and old_r is not None and not callable(key)
                    cells.append(f"{new_r[key] - old_r[key]:+.1f}" if ok else "")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(results: dict, old: dict, sets: list[str]) -> dict[str, dict[str, PairedDifference]]:
    """Per set and run: the paired J&F difference over the same objects, with a video-level
    bootstrap interval (``surgsam.eval.compare``); runs whose old result has no per-object
    scores (written before they were kept) are left out."""
    out: dict[str, dict[str, PairedDifference]] = {}
    for s in sets:
        for run in RUNS:
            n, o = results.get(s, {}).get(run), old.get(s, {}).get(run)
            if n is None or o is None or "per_object" not in n or "per_object" not in o:
                continue
            out.setdefault(s, {})[run] = paired_difference(score_map(n["per_object"]), score_map(o["per_object"]))
    return out


def verdict(results: dict, old: dict, sets: list[str]) -> list[str]:
    """Per run: is the new J&F higher than the old one on every set?"""
    out = []
    for run in RUNS:
        pairs = [(results.get(s, {}).get(run), old.get(s, {}).get(run)) for s in sets]
        if any(n is None or o is None for n, o in pairs):
            continue
        better = all(n["J&F"] > o["J&F"] for n, o in pairs)
        out.append(f"{run}: {'better' if better else 'NOT better'} on {' and '.join(sets)}")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    from surgsam.data import open_dataset

    torch.set_num_threads(args.threads)
    paths = {"A": args.a, "B": args.b}
    progress = not args.no_progress
    ref_seg = None
    if "refer" in args.runs:
        from surgsam.eval.referring import ReferringEvalSegmenter
        from surgsam.referring.cifs import CIFSConfig

        ref_seg = ReferringEvalSegmenter(  # surgsam eval --e2e --segmenter referring's defaults
            checkpoint=args.ref_checkpoint,
            memory="dlm",
            cifs=CIFSConfig(enabled=True),
            search_output="detection",
            precision="fp32",
        )
    results: dict[str, dict] = {}
    info: dict[str, dict] = {}
    for s in args.sets:
        videos = list(open_dataset(paths[s], args.split, require_frames=True))
        synth = Path(paths[s]) / "synth_info.json"
        info[s] = {
            "data": paths[s],
            "videos": len(videos),
            "frames": sum(len(v) for v in videos),
            "synth_config": json.loads(synth.read_text()).get("config") if synth.is_file() else None,
        }
        results[s] = {}
        for run in args.runs:
            if run == "refer":
                assert ref_seg is not None
                row = _refer_row(videos, ref_seg, progress)
            else:
                row = _engine_row(videos, args.checkpoint, run, progress)
            results[s][run] = row
            print(f"set {s} {run}: J&F {row['J&F']:.2f} ({row['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    old = json.loads(Path(args.against).read_text())["results"] if args.against else None
    print(
        f"\ntracking checkpoint {args.checkpoint}, referring checkpoint {args.ref_checkpoint}; "
        + "; ".join(f"set {s}: {i['data']} ({i['videos']} videos, {i['frames']} frames)" for s, i in info.items())
        + "\n"
    )
    print(format_table(results, args.sets, old))
    diffs = paired(results, old, args.sets) if old is not None else {}
    if old is not None:
        print("\n" + "\n".join(verdict(results, old, args.sets)))
        for s, runs in diffs.items():
            for run, d in runs.items():
                print(f"set {s} {run}, paired: {d.describe()}")
    if args.out:
        doc = {
            "checkpoint": args.checkpoint,
            "ref_checkpoint": args.ref_checkpoint,
            "split": args.split,
            "sets": info,
            "threads": args.threads,
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "date": time.strftime("%Y-%m-%d"),
            "results": results,
        }
        if old is not None:
            doc["against"] = args.against
            doc["paired"] = {s: {run: asdict(d) for run, d in runs.items()} for s, runs in diffs.items()}
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
