"""Prompts for several objects on any frames, from a JSON file (``surgsam segment --prompts``).

The file holds a list of prompts (or ``{"prompts": [...]}``); each is an object with
``obj_id`` (1..255), ``frame`` (default 0) and one of:

- ``"mask"``: a PNG path, relative to the JSON file; a binary PNG, or a palette PNG of which
  ``"mask_id"`` picks one id (default: every pixel that is not background);
- ``"points"``: ``[[x, y], ...]`` in frame pixels, with ``"labels"`` ``[1, 0, ...]``
  (default all positive), optionally with a ``"box"``;
- ``"box"``: ``[x0, y0, x1, y1]`` in frame pixels.

Example::

    [{"obj_id": 1, "frame": 0, "mask": "first.png"},
     {"obj_id": 2, "frame": 0, "points": [[200, 160], [120, 40]], "labels": [1, 0]},
     {"obj_id": 3, "frame": 12, "box": [60, 40, 150, 140]}]

Every problem is reported with the entry's index before any frame is processed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .offline import Prompt
from .prompts import check_box, check_clicks, check_obj_id

_KEYS = {"obj_id", "frame", "mask", "mask_id", "points", "labels", "box"}


def read_prompts(path: str | Path) -> list[Prompt]:
    """Parse a prompts file into :class:`Prompt` objects (masks read, forms checked)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompts file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a JSON prompts file: {e}") from None
    if isinstance(data, dict) and set(data) == {"prompts"}:
        data = data["prompts"]
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a non-empty list of prompts (or {{\"prompts\": [...]}})")
    prompts = [_entry(path, i, e) for i, e in enumerate(data)]
    seen: set[tuple[int, int]] = set()
    for p in prompts:
        if (p.obj_id, p.frame_idx) in seen:
            raise ValueError(f"{path}: object {p.obj_id} is prompted twice on frame {p.frame_idx}; merge the clicks")
        seen.add((p.obj_id, p.frame_idx))
    return prompts


def _entry(path: Path, i: int, e: Any) -> Prompt:
    where = f"{path}, prompt {i}"
    if not isinstance(e, dict):
        raise ValueError(f"{where}: each prompt is a JSON object, got {type(e).__name__}")
    unknown = set(e) - _KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}")
    if "obj_id" not in e:
        raise ValueError(f"{where}: obj_id is missing")
    try:
        oid = check_obj_id(e["obj_id"])
        frame = e.get("frame", 0)
        if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
            raise ValueError(f"frame must be a non-negative integer, got {frame!r}")
        if "mask" in e:
            if any(k in e for k in ("points", "labels", "box")):
                raise ValueError("give a mask or clicks/box, not both")
            return Prompt(oid, frame, mask=_mask(path, e["mask"], e.get("mask_id")))
        if "mask_id" in e:
            raise ValueError("mask_id needs a mask")
        points = e.get("points")
        labels = e.get("labels", [1] * len(points) if isinstance(points, list) else None)
        clicks = check_clicks(points, labels)
        box = check_box(e.get("box"))
        if clicks is None and box is None:
            raise ValueError("needs a mask, points or a box")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None
    pts, lab = clicks if clicks is not None else (None, None)
    return Prompt(oid, frame, points=pts, labels=lab, box=box)


def _mask(path: Path, name: Any, mask_id: Any) -> np.ndarray:
    from ..io import read_palette_png

    if not isinstance(name, str) or not name:
        raise ValueError(f"mask must be a PNG path, got {name!r}")
    file = (path.parent / name) if not Path(name).is_absolute() else Path(name)
    if not file.is_file():
        raise ValueError(f"mask file not found: {file}")
    ids = read_palette_png(file, allow_rgb=True)
    if mask_id is None:
        mask = ids > 0
    elif isinstance(mask_id, int) and not isinstance(mask_id, bool):
        mask = ids == mask_id
    else:
        raise ValueError(f"mask_id must be an integer, got {mask_id!r}")
    if not mask.any():
        raise ValueError(f"mask {file} has no pixel of {'any object' if mask_id is None else f'id {mask_id}'}")
    return mask
