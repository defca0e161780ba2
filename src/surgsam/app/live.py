"""Real-time tracking (``surgsam live``): a camera, stream, pipe or file read as live.

Prompts are given on the first frame; then every frame the engine can take is tracked and
drawn with its FPS, latency and the running count of dropped frames. Frames are never queued:
:class:`TimedLiveSource` keeps only the newest frame, so while the engine works on one frame
the frames that arrive overwrite each other and the overwritten ones are counted as dropped.
Latency (a frame's arrival to its overlay being ready) therefore stays near one frame interval
plus two engine steps, however long the stream runs; memory is bounded by the engine's policy.

Accounting is exact: ``frames_read == processed + dropped`` once the source is closed.

Time comes from the source's :class:`~surgsam.io.live.Clock` (arrivals, latency, FPS, engine
time), so a scripted clock makes every number of a report reproducible. A file that turns out
truncated ends the run with ``end == "damaged input"`` and the reason in ``error``; Ctrl+C and
SIGTERM (see :class:`Interrupted`) end it with the report of what was done.

Objects can also be described by text: with a :class:`~surgsam.referring.ReferringSegmenter`
holding the expressions as the segmenter (and no prompts), each expression is searched for frame
by frame (empty masks) until credibly found, then tracked; the report lists every expression's
status. Its frame numbers count processed frames (dropped frames are never seen by the model).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..engine.offline import Prompt
from ..engine.state import FrameResult
from ..io.base import FrameReadError
from ..io.live import SYSTEM_CLOCK, Clock, LiveSource

__all__ = [
    "FrameSink",
    "Interrupted",
    "LiveError",
    "LiveReport",
    "TimedLiveSource",
    "apply_prompts",
    "open_live",
    "run_live",
]


class LiveError(RuntimeError):
    """Live mode cannot start or go on (no frame, bad prompt); the message is for the user."""


class Interrupted(KeyboardInterrupt):
    """A signal that ends live mode (SIGINT: Ctrl+C, SIGTERM): the run stops where it is and its
    report is still made. ``exit_code`` is the shell's 128 + signal number (130, 143)."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signum)
        self.signum = int(signum)
        self.name = signal.Signals(signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def reason(self) -> str:
        return f"interrupted ({self.name})"


class TimedLiveSource(LiveSource):
    """A :class:`~surgsam.io.LiveSource` that notes when each frame arrived.

    :attr:`last_arrival_s` is the source clock's time (``time.monotonic()`` unless another
    :class:`~surgsam.io.live.Clock` was given) at which the frame returned by the last
    :meth:`read` arrived (after real-time pacing, i.e. when a camera would have delivered it).
    It hooks the grabber's two per-frame steps (raw read, then RGB conversion on delivery), so
    the timestamp travels with the frame through the newest-frame slot.
    """

    last_arrival_s: float | None = None

    def _read_raw(self) -> Any:
        frame = super()._read_raw()
        return None if frame is None else _Arrived(frame, self.clock.now())

    def _to_rgb(self, frame: Any) -> np.ndarray:
        if isinstance(frame, _Arrived):
            self.last_arrival_s = frame.t
            frame = frame.frame
        return super()._to_rgb(frame)


@dataclass(frozen=True)
class _Arrived:
    frame: np.ndarray
    t: float


def open_live(
    spec: int | str | os.PathLike[str], drop_frames: bool = True, realtime: bool | None = None, **kwargs: Any
) -> TimedLiveSource:
    """Open a camera index (``0``), a stream URL, a named pipe or a video file as a live source
    (a file is paced at its frame rate unless ``realtime=False``)."""
    if isinstance(spec, (str, os.PathLike)) and Path(spec).is_dir():
        raise LiveError(f"{spec} is a folder of frames, which cannot be read live (use `surgsam segment`)")
    return TimedLiveSource(spec, drop_frames=drop_frames, realtime=realtime, **kwargs)


class FrameSink(Protocol):
    """Where overlays go as they are ready (a window); ``show`` returns False to stop."""

    def show(self, image: np.ndarray) -> bool: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class LiveReport:
    """What a live run did. ``frames_read == processed + dropped``; latency is a frame's arrival
    to its overlay being ready (prompt frame excluded: it waited for the prompts). Medians and
    p95 cover the last 10,000 tracked frames (a bounded window, for streams that run for hours),
    the maximum the whole run."""

    source: str
    end: str  # why it stopped: end of stream, max frames, stopped by user, interrupted (SIGINT|SIGTERM),
    # no frame for N s, damaged input, or what prevented the start
    frames_read: int
    processed: int
    dropped: int
    dropped_while_prompting: int
    fps: float  # tracked frames per second, from the prompt frame's end to the last frame (the overlay's computation)
    source_fps: float | None
    latency_median_ms: float
    latency_p95_ms: float
    latency_max_ms: float
    engine_median_ms: float
    recorded: int  # frames in the recording: processed + dropped after prompting (real-time order)
    record: str | None
    wall_s: float
    #: text objects as ``surgsam refer`` reports them (found_frame etc. count processed frames); None without text
    expressions: list[dict[str, Any]] | None = None
    error: str | None = None  # what was wrong with the input (a truncated file), when end says "damaged input"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def not_started(cls, source: str, end: str, wall_s: float = 0.0, error: str | None = None) -> LiveReport:
        """The report of a run that ended before its first frame (interrupted while opening)."""
        return cls(
            source=source,
            end=end,
            frames_read=0,
            processed=0,
            dropped=0,
            dropped_while_prompting=0,
            fps=0.0,
            source_fps=None,
            latency_median_ms=0.0,
            latency_p95_ms=0.0,
            latency_max_ms=0.0,
            engine_median_ms=0.0,
            recorded=0,
            record=None,
            wall_s=wall_s,
            error=error,
        )


def apply_prompts(segmenter: Any, frame: np.ndarray, prompts: Sequence[Prompt]) -> FrameResult:
    """Give ``prompts`` (all on this frame) to a fresh segmenter; the frame's result.

    A referring segmenter (one with ``add_texts``) already holds its expressions: it takes no
    prompts and simply starts searching on this frame."""
    if hasattr(segmenter, "add_texts"):
        if prompts:
            raise LiveError("text-referred objects and clicks/boxes/masks cannot be mixed in live mode")
        if not segmenter.obj_ids:
            raise LiveError("no expression: give --text")
        return segmenter.step(frame)
    if not prompts:
        raise LiveError("no prompt: give --mask, --points or --box (or click in the window)")
    try:
        results = [
            segmenter.add_prompt(
                frame if i == 0 else None, obj_id=p.obj_id, points=p.points, labels=p.labels, box=p.box, mask=p.mask
            )
            for i, p in enumerate(prompts)
        ]
    except (ValueError, TypeError) as exc:
        raise LiveError(f"bad prompt for the first frame: {exc}") from None
    return results[-1]


class _Recorder:
    """Overlay video in real-time order: the previous overlay is repeated once for every frame
    dropped before the next one, as a viewer would have seen it."""

    def __init__(self, path: str | Path, fps: float):
        from ..io import VideoWriter

        self.video = VideoWriter(path, fps)
        self.last: np.ndarray | None = None
        self.accounted = 0

    def write(self, image: np.ndarray, dropped: int) -> None:
        if self.last is not None:
            for _ in range(max(0, dropped - self.accounted)):
                self.video.write(self.last)
        self.accounted = max(self.accounted, dropped)
        self.video.write(image)
        self.last = image

    def finish(self, dropped: int) -> int:
        if self.last is not None:
            for _ in range(max(0, dropped - self.accounted)):
                self.video.write(self.last)
        self.video.close()
        return self.video.frames_written


def _draw(frame: np.ndarray, res: FrameResult, lines: list[str]) -> np.ndarray:
    from ..io import draw_overlay

    return draw_overlay(frame, res.obj_ids, res.masks, lines)


@dataclass
class _Tally:
    """Running counts of a live run (latency and engine times in ms, per tracked frame).

    Bounded however long the stream runs: percentiles come from the last :data:`WINDOW` tracked
    frames (all of them in shorter runs); the count and the maximum cover the whole run."""

    processed: int = 0
    tracked: int = 0
    latency: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    engine: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    latency_max: float = 0.0
    t_prompted: float | None = None  # when the prompt frame was done: tracking starts here
    t_last: float | None = None  # when the last tracked frame was done
    # when the last FPS_WINDOW tracked frames were done, after t_prompted (for the overlay)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=FPS_WINDOW + 1))

    def prompted(self, now: float) -> None:
        self.t_prompted = now
        self.recent.clear()
        self.recent.append(now)

    def tracked_at(self, now: float) -> None:
        self.tracked += 1
        self.t_last = now
        self.recent.append(now)

    def fps(self, recent: bool = False) -> float:
        """Tracked frames per second since the prompt frame was done: over the whole run (the
        report), or over the last :data:`FPS_WINDOW` frames (the overlay; the same number
        while the run is shorter). One computation for both, so they agree."""
        if recent:
            return _rate(len(self.recent) - 1, self.recent[-1] - self.recent[0]) if self.recent else 0.0
        if self.t_prompted is None or self.t_last is None:
            return 0.0
        return _rate(self.tracked, self.t_last - self.t_prompted)


def _rate(frames: int, seconds: float) -> float:
    return frames / seconds if frames > 0 and seconds > 0 else 0.0


#: Tracked frames whose latency and engine time the report's percentiles are taken over.
WINDOW = 10_000
#: Tracked frames the overlay's FPS is taken over (the report's covers the whole run).
FPS_WINDOW = 15


def run_live(
    source: TimedLiveSource,
    segmenter: Any,
    prompts: Sequence[Prompt] | Callable[[np.ndarray], Sequence[Prompt] | None],
    *,
    sink: FrameSink | None = None,
    record: str | Path | None = None,
    max_frames: int | None = None,
    read_timeout_s: float = 10.0,
    stop: threading.Event | None = None,
    on_frame: Callable[[FrameResult, float], None] | None = None,
    clock: Clock | None = None,
) -> LiveReport:
    """Track the prompted objects through ``source`` until it ends or is stopped.

    Args:
        source: an open :class:`TimedLiveSource` (it is closed at the end).
        segmenter: a fresh :class:`~surgsam.engine.VideoSegmenter` (or anything with its
            ``add_prompt`` / ``step``).
        prompts: prompts for the first frame, or a function of the first frame returning them
            (the window's click prompter; None means the user quit).
        sink: shows each overlay (a window); returning False stops the run.
        record: write the overlays to this mp4 in real-time order (see :class:`_Recorder`).
        max_frames: stop after this many processed frames (the prompt frame included).
        stop: set it from another thread to stop.
        on_frame: called with each tracked frame's result and latency in ms.
        clock: the time source (default: the source's own clock, else the system's).

    A signal raising :class:`Interrupted` (or Ctrl+C's ``KeyboardInterrupt``) ends the run with
    ``end == "interrupted (...)"``; a truncated file with ``end == "damaged input"`` and the
    reason in ``error``. Either way the report covers what was done.
    """
    clock = clock or getattr(source, "clock", None) or SYSTEM_CLOCK
    t_start = clock.now()
    recorder: _Recorder | None = None
    tally = _Tally()
    dropped_prompting, end, error = 0, "end of stream", None
    try:
        source.start()
        try:
            first = source.read(timeout=read_timeout_s)
        except TimeoutError:
            raise LiveError(f"no frame from {source.name} within {read_timeout_s:g} s") from None
        if first is None:
            raise LiveError(f"{source.name} ended before its first frame")
        given = prompts(first) if callable(prompts) else prompts
        if given is None:
            end = "stopped by user"
        else:
            dropped_prompting = source.stats.dropped
            res = apply_prompts(segmenter, first, given)
            tally.processed = 1
            tally.prompted(clock.now())
            img = _draw(first, res, ["prompt frame", f"objects {res.obj_ids}"] + _searching(res))
            if record is not None:
                recorder = _Recorder(record, source.fps or 30.0)
                recorder.write(img, dropped_prompting)
            if sink is not None and not sink.show(img):
                end = "stopped by user"
            else:
                end = _loop(source, segmenter, tally, sink, recorder, max_frames, read_timeout_s, stop, on_frame, clock)
    except FrameReadError as exc:
        end, error = "damaged input", str(exc)
    except KeyboardInterrupt as exc:
        end = exc.reason if isinstance(exc, Interrupted) else "interrupted (SIGINT)"
    finally:
        source.close()
    grabbed = source.stats.grabbed
    dropped = grabbed - tally.processed  # a frame left waiting (or cut short) at the end counts as dropped
    recorded = recorder.finish(dropped) if recorder is not None else 0
    lat = np.asarray(tally.latency) if tally.latency else np.zeros(1)
    lat_max = tally.latency_max if tally.tracked else 0.0
    expressions = None
    if hasattr(segmenter, "statuses"):
        from ..referring.build import expression_statuses

        expressions = expression_statuses(segmenter)
    return LiveReport(
        source=source.name,
        end=end,
        frames_read=grabbed,
        processed=tally.processed,
        dropped=dropped,
        dropped_while_prompting=dropped_prompting,
        fps=tally.fps(),
        source_fps=source.fps,
        latency_median_ms=float(np.median(lat)),
        latency_p95_ms=float(np.percentile(lat, 95)),
        latency_max_ms=float(lat_max),
        engine_median_ms=float(np.median(tally.engine)) if tally.engine else 0.0,
        recorded=recorded,
        record=str(record) if record is not None else None,
        wall_s=clock.now() - t_start,
        expressions=expressions,
        error=error,
    )


def _searching(res: FrameResult) -> list[str]:
    return ["searching: " + ", ".join(map(str, res.searching))] if res.searching else []


def _loop(
    source: TimedLiveSource,
    segmenter: Any,
    tally: _Tally,
    sink: FrameSink | None,
    recorder: _Recorder | None,
    max_frames: int | None,
    read_timeout_s: float,
    stop: threading.Event | None,
    on_frame: Callable[[FrameResult, float], None] | None,
    clock: Clock,
) -> str:
    """Track frame after frame, counting into ``tally``; returns why it stopped."""
    while True:
        if max_frames is not None and tally.processed >= max_frames:
            return "max frames"
        if stop is not None and stop.is_set():
            return "stopped by user"
        try:
            frame = source.read(timeout=read_timeout_s)
        except TimeoutError:
            return f"no frame for {read_timeout_s:g} s"
        if frame is None:
            return "end of stream"
        arrived = source.last_arrival_s
        t0 = clock.now()
        res = segmenter.step(frame)
        now = clock.now()
        tally.engine.append((now - t0) * 1000.0)
        tally.tracked_at(now)
        fps = tally.fps(recent=True)
        shown = (now - arrived) * 1000.0 if arrived is not None else tally.engine[-1]
        dropped = source.stats.dropped
        img = _draw(frame, res, [f"{fps:.1f} FPS  latency {shown:.0f} ms", f"dropped {dropped}"] + _searching(res))
        latency = (clock.now() - arrived) * 1000.0 if arrived is not None else shown
        tally.processed += 1
        tally.latency.append(latency)
        tally.latency_max = max(tally.latency_max, latency)
        if on_frame is not None:
            on_frame(res, latency)
        if recorder is not None:
            recorder.write(img, dropped)
        if sink is not None and not sink.show(img):
            return "stopped by user"
