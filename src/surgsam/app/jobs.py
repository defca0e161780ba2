"""The web app's work, without any UI: choose and cache a model, preview the prompts of one
frame, segment a whole video, and write the masks (a zip of DAVIS palette PNGs), the overlay
video and per-frame speed statistics.

Objects described by text go to the referring segmenter (ReSurgSAM2), built as ``surgsam refer``
builds it (:class:`ReferringChoice`); clicked objects go to the engine with the chosen SAM model.
A run may mix both: the two run side by side on every frame, sharing nothing but the frames, and
their masks are merged per frame (an object id is either clicked or described, never both).
"""

from __future__ import annotations

import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.offline import Prompt, segment_video
from ..engine.precision import Precision
from ..engine.state import FrameResult
from ..referring.cifs import CIFSConfig
from ..io.atomic import atomic_path
from .prompts import ObjectPrompt, PromptBook
from .video import VideoMeta

__all__ = [
    "DEMO_MODEL",
    "memory_policies",
    "FrameStat",
    "JobError",
    "ModelCache",
    "ModelChoice",
    "ReferringChoice",
    "ReferringModel",
    "RunResult",
    "SegmentationJob",
    "expression_summary",
    "make_referrer",
    "preview",
    "segment_stream",
    "zip_masks",
]

#: The model choice meaning "what ``surgsam demo`` uses" (see :func:`surgsam.modeling.embedded.build_demo_model`).
DEMO_MODEL = "demo"


def memory_policies(current: str | None = None) -> list[str]:
    """The memory policies the app offers: every registered one (and ``current`` if it is a
    ``module:Class`` given on the command line)."""
    from ..memory import policy_names

    names = list(policy_names())
    return names + [current] if current and current not in names else names


def _check_memory(memory: str) -> None:
    from ..memory.registry import lookup_policy

    try:
        lookup_policy(memory)
    except ValueError as e:
        raise JobError(str(e)) from None


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
    seed: int = 0  # random weights of the demo model when the embedded one is not installed

    def label(self) -> str:
        what = "demo model" if self.name == DEMO_MODEL else self.name
        if self.checkpoint:
            return f"{what} from {Path(self.checkpoint).name}"
        if self.name == DEMO_MODEL:
            from ..modeling.embedded import demo_checkpoint

            ckpt = demo_checkpoint()
            return (
                f"demo model ({ckpt}, trained on synthetic videos only)"
                if ckpt
                else "demo model (untrained nano, random weights: masks are not meaningful)"
            )
        return f"{what} (random weights: no checkpoint given)"


@dataclass(frozen=True)
class ReferringChoice:
    """Which referring network runs the text objects: as ``surgsam refer`` chooses it.

    Without ``checkpoint``: an UNTRAINED ``nano`` + ``tiny`` referring network with MiniLM
    (random weights from ``seed``: masks are not meaningful, expressions are rarely found). With
    it: the checkpoint's network (``model``: its SAM preset, e.g. ``sam2.1_hiera_s`` for
    ReSurgSAM2's ``.pth``; ``image_size`` 512 for those; ``text_encoder`` default: the model's own).
    """

    checkpoint: str | None = None
    model: str | None = None
    image_size: int | None = None
    text_encoder: str | None = None
    device: str = "cpu"
    seed: int = 0

    def label(self) -> str:
        if self.checkpoint:
            return f"referring model from {Path(self.checkpoint).name}"
        return "untrained referring model (random weights)"


@dataclass(frozen=True)
class ReferringModel:
    """A built referring network, its text encoder, and whether its weights are random."""

    model: Any
    encoder: Any
    untrained: bool

    def label(self) -> str:
        what = f"referring {self.model.sam.cfg.name} + {self.model.cfg.name}, text {self.encoder.name}"
        return f"{what} (UNTRAINED)" if self.untrained else what

    def warning(self) -> str | None:
        """The warning to show when the weights are random (as ``surgsam refer`` prints it)."""
        if not self.untrained:
            return None
        from ..referring.build import UNTRAINED_NOTE

        note = UNTRAINED_NOTE.format(sam=self.model.sam.cfg.name, ref=self.model.cfg.name)
        return note.replace("pass --checkpoint", "give a referring checkpoint")


