"""Put a referring model's text branch on another SAM 2 model: the start of a rebase run.

    python benchmarks/rebase_referring.py --referring surgsam-ref-nano-synth \
        --sam surgsam-nano-synth --out runs/ref-rebase-init/init.pt

The output holds the referring modules (token projection, cross-modal fusion, ...) of
``--referring`` and every SAM 2 weight of ``--sam`` (the image encoder, memory, prompt encoder
and mask decoder), in this package's referring format, so that ``surgsam train --recipe
ref-nano-synth --init OUT`` continues from it. Both must use the same SAM 2 preset. Used in
session 21: the embedded referring model (run c) had been trained on the nano shipped until
session 17; the nano shipped in session 18 tracks better, and the referring branch on it was
retrained from this file for 1000 steps (docs/training.md, "Session 21").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from surgsam.io.atomic import atomic_path
from surgsam.modeling.checkpoint import CheckpointError, load_state_dict_strict, read_checkpoint
from surgsam.referring.checkpoint import build_referring_model, save_referring_checkpoint


def rebase(referring: str, sam: str, out: Path) -> Path:
    """Write ``out``: ``referring``'s model with its ``sam`` part loaded from ``sam``.

    Raises:
        CheckpointError: a file is unreadable, or the SAM 2 checkpoint does not fit the
            referring model's SAM 2 preset (strict loading names the keys).
    """
    net = build_referring_model(checkpoint=referring)
    sam_ck = read_checkpoint(sam)
    if sam_ck.config is not None and sam_ck.config.get("name") != net.sam.cfg.name:
        raise CheckpointError(
            f"{sam}: SAM 2 preset {sam_ck.config.get('name')!r}, but {referring} is built on {net.sam.cfg.name!r}"
        )
    load_state_dict_strict(net.sam, sam_ck.state_dict, source=str(sam_ck.path))
    with atomic_path(out, what="rebased referring checkpoint") as tmp:
        save_referring_checkpoint(net, tmp, step=0, command=f"rebase_referring.py --referring {referring} --sam {sam}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--referring", required=True, help="referring checkpoint or embedded name (its text branch is kept)")
    p.add_argument("--sam", required=True, help="SAM 2 checkpoint or embedded name (replaces every SAM 2 weight)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        path = rebase(args.referring, args.sam, args.out)
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"rebase_referring.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
