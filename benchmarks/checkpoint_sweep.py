"""Choose a checkpoint of a training run on the VALIDATION split of its training data.

    python benchmarks/checkpoint_sweep.py /work/runs/nano-aux-a --data /work/data/synth-nano --split valid \
        --also surgsam-nano-synth --threads 1

For every ``RUN/checkpoints/step_*.pt`` (and each ``--also`` checkpoint, e.g. the shipped model as
the reference) it runs the engine end to end on the split (SurgSAM2 protocol, mask prompt at
each object's first appearance, ``efp``; ``--box`` adds the box-prompt row), and, where the
matching ``.state.pt`` holds an auxiliary type head (``--aux-type-loss`` runs), the head's
per-pixel accuracy on the pixels of all objects and of the instruments only, on every 4th frame. Results are appended to
``RUN/valid_sweep.jsonl``; checkpoints already there are skipped, so it can be rerun while the
run goes on. Never choose on the held-out set: it is what the chosen model is reported on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from surgsam.data import open_dataset
from surgsam.eval.endtoend import EngineSegmenter, run_end_to_end


def type_head_accuracy(ckpt: Path, videos, every: int = 4) -> tuple[float, float] | None:
    """Per-pixel accuracy of the run's type head at ``ckpt`` on the pixels of all objects and
    of the instruments only (None without a head)."""
    from surgsam.modeling import build_model
    from surgsam.train.aux_types import INSTRUMENT_CLASSES, AuxTypeConfig, IGNORE, TypeHead, type_map, video_categories
    from surgsam.train.clips import _resize_types, normalize_frames

    state_path = ckpt.with_name(ckpt.name.replace(".pt", ".state.pt"))
    if not state_path.is_file():
        return None
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    head_sd = state.get("aux_type_head")
    if head_sd is None:
        return None
    model = build_model(checkpoint=str(ckpt)).eval()
    level = "+".join(k for k in ("s16", "s4") if f"{k}.weight" in head_sd)
    head = TypeHead.for_model(model, AuxTypeConfig(1.0, level)).eval()
    head.load_state_dict(head_sd)
    s = model.image_size
    hit = total = hit_i = total_i = 0
    inst = torch.tensor(INSTRUMENT_CLASSES)
    with torch.no_grad():
        for v in videos:
            cats, void = video_categories(v), getattr(v, "void_id", None)
            for t in range(0, len(v), every):
                lab = v.labels(t)
                if lab is None:
                    continue
                x = normalize_frames(torch.from_numpy(np.asarray(v.frames[t])).permute(2, 0, 1)[None], s)
                tgt = _resize_types(torch.from_numpy(type_map(lab, cats, void))[None], s)
                logits = head(model.encode_image(x))
                tgt = torch.nn.functional.interpolate(tgt[:, None].float(), logits.shape[-2:], mode="nearest-exact")[
                    :, 0
                ]
                fg = (tgt > 0) & (tgt != IGNORE)
                right = logits.argmax(1) == tgt.long()
                fi = fg & torch.isin(tgt.long(), inst)
                hit, total = hit + int((right & fg).sum()), total + int(fg.sum())
                hit_i, total_i = hit_i + int((right & fi).sum()), total_i + int(fi.sum())
    return hit / max(total, 1), hit_i / max(total_i, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run folder (with checkpoints/)")
    p.add_argument("--data", required=True, help="the TRAINING dataset folder (its validation split is used)")
    p.add_argument("--split", default="valid")
    p.add_argument("--also", action="append", default=[], metavar="CKPT", help="also evaluate this checkpoint/name")
    p.add_argument("--box", action="store_true", help="also the box-prompt row")
    p.add_argument("--every", type=int, default=1, help="only every k-th checkpoint (by step)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    if "heldout" in str(a.data):
        sys.exit("refusing to choose checkpoints on a held-out set; give the training data's folder")
    torch.set_num_threads(a.threads)
    run = Path(a.run)
    out = run / "valid_sweep.jsonl"
    done = (
        {(r["checkpoint"], r["prompt"]) for r in map(json.loads, out.read_text().splitlines())}
        if out.is_file()
        else set()
    )
    videos = list(open_dataset(a.data, a.split, require_frames=True))
    ckpts = sorted((run / "checkpoints").glob("step_*[0-9].pt"))[:: max(1, a.every)]
    prompts = ["mask", "box"] if a.box else ["mask"]
    for ck in [*a.also, *map(str, ckpts)]:
        for prompt in prompts:
            if (ck, prompt) in done:
                continue
            t0 = time.perf_counter()
            s = run_end_to_end(
                videos, EngineSegmenter(checkpoint=ck, memory="efp", prompt=prompt), "surgsam2", progress=False
            ).summary()["all"]
            acc = type_head_accuracy(Path(ck), videos) if prompt == "mask" and Path(ck).is_file() else None
            rec = {
                "checkpoint": ck,
                "prompt": prompt,
                "memory": "efp",
                "data": a.data,
                "split": a.split,
                "J&F": round(s["J&F"], 2),
                "J": round(s["J"], 2),
                "F": round(s["F"], 2),
                "type_acc": None if acc is None else round(acc[0], 4),
                "instrument_type_acc": None if acc is None else round(acc[1], 4),
                "seconds": round(time.perf_counter() - t0, 1),
                "date": time.strftime("%Y-%m-%d %H:%M"),
            }
            with out.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(json.dumps(rec), flush=True)
    if not out.is_file():
        print(f"no checkpoint scored yet: {run / 'checkpoints'} holds no step_*.pt")
        return
    print(
        "\n| checkpoint | prompt | J&F | J | F | type head acc: objects / instruments |\n"
        "| --- | --- | ---: | ---: | ---: | ---: |"
    )
    for r in map(json.loads, out.read_text().splitlines()):
        pct = lambda x: "" if x is None else f"{100 * x:.1f}"  # noqa: E731
        acc = f"{pct(r.get('type_acc'))} / {pct(r.get('instrument_type_acc'))}" if r.get("type_acc") is not None else ""
        print(
            f"| {Path(r['checkpoint']).name} | {r['prompt']} | {r['J&F']:.1f} | {r['J']:.1f} | {r['F']:.1f} | {acc} |"
        )


if __name__ == "__main__":
    main()
