"""Would a stricter object-presence threshold stop masks on absent objects? Shifted copies of a checkpoint.

    python benchmarks/object_score_shift.py surgsam-nano-synth /work/runs/score-shift --shifts 0 1 2 4
    python benchmarks/checkpoint_sweep.py /work/runs/score-shift --data /work/data/synth-nano --split valid --box

SAM 2 treats an object as present on a frame when the mask decoder's object-score logit is
above 0: otherwise its mask is emptied, its object pointer replaced and its memory marked
absent. Lowering the bias of the score head's last layer by ``t`` moves that threshold to ``t``
everywhere at once (the logit is only ever compared with 0), so each shifted copy is the same
model with a stricter threshold. The copies are written as ``OUT/checkpoints/step_{10 t}.pt``
(t = 0 is the model itself) for ``checkpoint_sweep.py`` to score on the validation split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from surgsam.io.atomic import atomic_path
from surgsam.modeling.embedded import resolve_checkpoint

SCORE_BIAS = "sam_mask_decoder.pred_obj_score_head.layers.2.bias"


def write_shifted(checkpoint: str, out: Path, shifts: list[float]) -> list[Path]:
    """One copy of ``checkpoint`` per shift, its object-score bias lowered by the shift."""
    ckpt = torch.load(resolve_checkpoint(checkpoint), map_location="cpu", weights_only=True)
    bias = ckpt["model"][SCORE_BIAS].clone()
    paths = []
    for t in shifts:
        if t < 0 or round(10 * t) != 10 * t:
            raise ValueError(f"shifts must be non-negative multiples of 0.1, got {t}")
        ckpt["model"][SCORE_BIAS] = bias - t
        path = out / "checkpoints" / f"step_{round(10 * t):07d}.pt"
        with atomic_path(path) as tmp:
            torch.save(ckpt, tmp)
        paths.append(path)
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a surgsam checkpoint file or embedded model name")
    p.add_argument("out", type=Path, help="folder for OUT/checkpoints/step_*.pt")
    p.add_argument("--shifts", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0])
    a = p.parse_args()
    for path in write_shifted(a.checkpoint, a.out, a.shifts):
        print(path)


if __name__ == "__main__":
    main()
