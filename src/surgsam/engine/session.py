"""The streaming session: frames in one at a time, masks out, memory bounded by a policy."""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..memory import MemoryEntry, MemoryPolicy, Selection, make_policy
from ..modeling.common import inference_fast_ops
from ..modeling.sam2 import FrameFeatures, MaskOutput, ResizeMode, SAM2Model, SpatialMemory
from .cpufast import ProjectedMemory, fast_model
from .fastpath import CompiledOps, FastMode, resolve_fast_path, tf32_matmuls
from .precision import Precision, autocast
from .prompts import check_frame, check_obj_id, check_prompt, prepare_box, prepare_mask, prepare_points
from .state import Clicks, FrameOutput, FrameResult, ObjectState, upsample_logits

#: What a new click set does to the clicks already given to an object on the same frame:
#: ``"accumulate"`` adds to them; ``"replace"`` drops them (SAM 2's ``clear_old_points=True``).
ClickMode = Literal["accumulate", "replace"]
CLICK_MODES: tuple[str, ...] = ("accumulate", "replace")


class VideoSegmenter:
    """Streaming video object segmentation with SAM 2 and a bounded memory policy.

    Frames are ``H x W x 3`` uint8 RGB arrays (numpy or torch); all frames of a stream must
    have the size of the first. Typical use::

        seg = VideoSegmenter(model, memory="efp")
        res = seg.add_prompt(frame0, obj_id=1, mask=m)   # frame 0, object 1 from a mask
        for frame in frames[1:]:
            res = seg.step(frame)                        # FrameResult for every object

    ``add_prompt`` with a new frame advances the stream to it (other objects are tracked on
    it); with ``frame=None`` (or the current frame again) it prompts on the current frame:
    a new object starts there, an object already tracked there is corrected. Memory stays
    bounded by the policy whatever the stream's length; the session keeps no frames.

    Args:
        model: a :class:`SAM2Model` (eval mode).
        memory: ``"fifo"`` (SAM 2), ``"efp"`` (SurgSAM2 pruning), ``"dlm"`` (long-term memory)
            or a :class:`MemoryPolicy`.
        num_frames: the video's length when known (offline use); only the scale of the object
            pointers' temporal encoding depends on it for clips shorter than 16 frames,
            exactly as in Meta's predictor. None for live streams.
        precision: ``"fp32"``, ``"bf16"`` / ``"fp16"`` (autocast) or ``"auto"`` (bf16 where it
            is fast: CUDA sm80+ and CPUs with AMX; fp16 on older GPUs; fp32 elsewhere).
        memory_dtype: dtype of stored memory features (bf16 like Meta's predictor).
        fast: the fast path (:mod:`surgsam.engine.fastpath`): False, ``"auto"`` (CUDA sm80+:
            TF32, eager; CPUs with fast bf16 matmuls, when ``precision`` is
            ``"auto"`` or ``"bf16"``: a bf16 image-encoder trunk, memory attention and mask
            convolutions, float32 heads; see :mod:`surgsam.engine.cpufast`)
            or True (forced, any device: compile and the static memory).
            :attr:`fast_path` ``.notice`` says what was chosen.
        static_memory: pad every frame's memory to the policy's capacity (and batch all
            objects together); None follows ``fast``. Same masks as the dynamic layout.
        cuda_graphs: compile the step and replay it with CUDA graphs (CUDA sm80+, ``fast`` not False).
        cached_memory: keep every stored memory's key and value projections in the memory
            attention instead of recomputing them each frame (exact; more session memory;
            dynamic layout only). None follows the fast path (off: it did not pay on the CPU
            measured, see docs/fast_path_and_export.md).
        trace: replay the four per-frame calls from ``torch.jit.trace`` recordings, one per
            input signature (:class:`~.fastpath.TracedCall`: the same operations without the
            Python between them, bit-identical values, checked on each trace's first replays).
            A trace costs as much as tens of frames (one per frame at most, from a signature's
            third call): for long streams of a narrow model such as the nano on the CPU, where
            Python is a large part of a frame. None follows the fast path (off).
        resize: how a frame becomes the square model input: ``"pil"`` (default) exactly as
            Meta's ``SAM2VideoPredictor`` reads a JPEG folder (PIL bicubic on the uint8
            frame, as do the SurgSAM2 and ReSurgSAM2 releases); ``"antialias"`` a bilinear
            antialiased resize of the float frame on the model's device (the image
            predictor's transform; no CPU resize, so faster on a GPU, but its network input differs
            from Meta's video path by more than 1e-2).
        binarize_prompt_memory: memory-encode prompted frames (and a conditioning frame
            handed over by :meth:`seed_object`) from the binarised mask, as Meta's predictor
            built with its default post-processing does; False encodes ``sigmoid(logits)``,
            as the released evaluation scripts (``vos_inference.py``, ``rvos_inference.py``
            without ``--apply_postprocessing``) do.
        clicks: what :meth:`add_prompt` does with clicks for an object that already has clicks
            on the current frame, unless its ``clear`` says otherwise: ``"accumulate"``
            (default) adds the new ones; ``"replace"`` drops the old ones, as Meta's
            ``add_new_points_or_box`` (``clear_old_points=True``, its default). Either way the
            previous mask of that frame guides the new prediction, as in SAM 2.
    """

    def __init__(
        self,
        model: SAM2Model,
        *,
        memory: str | MemoryPolicy = "fifo",
        num_frames: int | None = None,
        precision: Precision = "fp32",
        memory_dtype: torch.dtype = torch.bfloat16,
        fast: FastMode = False,
        static_memory: bool | None = None,
        cuda_graphs: bool = False,
        cached_memory: bool | None = None,
        trace: bool | None = None,
        resize: ResizeMode = "pil",
        binarize_prompt_memory: bool = True,
        clicks: ClickMode = "accumulate",
    ) -> None:
        if resize not in ("pil", "antialias"):
            raise ValueError(f"resize must be 'pil' or 'antialias', got {resize!r}")
        if clicks not in CLICK_MODES:
            raise ValueError(f"clicks must be 'accumulate' or 'replace', got {clicks!r}")
        self.clicks: ClickMode = clicks
        self.model = model.eval()
        self.resize: ResizeMode = resize
        self.binarize_prompt_memory = bool(binarize_prompt_memory)
        self.policy = make_policy(memory, model.num_maskmem, model.cfg.max_obj_ptrs_in_encoder)
        self.num_frames = num_frames
        self.fast_path = resolve_fast_path(fast, precision, model.device, cuda_graphs, width=model.hidden_dim)
        if trace is not None:
            if trace and self.fast_path.compile:
                raise ValueError("trace=True replays eager calls; it does not combine with a compiled fast path")
            self.fast_path = dataclasses.replace(self.fast_path, trace=bool(trace))
        self.precision = self.fast_path.precision
        self.static_memory = self.fast_path.static_memory if static_memory is None else bool(static_memory)
        self.memory_dtype = memory_dtype
        # the networks the per-frame calls run: the model itself, or its CPU fast-path copy
        self.net = fast_model(model, self.fast_path.matmul)
        self._ops = CompiledOps.build(self.net, self.fast_path)
        cached = self.fast_path.cached_memory if cached_memory is None else bool(cached_memory)
        self._projected = ProjectedMemory(self.net) if cached and not self.static_memory else None
        self.reset()

    # ------------------------------------------------------------------ public verbs
    def reset(self) -> None:
        """Forget all objects, memories and frames; the next frame is frame 0."""
        self.objects: dict[int, ObjectState] = {}
        self.frame_idx = -1
        self.frame_size: tuple[int, int] | None = None
        self._frame: torch.Tensor | None = None  # current frame, H x W x 3 uint8
        self._feats: FrameFeatures | None = None  # its features, computed on demand
        self._mem_pos: torch.Tensor | None = None  # memory position encoding (same for all)
        if self._projected is not None:
            self._projected.reset()

    @property
    def obj_ids(self) -> list[int]:
        return list(self.objects)

    @torch.inference_mode()
    def step(self, frame: np.ndarray | torch.Tensor) -> FrameResult:
        """Advance to the next frame and track every object on it."""
        t0 = time.perf_counter()
        image = self._check_frame(frame)
        self._advance(image)
        self._track(list(self.objects.values()))
        return self._result(t0)

    @torch.inference_mode()
    def add_prompt(
        self,
        frame: np.ndarray | torch.Tensor | None,
        obj_id: int,
        points: Sequence[Sequence[float]] | np.ndarray | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        box: Sequence[float] | np.ndarray | None = None,
        mask: np.ndarray | torch.Tensor | None = None,
        clear: bool | None = None,
    ) -> FrameResult:
        """Prompt object ``obj_id`` with clicks, a box (+ clicks) or a mask.

        Args:
            frame: a new frame (the stream advances to it), the current frame, or None.
            points: ``P x 2`` (x, y) in frame pixels; labels: ``P`` (1 positive, 0 negative).
            box: (x0, y0, x1, y1) in frame pixels; replaces earlier clicks on this frame.
            mask: ``H x W`` bool/0-1 mask at the frame's size.
            clear: drop earlier clicks of this object on this frame (True) or add to them
                (False); None (default) follows the session's ``clicks`` mode.
        Returns the :class:`FrameResult` of the (current) frame for every object.
        """
        t0 = time.perf_counter()
        obj_id = check_prompt(obj_id, points, labels, box)  # id 1..255, click form and count, before any work
        image = self._check_frame(frame) if frame is not None and not self._is_current(frame) else None
        if image is None and self._frame is None:
            raise ValueError("add_prompt(frame=None) needs a current frame: pass the frame")
        size = image.shape[:2] if image is not None else self.frame_size
        clicks = self._parse_prompt(size, points, labels, box, mask)
        if image is not None:
            self._advance(image)
            # the prompted object starts afresh here; the others are tracked as usual
            self._track([o for oid, o in self.objects.items() if oid != obj_id])
        obj = self.objects.get(obj_id)
        if obj is None:
            obj = self.objects[obj_id] = ObjectState(obj_id, first_frame=self.frame_idx)
        if isinstance(clicks, torch.Tensor):
            self._apply_mask(obj, clicks)
        else:
            if clear is None:
                clear = self.clicks == "replace"
            self._apply_clicks(obj, clicks, replace=bool(clear) or box is not None)
        return self._result(t0)

    @torch.inference_mode()
    def current_features(self) -> FrameFeatures:
        """The current frame's backbone features, computed at most once per frame and shared by
        everything that needs them (tracking here, a referring detection stage outside)."""
        if self._frame is None:
            raise ValueError("no current frame yet: call step() or add_prompt() first")
        return self._features()

    @torch.inference_mode()
    def seed_object(
        self,
        obj_id: int,
        frame_idx: int,
        features: torch.Tensor,
        mask_logits: torch.Tensor,
        object_score_logit: torch.Tensor,
        obj_ptr: torch.Tensor,
        iou: float,
        extra_prompt: torch.Tensor | None = None,
    ) -> None:
        """Start tracking a new object from a conditioning frame segmented elsewhere (e.g. the
        credible frame of ReSurgSAM2's detection stage), which may lie a few frames back.

        The mask is memory-encoded (as for a prompted frame: binarised, or ``sigmoid(logits)``
        with ``binarize_prompt_memory=False`` as ReSurgSAM2's released evaluation does) on that frame's raw
        ``features`` and stored with ``obj_ptr`` as the object's conditioning memory. The
        object has no output on the current frame; :meth:`step` tracks it from the next one.

        Args:
            frame_idx: the conditioning frame, ``<=`` the current frame.
            features: ``1 x C x h x w`` top-level features of that frame (before memory).
            mask_logits: ``1 x 1 x 4h x 4w`` its low-res mask logits.
            object_score_logit: ``1 x 1``; obj_ptr: ``1 x C``; iou: its predicted IoU.
            extra_prompt: ``1 x K x C`` extra sparse decoder tokens for each tracked frame.
        """
        obj_id, frame_idx = check_obj_id(obj_id), int(frame_idx)  # id 1..255
        if obj_id in self.objects:
            raise ValueError(f"object {obj_id} already exists; remove_object() it first")
        if self._frame is None or not 0 <= frame_idx <= self.frame_idx:
            raise ValueError(f"conditioning frame {frame_idx} is not a frame seen so far (current: {self.frame_idx})")
        c, side = self.model.hidden_dim, self.model.cfg.feat_size
        shapes = {
            "features": (features, (1, c, side, side)),
            "mask_logits": (mask_logits, (1, 1, 4 * side, 4 * side)),
            "obj_ptr": (obj_ptr, (1, c)),
            "object_score_logit": (object_score_logit, (1, 1)),
        }
        for name, (t, shape) in shapes.items():
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
        if extra_prompt is not None and (extra_prompt.ndim != 3 or extra_prompt.shape[::2] != (1, c)):
            raise ValueError(f"extra_prompt must be 1 x K x {c}, got {tuple(extra_prompt.shape)}")
        mem = self._encode_prompted(features, mask_logits, object_score_logit)
        obj = ObjectState(obj_id, first_frame=frame_idx, extra_prompt=extra_prompt)
        out = FrameOutput(
            mask_logits.float(),
            float(iou),
            obj_ptr.float(),
            object_score_logit.float(),
            from_prompt=False,
            is_cond=True,
        )
        self._commit(obj, mem.features, out, frame_idx)
        self.objects[obj_id] = obj

    def seed_memory(self, obj_id: int, entries: Sequence[MemoryEntry], memory_pos: torch.Tensor) -> None:
        """Give a new object memories made by another session over the same video, e.g. a pass in
        the other direction from the same prompts (:func:`surgsam.engine.segment_video` with
        ``direction="both"``). ``entries`` carry frame indices in this session's time, before
        its next frame (negative before its first); they are copied and committed through the
        policy in frame order, so the bank stays bounded. At least one must be a conditioning
        (prompted) entry. ``memory_pos`` is the other session's ``1 x Cm x h x w`` memory
        position encoding. :meth:`step` tracks the object from the next frame on.
        """
        obj_id = check_obj_id(obj_id)
        if obj_id in self.objects:
            raise ValueError(f"object {obj_id} already exists; remove_object() it first")
        entries = sorted(entries, key=lambda e: e.frame_idx)
        if not any(e.is_cond for e in entries):
            raise ValueError(f"object {obj_id}: seed_memory needs a conditioning (prompted) entry")
        late = [e.frame_idx for e in entries if e.frame_idx > self.frame_idx]
        if late:
            raise ValueError(f"object {obj_id}: entries on frames {late} lie after the current frame {self.frame_idx}")
        obj = ObjectState(obj_id, first_frame=min(e.frame_idx for e in entries if e.is_cond))
        for e in entries:
            self.policy.commit(obj.bank, dataclasses.replace(e))
        self._remember_pos(memory_pos)
        self.objects[obj_id] = obj

    @property
    def memory_pos(self) -> torch.Tensor | None:
        """``1 x Cm x h x w`` position encoding of every memory (None before the first memory)."""
        return self._mem_pos

    def remove_object(self, obj_id: int) -> None:
        """Stop tracking ``obj_id`` and free its memory."""
        if obj_id not in self.objects:
            raise KeyError(f"unknown object id {obj_id}; tracked objects: {self.obj_ids}")
        del self.objects[obj_id]

    def memory_footprint(self) -> int:
        """Bytes of tensors held by all banks (features and pointers) and by the cached
        memory projections."""
        seen: dict[int, torch.Tensor] = {}
        for o in self.objects.values():
            for e in o.bank.entries():
                for t in (e.features, e.obj_ptr):
                    if t is not None:
                        seen[id(t)] = t
        cache = self._projected.nbytes() if self._projected is not None else 0
        return cache + sum(t.numel() * t.element_size() for t in seen.values())

    # ------------------------------------------------------------------ frames
    def _check_frame(self, frame: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Validate one input frame (:func:`~.prompts.check_frame`, and the stream's size); returns
        it as an ``H x W x 3`` uint8 tensor."""
        t = check_frame(frame)
        if self.frame_size is not None and tuple(t.shape[:2]) != self.frame_size:
            raise ValueError(
                f"frame of size {tuple(t.shape[:2])} in a stream of {self.frame_size} frames; "
                f"call reset() to start a new stream"
            )
        return t

    def _is_current(self, frame: np.ndarray | torch.Tensor) -> bool:
        if self._frame is None or not isinstance(frame, (np.ndarray, torch.Tensor)):
            return False
        t = torch.as_tensor(frame) if isinstance(frame, np.ndarray) else frame
        return (
            tuple(t.shape) == tuple(self._frame.shape)
            and t.dtype == torch.uint8
            and bool(torch.equal(t.cpu(), self._frame))
        )

    def _advance(self, image: torch.Tensor) -> None:
        """Finalise the current frame (encode pending prompt memories) and move to ``image``."""
        self._finalize()
        self._ops.next_frame()
        self.frame_idx += 1
        self.frame_size = (int(image.shape[0]), int(image.shape[1]))
        self._frame = image.clone()
        self._feats = None
        for o in self.objects.values():
            o.output = None
        if self._projected is not None:
            self._projected.advance(self.frame_idx)

    def _features(self) -> FrameFeatures:
        if self._feats is None:
            assert self._frame is not None  # callers have advanced to a frame
            with self._autocast():
                x = self.model.preprocess(self._frame.permute(2, 0, 1).unsqueeze(0), resize=self.resize)
                self._feats = self._ops.encode_image(x)
        return self._feats

    @contextmanager
    def _autocast(self) -> Iterator[None]:
        with autocast(self.precision, self.model.device), tf32_matmuls(self.fast_path.tf32):
            yield

    # ------------------------------------------------------------------ prompts
    def _parse_prompt(self, size, points, labels, box, mask) -> Clicks | torch.Tensor:
        if mask is not None:
            if points is not None or box is not None:
                raise ValueError("give either a mask or clicks/box for an object, not both")
            return prepare_mask(mask, size, self.model.image_size, self.model.device)
        if points is None and box is None:
            raise ValueError("add_prompt needs points (+labels), a box, or a mask")
        clicks = prepare_points(points, labels, size, self.model.image_size, self.model.device)
        if box is not None:
            b = prepare_box(box, size, self.model.image_size, self.model.device)
            clicks = b if clicks is None else b.extend(clicks)
        assert clicks is not None  # points or a box was given
        return clicks

    @staticmethod
    def _starts_here(obj: ObjectState) -> bool:
        """True when a prompt on the current frame (re)starts the object without memory: it
        has no output here yet, or its output here came from such a starting prompt. A
        prompt on a frame the object was tracked on is a correction that uses its memory."""
        return obj.output is None or obj.output.is_cond

    def _apply_mask(self, obj: ObjectState, mask: torch.Tensor) -> None:
        feats = self._features()
        with self._autocast():
            out = self.model.mask_as_output(feats.features, feats.high_res, mask)
        obj.output = self._frame_output(out, from_prompt=True, is_cond=self._starts_here(obj), clicks=None)

    def _apply_clicks(self, obj: ObjectState, clicks: Clicks, replace: bool) -> None:
        feats = self._features()
        prev = obj.output
        init = self._starts_here(obj)
        if prev is not None and prev.clicks is not None and not replace:
            clicks = prev.clicks.extend(clicks)
        with self._autocast():
            pix = self.model.condition_on_memory(feats, [], []) if init else self._conditioned([obj], feats)
            # the previous prediction on this frame guides the refinement (as in SAM 2)
            prev_logits = None if prev is None else prev.low_res_logits.clamp(-32.0, 32.0)
            multimask = clicks.points.shape[1] <= 1  # ambiguous single click: best of 3
            out = self.model.predict_masks(pix, feats.high_res, clicks.points, clicks.labels, prev_logits, multimask)
        obj.output = self._frame_output(out, from_prompt=True, is_cond=init, clicks=clicks)

    # ------------------------------------------------------------------ tracking
    def _conditioned(
        self, objs: list[ObjectState], feats: FrameFeatures, sels: list[Selection] | None = None
    ) -> torch.Tensor:
        """Memory-conditioned features ``len(objs) x C x h x w``; the objects' selections must
        have equal signatures (same token counts) so they batch through memory attention."""
        if sels is None:
            sels = [self.policy.select(o.bank, self.frame_idx) for o in objs]
        tmax = max(1, min(self.num_frames or 10**9, self.model.cfg.max_obj_ptrs_in_encoder) - 1)
        entries = [
            ([(slot, self._spatial(e)) for slot, e in sel.spatial], [(d, e.obj_ptr) for d, e in sel.pointers])
            for sel in sels
        ]
        frame = feats.expand(len(objs))
        if self.static_memory:
            cap_sp, cap_ptr = self.policy.capacity()
            # more conditioning frames than usual widen the slots (a new shape, rarely)
            slots = (max(cap_sp, *(len(sp) for sp, _ in entries)), max(cap_ptr, *(len(pt) for _, pt in entries)))
            padded = [self.model.padded_memory_tokens(sp, pt, tmax, 1, slots) for sp, pt in entries]
            mem, pos, mask = (torch.cat(x) for x in zip(*padded))
            return self._ops.attend_memory(frame, mem, pos, slots[1], mask)
        if self._projected is not None and self._mem_pos is not None and sels[0].spatial:
            ptr = [self.model.memory_tokens([], pt, tmax, 1) for _, pt in entries] if sels[0].pointers else None
            return self._projected.attend(
                frame,
                [[(slot, e.features) for slot, e in sel.spatial if e.features is not None] for sel in sels],
                None if ptr is None else torch.cat([t for t, _ in ptr]),
                None if ptr is None else torch.cat([p for _, p in ptr]),
                self._mem_pos,
                self.frame_idx,
            )
        mem, pos = self._memory_tokens(sels, tmax)
        return self._ops.attend_memory(frame, mem, pos, len(sels[0].pointers))

    def _memory_tokens(self, sels: list[Selection], tmax: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory tokens and their position encodings, ``B x M x Cm`` each, of selections with
        equal signatures: the values :meth:`SAM2Model.memory_tokens` gives object by object,
        assembled in one copy per kind; the position encodings of a layout (slots, pointer
        distances) are computed once (:meth:`SAM2Model.memory_positions`)."""
        assert self._mem_pos is not None  # set by the first memory encoded, before any is selected
        m, b = self.model, len(sels)
        n_sp, n_ptr = sels[0].signature()
        cm, split = m.mem_dim, m.hidden_dim // m.mem_dim
        hw = self._mem_pos.shape[-2] * self._mem_pos.shape[-1]
        tokens = torch.empty(b, n_sp * hw + n_ptr * split, cm, device=self._mem_pos.device, dtype=torch.float32)
        if n_sp:
            feats = torch.cat([e.spatial_features for sel in sels for _, e in sel.spatial])  # (B * S) x Cm x h x w
            tokens[:, : n_sp * hw].view(b, n_sp, hw, cm).copy_(feats.view(b, n_sp, cm, hw).transpose(2, 3))
        if n_ptr:
            ptrs = torch.cat([e.obj_ptr for sel in sels for _, e in sel.pointers])  # (B * P) x C
            tokens[:, n_sp * hw :].copy_(ptrs.view(b, n_ptr * split, cm))
        layouts = [(tuple(slot for slot, _ in sel.spatial), tuple(d for d, _ in sel.pointers)) for sel in sels]
        pos = [m.memory_positions(slots, self._mem_pos, dists, tmax) for slots, dists in dict.fromkeys(layouts)]
        if len(pos) == 1:
            return tokens, pos[0].expand(b, -1, -1)
        index = {layout: i for i, layout in enumerate(dict.fromkeys(layouts))}
        return tokens, torch.cat([pos[index[layout]] for layout in layouts])

    def _spatial(self, e: MemoryEntry) -> SpatialMemory:
        assert self._mem_pos is not None  # set by the first memory encoded, before any is selected
        return SpatialMemory(e.spatial_features, self._mem_pos)

    def _track(self, objs: list[ObjectState]) -> None:
        """Track objects on the current frame, batching those with equal memory layouts."""
        objs = [o for o in objs if o.is_tracking]
        if not objs:
            return
        feats = self._features()
        # key: (memory signature, number of extra prompt tokens)
        groups: dict[tuple, list[tuple[ObjectState, Selection]]] = defaultdict(list)
        for o in objs:
            sel = self.policy.select(o.bank, self.frame_idx)
            # a static-shape memory batches every object together (with equal extra prompts)
            n_extra = 0 if o.extra_prompt is None else int(o.extra_prompt.shape[1])
            groups[((0, 0) if self.static_memory else sel.signature(), n_extra)].append((o, sel))
        for (_, n_extra), members in groups.items():
            group = [o for o, _ in members]
            n = len(group)
            # a group with extra tokens is made of objects that all have them
            extra = torch.cat([o.extra_prompt for o in group if o.extra_prompt is not None]) if n_extra else None
            with self._autocast():
                pix = self._conditioned(group, feats, [sel for _, sel in members])
                hr = (feats.high_res[0].expand(n, -1, -1, -1), feats.high_res[1].expand(n, -1, -1, -1))
                out = self._ops.predict_masks(pix, hr, multimask_output=True, extra_sparse=extra)
                mem = self._ops.encode_memory(
                    feats.features.expand(n, -1, -1, -1), out.high_res_masks, out.object_score_logits
                )
            self._remember_pos(mem.pos)
            self._commit_tracked(group, out, mem.features)

    def _commit_tracked(self, group: list[ObjectState], out: MaskOutput, features: torch.Tensor) -> None:
        """Outputs and memories of a batch of tracked objects (row ``i`` of ``out`` and of the
        memory ``features`` is ``group[i]``'s), with :meth:`_frame_output`'s and
        :meth:`_commit`'s values, read from the batch once."""
        low, ptr, score = out.low_res_masks.float(), out.obj_ptr.float(), out.object_score_logits.float()
        ious = out.ious.amax(dim=1).tolist()  # each row's best candidate, as float(row.max())
        scores = score[:, 0].tolist()
        s = self.model.image_size
        # frames at the model's size: the decoder's upsampled logits are the frame's logits
        at_frame = self.precision == "fp32" and self.frame_size == (s, s) and inference_fast_ops()
        for i, o in enumerate(group):
            row = slice(i, i + 1)
            o.output = FrameOutput(
                low[row],
                ious[i],
                ptr[row],
                score[row],
                from_prompt=False,
                is_cond=False,
                frame_logits=out.high_res_masks[row] if at_frame else None,
            )
            entry = MemoryEntry(
                frame_idx=self.frame_idx,
                features=features[row].to(self.memory_dtype),
                obj_ptr=o.output.obj_ptr,
                is_cond=False,
                object_score=scores[i],
                iou=ious[i],
            )
            self.policy.commit(o.bank, entry)

    def _finalize(self) -> None:
        """Encode the memories of objects prompted on the current frame (Meta does this when
        propagation resumes: binarised masks, upsampled from the low-res prediction)."""
        pending = [(o, o.output) for o in self.objects.values() if o.output is not None and o.output.from_prompt]
        if not pending:
            return
        feats = self._features()
        low = torch.cat([out.low_res_logits for _, out in pending])
        scores = torch.cat([out.object_score_logit for _, out in pending])
        mem = self._encode_prompted(feats.features.expand(len(pending), -1, -1, -1), low, scores)
        for i, (o, out) in enumerate(pending):
            self._commit(o, mem.features[i : i + 1], out)
            out.from_prompt = False

    def _encode_prompted(self, features: torch.Tensor, low_res: torch.Tensor, scores: torch.Tensor) -> SpatialMemory:
        """Memories of prompted masks: ``B x C x h x w`` raw features, ``B x 1 x 4h x 4w`` logits
        (upsampled, then binarised or passed through a sigmoid, see ``binarize_prompt_memory``)
        and ``B x 1`` object-score logits."""
        s = self.model.image_size
        with self._autocast():
            high = F.interpolate(low_res.float(), (s, s), mode="bilinear", align_corners=False)
            mem = self.model.encode_memory(features, high, scores, binarize=self.binarize_prompt_memory)
        self._remember_pos(mem.pos)
        return mem

    def _commit(self, obj: ObjectState, features: torch.Tensor, out: FrameOutput, frame_idx: int | None = None) -> None:
        entry = MemoryEntry(
            frame_idx=self.frame_idx if frame_idx is None else frame_idx,
            features=features.to(self.memory_dtype),
            obj_ptr=out.obj_ptr.float(),
            is_cond=out.is_cond,
            object_score=float(out.object_score_logit),
            iou=out.iou,
        )
        self.policy.commit(obj.bank, entry)

    def _remember_pos(self, pos: torch.Tensor) -> None:
        if self._mem_pos is None:
            self._mem_pos = pos[:1].float().clone()

    @staticmethod
    def _frame_output(out: MaskOutput, from_prompt: bool, is_cond: bool, clicks: Clicks | None) -> FrameOutput:
        return FrameOutput(
            low_res_logits=out.low_res_masks.float(),
            iou=float(out.ious.max()),
            obj_ptr=out.obj_ptr.float(),
            object_score_logit=out.object_score_logits.float(),
            from_prompt=from_prompt,
            is_cond=is_cond,
            clicks=clicks,
        )

    # ------------------------------------------------------------------ results
    def _result(self, t0: float) -> FrameResult:
        have = [(o.obj_id, o.output) for o in self.objects.values() if o.output is not None]
        assert self.frame_size is not None  # results exist only once a frame was seen
        h, w = self.frame_size
        if have:
            low = torch.cat([out.low_res_logits for _, out in have])
            if all(out.frame_logits is not None for _, out in have):
                logits = torch.cat([out.frame_logits for _, out in have if out.frame_logits is not None])
            else:
                logits = upsample_logits(low, (h, w))
            masks = (logits[:, 0] > 0).cpu().numpy()
            scores = torch.sigmoid(torch.cat([out.object_score_logit for _, out in have])[:, 0]).cpu().numpy()
            ious = np.array([out.iou for _, out in have], dtype=np.float32)
        else:
            low = torch.zeros(0, 1, 1, 1)
            masks = np.zeros((0, h, w), bool)
            scores = ious = np.zeros(0, np.float32)
        return FrameResult(
            frame_idx=self.frame_idx,
            obj_ids=[oid for oid, _ in have],
            masks=masks,
            object_scores=scores,
            ious=ious,
            low_res_logits=low.cpu(),
            latency_ms=(time.perf_counter() - t0) * 1000.0,
        )
