"""Streaming text-referred segmentation (ReSurgSAM2): a detection stage until a credible frame,
then ordinary memory tracking by the engine.

Each referred object has one expression. On every frame it is in one of two stages:

1. **searching** — it is segmented from its text alone by :meth:`ReferringSAM2.detect` (CSTMamba
   over the current and the previous two frames' top-level features, no memory), and the frame's
   object score and best predicted IoU feed the object's :class:`CIFS`. Its id is listed in
   ``FrameResult.searching``, and what it emits is ``search_output``'s choice: by default the
   detection itself (as ReSurgSAM2's released code; empty where the decoder's object score says
   absent), or only detections passing both CIFS thresholds (``"credible"``), or nothing
   (``"none"``: an empty mask, score and IoU 0).
2. **tracking** — on the frame ``t`` where CIFS decides, the frame it chose, ``p`` (one of the
   last ``window`` frames; ``p = t`` with CIFS off), is memory-encoded from its detection
   (``sigmoid`` of its logits as in the released code; ``handover_memory="binary"`` thresholds
   it) and handed, with its object pointer, to the engine's :class:`VideoSegmenter` as the
   object's conditioning memory. Frame ``t`` itself emits the object's own detection mask on ``t`` (it
   passed both thresholds). From ``t + 1`` on the engine tracks it with memory (``dlm`` policy by
   default) and the sentence token as an extra sparse decoder prompt.

Frames ``p .. t-1`` were emitted as searching frames while CIFS waited for its window: a stream
does not revise its past. :meth:`ReferringSegmenter.status` tells a caller which frame was chosen
(an offline caller may re-segment them). An expression never found keeps its ``searching`` status
and is never tracked: it has no masks beyond what ``search_output`` shows of its detections.

All expressions share ONE image-encoder pass per frame (the engine's cached features), and every
searching expression goes through one batched detection call. The session holds a bounded amount
of memory: the engine's banks (bounded by the policy), the previous two frames' features, and per
searching object at most ``window`` CIFS candidates.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.precision import autocast
from ..engine.precision import Precision
from ..engine.prompts import check_obj_id
from ..engine.session import VideoSegmenter
from ..engine.state import FrameResult, upsample_logits
from ..memory import MemoryPolicy
from ..modeling.sam2 import NO_OBJ_SCORE, FrameFeatures, ResizeMode
from .cifs import CIFS, SEARCH_OUTPUTS, CIFSConfig, SearchOutput
from .model import ReferringPrompt, ReferringSAM2
from .text import TextEncoder, build_text_encoder

#: How the memory of the credible frame handed to the tracker is encoded (see ReferringSegmenter).
HandoverMemory = Literal["sigmoid", "binary"]

SEARCHING = "searching"
TRACKING = "tracking"


@dataclass
class ReferringStatus:
    """Where one expression stands.

    stage: ``"searching"`` (detection stage) or ``"tracking"``.
    added_frame: the first frame searched (the frame after the one current at ``add_text``).
    credible_frame: the conditioning frame CIFS chose; found_frame: the frame it was chosen on
        (its own detection mask is emitted there); both None while searching.
    frames_searched: detection frames so far.
    frames_shown: searching frames whose detection was emitted (``search_output``); the
        hand-over frame is not counted.
    last_object_score, last_iou: the latest detection's sigmoid(object score) and best predicted
        IoU (what CIFS thresholded); None before the first detection.
    """

    obj_id: int
    text: str
    stage: str = SEARCHING
    added_frame: int = 0
    credible_frame: int | None = None
    found_frame: int | None = None
    frames_searched: int = 0
    frames_shown: int = 0
    last_object_score: float | None = None
    last_iou: float | None = None

    @property
    def found(self) -> bool:
        return self.found_frame is not None

    @property
    def tracking_from(self) -> int | None:
        """The first frame tracked with memory (``found_frame + 1``), None while searching."""
        return None if self.found_frame is None else self.found_frame + 1


@dataclass
class _Detection:
    """One object's detection on one frame, kept while CIFS may still choose it.

    features: ``1 x C x h x w`` raw top-level features of the frame (shared by all objects);
    low_res_logits: ``1 x 1 x 4h x 4w``; object_score_logit: ``1 x 1``; obj_ptr: ``1 x C``.
    """

    features: torch.Tensor
    low_res_logits: torch.Tensor
    object_score_logit: torch.Tensor
    obj_ptr: torch.Tensor
    iou: float


@dataclass
class _Expression:
    """Per-object state: the projected text (``1 x L x C`` tokens, no padding), its sentence
    token (``1 x 1 x C``), its CIFS and status."""

    prompt: ReferringPrompt
    sentence: torch.Tensor
    cifs: CIFS[_Detection]
    status: ReferringStatus


class ReferringSegmenter:
    """Streaming text-referred video segmentation with a :class:`ReferringSAM2`.

    Typical use::

        seg = ReferringSegmenter(model, text_encoder="minilm")
        seg.add_text(1, "the bipolar forceps on the left")
        seg.add_text(2, "the needle driver is suturing")
        for frame in frames:
            res = seg.step(frame)    # FrameResult; res.searching: ids not credibly found yet
        seg.status(2).tracking_from  # None: never credibly found

    Every result lists every expression's object: searching ones (ids in ``res.searching``) with
    what ``search_output`` shows, the hand-over frame with that frame's detection, later frames
    with the tracked mask (see the module docstring).

    Args:
        model: the referring model (eval mode).
        text_encoder: a :class:`TextEncoder`, or a name / path for :func:`build_text_encoder`;
            None uses the model's own (``model.cfg.text_encoder``). Its width must match the
            model's token projection.
        memory: tracking-stage memory policy (``"dlm"`` as ReSurgSAM2, ``"efp"``, ``"fifo"``).
        cifs: credible initial frame selection settings (``CIFSConfig(enabled=False)``: the first
            frame passing both thresholds starts tracking at once).
        precision: as :class:`VideoSegmenter` (``"fp32"``, ``"bf16"``, ``"fp16"``, ``"auto"``).
        num_frames: the video's length when known (see :class:`VideoSegmenter`).
        search_output: what a searching expression emits on a frame: ``"detection"`` its
            detection mask, score and IoU (empty where the decoder's object score says absent;
            ReSurgSAM2's released code outputs these); ``"credible"`` the same only when the
            detection passes both CIFS thresholds, else an empty mask with score and IoU 0;
            ``"none"`` always the empty mask. Its id stays in ``searching`` either way.
        handover_memory: how the credible frame's detection is memory-encoded when tracking
            starts: ``"sigmoid"`` (default) encodes ``sigmoid(logits)``, as ReSurgSAM2's released
            evaluation (``tools/rvos_inference.py`` without ``--apply_postprocessing``) does;
            ``"binary"`` the thresholded mask, as a prompted frame in Meta's default predictor.
        resize: frame preprocessing, as :class:`VideoSegmenter` (``"pil"``: the released code's).
    """

    def __init__(
        self,
        model: ReferringSAM2,
        text_encoder: str | Path | TextEncoder | None = None,
        *,
        memory: str | MemoryPolicy = "dlm",
        cifs: CIFSConfig | None = None,
        precision: Precision = "fp32",
        num_frames: int | None = None,
        search_output: SearchOutput = "detection",
        handover_memory: HandoverMemory = "sigmoid",
        resize: ResizeMode = "pil",
    ) -> None:
        if handover_memory not in ("sigmoid", "binary"):
            raise ValueError(f"handover_memory must be 'sigmoid' or 'binary', got {handover_memory!r}")
        if search_output not in SEARCH_OUTPUTS:
            raise ValueError(f"unknown search_output {search_output!r}; choose one of {', '.join(SEARCH_OUTPUTS)}")
        self.search_output = search_output
        if not isinstance(model, ReferringSAM2):
            raise TypeError(f"model must be a ReferringSAM2, got {type(model).__name__}")
        self.model = model.eval()
        self.text_encoder = _resolve_encoder(text_encoder, model)
        self.cifs_config = cifs if cifs is not None else CIFSConfig()
        if not isinstance(self.cifs_config, CIFSConfig):
            raise TypeError(f"cifs must be a CIFSConfig, got {type(cifs).__name__}")
        self.tracker = VideoSegmenter(
            model.sam,
            memory=memory,
            num_frames=num_frames,
            precision=precision,
            resize=resize,
            binarize_prompt_memory=handover_memory == "binary",
        )
        self.reset()

    # ------------------------------------------------------------------ public verbs
    def reset(self) -> None:
        """Forget all expressions, memories and frames; the next frame is frame 0."""
        self.tracker.reset()
        self._exprs: dict[int, _Expression] = {}
        # (frame index, 1 x C x h x w raw top-level features), newest first
        self._previous: deque[tuple[int, torch.Tensor]] = deque(maxlen=max(self.model.num_previous, 0))
        self._batch: tuple[tuple[int, ...], ReferringPrompt] | None = None

    @property
    def frame_idx(self) -> int:
        """Index of the current frame (-1 before the first)."""
        return self.tracker.frame_idx

    @property
    def obj_ids(self) -> list[int]:
        return list(self._exprs)

    @property
    def searching(self) -> list[int]:
        """Ids still in the detection stage."""
        return [k for k, e in self._exprs.items() if e.status.stage == SEARCHING]

    def status(self, obj_id: int) -> ReferringStatus:
        """A copy of one expression's :class:`ReferringStatus`."""
        return replace(self._expr(obj_id).status)

    def statuses(self) -> list[ReferringStatus]:
        """Copies of every expression's status, in ``obj_ids`` order."""
        return [replace(e.status) for e in self._exprs.values()]

    def add_text(self, obj_id: int, text: str) -> None:
        """Refer to object ``obj_id`` by ``text``; it is searched for from the next frame on.

        An id that already has an expression gets the new one and starts searching afresh.
        Raises the text encoder's errors (empty or over-long text) with nothing changed.
        """
        self.add_texts({obj_id: text})

    @torch.inference_mode()
    def add_texts(self, texts: Mapping[int, str]) -> None:
        """Several expressions at once ``{obj_id: text}``, encoded in one batch; all or none are added."""
        if not isinstance(texts, Mapping) or not texts:
            raise ValueError("add_texts needs a non-empty {obj_id: text} mapping")
        for oid in texts:
            check_obj_id(oid)  # an int in 1..255, before any text is encoded
        ids, strings = [int(k) for k in texts], list(texts.values())
        feats = self.text_encoder.encode(strings)  # raises on empty / over-long / non-str texts
        projected = self.model.project_text(feats)
        valid = ~feats.padding_mask.to(projected.tokens.device)
        new = {}
        for i, (oid, text) in enumerate(zip(ids, strings)):
            # each expression keeps only its own tokens: the result never depends on its batch mates
            tokens, pooled = projected.tokens[i : i + 1, valid[i]].clone(), projected.pooled[i : i + 1].clone()
            prompt = ReferringPrompt(tokens, None, pooled)
            status = ReferringStatus(oid, text, added_frame=self.frame_idx + 1)
            new[oid] = _Expression(prompt, self.model.tracking_prompt(prompt), CIFS(self.cifs_config), status)
        for oid, expr in new.items():
            if oid in self.tracker.objects:
                self.tracker.remove_object(oid)
            self._exprs[oid] = expr  # a replaced id keeps its place in the output order
        self._batch = None

    def remove_object(self, obj_id: int) -> None:
        """Forget object ``obj_id``: its expression, detection candidates and memory."""
        self._expr(obj_id)
        if obj_id in self.tracker.objects:
            self.tracker.remove_object(obj_id)
        del self._exprs[obj_id]
        self._batch = None

    @torch.inference_mode()
    def step(self, frame: np.ndarray | torch.Tensor) -> FrameResult:
        """Advance to the next frame (``H x W x 3`` uint8 RGB): track the found objects, detect
        the searching ones; returns every object's :class:`FrameResult` (see the module doc).
        A bad frame raises before anything changes."""
        t0 = time.perf_counter()
        tracked = self.tracker.step(frame)  # validates the frame; tracks the objects already found
        t = self.tracker.frame_idx
        shown: dict[int, _Detection] = {}
        feats = self.tracker.current_features() if self._exprs else None  # cached: one encoder pass
        searching = [k for k in self._exprs if self._exprs[k].status.stage == SEARCHING]
        if feats is not None and searching:
            shown = self._detect(searching, feats, t)
        if feats is not None:
            self._previous.appendleft((t, feats.features))
        return self._result(tracked, shown, t0)

    def memory_footprint(self) -> int:
        """Bytes of tensors the session holds: memory banks, the previous frames' features, the
        CIFS candidates and the expressions' prompts."""
        held: dict[int, torch.Tensor] = {}
        for _, x in self._previous:
            held[id(x)] = x
        for e in self._exprs.values():
            dets = [c.payload for c in e.cifs.candidates] + ([e.cifs.selected.payload] if e.cifs.selected else [])
            tensors = [e.prompt.tokens, e.prompt.pooled, e.sentence]
            for d in dets:
                if d is not None:
                    tensors += [d.features, d.low_res_logits, d.object_score_logit, d.obj_ptr]
            held.update((id(x), x) for x in tensors)
        return self.tracker.memory_footprint() + sum(x.numel() * x.element_size() for x in held.values())

    # ------------------------------------------------------------------ detection stage
    def _expr(self, obj_id: int) -> _Expression:
        e = self._exprs.get(obj_id)
        if e is None:
            raise KeyError(f"unknown object id {obj_id}; referred objects: {self.obj_ids}")
        return e

    def _previous_features(self, t: int) -> list[torch.Tensor]:
        """Raw top-level features of frames t-1, t-2, ... (newest first, consecutive only)."""
        out = []
        for k, (f, x) in enumerate(self._previous):
            if f != t - 1 - k:
                break
            out.append(x)
        return out

    def _batch_prompt(self, ids: list[int]) -> ReferringPrompt:
        """The searching objects' prompts as one batch (padded to the longest), cached."""
        key = tuple(ids)
        if self._batch is None or self._batch[0] != key:
            self._batch = (key, _stack_prompts([self._exprs[k].prompt for k in ids]))
        return self._batch[1]

    def _autocast(self) -> AbstractContextManager:
        return autocast(self.tracker.precision, self.model.device)

    def _detect(self, ids: list[int], feats: FrameFeatures, t: int) -> dict[int, _Detection]:
        """One batched detection for the searching objects ``ids`` on frame ``t``; feeds CIFS and
        hands chosen frames over to tracking. Returns the detections to emit on this frame: those
        of the objects found now, and those ``search_output`` shows while searching."""
        with self._autocast():
            det = self.model.detect(feats, self._previous_features(t), self._batch_prompt(ids))
        m = det.masks
        logits = m.object_score_logits[:, 0].float().cpu()
        ious = det.best_iou.float().cpu()
        cfg = self.cifs_config
        shown = {}
        for i, oid in enumerate(ids):
            e = self._exprs[oid]
            d = _Detection(
                feats.features,
                m.low_res_masks[i : i + 1].float().clone(),
                m.object_score_logits[i : i + 1].float().clone(),
                m.obj_ptr[i : i + 1].float().clone(),
                float(ious[i]),
            )
            s = e.status
            s.frames_searched += 1
            s.last_object_score, s.last_iou = _sigmoid(float(logits[i])), float(ious[i])
            present = float(logits[i]) > 0.0  # the decoder's own gate (absent: NO_OBJ_SCORE logits)
            credible = s.last_object_score > cfg.object_score_threshold and s.last_iou > cfg.iou_threshold
            if (self.search_output == "detection" and present) or (self.search_output == "credible" and credible):
                shown[oid] = d
                s.frames_shown += 1
            chosen = e.cifs.update(t, float(logits[i]), float(ious[i]), payload=d)
            if chosen is not None:
                p = chosen.payload
                assert p is not None  # every update above passes the frame's detection
                self.tracker.seed_object(
                    oid,
                    chosen.frame_idx,
                    p.features,
                    p.low_res_logits,
                    p.object_score_logit,
                    p.obj_ptr,
                    p.iou,
                    extra_prompt=e.sentence,
                )
                s.stage, s.credible_frame, s.found_frame = TRACKING, chosen.frame_idx, t
                s.frames_shown -= oid in shown  # the hand-over frame is a tracking result
                e.cifs.reset()  # frees the candidates' features
                shown[oid] = d
        return shown

    # ------------------------------------------------------------------ results
    def _result(self, tracked: FrameResult, shown: dict[int, _Detection], t0: float) -> FrameResult:
        h, w = tracked.frame_size
        side = self.model.sam.image_size // 4
        ids, masks, scores, ious, lows, searching = [], [], [], [], [], []
        for oid, e in self._exprs.items():
            ids.append(oid)
            if e.status.stage == SEARCHING:
                searching.append(oid)
            if oid in shown:  # the hand-over frame's own (credible) detection, or a shown search frame
                d = shown[oid]
                low = d.low_res_logits.cpu()
                masks.append((upsample_logits(low, (h, w))[0, 0] > 0).numpy())
                scores.append(_sigmoid(float(d.object_score_logit)))
                ious.append(d.iou)
            elif e.status.stage == TRACKING:
                i = tracked.obj_ids.index(oid)
                low = tracked.low_res_logits[i : i + 1]
                masks.append(tracked.masks[i])
                scores.append(float(tracked.object_scores[i]))
                ious.append(float(tracked.ious[i]))
            else:  # not found yet: no mask is invented
                low = torch.full((1, 1, side, side), NO_OBJ_SCORE)
                masks.append(np.zeros((h, w), bool))
                scores.append(0.0)
                ious.append(0.0)
            lows.append(low)
        return FrameResult(
            frame_idx=self.tracker.frame_idx,
            obj_ids=ids,
            masks=np.stack(masks) if masks else np.zeros((0, h, w), bool),
            object_scores=np.asarray(scores, np.float32),
            ious=np.asarray(ious, np.float32),
            low_res_logits=torch.cat(lows) if lows else torch.zeros(0, 1, 1, 1),
            latency_ms=(time.perf_counter() - t0) * 1000.0,
            searching=searching,
        )


def _resolve_encoder(spec: str | Path | TextEncoder | None, model: ReferringSAM2) -> TextEncoder:
    """The text encoder to use, checked against the model's token projection width."""
    if spec is None:
        spec = model.cfg.text_encoder
    enc: TextEncoder
    if isinstance(spec, (str, Path)):
        enc = build_text_encoder(spec, device=model.device)
    elif isinstance(spec, TextEncoder):
        enc = spec
    else:
        raise TypeError(f"text_encoder must be a name, a path or a TextEncoder, got {type(spec).__name__}")
    if enc.dim != model.cfg.text_dim:
        raise ValueError(
            f"the {enc.name!r} text encoder gives {enc.dim}-wide features but this model's token projection "
            f"expects {model.cfg.text_dim} (referring preset {model.cfg.name!r}, made for {model.cfg.text_encoder!r})"
        )
    return enc


def _stack_prompts(prompts: list[ReferringPrompt]) -> ReferringPrompt:
    """Batch single-object prompts, padding the tokens to the longest (padding masked)."""
    if len(prompts) == 1:
        return prompts[0]
    lengths = [p.tokens.shape[1] for p in prompts]
    n = max(lengths)
    tokens = torch.cat([F.pad(p.tokens, (0, 0, 0, n - k)) for p, k in zip(prompts, lengths)])
    mask = torch.arange(n, device=tokens.device)[None] >= torch.tensor(lengths, device=tokens.device)[:, None]
    return ReferringPrompt(tokens, mask if bool(mask.any()) else None, torch.cat([p.pooled for p in prompts]))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


__all__ = ["ReferringSegmenter", "ReferringStatus", "SEARCHING", "TRACKING"]
