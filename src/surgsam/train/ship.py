"""Turn a training checkpoint into a bundled model file, with the record of how it was made.

    python -m surgsam.train.ship runs/nano-synth/checkpoints/step_0008000.pt \\
        --out src/surgsam/assets/nano_synth.pt --command "surgsam train --recipe nano-synth ..." \\
        --log runs/nano-synth/log.jsonl --eval eval.json

The output is our checkpoint format (weights + config, ``build_model(checkpoint=...)`` loads it);
its metadata keeps the checkpoint's ``recipe``, ``step`` and ``train_config`` and adds the exact
``command``, the training wall time read from the log (``train_time_s``: the logged ``elapsed``
of the checkpoint's step, summed over resumed segments, so steps redone after a resume count twice) and any evaluation summary given as JSON.

A model made by a chain of runs, each started (``--init``) from a step of the one before, on
top of an earlier shipped file: give ``--base`` that file and one ``--log LOG:STEP`` per run of
the chain, in order, each with the step taken from it (the last one defaults to the
checkpoint's step). The record then says ``global_step`` (the base's steps plus the chain's),
``train_time_s`` (the base's plus each run's time up to its step) and keeps the base's own
record under ``base``.
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


def _parse_log(spec: str | Path) -> tuple[Path, int | None]:
    """``LOG`` or ``LOG:STEP`` (the step this run of a chain was taken at)."""
    text = str(spec)
    head, sep, tail = text.rpartition(":")
    if sep and tail.isdigit():
        return Path(head), int(tail)
    return Path(text), None


def ship(
    checkpoint: str | Path,
    out: str | Path,
    *,
    command: str,
    log: str | Path | list[str | Path] | None = None,
    evaluation: dict[str, Any] | None = None,
    base: str | Path | None = None,
    base_step: int | None = None,
) -> Path:
    """Write ``out``: the checkpoint's weights and config plus the training record.

    ``log``: the run's log, or the logs of a chain of runs (``"LOG:STEP"``, oldest first; the
    last one's step defaults to the checkpoint's). ``base``: the shipped file the chain started
    from (its step and training time are added, its record kept under ``base``); ``base_step``:
    its global step where the file records none (an older file's ``step`` is its last run's).
    """
    ck = read_checkpoint(checkpoint)
    if ck.config is None:
        raise CheckpointError(f"{checkpoint}: not one of our checkpoints (no config); only trainer outputs ship")
    meta: dict[str, Any] = {k: ck.meta[k] for k in ("recipe", "step", "train_config") if k in ck.meta}
    meta["command"] = command
    logs = [] if log is None else [log] if isinstance(log, (str, Path)) else list(log)
    runs = [_parse_log(x) for x in logs]
    if runs and runs[-1][1] is None and "step" in meta:
        runs[-1] = (runs[-1][0], int(meta["step"]))
    for path, step in runs[:-1]:
        if step is None:
            raise ValueError(f"--log {path}: an earlier run of a chain needs the step taken from it (LOG:STEP)")
    seconds = sum(training_time(path, step) for path, step in runs if step is not None)
    steps = sum(step for _, step in runs if step is not None)
    if base is not None:
        prev = read_checkpoint(base).meta
        keep = ("recipe", "step", "global_step", "command", "train_time_s", "evaluation")
        meta["base"] = {k: prev[k] for k in keep if k in prev}
        start = base_step if base_step is not None else int(prev.get("global_step", prev.get("step", 0)))
        meta["global_step"] = start + (steps or int(meta.get("step", 0)))
        seconds += float(prev.get("train_time_s", 0.0))
    if runs or base is not None:
        meta["train_time_s"] = round(seconds, 1)
    if evaluation:
        meta["evaluation"] = evaluation
    return save_state_dict({k: v.float() for k, v in ck.state_dict.items()}, out, ck.config, **meta)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m surgsam.train.ship", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("checkpoint", help="a trainer checkpoint (step_NNNNNNN.pt)")
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("--command", required=True, help="the exact training command(s), recorded in the file")
    p.add_argument(
        "--log",
        action="append",
        default=None,
        help="the run's log.jsonl (for the training time); repeat as LOG:STEP for each run of a chain, oldest first",
    )
    p.add_argument("--base", default=None, help="the shipped model file (or name) the chain started from")
    p.add_argument(
        "--base-step", type=int, default=None, help="the base's global step, if its file records only its last run's"
    )
    p.add_argument("--eval", default=None, help="a JSON file with evaluation results to record")
    a = p.parse_args(argv)
    evaluation = json.loads(Path(a.eval).read_text()) if a.eval else None
    out = ship(
        a.checkpoint, a.out, command=a.command, log=a.log, evaluation=evaluation, base=a.base, base_step=a.base_step
    )
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
