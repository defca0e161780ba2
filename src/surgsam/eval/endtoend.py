"""End-to-end evaluation: run a segmenter on a dataset split with the papers' prompts (each
object's ground-truth mask at its first appearance), then score it. The engine can instead be
prompted with one positive click (the mask's deepest interior pixel) or the mask's tight box,
on the same frame.

A *segmenter* is anything with ``segment(video, frames, prompts)`` that yields, per frame in
order, ``{obj_id: H x W bool}`` or an ``H x W`` id map (see :class:`Segmenter`). What is scored
is the one-id-per-pixel map that ``save_dir`` receives as palette PNGs: the engine resolves
overlaps with its logits (:func:`surgsam.io.labels.resolve_overlaps`, SAM 2's VOS rule), masks
given as a dict are merged by the same function (lowest id wins). Three are provided:

* :class:`EngineSegmenter` — the surgsam video engine (``surgsam.VideoSegmenter``);
* :class:`CopyFirstMaskSegmenter` — baseline: each object's prompt mask, unchanged, from its
  first appearance on (what a tracker that never moves would score);
* :class:`OracleSegmenter` — the ground truth itself (checks the pipeline: J = F = 100).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from typing import Protocol as TypingProtocol

import numpy as np

from ..data.palette import write_mask
from ..data.vos import ObjectPrompt, Video
from ..io.labels import label_map_from_result
from .evaluator import EvalResult, IoULevel, Protocol, ProtocolName, compose_labels, evaluate_video, get_protocol

if TYPE_CHECKING:  # torch is imported only when the engine runs
    from ..engine.fastpath import FastMode
    from ..engine.precision import Precision
    from ..modeling.sam2 import ResizeMode

__all__ = [
    "PROMPT_KINDS",
    "PromptKind",
    "CopyFirstMaskSegmenter",
    "EngineSegmenter",
    "OracleSegmenter",
    "SEGMENTERS",
    "Segmenter",
    "make_segmenter",
    "run_end_to_end",
]

Masks = dict[int, np.ndarray]
#: How the engine is prompted at an object's first appearance: its mask, one click, or its box.
PromptKind = Literal["mask", "click", "box"]
PROMPT_KINDS: tuple[PromptKind, ...] = ("mask", "click", "box")


def interior_point(mask: np.ndarray) -> tuple[float, float]:
    """The ``(x, y)`` pixel deepest inside ``mask`` (``H x W`` bool, not empty): the last to
    survive repeated 3x3 erosion (the image border counts as outside); among those, the one
    nearest their centroid. Deterministic, numpy only."""
    cur = np.asarray(mask, dtype=bool)
    if not cur.any():
        raise ValueError("interior_point of an empty mask")
    while True:
        padded = np.pad(cur, 1, constant_values=False)
        h, w = cur.shape
        nxt = np.ones_like(cur)
        for dy in range(3):
            for dx in range(3):
                nxt &= padded[dy : dy + h, dx : dx + w]
        if not nxt.any():
            break
        cur = nxt
    ys, xs = np.nonzero(cur)
    i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
    return float(xs[i]), float(ys[i])


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight ``(x0, y0, x1, y1)`` box of a non-empty ``H x W`` mask, in pixel coordinates."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("mask_box of an empty mask")
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


class Segmenter(TypingProtocol):
    """Segments one video given mask prompts.

    ``frames``: lazy sequence of ``H x W x 3`` uint8 RGB arrays. ``prompts``: ``{obj_id:
    ObjectPrompt(frame_idx, H x W bool mask)}``. Yields per frame ``{obj_id: H x W bool}`` or
    an ``H x W`` int id map (overlaps already resolved, e.g. with
    :func:`surgsam.io.labels.resolve_overlaps` and mask logits).
    """

    def segment(
        self, video: str, frames: Sequence[np.ndarray], prompts: Mapping[int, ObjectPrompt]
    ) -> Iterator[Masks | np.ndarray]: ...


class CopyFirstMaskSegmenter:
    """Baseline: propagate each object's first mask unchanged (needs no frames decoded)."""

    def segment(self, video: str, frames: Sequence[np.ndarray], prompts: Mapping[int, ObjectPrompt]) -> Iterator[Masks]:
        for t in range(len(frames)):
            yield {k: p.mask for k, p in prompts.items() if p.frame_idx <= t}


class OracleSegmenter:
    """Returns the ground truth of the named video (from the dataset it was built with)."""

    def __init__(self, dataset: Sequence[Video]):
        self._videos = {v.name: v for v in dataset}

    def segment(self, video: str, frames: Sequence[np.ndarray], prompts: Mapping[int, ObjectPrompt]) -> Iterator[Masks]:
        v = self._videos[video]
        for t in range(len(frames)):
            lab = v.labels(t)
            yield {} if lab is None else {k: lab == k for k in prompts if prompts[k].frame_idx <= t}


