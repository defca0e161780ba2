"""Offline use: segment a whole video (file, folder or stream) from prompts, as a loop over step()."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..memory import MemoryPolicy
from ..modeling.sam2 import ResizeMode, SAM2Model
from .prompts import check_prompt
from .session import VideoSegmenter
from .state import FrameResult


@dataclass
class Prompt:
    """A prompt for one object on one frame (coordinates in frame pixels).

    Give ``mask`` (``H x W`` bool), or ``points`` (``P x 2`` (x, y)) with ``labels`` (``P``,
    1 positive / 0 negative), and/or ``box`` (x0, y0, x1, y1).
    """

    obj_id: int
    frame_idx: int = 0
    points: Sequence[Sequence[float]] | np.ndarray | None = None
    labels: Sequence[int] | np.ndarray | None = None
    box: Sequence[float] | np.ndarray | None = None
    mask: np.ndarray | None = None


def segment_video(
    source,
    prompts: Sequence[Prompt],
    model: SAM2Model,
    memory: str | MemoryPolicy = "efp",
    precision: str = "fp32",
    progress: bool = False,
    fast: bool | str = False,
    *,
    resize: ResizeMode = "pil",
) -> Iterator[FrameResult]:
    """Yield a :class:`FrameResult` for every frame of ``source``, from the first prompted
    frame on (earlier frames yield empty results).

    Args:
        source: a video file, an image folder, a camera index / stream URL, any iterable of
            ``H x W x 3`` uint8 frames, or a ``surgsam.io.FrameSource``.
        prompts: :class:`Prompt` objects; several may share a frame; objects may start late.
        model: the network (``surgsam.build_model(...)``).
        memory, precision, fast, resize: as :class:`VideoSegmenter`.
    """
    by_frame = _check_prompts(prompts)
    frames, total, closer = _open(source)
    known = total if getattr(source, "num_frames_exact", True) else None  # an estimate is not checked
    late = sorted(f for f in by_frame if known is not None and f >= known)
    if late:
        if closer is not None:
            closer()
        raise ValueError(f"the video has {known} frames (0..{known - 1}); prompts on frames {late} are beyond its end and never used")
    seg = VideoSegmenter(model, memory=memory, num_frames=total, precision=precision, fast=fast, resize=resize)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", desc="segment")
    last = -1
    try:
        for t, frame in enumerate(frames):
            todo = by_frame.get(t, [])
            if todo:
                res = seg.add_prompt(frame, **_kwargs(todo[0]))
                for p in todo[1:]:
                    res = seg.add_prompt(None, **_kwargs(p))
            else:
                res = seg.step(frame)
            last = t
            if bar is not None:
                bar.update(1)
                bar.set_postfix(ms=f"{res.latency_ms:.0f}", objects=len(res.obj_ids))
            yield res
    finally:
        if bar is not None:
            bar.close()
        if closer is not None:
            closer()
    late = sorted(f for f in by_frame if f > last)
    if late:
        raise ValueError(f"the video has {last + 1} frames; prompts on frames {late} were never used")


def _check_prompts(prompts: Sequence[Prompt]) -> dict[int, list[Prompt]]:
    """Check every prompt before any frame is read (type, object id, click form and count, box
    form, frame index); returns them grouped by frame."""
    if isinstance(prompts, Prompt) or isinstance(prompts, Mapping) or not isinstance(prompts, Iterable) \
            or isinstance(prompts, (str, bytes)):
        raise TypeError(f"prompts must be a list of surgsam.Prompt, got a {type(prompts).__name__}")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("segment_video needs at least one prompt")
    by_frame: dict[int, list[Prompt]] = {}
    for i, p in enumerate(prompts):
        if not isinstance(p, Prompt):
            raise TypeError(f"prompts must be a list of surgsam.Prompt, got a {type(p).__name__} at position {i}")
        try:
            check_prompt(p.obj_id, p.points, p.labels, p.box)
        except (TypeError, ValueError) as e:
            raise type(e)(f"prompt {i} (object {p.obj_id!r}, frame {p.frame_idx!r}): {e}") from None
        if not isinstance(p.frame_idx, (int, np.integer)) or isinstance(p.frame_idx, bool):
            raise TypeError(f"prompt {i}: frame_idx must be an int, got {type(p.frame_idx).__name__}")
        if p.frame_idx < 0:
            raise ValueError(f"prompt for object {p.obj_id} has a negative frame index {p.frame_idx}")
        by_frame.setdefault(int(p.frame_idx), []).append(p)
    return by_frame


def _kwargs(p: Prompt) -> dict:
    return dict(obj_id=p.obj_id, points=p.points, labels=p.labels, box=p.box, mask=p.mask)


def _open(source):
    """(frame iterator, frame count or None, close callback or None)."""
    if isinstance(source, (str, Path, int)):
        from ..io import open_source

        src = open_source(source)
        return iter(src), src.num_frames, src.close
    if hasattr(source, "num_frames") and hasattr(source, "close"):
        return iter(source), source.num_frames, source.close
    n = len(source) if hasattr(source, "__len__") else None
    return iter(source), n, None
