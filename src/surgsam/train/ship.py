"""Turn a training checkpoint into a bundled model file, with the record of how it was made.

    python -m surgsam.train.ship runs/nano-synth/checkpoints/step_0008000.pt \\
        --out src/surgsam/assets/nano_synth.pt --command "surgsam train --recipe nano-synth ..." \\
        --log runs/nano-synth/log.jsonl --eval eval.json

The output is our checkpoint format (weights + config, ``build_model(checkpoint=...)`` loads it);
its metadata keeps the checkpoint's ``recipe``, ``step`` and ``train_config`` and adds the exact
``command``, the training wall time read from the log (``train_time_s``: the logged ``elapsed``
of the checkpoint's step, summed over resumed segments, so steps redone after a resume count twice) and any evaluation summary given as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..modeling.checkpoint import CheckpointError, read_checkpoint, save_state_dict


def training_time(log: str | Path, step: int) -> float:
    """Seconds of training up to ``step`` from a trainer log: each resumed segment restarts
    ``elapsed`` at 0, so the segments' last ``elapsed`` values (up to ``step``) are summed."""
    total, last, prev_step = 0.0, 0.0, -1
    for line in Path(log).read_text().splitlines():
        row = json.loads(line)
        s, e = row.get("step"), row.get("elapsed")
        if s is None or e is None or s > step:
            continue
        if s <= prev_step or e < last:  # a resumed segment starts
            total += last
            last = 0.0
        last, prev_step = float(e), int(s)
    return total + last


def ship(
    checkpoint: str | Path,
    out: str | Path,
    *,
    command: str,
    log: str | Path | None = None,
    evaluation: dict[str, Any] | None = None,
) -> Path:
    """Write ``out``: the checkpoint's weights and config plus the training record."""
    ck = read_checkpoint(checkpoint)
    if ck.config is None:
        raise CheckpointError(f"{checkpoint}: not one of our checkpoints (no config); only trainer outputs ship")
    meta: dict[str, Any] = {k: ck.meta[k] for k in ("recipe", "step", "train_config") if k in ck.meta}
    meta["command"] = command
    if log is not None and "step" in meta:
        meta["train_time_s"] = round(training_time(log, int(meta["step"])), 1)
    if evaluation:
        meta["evaluation"] = evaluation
    return save_state_dict({k: v.float() for k, v in ck.state_dict.items()}, out, ck.config, **meta)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m surgsam.train.ship", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("checkpoint", help="a trainer checkpoint (step_NNNNNNN.pt)")
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("--command", required=True, help="the exact training command, recorded in the file")
    p.add_argument("--log", default=None, help="the run's log.jsonl (for the training time)")
    p.add_argument("--eval", default=None, help="a JSON file with evaluation results to record")
    a = p.parse_args(argv)
    evaluation = json.loads(Path(a.eval).read_text()) if a.eval else None
    out = ship(a.checkpoint, a.out, command=a.command, log=a.log, evaluation=evaluation)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
