"""Segment a video with the exported graphs alone: numpy, Pillow and onnxruntime, no PyTorch.

:class:`OnnxVideoSegmenter` is the host side of an ONNX deployment, a small counterpart of
:class:`surgsam.engine.VideoSegmenter`: it resizes frames (PIL bicubic, like the engine's
default ``resize="pil"``), starts objects from a mask, clicks or a box with the prompted-frame
graph, keeps each object's memory bank, selects what a frame attends to (``fifo``: SAM 2;
``efp``: SurgSAM2 pruning, the released rule), lays the selection out in the tracking step's
fixed memory (``[spatial slots x hw | pointer slots x C/Cm]`` tokens and a mask), and
upsamples the masks to the frame's size. Memories are stored rounded to bfloat16 like the
engine's (``memory_dtype="float32"`` keeps them exact).

What it does, what it does not (use :class:`surgsam.engine.VideoSegmenter` for these):

- new objects on any frame: :meth:`OnnxVideoSegmenter.add_prompt` with a new frame advances the
  stream to it (the tracked objects are tracked there) and starts the object there, as the
  engine does; with None, or the current frame again, on the current frame;
- no corrections: a second prompt for an object already started (on its first frame or a
  later one, clicks added to clicks included) raises ``ValueError``;
- memory ``fifo`` or ``efp`` only: ``dlm`` raises ``ValueError``;
- no text-referred objects (the referring network is not exported), no reverse or two-way
  passes (a stream goes forward), no ``remove_object``/``seed_object``;
- what the engine makes options is fixed: float32 graphs on onnxruntime, the engine's
  ``resize="pil"`` and ``binarize_prompt_memory=True``; at most :data:`MAX_CLICKS` clicks per
  prompt, as in the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from .runtime import HostConstants, OnnxManifestError, OnnxModel

FRAME_NOTE = "frames are H x W x 3 uint8 RGB"
#: The most clicks one prompt may give (the engine's limit, ``surgsam.engine.prompts.MAX_CLICKS``).
MAX_CLICKS = 64
#: What the runner says when asked for a correction.
NO_CORRECTIONS = (
    "the ONNX runner starts objects but does not take corrections (a second prompt for a tracked object); "
    "use surgsam.engine.VideoSegmenter for those"
)
MemoryDType = Literal["bfloat16", "float32"]
POLICIES = ("fifo", "efp")


# ---------------------------------------------------------------------------- numerics
def round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), kept as float32: what
    ``tensor.to(torch.bfloat16).float()`` gives for finite values."""
    u = np.array(x, dtype=np.float32).view(np.uint32)  # a copy of any shape, 0-d included
    u = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return u.view(np.float32)


