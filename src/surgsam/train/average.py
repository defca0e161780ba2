"""Weighted average of checkpoints of one network (weight-space ensembling).

    python -m surgsam.train.average surgsam-nano-synth runs/nano-photo3/checkpoints/step_0002500.pt \\
        --weights 0.5 0.5 --out runs/soup/blend_050.pt

Two uses, both cheap (no training): a fine-tuned model blended with the model it started from
(WiSE-FT: it often keeps the start's strengths on its own data and the fine-tune's on shifted
data), and the last checkpoints of one run (a late-training average). Every input must be one of
our checkpoint files (or a bundled model's name) of the same network: equal configs, the same
keys and shapes. Floating-point tensors are averaged in float64 and stored as float32; any other
tensor must be equal in every input. The output is our checkpoint format, loadable by
``build_model(checkpoint=...)`` and by :mod:`surgsam.train.ship`; its metadata ``averaged``
lists the inputs, their weights and steps, and ``recipe`` is kept when all inputs agree on it.
The file is written to a temporary name and renamed, so a failure keeps an earlier file.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..modeling.checkpoint import CheckpointError, read_checkpoint, save_state_dict

__all__ = ["average_checkpoints", "main"]


def average_checkpoints(
    checkpoints: Sequence[str | Path], weights: Sequence[float] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """``sum_i weights[i] * checkpoint_i`` for every floating-point tensor.

    ``weights``: one per checkpoint, non-negative, summing to 1 (default: equal). Returns
    (state dict, config, metadata ``{"averaged": [...], "recipe"?: ...}``). Raises
    :class:`~surgsam.modeling.checkpoint.CheckpointError` for a file without our config, configs
    or keys or shapes that differ, and unequal non-float tensors; ``ValueError`` for bad weights.
    """
    if len(checkpoints) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(checkpoints)}")
    if weights is None:
        weights = [1.0 / len(checkpoints)] * len(checkpoints)
    if len(weights) != len(checkpoints):
        raise ValueError(f"{len(weights)} weights for {len(checkpoints)} checkpoints: give one weight per checkpoint")
    if any(not math.isfinite(w) or w < 0 for w in weights) or not math.isclose(sum(weights), 1.0, abs_tol=1e-6):
        raise ValueError(f"weights must be non-negative and sum to 1, got {list(weights)}")
    cks = [read_checkpoint(c) for c in checkpoints]
    first = cks[0]
    for c in cks:
        if c.config is None:
            raise CheckpointError(f"{c.path}: not one of our checkpoints (no config); only trainer outputs average")
        if c.config != first.config:
            raise CheckpointError(f"{c.path} and {first.path} are different networks (their configs differ)")
        if set(c.state_dict) != set(first.state_dict):
            diff = sorted(set(c.state_dict) ^ set(first.state_dict))
            raise CheckpointError(f"{c.path} and {first.path} hold different tensors: {', '.join(diff[:8])}")
    out: dict[str, torch.Tensor] = {}
    for key, ref in first.state_dict.items():
        tensors = [c.state_dict[key] for c in cks]
        for c, t in zip(cks, tensors):
            if t.shape != ref.shape or t.dtype != ref.dtype:
                raise CheckpointError(
                    f"{key}: {tuple(t.shape)} {t.dtype} in {c.path} against {tuple(ref.shape)} {ref.dtype} in {first.path}"
                )
        if ref.is_floating_point():
            acc = torch.zeros(ref.shape, dtype=torch.float64)
            for w, t in zip(weights, tensors):
                acc += w * t.double()
            out[key] = acc.float()
        else:
            for c, t in zip(cks, tensors):
                if not torch.equal(t, ref):
                    raise CheckpointError(f"{key} (not floating point, so not averaged) differs in {c.path}")
            out[key] = ref.clone()
    meta: dict[str, Any] = {
        "averaged": [
            {"checkpoint": str(c), "weight": float(w), "step": ck.meta.get("step")}
            for c, w, ck in zip(checkpoints, weights, cks)
        ]
    }
    recipes = {ck.meta.get("recipe") for ck in cks}
    if len(recipes) == 1 and None not in recipes:
        meta["recipe"] = recipes.pop()
    return out, first.config, meta  # type: ignore[return-value]  # config checked above


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m surgsam.train.average",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoints", nargs="+", help="our checkpoint files or bundled model names (two or more)")
    p.add_argument("--weights", type=float, nargs="+", default=None, help="one per checkpoint, summing to 1")
    p.add_argument("--out", required=True, help="the file to write")
    a = p.parse_args(argv)
    try:
        sd, config, meta = average_checkpoints(a.checkpoints, a.weights)
    except (CheckpointError, ValueError) as e:
        p.error(str(e))
    out = save_state_dict(sd, a.out, config, **meta)
    print(f"wrote {out}: " + " + ".join(f"{m['weight']:g} x {m['checkpoint']}" for m in meta["averaged"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
