"""Offline use: segment a whole video (file, folder or stream) from prompts on any frames,
forward, in reverse or both ways from a start frame, as loops over a :class:`VideoSegmenter`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..memory import MemoryEntry, MemoryPolicy
from ..modeling.sam2 import ResizeMode, SAM2Model
from .fastpath import FastMode
from .precision import Precision
from .prompts import check_prompt
from .session import CLICK_MODES, ClickMode, VideoSegmenter
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


#: Which way :func:`segment_video` propagates from its start frame: ``"forward"``, ``"reverse"``
#: (Meta's ``propagate_in_video(reverse=True)``) or ``"both"`` (forward, then every object in
#: reverse from its first prompt, as Meta's two calls on one inference state per prompt frame).
Direction = Literal["forward", "reverse", "both"]
DIRECTIONS: tuple[str, ...] = ("forward", "reverse", "both")


def segment_video(
    source,
    prompts: Sequence[Prompt],
    model: SAM2Model,
    *,
    memory: str | MemoryPolicy = "efp",
    precision: Precision = "fp32",
    progress: bool = False,
    fast: FastMode = False,
    resize: ResizeMode = "pil",
    direction: Direction = "forward",
    start_frame: int | None = None,
    max_frames: int | None = None,
    clicks: ClickMode = "accumulate",
    trace: bool = False,
) -> Iterator[FrameResult]:
    """Segment a video from prompts on any of its frames; yields a :class:`FrameResult` per
    frame in the order frames are processed (``FrameResult.frame_idx`` is the frame's index
    in the video).

    A pass visits frames one at a time from ``start_frame``, forward or in reverse; a prompt
    acts when the pass reaches its frame: a new object starts there, a tracked one is
    corrected there (the streaming engine's rule). With every prompt on one frame this is
    exactly Meta's ``SAM2VideoPredictor``: ``add_new_*`` then ``propagate_in_video`` (tested
    against it with ``memory="fifo"``). Meta's predictor also lets every frame attend to
    prompted frames the pass has not reached yet; this function does not.

    Args:
        source: a video file, an image folder, a camera index / stream URL, any iterable of
            ``H x W x 3`` uint8 frames, or a ``surgsam.io.FrameSource``.
        prompts: :class:`Prompt` objects; several may share a frame; objects may start late.
        model: the network (``surgsam.build_model(...)``).
        memory, precision, fast, resize, trace: as :class:`VideoSegmenter` (``trace=True``:
            the per-frame calls replayed from TorchScript traces, the same masks).
        direction: ``"forward"`` (default): frames ``start_frame`` (default 0; frames before
            the first prompt give empty results) onwards; the only direction for a live
            stream, with memory bounded by the policy however long it runs.
            ``"reverse"``: frames ``start_frame`` (default: the last prompted frame) down to 0,
            as Meta's ``propagate_in_video(reverse=True)``. ``"both"``: every frame gets every
            object. The forward pass goes from ``start_frame`` (default: the first prompted
            frame, Meta's default) to the end, each object from its first prompt on; then the
            reverse pass goes down to frame 0 and tracks each object backwards from the frame
            before its first prompt of the forward pass, starting with the memory the forward
            pass built from that prompt on (its prompts and the frames after it), as Meta's
            second call on the same inference state does. A frame's output for an object comes
            from the pass that reached it: forward on and after its first prompt (a prompted
            frame's output is the prompt's), in reverse before it. For objects prompted on one
            frame this is Meta's ``propagate_in_video`` forward then in reverse; an object
            first prompted on a later frame gets what Meta's predictor gives it tracked alone
            (both calls from its prompt frame; tested, ``memory="fifo"``), where one Meta state
            holding every object would also track it forward from the start frame, attending
            to its prompt ahead. Results come as the passes complete frames: forward from the
            last object's first prompt (the forward results of the frames before it are held
            until the reverse pass adds the objects that start later), then in reverse.
            Reverse passes need the frames, so they are offline only: a sequence or an image
            folder is read by index; a video file or other iterable is read once and the
            frames the reverse pass needs (those before the last first prompt, or up to the
            start for ``"reverse"``) are held in memory.
        start_frame: where the pass starts (see ``direction``).
        max_frames: track at most this many frames beyond the start frame in each direction
            (Meta's ``max_frame_num_to_track``: a pass covers ``max_frames + 1`` frames);
            None: to the end of the video (to frame 0 in reverse).
        clicks: ``"accumulate"`` (default): several click prompts for one object on one frame
            add up; ``"replace"``: each replaces the clicks before it (SAM 2's
            ``clear_old_points=True``); see :class:`VideoSegmenter`.

    Prompts on frames no pass reaches raise ``ValueError`` before any frame is segmented
    (where the video's length is known; otherwise when the video ends).
    """
    by_frame = _check_prompts(prompts)
    _check_options(direction, start_frame, max_frames, clicks)
    video = _Source(source)
    try:
        plan = _Plan.make(direction, start_frame, max_frames, by_frame, video.known)
        kw = dict(
            memory=memory,
            num_frames=video.total,
            precision=precision,
            fast=fast,
            resize=resize,
            clicks=clicks,
            trace=bool(trace),
        )
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=plan.count(video.total), unit="frame", desc="segment")
        try:
            for res in _run(plan, video, by_frame, model, kw):
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(ms=f"{res.latency_ms:.0f}", objects=len(res.obj_ids))
                yield res
        finally:
            if bar is not None:
                bar.close()
    finally:
        video.close()


def _check_options(direction: object, start_frame: object, max_frames: object, clicks: object) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if clicks not in CLICK_MODES:
        raise ValueError(f"clicks must be 'accumulate' or 'replace', got {clicks!r}")
    for name, v in (("start_frame", start_frame), ("max_frames", max_frames)):
        if v is None:
            continue
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int or None, got {type(v).__name__}")
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")


@dataclass(frozen=True)
class _Plan:
    """The passes of one call: forward over ``fwd`` = (first, last or None = to the end) and
    reverse from ``rev[0]`` down to ``rev[1]``. With ``carry`` (``"both"``) every object of
    the forward pass joins the reverse pass on the frame before its first prompt there, with
    the memory the forward pass built from that prompt on; ``rev[0]`` is then the last such
    frame (at least the one before the start frame), and the frames from the start frame up
    to it get the forward pass's objects and the reverse pass's late starters."""

    fwd: tuple[int, int | None] | None
    rev: tuple[int, int] | None
    carry: bool = False

    @classmethod
    def make(
        cls,
        direction: str,
        start: int | None,
        max_frames: int | None,
        by_frame: dict[int, list[Prompt]],
        known: int | None,
    ) -> "_Plan":
        first, last = min(by_frame), max(by_frame)
        if known is not None:
            late = sorted(f for f in by_frame if f >= known)
            if late:
                raise ValueError(
                    f"the video has {known} frames (0..{known - 1}); prompts on frames {late} are beyond "
                    f"its end and never used"
                )
            if start is not None and start >= known:
                raise ValueError(f"start_frame {start} is beyond the video's end (frames 0..{known - 1})")

        def end(s: int) -> int | None:
            e = None if max_frames is None else s + max_frames
            return e if known is None or e is None else min(e, known - 1)

        if direction == "forward":
            s = 0 if start is None else int(start)
            plan = cls((s, end(first if start is None else s)), None)
        elif direction == "reverse":
            s = last if start is None else int(start)
            plan = cls(None, (s, 0 if max_frames is None else max(s - max_frames, 0)))
        else:
            s = first if start is None else int(start)
            fwd = (s, end(s))
            bottom = 0 if max_frames is None else max(s - max_frames, 0)
            # each object of the forward pass goes backwards from the frame before its first prompt there
            starts: dict[int, int] = {}
            for f in sorted(by_frame):
                if f >= s and (fwd[1] is None or f <= fwd[1]):
                    for p in by_frame[f]:
                        starts.setdefault(int(p.obj_id), f)
            top = max([s - 1, *(f - 1 for f in starts.values())])
            plan = cls(fwd, (top, bottom) if top >= bottom else None, carry=True)
        unused = sorted(f for f in by_frame if not plan.covers(f, known))
        if unused:
            raise ValueError(
                f"prompts on frames {unused} are never used: direction={direction!r} from frame {s} "
                f"covers {plan.describe()}"
            )
        return plan

    def below(self) -> tuple[int, int] | None:
        """The frames only the reverse pass visits: (top, bottom), or None."""
        if self.rev is None:
            return None
        top = self.rev[0] if self.fwd is None else min(self.rev[0], self.fwd[0] - 1)
        return (top, self.rev[1]) if top >= self.rev[1] else None

    def covers(self, t: int, known: int | None) -> bool:
        """Whether a pass visits frame ``t`` (a forward pass to the end covers what exists)."""
        if self.fwd is not None and self.fwd[0] <= t and (self.fwd[1] is None or t <= self.fwd[1]):
            return True
        below = self.below()
        return below is not None and below[1] <= t <= below[0]

    def describe(self) -> str:
        parts = []
        if self.fwd is not None:
            parts.append(f"frames {self.fwd[0]}..{'the end' if self.fwd[1] is None else self.fwd[1]}")
        below = self.below()
        if below is not None:
            parts.append(f"frames {below[0]} down to {below[1]}")
        return " and ".join(parts) or "no frame"

    def count(self, total: int | None) -> int | None:
        """Frames the passes yield, each once (None when unknown)."""
        below = self.below()
        n = 0 if below is None else below[0] - below[1] + 1
        if self.fwd is not None:
            stop = self.fwd[1] if self.fwd[1] is not None else (None if total is None else total - 1)
            if stop is None:
                return None
            n += max(stop - self.fwd[0] + 1, 0)
        return n


def _run(
    plan: _Plan, video: "_Source", by_frame: dict[int, list[Prompt]], model: SAM2Model, kw: dict
) -> Iterator[FrameResult]:
    """Run the plan's passes: forward first, then reverse (carrying the forward pass's objects
    for ``"both"``). Results list the objects in the order they first appeared."""
    rank: dict[int, int] = {}  # object id -> its place in every result
    joins: dict[int, int] = {}  # carried object -> its first frame in the forward pass
    seeds: dict[int, list[MemoryEntry]] = {}  # carried object -> forward memories, in forward-session time
    held: dict[int, FrameResult] = {}  # forward results of frames the reverse pass also visits
    memory_pos = None
    first = 0
    carry = plan.carry and plan.rev is not None
    if plan.fwd is not None:
        first, stop = plan.fwd
        keep = None if plan.rev is None else (plan.rev[1], plan.rev[0])
        seg = VideoSegmenter(model, **kw)
        reach = model.cfg.max_obj_ptrs_in_encoder  # frames after a start whose memory a reverse pass reads
        last = first - 1
        for t, frame in video.forward(first, stop, keep=keep):
            res = _prompted_step(seg, frame, by_frame.get(t, []))
            k = t - first  # the forward session's index of frame t
            for oid, obj in seg.objects.items():
                if oid not in rank:
                    rank[oid] = len(rank)
                    if carry and plan.rev is not None and t > plan.rev[1]:
                        joins[oid], seeds[oid] = t, []
                elif oid in seeds and t < joins[oid] + reach:
                    e = obj.bank.recent.get(k)
                    if e is not None:
                        seeds[oid].append(dataclasses.replace(e))
            last = t
            res = res if first == 0 else dataclasses.replace(res, frame_idx=t)
            if carry and plan.rev is not None and t <= plan.rev[0]:
                held[t] = res  # completed with the late starters when the reverse pass comes back
            else:
                yield res
        late = sorted(f for f in by_frame if f > last and f >= first)
        if late:
            raise ValueError(f"the video has {last + 1} frames; prompts on frames {late} were never used")
        if seeds:
            with torch.inference_mode():
                seg._finalize()  # encode the memory of prompts on the last forward frame too
            memory_pos = seg.memory_pos
            for oid in seeds:  # the prompts (and corrections) of carried objects
                seeds[oid] += [dataclasses.replace(e) for e in seg.objects[oid].bank.cond.values()]
        del seg
    if plan.rev is None:
        return
    top, bottom = plan.rev
    seg = VideoSegmenter(model, **kw)
    joining: dict[int, list[int]] = {}
    for oid, f in joins.items():
        joining.setdefault(f - 1, []).append(oid)
    only_reverse = plan.below()
    for t, frame in video.backward(top, bottom):
        for oid in joining.get(t, []):
            # forward session index i holds frame first + i; the reverse session holds frame v at
            # top - v, so an object's first frame and the frames after it come before frame t
            assert memory_pos is not None
            entries = [dataclasses.replace(e, frame_idx=top - (first + e.frame_idx)) for e in seeds.pop(oid)]
            seg.seed_memory(oid, entries, memory_pos)
        # prompts on frames the forward pass visited acted there
        todo = by_frame.get(t, []) if only_reverse is not None and t <= only_reverse[0] else []
        res = dataclasses.replace(_prompted_step(seg, frame, todo), frame_idx=t)
        for oid in seg.objects:
            rank.setdefault(oid, len(rank))
        yield _combine([held.pop(t), res] if t in held else [res], rank)


def _combine(parts: list[FrameResult], rank: dict[int, int]) -> FrameResult:
    """One frame's results of the two passes (disjoint objects) as one, the objects in ``rank``
    order; the latency is the sum of the parts'."""
    latency = sum(r.latency_ms for r in parts)
    have = [r for r in parts if r.obj_ids]
    if not have:
        return dataclasses.replace(parts[-1], latency_ms=latency)
    ids = [oid for r in have for oid in r.obj_ids]
    order = np.argsort([rank[oid] for oid in ids], kind="stable")
    low = torch.cat([r.low_res_logits for r in have])[torch.from_numpy(order)]
    return FrameResult(
        frame_idx=have[0].frame_idx,
        obj_ids=[ids[i] for i in order],
        masks=np.concatenate([r.masks for r in have])[order],
        object_scores=np.concatenate([r.object_scores for r in have])[order],
        ious=np.concatenate([r.ious for r in have])[order],
        low_res_logits=low,
        latency_ms=latency,
        searching=[oid for r in have for oid in r.searching],
    )


def _prompted_step(seg: VideoSegmenter, frame, todo: list[Prompt]) -> FrameResult:
    """Advance ``seg`` to ``frame``, applying the prompts given for it."""
    if not todo:
        return seg.step(frame)
    res = seg.add_prompt(frame, **_kwargs(todo[0]))
    for p in todo[1:]:
        res = seg.add_prompt(None, **_kwargs(p))
    return res


def _check_prompts(prompts: Sequence[Prompt]) -> dict[int, list[Prompt]]:
    """Check every prompt before any frame is read (type, object id, click form and count, box
    form, frame index); returns them grouped by frame."""
    if (
        isinstance(prompts, Prompt)
        or isinstance(prompts, Mapping)
        or not isinstance(prompts, Iterable)
        or isinstance(prompts, (str, bytes))
    ):
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


class _Source:
    """A frame source read forward once, or by index where it allows (sequences, image folders).

    ``total`` is the frame count when known (an estimate for some video files; ``known`` is
    it when exact). Without random access, :meth:`forward` keeps the frames a later
    :meth:`backward` will need, and :meth:`backward` alone reads them first.
    """

    def __init__(self, source) -> None:
        self._close = None
        if isinstance(source, (str, Path, int)):
            from ..io import open_source

            source = open_source(source)
            self._close = source.close
        elif hasattr(source, "num_frames") and hasattr(source, "close"):
            self._close = source.close
        self.source = source
        if hasattr(source, "num_frames"):
            self.total: int | None = source.num_frames
        else:
            self.total = len(source) if hasattr(source, "__len__") else None
        exact = getattr(source, "num_frames_exact", True) and not getattr(source, "is_live", False)
        self.known = self.total if exact else None
        self.indexable = self.known is not None and hasattr(source, "__getitem__") and not isinstance(source, Iterator)
        self._iter: Iterator | None = None
        self._kept: dict[int, object] = {}

    def forward(
        self, first: int, stop: int | None, keep: tuple[int, int] | None = None
    ) -> Iterator[tuple[int, object]]:
        """``(t, frame)`` for ``t = first .. stop`` (to the end when None); without random access
        frames with ``keep[0] <= t <= keep[1]`` are kept for :meth:`backward`."""
        if self.indexable:
            assert self.known is not None
            for t in range(first, self.known if stop is None else min(stop, self.known - 1) + 1):
                yield t, self.source[t]
            return
        self._iter = iter(self.source)
        for t, frame in enumerate(self._iter):
            if keep is not None and keep[0] <= t <= keep[1]:
                self._kept[t] = frame
            if t >= first:
                yield t, frame
            if stop is not None and t >= stop:
                break

    def backward(self, top: int, bottom: int) -> Iterator[tuple[int, object]]:
        """``(t, frame)`` for ``t = top`` down to ``bottom``."""
        if not self.indexable and not self._kept:
            for t, frame in enumerate(iter(self.source)):
                if t >= bottom:
                    self._kept[t] = frame
                if t >= top:
                    break
        for t in range(top, bottom - 1, -1):
            if self.indexable:
                yield t, self.source[t]
            elif t in self._kept:
                yield t, self._kept.pop(t)
            else:
                raise ValueError(f"frame {t} is beyond the video's end ({len(self._kept)} frames read)")

    def close(self) -> None:
        self._kept.clear()
        if self._close is not None:
            self._close()
