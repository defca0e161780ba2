"""The web app's work, without any UI: choose and cache a model, preview the prompts of one
frame, segment a whole video, and write the masks (a zip of DAVIS palette PNGs), the overlay
video and per-frame speed statistics.
"""

from __future__ import annotations

import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.offline import Prompt, segment_video
from ..engine.state import FrameResult
from .prompts import ObjectPrompt, PromptBook
from .video import VideoMeta

__all__ = [
    "DEMO_MODEL", "MEMORY_POLICIES", "FrameStat", "JobError", "ModelCache", "ModelChoice", "RunResult",
    "SegmentationJob", "preview", "segment_stream", "zip_masks",
]

#: The model choice meaning "what ``surgsam demo`` uses" (see :func:`surgsam.demo.build_demo_model`).
DEMO_MODEL = "demo"
MEMORY_POLICIES = ("fifo", "efp", "dlm")


class JobError(ValueError):
    """A run or preview that cannot be done as asked; the message is for the user."""


# ------------------------------------------------------------------------------------ models
@dataclass(frozen=True)
class ModelChoice:
    """Which network to run: ``name`` is :data:`DEMO_MODEL` or a preset (``surgsam presets``).

    ``checkpoint`` is a path on this machine (Meta's ``.pt``, a bare state dict, or ours);
    ``image_size`` overrides the preset's input size (a multiple of 32).
    """

    name: str = DEMO_MODEL
    checkpoint: str | None = None
    image_size: int | None = None
    device: str = "cpu"
    seed: int = 0  # random weights of the demo model

    def label(self) -> str:
        what = "demo model" if self.name == DEMO_MODEL else self.name
        if self.checkpoint:
            return f"{what} from {Path(self.checkpoint).name}"
        if self.name == DEMO_MODEL:
            return "demo model (untrained nano, random weights: masks are not meaningful)"
        return f"{what} (random weights: no checkpoint given)"


