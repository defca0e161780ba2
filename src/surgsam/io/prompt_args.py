"""The one-object prompt options of the command lines (``--mask`` / ``--points`` + ``--labels``
/ ``--box`` and ``--obj-id``): declared and read here once, for ``surgsam segment`` (and the
app) and for the torch-free ONNX runner ``python -m surgsam.export.run``.

numpy and Pillow only: nothing here imports PyTorch.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PromptArgs", "add_single_prompt_arguments", "parse_labels", "parse_pairs", "read_prompt_args"]


@dataclass
class PromptArgs:
    """One object's prompt as the command line gives it, in frame pixels.

    mask: ``H x W`` bool; points: ``P x 2`` float32 (x, y) with labels ``P`` int64 (1 positive,
    0 negative); box: ``4`` float32 (x0, y0, x1, y1). Exactly one of mask, points, box is set.
    """

    obj_id: int
    mask: np.ndarray | None = None
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``add_prompt`` (the engine's and the ONNX runner's)."""
        return dict(obj_id=self.obj_id, points=self.points, labels=self.labels, box=self.box, mask=self.mask)


def parse_pairs(text: str, n: int, what: str) -> np.ndarray:
    """'x,y;x,y' -> ``P x n`` float32 array, with a clear error."""
    try:
        rows = [[float(v) for v in part.split(",")] for part in text.replace(" ", "").split(";") if part]
    except ValueError:
        raise ValueError(f"cannot parse {what} {text!r}") from None
    if not rows or any(len(r) != n for r in rows):
        raise ValueError(f"{what} must be groups of {n} comma-separated numbers, got {text!r}")
    return np.asarray(rows, dtype=np.float32)


def parse_labels(text: str, count: int) -> np.ndarray:
    """``--labels`` '1,0,...' for ``count`` points -> ``count`` int64 0/1 values, with a clear error."""
    try:
        labels = np.array([int(v) for v in text.replace(" ", "").split(",")], dtype=np.int64)
    except ValueError:
        raise ValueError(f"cannot parse --labels {text!r}") from None
    if len(labels) != count:
        raise ValueError(f"--labels has {len(labels)} values for {count} points")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"--labels must be 1 (positive) or 0 (negative), got {text!r}")
    return labels


def add_single_prompt_arguments(
    p: argparse.ArgumentParser, group: argparse._MutuallyExclusiveGroup | None = None
) -> None:
    """``--mask`` / ``--points`` / ``--box`` (in ``group``, mutually exclusive, when given) and
    ``--labels`` / ``--obj-id``, read back by :func:`read_prompt_args`."""
    g = group if group is not None else p.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--mask", type=Path, help="PNG on the prompt frame: binary, or a palette PNG whose ids are the objects"
    )
    g.add_argument("--points", help='clicks "x,y;x,y" in frame pixels (with --labels, default all positive)')
    g.add_argument("--box", help='box "x0,y0,x1,y1" in frame pixels')
    p.add_argument("--labels", help='click labels "1,0,..." (1 positive, 0 negative), one per --points click')
    p.add_argument("--obj-id", type=int, default=1, help="object id for --points/--box/a binary --mask")


def read_prompt_args(args: argparse.Namespace) -> list[PromptArgs]:
    """The prompts of ``--mask`` (one per object of a palette PNG; a binary PNG is object
    ``--obj-id``), ``--points`` (+ ``--labels``) or ``--box``. Refuses, before any work, a
    missing or empty mask file, unparsable numbers, a ``--labels`` count that is not the
    number of points, and ``--labels`` without ``--points``."""
    from .writers import read_palette_png

    if args.labels and args.points is None:
        raise ValueError("--labels goes with --points")
    if args.mask is not None:
        if not args.mask.is_file():
            raise FileNotFoundError(f"mask not found: {args.mask}")
        ids = read_palette_png(args.mask, allow_rgb=True)
        objs = [int(i) for i in np.unique(ids) if i != 0]
        if not objs:
            raise ValueError(f"{args.mask} has no foreground pixel")
        if objs in ([1], [255]):  # a binary mask: one object
            return [PromptArgs(args.obj_id, mask=ids > 0)]
        return [PromptArgs(k, mask=ids == k) for k in objs]
    if args.points is not None:
        pts = parse_pairs(args.points, 2, "--points")
        labels = parse_labels(args.labels, len(pts)) if args.labels else np.ones(len(pts), dtype=np.int64)
        return [PromptArgs(args.obj_id, points=pts, labels=labels)]
    if args.box is None:
        raise ValueError("give a prompt: --mask, --points or --box")
    return [PromptArgs(args.obj_id, box=parse_pairs(args.box, 4, "--box")[0])]