class EngineSegmenter:
    """The surgsam video engine, prompted at each object's first appearance with its mask
    (``prompt="mask"``, the papers' protocol), one positive click at the mask's deepest pixel
    (``"click"``, :func:`interior_point`) or the mask's tight box (``"box"``).

    The model is built once, lazily (``surgsam.build_model``); each video gets a fresh
    ``surgsam.VideoSegmenter``. On a frame that brings new objects, ``add_prompt`` is called for
    each of them and its result replaces ``step()`` for that frame. Frames before the first
    prompt are not sent to the engine (nothing is tracked yet). The masks it yields no longer
    overlap: contested pixels went to the highest logit
    (:func:`surgsam.io.labels.label_map_from_result`), as in the palette PNGs it saves.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        image_size: int | None = None,
        checkpoint: str | None = None,
        device: str = "cpu",
        memory: str = "efp",
        prompt: PromptKind = "mask",
        resize: ResizeMode = "pil",
        precision: Precision = "fp32",
        fast: FastMode = False,
    ):
        if prompt not in PROMPT_KINDS:
            raise ValueError(f"unknown prompt kind {prompt!r}; choose one of {', '.join(PROMPT_KINDS)}")
        self.prompt = prompt
        self.model_name = model
        self.image_size = image_size
        self.checkpoint = checkpoint
        self.device = device
        self.memory = memory
        self.resize = resize  # the engine's frame resize ("pil": Meta's video path; "antialias")
        self.precision, self.fast = precision, fast  # as VideoSegmenter's (default: float32, eager)
        self._model = None

    def _get_model(self):
        from ..modeling import build_model

        if self._model is None:
            name, size = self.model_name, self.image_size
            if name is None or size is None:
                # our own checkpoints state their network and input size; otherwise the papers' setting
                from ..modeling.checkpoint import read_checkpoint

                own = self.checkpoint is not None and read_checkpoint(self.checkpoint).config is not None
                name = name if name is not None or own else "sam2.1_hiera_s"
                size = size if size is not None or own else 512
            self._model = build_model(name, image_size=size, checkpoint=self.checkpoint, device=self.device)
        return self._model

    def segment(self, video: str, frames: Sequence[np.ndarray], prompts: Mapping[int, ObjectPrompt]) -> Iterator[Masks]:
        model = self._get_model()
        from ..engine import Prompt, segment_video

        engine_prompts = [self._engine_prompt(Prompt, int(k), p) for k, p in sorted(prompts.items())]
        for res in segment_video(
            frames,
            engine_prompts,
            model,
            memory=self.memory,
            resize=self.resize,
            precision=self.precision,
            fast=self.fast,
        ):
            label = label_map_from_result(res)  # SAM 2's rule, with the logits
            yield {int(k): label == int(k) for k in res.obj_ids}

    def _engine_prompt(self, prompt_cls, obj_id: int, p: ObjectPrompt):
        if self.prompt == "click":
            return prompt_cls(obj_id, p.frame_idx, points=[interior_point(p.mask)], labels=[1])
        if self.prompt == "box":
            return prompt_cls(obj_id, p.frame_idx, box=mask_box(p.mask))
        return prompt_cls(obj_id, p.frame_idx, mask=p.mask)


SEGMENTERS: dict[str, str] = {
    "engine": "the surgsam video engine",
    "copy": "baseline: copy each object's first mask to every later frame",
    "oracle": "ground truth (pipeline check; scores 100)",
    "referring": "text-referred (ReSurgSAM2): each Ref-EndoVis expression segmented from its text alone",
}


def make_segmenter(kind: str, dataset: Sequence[Video] | None = None, **engine_kw) -> Segmenter:
    """Build a segmenter by name (``engine``, ``copy``, ``oracle``)."""
    if kind == "copy":
        return CopyFirstMaskSegmenter()
    if kind == "oracle":
        if dataset is None:
            raise ValueError("the oracle segmenter needs the dataset")
        return OracleSegmenter(dataset)
    if kind == "engine":
        return EngineSegmenter(**engine_kw)
    if kind == "referring":
        raise ValueError(
            "the referring segmenter runs through surgsam.eval.referring.run_referring "
            "(ReferringEvalSegmenter), not run_end_to_end"
        )
    raise ValueError(f"unknown segmenter {kind!r}; known: {', '.join(SEGMENTERS)}")


def run_end_to_end(
    videos: Sequence[Video],
    segmenter: Segmenter,
    protocol: ProtocolName | Protocol = "surgsam2",
    *,
    level: IoULevel = "instance",
    save_dir: str | Path | None = None,
    progress: bool = True,
    desc: str = "e2e",
    on_video: Callable[[str], None] | None = None,
) -> EvalResult:
    """Prompt, segment and score every video; optionally save palette predictions to
    ``save_dir/<video>/<frame>.png`` (re-scorable with ``surgsam eval --pred``).
    """
    from tqdm import tqdm

    proto = get_protocol(protocol)
    parts = []
    total = sum(len(v) for v in videos)
    bar = tqdm(total=total, desc=desc, unit="frame", disable=not progress)
    try:
        for v in videos:
            prompts = v.prompts()
            frames = v.frames if v.has_frames else _NoFrames(len(v))
            stream = _tap(segmenter.segment(v.name, frames, prompts), v, save_dir, bar)
            parts.append(evaluate_video(v, stream, proto, level=level))
            if on_video is not None:
                on_video(v.name)
    finally:
        bar.close()
    if not parts:
        return EvalResult(protocol=proto.name, level=level, group_defs=dict(proto.groups))
    return EvalResult.merge(parts)


def _tap(stream: Iterator[Masks | np.ndarray], video: Video, save_dir, bar) -> Iterator[np.ndarray]:
    """Merges each frame's masks into the id map that is both written and scored."""
    hw = None
    for t, pred in enumerate(stream):
        hw = hw or video.image_size
        label = pred if isinstance(pred, np.ndarray) else compose_labels(pred, hw)
        if save_dir is not None:
            write_mask(Path(save_dir) / video.name / f"{video.frame_names[t]}.png", label)
        bar.update(1)
        yield label


class _NoFrames(Sequence[np.ndarray]):
    """Stands in for the frames of annotation-only data (baselines never decode frames)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        raise RuntimeError("this dataset has no frames (annotation-only); the engine segmenter needs them")