class ModelCache:
    """Builds the chosen model and keeps the last one (building is slow, weights are large).

    A :class:`ModelChoice` gives a SAM model, a :class:`ReferringChoice` a :class:`ReferringModel`
    (use one cache for each kind, or they evict each other).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._choice: ModelChoice | ReferringChoice | None = None
        self._model: Any = None

    def get(self, choice: ModelChoice | ReferringChoice) -> Any:
        """The model for ``choice``; raises :class:`JobError` for a bad name, path or size."""
        with self._lock:
            if self._model is None or choice != self._choice:
                self._model = None  # free the old weights before loading new ones
                self._model = _build_referring(choice) if isinstance(choice, ReferringChoice) else _build(choice)
                self._choice = choice
            return self._model


def _checked_inputs(checkpoint: str | None, image_size: int | None, what: str = "") -> str | None:
    """A model choice's checkpoint as a file path (a path on this machine or an embedded model's
    name; ``None`` when blank) after checking it and the image size; :class:`JobError` if bad."""
    from ..modeling.embedded import resolve_checkpoint

    ckpt = (checkpoint or "").strip() or None
    if ckpt is not None:
        try:
            path = resolve_checkpoint(Path(ckpt).expanduser())
        except FileNotFoundError as exc:  # a known embedded model that is not installed
            raise JobError(str(exc)) from None
        if not path.is_file():
            raise JobError(f"{what}checkpoint not found: {path}")
        ckpt = str(path)
    if image_size is not None and (image_size <= 0 or image_size % 32):
        raise JobError(f"{what}image size must be a positive multiple of 32, got {image_size}")
    return ckpt


def _build(choice: ModelChoice) -> Any:
    from ..modeling.embedded import build_demo_model
    from ..modeling import CheckpointError, build_model

    ckpt = _checked_inputs(choice.checkpoint, choice.image_size)
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


def _build_referring(choice: ReferringChoice) -> ReferringModel:
    from ..modeling import CheckpointError
    from ..referring.build import build_referring

    ckpt = _checked_inputs(choice.checkpoint, choice.image_size, what="referring ")
    try:
        net, enc, untrained = build_referring(
            checkpoint=ckpt,
            model=choice.model or None,
            image_size=choice.image_size,
            text_encoder=choice.text_encoder or None,
            device=choice.device,
            seed=choice.seed,
        )
    except (CheckpointError, KeyError, ValueError, TypeError, RuntimeError, OSError, ImportError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise JobError(f"cannot build the referring model: {msg}") from None
    return ReferringModel(net, enc, untrained)


# ------------------------------------------------------------------------------------ engine
def make_referrer(
    referring: ReferringModel,
    texts: dict[int, str],
    memory: str = "dlm",
    precision: Precision = "fp32",
    cifs: CIFSConfig | None = None,
    num_frames: int | None = None,
) -> Any:
    """A fresh :class:`~surgsam.referring.ReferringSegmenter` holding ``texts`` ({obj_id: text},
    searched for from its first frame); a bad expression (empty, over-long for the text
    encoder) raises :class:`JobError` naming the object."""
    from ..referring.segmenter import ReferringSegmenter

    if not texts:
        raise JobError("no expression to search for")
    seg = ReferringSegmenter(
        referring.model, referring.encoder, memory=memory, cifs=cifs, precision=precision, num_frames=num_frames
    )
    for oid, text in sorted(texts.items()):  # one at a time: the error names the object
        try:
            seg.text_encoder.encode([text])
        except (ValueError, TypeError) as exc:
            raise JobError(f"object {oid}: {exc}") from None
    seg.add_texts(dict(sorted(texts.items())))
    return seg


def segment_stream(
    frames: Any,
    prompts: Sequence[Prompt],
    model: Any,
    memory: str = "efp",
    precision: Precision = "fp32",
    referrer: Any = None,
) -> Iterator[FrameResult]:
    """The one place the app's prompts meet the engine: a result for every frame of ``frames``.

    Clicked objects (``prompts``) are tracked by the engine with ``model``; text objects by
    ``referrer``, a fresh :class:`~surgsam.referring.ReferringSegmenter` holding their
    expressions (see :func:`make_referrer`; read its ``statuses()`` after the run). With both, each
    frame goes to both and the results are merged (ids in increasing order; ``searching`` lists
    the text objects not found yet). ``model`` may be None when there is no prompt.
    """
    _check_memory(memory)
    if referrer is None:
        return segment_video(frames, prompts, model, memory=memory, precision=precision)
    if not referrer.obj_ids:
        raise JobError("the referring segmenter holds no expression")
    both = sorted({p.obj_id for p in prompts} & set(referrer.obj_ids))
    if both:
        raise JobError(f"object(s) {both} have both clicks and a text: give each object id one kind of prompt")
    if referrer.frame_idx >= 0:
        raise JobError("the referring segmenter has already seen frames: make a fresh one for each run")
    return _with_texts(frames, list(prompts), model, memory, precision, referrer)


class _Tap:
    """Frames passed through, remembering the one handed out last (keeps the source's length)."""

    def __init__(self, frames: Any):
        self._frames = frames
        self.num_frames = getattr(frames, "num_frames", len(frames) if hasattr(frames, "__len__") else None)
        self.current: Any = None

    def __iter__(self) -> Iterator[np.ndarray]:
        for frame in self._frames:
            self.current = frame
            yield frame

    def close(self) -> None:
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()


def _with_texts(
    frames: Any, prompts: list[Prompt], model: Any, memory: str, precision: Precision, referrer: Any
) -> Iterator[FrameResult]:
    closer = None
    if isinstance(frames, (str, Path, int)):
        from ..io import open_source

        frames = open_source(frames)
        closer = frames.close
    try:
        if not prompts:
            for frame in frames:
                yield referrer.step(frame)
            return
        tap = _Tap(frames)
        for res in segment_video(tap, prompts, model, memory=memory, precision=precision):
            yield _merge(res, referrer.step(tap.current))
    finally:
        if closer is not None:
            closer()


def _merge(a: FrameResult, b: FrameResult) -> FrameResult:
    """One frame's results of two segmenters (disjoint ids) as one, ids in increasing order."""
    import torch
    import torch.nn.functional as F

    ids = list(a.obj_ids) + list(b.obj_ids)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    la, lb = a.low_res_logits, b.low_res_logits
    if a.obj_ids and b.obj_ids and la.shape[-2:] != lb.shape[-2:]:  # two models, two input sizes
        lb = F.interpolate(lb.float(), size=la.shape[-2:], mode="bilinear", align_corners=False)
    lows = [x.float().cpu() for x, r in ((la, a), (lb, b)) if r.obj_ids]
    low = torch.cat(lows)[order] if lows else torch.zeros(0, 1, 1, 1)
    masks = np.concatenate([a.masks, b.masks])[order] if ids else a.masks
    return FrameResult(
        frame_idx=a.frame_idx,
        obj_ids=[ids[i] for i in order],
        masks=masks,
        object_scores=np.concatenate([a.object_scores, b.object_scores])[order].astype(np.float32),
        ious=np.concatenate([a.ious, b.ious])[order].astype(np.float32),
        low_res_logits=low,
        latency_ms=a.latency_ms + b.latency_ms,
        searching=sorted([*a.searching, *b.searching]),
    )


def expression_summary(expressions: Sequence[dict], frames: int) -> list[str]:
    """One line per text object: found on which frame, or never found."""
    from ..referring.build import never_found_masks

    out = []
    for e in expressions:
        if e["found_frame"] is None:
            where = f"never found in {frames} frames ({never_found_masks(e.get('detections_shown', 0))})"
        else:
            where = (
                f"found on frame {e['found_frame']} (conditioning frame {e['credible_frame']}), "
                f"tracked from frame {e['tracking_from']}"
            )
        out.append(f'object {e["obj_id"]} "{e["text"]}": {where}')
    return out


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
    #: text objects as ``surgsam refer`` reports them (obj_id, text, found_frame, ...)
    expressions: list[dict] = field(default_factory=list)
    warning: str | None = None  # e.g. the untrained referring network's

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
        text = (
            f"**{self.frames} frames**{cut}, objects {', '.join(map(str, self.obj_ids)) or '-'}; "
            f"memory `{self.memory}`; {self.model}\n\n"
            f"end to end **{fps:.1f} FPS** (decode + engine + writing); engine per frame: median "
            f"{np.median(tracked):.0f} ms ({1000 / max(np.median(tracked), 1e-6):.1f} FPS), "
            f"p95 {np.percentile(tracked, 95):.0f} ms, max {tracked.max():.0f} ms"
        )
        if self.expressions:
            text += "\n\nText objects:\n" + "".join(
                f"\n- {line}" for line in expression_summary(self.expressions, self.frames)
            )
        if self.warning:
            text += f"\n\n**Warning: {self.warning}**"
        return text

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

    The book's text objects are searched for and tracked by ``referring`` (a
    :class:`ReferringModel`; ``cifs`` sets its credible-frame thresholds, default ReSurgSAM2's),
    its clicked objects by ``model`` (None is fine when there are only texts).

    Iterate :meth:`frames` to follow it frame by frame (stopping the iteration stops the run
    and leaves no result), or call :meth:`run`.
    """

    def __init__(
        self,
        meta: VideoMeta,
        book: PromptBook,
        model: Any,
        out_dir: str | Path,
        memory: str = "efp",
        max_frames: int | None = None,
        precision: Precision = "fp32",
        model_label: str = "",
        referring: ReferringModel | None = None,
        cifs: CIFSConfig | None = None,
    ):
        _check_memory(memory)
        self.prompts = book.prompts()
        self.texts = dict(book.texts)
        if not self.prompts and not self.texts:
            raise JobError(
                "no prompt yet: click on an object (or give a box) on some frame, or type an "
                "expression for an object, first"
            )
        if self.prompts and model is None:
            raise JobError("clicked objects need a model")
        if self.texts and referring is None:
            raise JobError("text objects need a referring model")
        self.limit = meta.num_frames if not max_frames or max_frames <= 0 else min(int(max_frames), meta.num_frames)
        late = sorted({p.frame_idx for p in self.prompts if p.frame_idx >= self.limit})
        if late:
            raise JobError(f"prompts on frame(s) {late} lie beyond the {self.limit} frames to process")
        self.meta, self.model, self.memory, self.precision = meta, model, memory, precision
        self.referring, self.cifs = referring, cifs
        self.referrer = self._referrer() if self.texts else None  # a bad expression fails here
        self.out_dir = Path(out_dir)
        label = (model_label or getattr(getattr(model, "cfg", None), "name", "model")) if self.prompts else ""
        if referring is not None and self.texts:
            label = "; ".join(x for x in (label, referring.label()) if x)
        self.model_label = label
        self.result: RunResult | None = None

    def _referrer(self) -> Any:
        assert self.referring is not None
        return make_referrer(self.referring, self.texts, self.memory, self.precision, self.cifs, self.limit)

    @property
    def total(self) -> int:
        return self.limit

    def frames(self) -> Iterator[FrameStat]:
        """Run, yielding each frame's :class:`FrameStat`; sets :attr:`result` at the end."""
        from ..io import OverlayVideoWriter, PaletteMaskWriter
        from ..io.base import FrameReadError

        self.out_dir.mkdir(parents=True, exist_ok=True)
        masks_dir = self.out_dir / "masks"
        made_masks = not masks_dir.exists()
        masks = PaletteMaskWriter(masks_dir)
        src = _Frames(self.meta, self.limit)
        stats: list[FrameStat] = []
        ids: set[int] = set()
        if self.referrer is not None and self.referrer.frame_idx >= 0:  # a second run of this job
            self.referrer = self._referrer()
        t_start = time.perf_counter()
        complete = False
        try:  # the overlay and the zip appear only once whole; a stopped run leaves neither
            with atomic_path(self.out_dir / "overlay.mp4", private=True) as tmp_overlay:
                overlay = OverlayVideoWriter(tmp_overlay, fps=self.meta.fps)
                encoded = False
                try:
                    t0 = time.perf_counter()
                    for res in segment_stream(
                        src, self.prompts, self.model, self.memory, self.precision, self.referrer
                    ):
                        masks.write_result(res)  # overlaps: highest logit wins (SAM 2)
                        ms = res.latency_ms
                        fps = 1000 / ms if ms > 0 else 0
                        line = f"frame {res.frame_idx}  {ms:.0f} ms  {fps:.1f} FPS  {self.memory}"
                        text: str | list[str] = line
                        if res.searching:
                            text = [line, "searching: " + ", ".join(map(str, res.searching))]
                        overlay.write(src.current, res.obj_ids, res.masks, text=text)
                        ids.update(res.obj_ids)
                        t1 = time.perf_counter()
                        stat = FrameStat(res.frame_idx, ms, (t1 - t0) * 1000.0, len(res.obj_ids))
                        t0 = t1
                        stats.append(stat)
                        yield stat
                    overlay.close()
                    encoded = True
                except FrameReadError as exc:
                    raise JobError(f"the video stopped decoding: {exc}") from None
                except ValueError as exc:
                    raise JobError(str(exc)) from None
                finally:
                    if not encoded:
                        _abandon(overlay)
                    src.close()
            zip_path = zip_masks(masks_dir, self.out_dir / "masks.zip")
            complete = True
        finally:
            if not complete and made_masks:  # this run's own partial masks go too
                shutil.rmtree(masks_dir, ignore_errors=True)
        wall = time.perf_counter() - t_start
        zip_path = zip_masks(self.out_dir / "masks", self.out_dir / "masks.zip")
        expressions, warning = [], None
        if self.referrer is not None:
            from ..referring.build import expression_statuses

            expressions = expression_statuses(self.referrer)
            warning = self.referring.warning() if self.referring is not None else None
        self.result = RunResult(
            self.out_dir,
            masks_dir,
            zip_path,
            self.out_dir / "overlay.mp4",
            sorted(ids),
            self.memory,
            self.model_label,
            stats,
            wall,
            self.meta.num_frames,
            expressions,
            warning,
        )

    def run(self, progress: Callable[[int, int], None] | None = None) -> RunResult:
        """Run to the end; ``progress(done, total)`` after every frame."""
        for i, _ in enumerate(self.frames()):
            if progress is not None:
                progress(i + 1, self.total)
        assert self.result is not None
        return self.result


def zip_masks(mask_dir: str | Path, zip_path: str | Path) -> Path:
    """Zip the palette PNGs of ``mask_dir`` as ``masks/NNNNN.png`` (stored: PNGs are compressed);
    the zip appears under its name only once complete."""
    mask_dir, zip_path = Path(mask_dir), Path(zip_path)
    with atomic_path(zip_path, private=True) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
        for f in sorted(mask_dir.glob("*.png")):
            z.write(f, f"masks/{f.name}")
    return zip_path


def _abandon(writer: Any) -> None:
    """Stop a video writer without finishing the file (its partial file is removed by the caller)."""
    abort = getattr(writer, "abort", None)
    try:
        if abort is not None:
            abort()
        else:
            writer.close()
    except Exception:  # the writer may be what failed; its file is discarded either way
        pass