class ModelCache:
    """Builds the chosen model and keeps the last one (building is slow, weights are large)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._choice: ModelChoice | None = None
        self._model: Any = None

    def get(self, choice: ModelChoice) -> Any:
        """The model for ``choice``; raises :class:`JobError` for a bad name, path or size."""
        with self._lock:
            if self._model is None or choice != self._choice:
                self._model = None  # free the old weights before loading new ones
                self._model = _build(choice)
                self._choice = choice
            return self._model


def _build(choice: ModelChoice) -> Any:
    from ..demo import build_demo_model
    from ..modeling import CheckpointError, build_model

    ckpt = (choice.checkpoint or "").strip() or None
    if ckpt is not None:
        p = Path(ckpt).expanduser()
        if not p.is_file():
            raise JobError(f"checkpoint not found: {p}")
        ckpt = str(p)
    if choice.image_size is not None and (choice.image_size <= 0 or choice.image_size % 32):
        raise JobError(f"image size must be a positive multiple of 32, got {choice.image_size}")
    try:
        if choice.name == DEMO_MODEL:
            if ckpt is None and choice.image_size is None:
                return build_demo_model(seed=choice.seed, device=choice.device)
            if ckpt is None:
                raise JobError("the demo model has a fixed input size: pick a preset to change it")
            return build_model(image_size=choice.image_size, checkpoint=ckpt, device=choice.device)
        return build_model(choice.name, image_size=choice.image_size, checkpoint=ckpt, device=choice.device)
    except (CheckpointError, KeyError, ValueError, RuntimeError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise JobError(f"cannot build the model: {msg}") from None


# ------------------------------------------------------------------------------------ engine
def segment_stream(frames: Any, prompts: Sequence[Prompt], model: Any, memory: str = "efp",
                   precision: str = "fp32") -> Iterator[FrameResult]:
    """The one place the app's prompts meet the engine: a result for every frame of ``frames``.

    (A text prompt would be routed to the referring segmenter here.)
    """
    if memory not in MEMORY_POLICIES:
        raise JobError(f"memory policy must be one of {', '.join(MEMORY_POLICIES)}, got {memory!r}")
    return segment_video(frames, prompts, model, memory=memory, precision=precision)


def preview(model: Any, frame: np.ndarray, prompts: Sequence[ObjectPrompt], memory: str = "efp") -> FrameResult | None:
    """Masks the prompts of one frame give on that frame alone (what the run starts from)."""
    todo = [replace(p.to_prompt(), frame_idx=0) for p in prompts if not p.empty]
    if not todo:
        return None
    try:
        return next(iter(segment_stream([frame], todo, model, memory)))
    except ValueError as exc:
        raise JobError(str(exc)) from None


# ------------------------------------------------------------------------------------ runs
@dataclass(frozen=True)
class FrameStat:
    """Speed of one frame: the engine's time (all objects) and the whole step (decoding,
    engine, writing the masks and the overlay)."""

    frame_idx: int
    engine_ms: float
    total_ms: float
    objects: int

    @property
    def fps(self) -> float:
        return 1000.0 / self.engine_ms if self.engine_ms > 0 else 0.0


@dataclass
class RunResult:
    """What a finished run wrote and how fast it went."""

    out_dir: Path
    masks_dir: Path
    masks_zip: Path
    overlay: Path
    obj_ids: list[int]
    memory: str
    model: str
    stats: list[FrameStat] = field(default_factory=list)
    wall_s: float = 0.0
    num_video_frames: int = 0

    @property
    def frames(self) -> int:
        return len(self.stats)

    def summary(self) -> str:
        """Markdown: frames, objects, throughput and latency percentiles."""
        if not self.stats:
            return "no frame was processed"
        ms = np.array([s.engine_ms for s in self.stats])
        first = next((i for i, s in enumerate(self.stats) if s.objects), 0)
        tracked = ms[first:]  # frames before the first prompt cost nothing
        fps = self.frames / self.wall_s if self.wall_s > 0 else 0.0
        cut = "" if self.frames == self.num_video_frames else f" (of {self.num_video_frames})"
        return (
            f"**{self.frames} frames**{cut}, objects {', '.join(map(str, self.obj_ids)) or '-'}; "
            f"memory `{self.memory}`; {self.model}\n\n"
            f"end to end **{fps:.1f} FPS** (decode + engine + writing); engine per frame: median "
            f"{np.median(tracked):.0f} ms ({1000 / max(np.median(tracked), 1e-6):.1f} FPS), "
            f"p95 {np.percentile(tracked, 95):.0f} ms, max {tracked.max():.0f} ms"
        )

    def rows(self) -> list[dict[str, float]]:
        """Per-frame speed, for a plot or a table."""
        return [{"frame": s.frame_idx, "engine ms": round(s.engine_ms, 2), "FPS": round(s.fps, 2)} for s in self.stats]


class _Frames:
    """The first ``limit`` frames of a video, remembering the one handed out last."""

    def __init__(self, meta: VideoMeta, limit: int):
        from ..io import VideoFileSource

        self._src = VideoFileSource(meta.path)
        self.limit = limit
        self.num_frames = meta.num_frames  # the video's length, also when the run stops early
        self.current: np.ndarray | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        for i, frame in enumerate(self._src):
            if i >= self.limit:
                return
            self.current = frame
            yield frame

    def close(self) -> None:
        self._src.close()


class SegmentationJob:
    """Segment a checked video from a :class:`PromptBook`, writing into ``out_dir``:
    ``masks/NNNNN.png`` (DAVIS palette, pixel = object id), ``masks.zip`` and ``overlay.mp4``
    (masks, per-frame latency and FPS drawn on).

    Iterate :meth:`frames` to follow it frame by frame (stopping the iteration stops the run
    and leaves no result), or call :meth:`run`.
    """

    def __init__(self, meta: VideoMeta, book: PromptBook, model: Any, out_dir: str | Path,
                 memory: str = "efp", max_frames: int | None = None, precision: str = "fp32",
                 model_label: str = ""):
        if memory not in MEMORY_POLICIES:
            raise JobError(f"memory policy must be one of {', '.join(MEMORY_POLICIES)}, got {memory!r}")
        self.prompts = book.prompts()
        if not self.prompts:
            raise JobError("no prompt yet: click on an object (or give a box) on some frame first")
        self.limit = meta.num_frames if not max_frames or max_frames <= 0 else min(int(max_frames), meta.num_frames)
        late = sorted({p.frame_idx for p in self.prompts if p.frame_idx >= self.limit})
        if late:
            raise JobError(f"prompts on frame(s) {late} lie beyond the {self.limit} frames to process")
        self.meta, self.model, self.memory, self.precision = meta, model, memory, precision
        self.out_dir = Path(out_dir)
        self.model_label = model_label or getattr(getattr(model, "cfg", None), "name", "model")
        self.result: RunResult | None = None

    @property
    def total(self) -> int:
        return self.limit

    def frames(self) -> Iterator[FrameStat]:
        """Run, yielding each frame's :class:`FrameStat`; sets :attr:`result` at the end."""
        from ..io import OverlayVideoWriter, PaletteMaskWriter
        from ..io.base import FrameReadError

        self.out_dir.mkdir(parents=True, exist_ok=True)
        masks = PaletteMaskWriter(self.out_dir / "masks")
        overlay = OverlayVideoWriter(self.out_dir / "overlay.mp4", fps=self.meta.fps)
        src = _Frames(self.meta, self.limit)
        stats: list[FrameStat] = []
        ids: set[int] = set()
        t_start = time.perf_counter()
        try:
            t0 = time.perf_counter()
            for res in segment_stream(src, self.prompts, self.model, self.memory, self.precision):
                masks.write(res.frame_idx, res.obj_ids, res.masks)
                ms = res.latency_ms
                text = f"frame {res.frame_idx}  {ms:.0f} ms  {1000 / ms if ms > 0 else 0:.1f} FPS  {self.memory}"
                overlay.write(src.current, res.obj_ids, res.masks, text=text)
                ids.update(res.obj_ids)
                t1 = time.perf_counter()
                stat = FrameStat(res.frame_idx, ms, (t1 - t0) * 1000.0, len(res.obj_ids))
                t0 = t1
                stats.append(stat)
                yield stat
        except FrameReadError as exc:
            raise JobError(f"the video stopped decoding: {exc}") from None
        except ValueError as exc:
            raise JobError(str(exc)) from None
        finally:
            overlay.close()
            src.close()
        wall = time.perf_counter() - t_start
        zip_path = zip_masks(self.out_dir / "masks", self.out_dir / "masks.zip")
        self.result = RunResult(self.out_dir, self.out_dir / "masks", zip_path, overlay.path, sorted(ids),
                                self.memory, self.model_label, stats, wall, self.meta.num_frames)

    def run(self, progress: Callable[[int, int], None] | None = None) -> RunResult:
        """Run to the end; ``progress(done, total)`` after every frame."""
        for i, _ in enumerate(self.frames()):
            if progress is not None:
                progress(i + 1, self.total)
        assert self.result is not None
        return self.result


def zip_masks(mask_dir: str | Path, zip_path: str | Path) -> Path:
    """Zip the palette PNGs of ``mask_dir`` as ``masks/NNNNN.png`` (stored: PNGs are compressed)."""
    mask_dir, zip_path = Path(mask_dir), Path(zip_path)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as z:
        for f in sorted(mask_dir.glob("*.png")):
            z.write(f, f"masks/{f.name}")
    return zip_path
