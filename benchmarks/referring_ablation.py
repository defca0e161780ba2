"""ReSurgSAM2 ablation on one Ref-EndoVis-layout dataset and one checkpoint: {CIFS on, off} x
{dlm, fifo} tracking memory, end to end (each expression segmented from its text alone).

    python benchmarks/referring_ablation.py --data data/Ref-Endovis18 --split valid \
        --checkpoint sam2.1_hiera_s_ref18.pth --model sam2.1_hiera_s --image-size 512 --out results/ablation

Prints one row per variant: J&F, J, F (all expressions; EndoVis18 instruments and tissue too when
present), expressions found, FPS and the median latency of detection frames (some expression still
searching) and of tracking frames. With --out: ablation.csv, ablation.json and each variant's
evaluation files in a subfolder. The network and text encoder are built once and shared by the
variants. Without --checkpoint an UNTRAINED network runs and the table says so in its first line.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from surgsam.referring.cifs import SEARCH_OUTPUTS

VARIANTS = [
    ("cifs+dlm", True, "dlm"),
    ("cifs+fifo", True, "fifo"),
    ("nocifs+dlm", False, "dlm"),
    ("nocifs+fifo", False, "fifo"),
]
COLUMNS = ["variant", "cifs", "memory", "J&F", "J", "F", "inst J&F", "tissue J&F", "found", "FPS", "det ms", "trk ms"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="Ref-EndoVis-layout dataset folder")
    p.add_argument("--split", default="valid")
    p.add_argument("--videos", default=None, help="comma-separated subset of videos")
    p.add_argument("--checkpoint", default=None, help="referring checkpoint (none: UNTRAINED nano + tiny)")
    p.add_argument("--model", default=None, help="SAM preset (default: the checkpoint's, nano without one)")
    p.add_argument("--referring", default=None, help="referring preset")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--text-encoder", default=None)
    p.add_argument("--protocol", default="resurgsam2")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "auto"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--search-output",
        default="detection",
        choices=SEARCH_OUTPUTS,
        help="what an expression emits before it is credibly found (as surgsam refer)",
    )
    p.add_argument("--out", default=None, help="write ablation.csv, ablation.json and per-variant results here")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _row(name: str, cifs: bool, memory: str, run) -> dict:
    s = run.result.summary()
    found, n = run.found_count()
    t = run.timing()
    nan = float("nan")
    return {
        "variant": name,
        "cifs": "on" if cifs else "off",
        "memory": memory,
        "J&F": s["all"]["J&F"],
        "J": s["all"]["J"],
        "F": s["all"]["F"],
        "inst J&F": s.get("instruments", {}).get("J&F", nan),
        "tissue J&F": s.get("tissue", {}).get("J&F", nan),
        "found": f"{found}/{n}",
        "FPS": t["fps"] if t["fps"] is not None else nan,
        "det ms": t["detection_latency_ms"] if t["detection_latency_ms"] is not None else nan,
        "trk ms": t["tracking_latency_ms"] if t["tracking_latency_ms"] is not None else nan,
    }


def format_table(rows: list[dict], untrained: bool) -> str:
    def cell(x) -> str:
        if isinstance(x, float):
            return "n/a" if math.isnan(x) else f"{x:.2f}"
        return str(x)

    lines = []
    if untrained:
        lines.append(
            "NOTE: UNTRAINED referring weights (no --checkpoint): this table only checks the pipeline; "
            "its numbers are not meaningful"
        )
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    for r in rows:
        lines.append("| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from surgsam.data import open_dataset
    from surgsam.eval.evaluator import json_safe
    from surgsam.eval.referring import ReferringEvalSegmenter, run_referring
    from surgsam.referring.cifs import CIFSConfig
    from surgsam.referring.build import build_referring

    videos = [v for v in args.videos.split(",") if v] if args.videos else None
    data = list(open_dataset(args.data, args.split, require_frames=True, videos=videos))
    net, enc, untrained = build_referring(
        checkpoint=args.checkpoint,
        model=args.model,
        referring=args.referring,
        image_size=args.image_size,
        text_encoder=args.text_encoder,
        device=args.device,
        seed=args.seed,
    )
    if untrained:
        print(
            "WARNING: untrained referring network (no --checkpoint): the ablation runs but its numbers are "
            "not meaningful",
            file=sys.stderr,
        )
    rows, runs = [], {}
    for name, cifs, memory in VARIANTS:
        seg = ReferringEvalSegmenter(
            net=net,
            text_encoder=enc,
            memory=memory,
            cifs=CIFSConfig(enabled=cifs),
            precision=args.precision,
            untrained=untrained,
            checkpoint=args.checkpoint,
            search_output=args.search_output,
        )
        run = run_referring(data, seg, args.protocol, progress=not args.no_progress, desc=name)
        runs[name] = run
        rows.append(_row(name, cifs, memory, run))
        if args.out:
            run.write(Path(args.out) / name)
    table = format_table(rows, untrained)
    print(
        f"ReSurgSAM2 ablation: {args.data} ({args.split}), {len(data)} videos, "
        f"{sum(len(v.expressions()) for v in data)} expressions, protocol {args.protocol}, "
        f"model {net.sam.cfg.name} + {net.cfg.name} at {net.sam.image_size} px, text {enc.name}, "
        f"device {args.device}, precision {args.precision}"
    )
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "ablation.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)
        doc = {
            "untrained": untrained,
            "data": str(args.data),
            "split": args.split,
            "checkpoint": args.checkpoint,
            "protocol": args.protocol,
            "rows": rows,
            "settings": {k: r.settings for k, r in runs.items()},
        }
        (out / "ablation.json").write_text(json.dumps(json_safe(doc), indent=1, default=str))
        print(f"wrote {out / 'ablation.csv'}, {out / 'ablation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
