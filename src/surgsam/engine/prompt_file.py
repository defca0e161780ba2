"""Prompts for several objects on any frames: a JSON file (``surgsam segment --prompts``) or
repeatable ``--object`` specs on the command line; both give the same :class:`Prompt` objects.

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

For a folder of videos the same list applies to every video; or the file maps video names
(a video file's stem, a frame folder's name) to their own lists::

    {"videos": {"case1": [{"obj_id": 1, "box": [60, 40, 150, 140]}],
                "case2": [{"obj_id": 1, "frame": 4, "mask": "case2_first.png"}]}}

Only the videos it names are segmented. Given one video, such a file picks the entry of that
video's name.

On the command line, ``--object ID[@FRAME]:KEY=VALUE[:KEY=VALUE...]`` (repeatable; FRAME
defaults to ``--frame``), with the file's keys and the notation of ``--points`` / ``--box``::

    --object 1:mask=first.png            --object 2@5:box=60,40,150,140
    --object "3:points=200,160;120,40:labels=1,0"   --object 4:mask=first.png:mask_id=4

A ``--object`` mask path is relative to the working folder. Every problem is reported with
the entry's index (or the ``--object`` text) before any frame is processed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .offline import Prompt
from .prompts import check_box, check_clicks, check_obj_id, parse_pairs

__all__ = [
    "PromptFile",
    "parse_object_spec",
    "parse_object_specs",
    "prompt_from_dict",
    "read_prompt_file",
    "read_prompts",
]

_KEYS = {"obj_id", "frame", "mask", "mask_id", "points", "labels", "box"}


@dataclass
class PromptFile:
    """A parsed prompts file: ``shared`` prompts for every video, or ``videos`` (name -> prompts)."""

    path: Path
    shared: list[Prompt] | None = None
    videos: dict[str, list[Prompt]] | None = None

    def for_video(self, name: str) -> list[Prompt]:
        """The prompts of the video called ``name`` (the shared list, or its own entry)."""
        if self.videos is None:
            assert self.shared is not None
            return self.shared
        if name not in self.videos:
            raise ValueError(
                f"{self.path} has no prompts for video {name!r}; it names {', '.join(repr(k) for k in self.videos)}"
            )
        return self.videos[name]


def read_prompt_file(path: str | Path) -> PromptFile:
    """Parse a prompts file (a list of prompts, ``{"prompts": [...]}`` or ``{"videos": {name:
    [...]}}``) into :class:`Prompt` objects (masks read, forms checked)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompts file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a JSON prompts file: {e}") from None
    if isinstance(data, dict) and set(data) == {"videos"}:
        videos = data["videos"]
        if not isinstance(videos, dict) or not videos:
            raise ValueError(f'{path}: "videos" must map video names to lists of prompts')
        return PromptFile(
            path,
            videos={
                str(name): _prompt_list(path, entries, f"{path}, video {name!r}") for name, entries in videos.items()
            },
        )
    if isinstance(data, dict) and set(data) == {"prompts"}:
        data = data["prompts"]
    return PromptFile(path, shared=_prompt_list(path, data, str(path)))


def read_prompts(path: str | Path, video: str | None = None) -> list[Prompt]:
    """The prompts of a prompts file; for a file that maps video names to prompts, those of
    ``video`` (required then)."""
    pf = read_prompt_file(path)
    if pf.videos is not None and video is None:
        raise ValueError(
            f"{pf.path} maps video names to prompts ({', '.join(pf.videos)}); segment a folder of "
            "videos with it, or one video of one of these names"
        )
    if pf.videos is None:
        assert pf.shared is not None
        return pf.shared
    return pf.for_video(str(video))


def _prompt_list(path: Path, data: Any, where: str) -> list[Prompt]:
    if not isinstance(data, list) or not data:
        raise ValueError(
            f'{where}: expected a non-empty list of prompts (or {{"prompts": [...]}} or {{"videos": {{name: [...]}}}})'
        )
    prompts = [prompt_from_dict(e, path.parent, f"{where}, prompt {i}") for i, e in enumerate(data)]
    check_unique(prompts, where)
    return prompts


def check_unique(prompts: list[Prompt], where: str) -> None:
    """Refuse two prompts for one object on one frame (their clicks belong in one prompt)."""
    seen: set[tuple[int, int]] = set()
    for p in prompts:
        if (p.obj_id, p.frame_idx) in seen:
            raise ValueError(f"{where}: object {p.obj_id} is prompted twice on frame {p.frame_idx}; merge the clicks")
        seen.add((p.obj_id, p.frame_idx))


_OBJECT_KEYS = ("box", "points", "labels", "mask", "mask_id")
_OBJECT_HEAD = re.compile(r"^(\d+)(?:@(\d+))?$")
_OBJECT_SPLIT = re.compile(r":(?=(?:" + "|".join(_OBJECT_KEYS) + r")=)")


def parse_object_spec(text: str, frame: int = 0, base: str | Path = ".") -> Prompt:
    """One ``--object ID[@FRAME]:KEY=VALUE[:KEY=VALUE...]`` spec -> a :class:`Prompt`.

    Keys: ``box=x0,y0,x1,y1``; ``points=x,y;x,y`` with ``labels=1,0`` (default all positive);
    ``mask=PATH`` (relative to ``base``) with ``mask_id=K``. ``frame`` is used without ``@FRAME``.
    """
    where = f"--object {text!r}"
    head, sep, rest = text.strip().partition(":")
    m = _OBJECT_HEAD.match(head.strip())
    if not sep or m is None:
        raise ValueError(
            f"{where}: expected ID[@FRAME]:KEY=VALUE, e.g. 2:box=10,20,80,90 or 3@5:points=60,70;10,10:labels=1,0"
        )
    entry: dict[str, Any] = {"obj_id": int(m.group(1)), "frame": int(m.group(2)) if m.group(2) else int(frame)}
    for part in _OBJECT_SPLIT.split(rest):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in _OBJECT_KEYS:
            raise ValueError(f"{where}: {part!r} is not KEY=VALUE with a key of {', '.join(_OBJECT_KEYS)}")
        if key in entry:
            raise ValueError(f"{where}: {key} is given twice")
        try:
            if key == "box":
                entry[key] = parse_pairs(value, 4, "box").reshape(-1).tolist()
            elif key == "points":
                entry[key] = parse_pairs(value, 2, "points").tolist()
            elif key == "labels":
                entry[key] = [int(v) for v in value.replace(" ", "").split(",")]
            elif key == "mask_id":
                entry[key] = int(value)
            else:
                entry[key] = value
        except ValueError as err:
            raise ValueError(f"{where}: cannot parse {key}={value!r}: {err}") from None
    return prompt_from_dict(entry, Path(base), where)


def parse_object_specs(texts: list[str], frame: int = 0, base: str | Path = ".") -> list[Prompt]:
    """Several ``--object`` specs (see :func:`parse_object_spec`); one object twice on one frame is refused."""
    prompts = [parse_object_spec(t, frame, base) for t in texts]
    check_unique(prompts, "--object")
    return prompts


def prompt_from_dict(e: Any, base: Path, where: str) -> Prompt:
    """One prompt given as a dict with the prompts file's keys (mask paths relative to
    ``base``); errors start with ``where``."""
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
            return Prompt(oid, frame, mask=_mask(base, e["mask"], e.get("mask_id")))
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


def _mask(base: Path, name: Any, mask_id: Any) -> np.ndarray:
    from ..io import read_palette_png

    if not isinstance(name, str) or not name:
        raise ValueError(f"mask must be a PNG path, got {name!r}")
    file = (base / name) if not Path(name).is_absolute() else Path(name)
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