def sine_encoding(pos: np.ndarray, dim: int, temperature: float = 10000.0) -> np.ndarray:
    """``P`` positions -> ``P x dim`` sine/cosine encoding (``modeling.common.get_1d_sine_pe``)."""
    half = dim // 2
    idx = np.arange(half, dtype=np.float32)
    freqs = np.float32(temperature) ** (2 * (idx // 2) / np.float32(half))
    angles = pos.astype(np.float32)[:, None] / freqs.astype(np.float32)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1).astype(np.float32)


def _linear_weights(in_size: int, out_size: int) -> np.ndarray:
    """``out x in`` matrix of PyTorch's bilinear interpolation (``align_corners=False``)."""
    scale = in_size / out_size
    w = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        src = max(scale * (i + 0.5) - 0.5, 0.0)
        i0 = min(int(src), in_size - 1)
        i1 = i0 + 1 if i0 < in_size - 1 else i0
        lam = src - i0
        w[i, i0] += 1.0 - lam
        w[i, i1] += lam
    return w


def _antialias_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's antialiased bilinear filter along one axis, computed as it does in float32:
    source indices and weights, both ``out x T`` (unused taps have weight 0)."""
    f = np.float32
    scale = f(in_size) / f(out_size)
    support, inv = (scale, f(1.0) / scale) if scale >= 1.0 else (f(1.0), f(1.0))
    rows = []
    for i in range(out_size):
        center = scale * (f(i) + f(0.5))
        lo = max(int(center - support + f(0.5)), 0)
        hi = min(int(center + support + f(0.5)), in_size)
        w = [max(f(1.0) - abs((f(j) + f(lo) - center + f(0.5)) * inv), f(0.0)) for j in range(hi - lo)]
        total = f(0.0)
        for v in w:
            total = f(total + v)
        rows.append((lo, [f(v / total) if total != 0 else f(0.0) for v in w]))
    taps = max(len(w) for _, w in rows)
    idx = np.zeros((out_size, taps), np.int64)
    wts = np.zeros((out_size, taps), np.float32)
    for i, (lo, w) in enumerate(rows):
        idx[i, : len(w)] = np.arange(lo, lo + len(w))
        idx[i, len(w) :] = lo
        wts[i, : len(w)] = w
    return idx, wts


def _antialias_axis(x: np.ndarray, size: int) -> np.ndarray:
    """Resize the last axis of float32 ``x``, summing the taps in order in float32."""
    idx, wts = _antialias_taps(x.shape[-1], size)
    acc = x[..., idx[:, 0]] * wts[:, 0]
    for t in range(1, idx.shape[1]):
        acc = acc + x[..., idx[:, t]] * wts[:, t]
    return acc.astype(np.float32)


def resize_bilinear(x: np.ndarray, size: tuple[int, int], antialias: bool = False) -> np.ndarray:
    """``... x H x W`` float -> ``... x h x w`` float32, as ``F.interpolate(mode="bilinear",
    align_corners=False, antialias=...)`` (antialiased: along the width, then the height, in
    float32 like PyTorch, so that thresholding a resized binary mask agrees with it)."""
    h, w = size
    if antialias:
        x = _antialias_axis(np.asarray(x, np.float32), w)
        return np.swapaxes(_antialias_axis(np.swapaxes(x, -1, -2), h), -1, -2)
    wy, wx = _linear_weights(x.shape[-2], h), _linear_weights(x.shape[-1], w)
    return (wy @ x.astype(np.float64) @ wx.T).astype(np.float32)


def preprocess_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """``H x W x 3`` uint8 RGB -> ``1 x 3 x S x S`` float32 0..255, resized with PIL's bicubic
    filter (the engine's ``resize="pil"``; the image-encoder graph normalises)."""
    img = Image.fromarray(np.ascontiguousarray(frame)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1)[None].copy()


# ---------------------------------------------------------------------------- memory
@dataclass
class Memory:
    """One frame's memory of one object: ``Cm x h x w`` features (None once only its pointer
    can still be selected) and its ``C`` object pointer."""

    frame_idx: int
    features: np.ndarray | None
    obj_ptr: np.ndarray
    is_cond: bool


@dataclass
class Bank:
    """An object's memories: prompted (conditioning) frames and the recent tracked ones."""

    cond: dict[int, Memory] = field(default_factory=dict)
    recent: dict[int, Memory] = field(default_factory=dict)

    def put(self, m: Memory, spatial_window: int, pointer_window: int) -> None:
        """Store ``m`` and forget what no later frame can select (as the engine's fifo)."""
        self.cond.pop(m.frame_idx, None)
        self.recent.pop(m.frame_idx, None)
        (self.cond if m.is_cond else self.recent)[m.frame_idx] = m
        for f in list(self.recent):
            age = m.frame_idx - f
            if age > pointer_window:
                del self.recent[f]
            elif age > spatial_window:
                self.recent[f].features = None


@dataclass
class Selection:
    """(temporal slot, memory) spatial entries and (signed distance, memory) pointers."""

    spatial: list[tuple[int, Memory]]
    pointers: list[tuple[int, Memory]]


def select_fifo(bank: Bank, t: int, num_maskmem: int, max_obj_ptrs: int) -> Selection:
    """SAM 2's selection (``surgsam.memory.FifoPolicy``): every conditioning frame (slot 0),
    the last ``num_maskmem - 1`` frames, pointers of the conditioning frames and of the last
    ``max_obj_ptrs - 1`` frames."""
    spatial = [(0, m) for m in bank.cond.values()]
    for d in range(num_maskmem - 1, 0, -1):
        m = bank.recent.get(t - d)
        if m is not None and m.features is not None:
            spatial.append((num_maskmem - d, m))
    pointers = [(t - f, m) for f, m in bank.cond.items() if f <= t]
    for d in range(1, max_obj_ptrs):
        m = bank.recent.get(t - d)
        if m is not None:
            pointers.append((d, m))
    return Selection(spatial, pointers)


def efp_drop(features: Sequence[np.ndarray], k: int, bf16: bool) -> set[int]:
    """Indices of the ``k`` spatial memories (``Cm x h x w`` each, in selection order)
    SurgSAM2's released rule prunes: of the entries between the first and the last, those most
    similar to the last (cosine over the channels, summed over positions), ties dropping the
    older. The arithmetic is PyTorch's ``cosine_similarity`` (each vector divided by its norm,
    then the dot product); with ``bf16`` every intermediate is rounded to bfloat16, as the
    engine ranks the bf16 memories it stores."""
    r = round_bf16 if bf16 else (lambda a: np.asarray(a, np.float32))

    def unit(tok: np.ndarray) -> np.ndarray:  # hw x Cm, each row divided by its (clamped) norm
        norm = r(np.sqrt((tok * tok).sum(-1, keepdims=True, dtype=np.float32)))
        return r(tok / np.maximum(norm, np.float32(1e-8)))

    tokens = [f.reshape(f.shape[0], -1).T.astype(np.float32) for f in features]
    newest = unit(tokens[-1])
    scores = [r(r(r(unit(tok) * newest).sum(-1, dtype=np.float32)).sum(dtype=np.float32)) for tok in tokens[1:-1]]
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")[:k]
    return {int(i) + 1 for i in order}


# ---------------------------------------------------------------------------- results
@dataclass
class OnnxFrameResult:
    """Masks of all objects on one frame (the engine's ``FrameResult`` fields, in numpy).

    masks: ``N x H x W`` bool; object_scores / ious: ``N``; low_res_logits: ``N x 1 x 4h x 4w``.
    """

    frame_idx: int
    obj_ids: list[int]
    masks: np.ndarray
    object_scores: np.ndarray
    ious: np.ndarray
    low_res_logits: np.ndarray

    def logits(self) -> np.ndarray:
        """``N x H x W`` mask logits at the frame's size (bilinear)."""
        h, w = self.masks.shape[-2:]
        if not self.obj_ids:
            return np.zeros((0, h, w), np.float32)
        return resize_bilinear(self.low_res_logits[:, 0], (h, w))

    def mask(self, obj_id: int) -> np.ndarray:
        if obj_id not in self.obj_ids:
            raise KeyError(f"object {obj_id} is not in this frame's result (objects: {self.obj_ids})")
        return self.masks[self.obj_ids.index(obj_id)]


@dataclass
class _Object:
    obj_id: int
    bank: Bank = field(default_factory=Bank)
    output: tuple[np.ndarray, float, float] | None = None  # low-res logits 1x4hx4w, score logit, iou


# ---------------------------------------------------------------------------- the segmenter
class OnnxVideoSegmenter:
    """Streaming segmentation with an export folder of ``surgsam export`` (no PyTorch)::

        seg = OnnxVideoSegmenter("export/nano")
        res = seg.add_prompt(frame0, obj_id=1, mask=m)   # frame 0, object 1 from a mask
        for frame in frames[1:]:
            res = seg.step(frame)                        # OnnxFrameResult for every object

    Objects start on any frame (``add_prompt`` with a new frame, or None for the current one);
    a prompt for an object already started (a correction), the ``dlm`` memory and text prompts
    are not supported and raise ``ValueError`` (the module's docstring lists the limits).

    Args:
        model: an export folder or an :class:`OnnxModel`.
        memory: ``"fifo"`` or ``"efp"``; default: the policy the folder was exported for. A
            policy must fit the exported memory slots (``efp`` fits a ``fifo`` export, not
            the other way round).
        memory_dtype: ``"bfloat16"`` (the engine's default: memories rounded to bf16) or
            ``"float32"`` (matches an engine built with ``memory_dtype=torch.float32``).
        num_frames: the video's length when known (scales the pointers' temporal encoding
            for clips under 16 frames, as in the engine); None for streams.
        threads: onnxruntime's intra-op threads (with a folder).
    """

    def __init__(
        self,
        model: str | Path | OnnxModel,
        memory: str | None = None,
        memory_dtype: MemoryDType = "bfloat16",
        num_frames: int | None = None,
        threads: int | None = None,
    ) -> None:
        self.onnx = model if isinstance(model, OnnxModel) else OnnxModel(model, threads=threads)
        man = self.onnx.manifest
        if self.onnx.constants is None or man.prompt_step is None:
            raise OnnxManifestError(
                f"{self.onnx.folder} was exported without the prompted-frame graph and the host "
                "constants (an older surgsam): re-export it with `surgsam export`"
            )
        self.constants: HostConstants = self.onnx.constants
        self.memory = man.memory if memory is None else memory
        if self.memory not in POLICIES:
            raise ValueError(
                f"the ONNX runner implements the memory policies {', '.join(POLICIES)}, not "
                f"{self.memory!r}; pass memory='fifo' or 'efp' (or use surgsam.engine.VideoSegmenter)"
            )
        if memory_dtype not in ("bfloat16", "float32"):
            raise ValueError(f"memory_dtype must be 'bfloat16' or 'float32', got {memory_dtype!r}")
        self.memory_dtype = memory_dtype
        self.num_frames = num_frames
        self.num_maskmem = self.constants.num_maskmem
        self.max_obj_ptrs = self.constants.max_obj_ptrs
        self.frames_to_prune = 2 if self.memory == "efp" else 0
        need = self.num_maskmem - self.frames_to_prune
        if need > man.slots[0] or self.max_obj_ptrs > man.slots[1]:
            raise ValueError(
                f"memory {self.memory!r} attends to {need} spatial memories and {self.max_obj_ptrs} "
                f"pointers; {self.onnx.folder} was exported for {man.memory!r} with {man.slots[0]} and "
                f"{man.slots[1]} slots: re-export with --memory {self.memory}"
            )
        self.reset()

    # ------------------------------------------------------------------ public verbs
    def reset(self) -> None:
        """Forget all objects and frames; the next frame is frame 0."""
        self.objects: dict[int, _Object] = {}
        self.frame_idx = -1
        self.frame_size: tuple[int, int] | None = None
        self._frame: np.ndarray | None = None
        self._feats: dict[str, np.ndarray] | None = None

    @property
    def obj_ids(self) -> list[int]:
        return list(self.objects)

    def step(self, frame: np.ndarray) -> OnnxFrameResult:
        """Advance to the next frame and track every object on it."""
        self._advance(self._check_frame(frame))
        self._track(list(self.objects.values()))
        return self._result()

    def add_prompt(
        self,
        frame: np.ndarray | None,
        obj_id: int,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
        mask: Any = None,
    ) -> OnnxFrameResult:
        """Start object ``obj_id`` from a mask (``H x W`` binary), clicks (``P x 2`` (x, y) frame
        pixels with 0/1 labels) and/or a box (x0, y0, x1, y1), on ``frame`` (a new frame: the
        stream advances to it and the other objects are tracked on it) or, with None or the
        current frame again, on the current frame. Returns the current frame's result for
        every object. A prompt for an object already started (a correction) raises ValueError."""
        oid = _check_obj_id(obj_id)
        if oid in self.objects:
            raise ValueError(f"object {oid} is already tracked (a correction): {NO_CORRECTIONS}")
        if frame is not None and self._is_current(frame):
            frame = None  # the current frame again, as the engine's add_prompt
        if frame is not None:
            image = self._check_frame(frame)
            size = (int(image.shape[0]), int(image.shape[1]))
        elif self._frame is None:
            raise ValueError("add_prompt(frame=None) needs a current frame: pass the frame")
        else:
            assert self.frame_size is not None
            size = self.frame_size
        inputs = self._prompt_inputs(size, points, labels, box, mask)  # checked before any work
        if frame is not None:
            self._advance(image)
            self._track(list(self.objects.values()))
        feats = self._features()
        out = self.onnx.prompt_step(
            features=feats["features"], high_res_0=feats["high_res_0"], high_res_1=feats["high_res_1"], **inputs
        )
        obj = self.objects[oid] = _Object(oid)
        self._remember(obj, out, 0, is_cond=True)
        return self._result()

    # ------------------------------------------------------------------ internals
    def _check_frame(self, frame: Any) -> np.ndarray:
        if not isinstance(frame, np.ndarray):
            raise TypeError(f"a frame must be a numpy array ({FRAME_NOTE}), got {type(frame).__name__}")
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
            raise ValueError(f"{FRAME_NOTE}; got {frame.dtype} of shape {frame.shape}")
        if self.frame_size is not None and frame.shape[:2] != self.frame_size:
            raise ValueError(
                f"frame of size {frame.shape[:2]} in a stream of {self.frame_size} frames; call reset() "
                "to start a new stream"
            )
        return frame

    def _is_current(self, frame: Any) -> bool:
        cur = self._frame
        return (
            cur is not None
            and isinstance(frame, np.ndarray)
            and frame.shape == cur.shape
            and frame.dtype == cur.dtype
            and bool(np.array_equal(frame, cur))
        )

    def _advance(self, image: np.ndarray) -> None:
        self.frame_idx += 1
        self.frame_size = (int(image.shape[0]), int(image.shape[1]))
        self._frame = image.copy()  # the caller may reuse its buffer for the next frame
        self._feats = None
        for o in self.objects.values():
            o.output = None

    def _features(self) -> dict[str, np.ndarray]:
        if self._feats is None:
            assert self._frame is not None
            self._feats = self.onnx.encode_image(preprocess_frame(self._frame, self.onnx.manifest.image_size))
        return self._feats

    def _prompt_inputs(
        self, size: tuple[int, int], points: Any, labels: Any, box: Any, mask: Any
    ) -> dict[str, np.ndarray]:
        s = self.onnx.manifest.image_size
        h, w = size
        if mask is not None:
            if points is not None or box is not None:
                raise ValueError("give either a mask or clicks/box for an object, not both")
            return {
                "points": np.zeros((1, 1, 2), np.float32),
                "labels": -np.ones((1, 1), np.int32),
                "mask": _prepare_mask(mask, size, s)[None, None],
                "use_mask": np.ones(1, bool),
            }
        if points is None and box is None:
            raise ValueError("add_prompt needs a mask, points (+labels) or a box")
        pts, labs = [], []
        if box is not None:
            b = np.asarray(box, dtype=np.float32).reshape(-1)
            if b.size != 4 or not np.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
                raise ValueError(f"a box is (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {b.tolist()}")
            if b.min() < 0 or b[2] > w or b[3] > h:
                raise ValueError(f"box {b.tolist()} lies outside the {w}x{h} frame")
            pts.append(b.reshape(2, 2))
            labs.append(np.array([2, 3], np.int32))  # box corners, before any clicks (as the engine)
        if points is not None:
            p = np.asarray(points, dtype=np.float32)
            p = p[None] if p.ndim == 1 else p
            if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] == 0:
                raise ValueError(f"points must be P x 2 (x, y) pairs, got shape {p.shape}")
            if p.shape[0] > MAX_CLICKS:
                raise ValueError(f"{p.shape[0]} clicks in one prompt; the limit is {MAX_CLICKS}")
            if labels is None:
                raise ValueError("points need labels (1 = positive, 0 = negative)")
            lab = np.asarray(labels).reshape(-1)
            if lab.shape[0] != p.shape[0] or not np.isin(lab, (0, 1)).all():
                raise ValueError(f"{p.shape[0]} points need as many labels of 0 or 1, got {lab.tolist()}")
            if not np.isfinite(p).all() or (p < 0).any() or (p[:, 0] >= w).any() or (p[:, 1] >= h).any():
                raise ValueError(f"points {p.tolist()} must lie inside the {w}x{h} frame")
            pts.append(p)
            labs.append(lab.astype(np.int32))
        xy = np.concatenate(pts) / np.array([w, h], np.float32) * np.float32(s)
        return {
            "points": xy.astype(np.float32)[None],
            "labels": np.concatenate(labs)[None],
            "mask": np.zeros((1, 1, s, s), np.float32),
            "use_mask": np.zeros(1, bool),
        }

    def _select(self, bank: Bank) -> Selection:
        sel = select_fifo(bank, self.frame_idx, self.num_maskmem, self.max_obj_ptrs)
        k = len(sel.spatial) + self.frames_to_prune - self.num_maskmem
        if self.memory == "efp" and k > 0:
            feats = [m.features for _, m in sel.spatial if m.features is not None]  # all: fifo selects features
            drop = efp_drop(feats, k, self.memory_dtype == "bfloat16")
            sel.spatial = [e for i, e in enumerate(sel.spatial) if i not in drop]
        return sel

    def _memory_tokens(self, sel: Selection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One object's selection in the tracking step's padded layout: tokens and position
        encodings ``M x Cm`` (zeros in the padding) and the mask ``M`` (True = real)."""
        man, k = self.onnx.manifest, self.constants
        n_sp, n_ptr = man.slots
        if len(sel.spatial) > n_sp or len(sel.pointers) > n_ptr:
            raise ValueError(
                f"frame {self.frame_idx} attends to {len(sel.spatial)} spatial memories and "
                f"{len(sel.pointers)} pointers, more than the exported slots {man.slots}"
            )
        cm, hw, split = man.mem_dim, man.feat_size**2, man.hidden_dim // man.mem_dim
        tok = np.zeros((man.memory_tokens, cm), np.float32)
        pos = np.zeros_like(tok)
        real = np.zeros(man.memory_tokens, bool)
        mem_pos = k.memory_pos.reshape(cm, hw).T
        for i, (slot, m) in enumerate(sel.spatial):
            assert m.features is not None
            rows = slice(i * hw, (i + 1) * hw)
            tok[rows] = m.features.reshape(cm, hw).T
            pos[rows] = mem_pos + k.maskmem_tpos_enc[self.num_maskmem - slot - 1]
            real[rows] = True
        if sel.pointers:
            tmax = max(1, min(self.num_frames or 10**9, self.max_obj_ptrs) - 1)
            dists = np.array([d for d, _ in sel.pointers], np.float32)
            if k.ptr_pos_weight.shape[1] == 0:
                ppos = np.zeros((len(dists), cm), np.float32)
            else:
                enc = sine_encoding(dists / np.float32(tmax), k.ptr_pos_weight.shape[1])
                ppos = enc @ k.ptr_pos_weight.T + k.ptr_pos_bias
            start = n_sp * hw
            for j, (_, m) in enumerate(sel.pointers):
                rows = slice(start + j * split, start + (j + 1) * split)
                tok[rows] = m.obj_ptr.reshape(split, cm)
                pos[rows] = ppos[j]
                real[rows] = True
        return tok, pos, real

    def _track(self, objs: list[_Object]) -> None:
        """Track objects on the current frame, all in one batch (the memory has one layout)."""
        objs = [o for o in objs if o.bank.cond]
        if not objs:
            return
        feats = self._features()
        laid = [self._memory_tokens(self._select(o.bank)) for o in objs]
        mem, pos, mask = (np.stack(x) for x in zip(*laid))
        n = len(objs)
        rep = {k: np.repeat(v, n, axis=0) for k, v in feats.items()}
        out = self.onnx.track_step(**rep, memory=mem, memory_pos=pos, memory_mask=mask)
        out["iou"] = out["ious"].max(axis=1, keepdims=True)
        for i, o in enumerate(objs):
            self._remember(o, out, i, is_cond=False)

    def _remember(self, obj: _Object, out: dict[str, np.ndarray], i: int, is_cond: bool) -> None:
        """Keep row ``i`` of a graph's outputs as the object's output and memory."""
        feats = out["memory_features"][i]
        if self.memory_dtype == "bfloat16":
            feats = round_bf16(feats)
        obj.output = (out["low_res_masks"][i], float(out["object_score_logits"][i, 0]), float(out["iou"][i, 0]))
        mem = Memory(self.frame_idx, feats.copy(), out["obj_ptr"][i].astype(np.float32).copy(), is_cond)
        obj.bank.put(mem, self.num_maskmem - 1, self.max_obj_ptrs - 1)

    def _result(self) -> OnnxFrameResult:
        assert self.frame_size is not None
        h, w = self.frame_size
        have = [o for o in self.objects.values() if o.output is not None]
        if not have:
            return OnnxFrameResult(
                self.frame_idx,
                [],
                np.zeros((0, h, w), bool),
                np.zeros(0, np.float32),
                np.zeros(0, np.float32),
                np.zeros((0, 1, 1, 1), np.float32),
            )
        low = np.stack([o.output[0] for o in have if o.output is not None]).astype(np.float32)
        scores = np.array([o.output[1] for o in have if o.output is not None], np.float32)
        ious = np.array([o.output[2] for o in have if o.output is not None], np.float32)
        masks = resize_bilinear(low[:, 0], (h, w)) > 0
        return OnnxFrameResult(self.frame_idx, [o.obj_id for o in have], masks, 1 / (1 + np.exp(-scores)), ious, low)


def _check_obj_id(obj_id: Any) -> int:
    if not isinstance(obj_id, (int, np.integer)) or isinstance(obj_id, (bool, np.bool_)):
        raise TypeError(f"obj_id must be an int, got {type(obj_id).__name__}")
    if not 1 <= int(obj_id) <= 255:
        raise ValueError(f"object ids must be 1..255 (the pixel values of a palette PNG mask), got {obj_id}")
    return int(obj_id)


def _prepare_mask(mask: Any, size: tuple[int, int], image_size: int) -> np.ndarray:
    """An ``H x W`` binary mask -> ``S x S`` float32 0/1 at the model's input size (bilinear +
    antialias, then >= 0.5, as the engine's ``prepare_mask``)."""
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"a mask prompt must be H x W, got shape {m.shape}")
    if m.shape != tuple(size):
        raise ValueError(f"mask of size {m.shape} for a frame of size {tuple(size)}")
    if m.dtype != bool:
        if m.dtype.kind not in "uif" or not np.isin(np.unique(m), (0, 1, 255)).all():
            raise ValueError(
                "a mask prompt must be binary (0/1, 0/255 or bool); for a label map pass (labels == obj_id)"
            )
    m = (m > 0).astype(np.float32)
    if not m.any():
        raise ValueError("empty mask prompt: the mask has no foreground pixel")
    if m.shape != (image_size, image_size):
        m = (resize_bilinear(m, (image_size, image_size), antialias=True) >= 0.5).astype(np.float32)
        if not m.any():
            raise ValueError(f"mask prompt vanishes at the model's {image_size}px input (too small); use clicks")
    return m
