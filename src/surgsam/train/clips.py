"""Training samples: 8-frame clips (video batches) and single frames (image batches).

Works over any dataset of :class:`surgsam.data.Video` objects (VOS folders, EndoVis,
Ref-EndoVis, the synthetic generator's output). Only annotated frames are used; a clip is
``num_frames`` consecutive annotated frames. Objects are drawn among those present in the
clip's first frame (after an optional time reversal), as SAM 2's video sampler does.

Every sample is a pure function of its index and a seed, so any rank of any run can
rebuild it (resume and DDP need no data-loader state).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import DatasetLayout
from ..modeling.sam2 import IMAGENET_MEAN, IMAGENET_STD, ResizeMode, pil_resize
from .aux_types import type_map, video_categories
from .photometric import draw_photometric

__all__ = [
    "Clip",
    "ClipBatch",
    "ClipConfig",
    "ClipSampler",
    "collate",
    "epoch_index",
    "swap_left_right",
    "open_datasets",
]


@dataclass(frozen=True)
class ClipConfig:
    """How clips and image samples are drawn.

    num_frames: frames per clip (T). max_objects: objects per clip/image (K <= this).
    image_size: model input side S. reverse_prob: chance to play a clip backwards.
    hflip_prob: chance of a horizontal flip (also swaps "left"/"right" in expressions).
    min_pixels: an object counts as present in the first frame with at least this many
        pixels after resizing to ``S x S``.
    entry_prob: chance that a clip starts on the frame where an object enters the view (its
        first appearance, or its return after leaving) and tracks that object from its first
        sliver, playing forward. Random windows almost never start there, yet the VOS protocol
        prompts every object exactly there.
    exit_prob: chance that a clip ends with an object gone: it starts 2 to ``T - 2`` frames
        before an object leaves the view (or is hidden), with that object, so the model learns
        to predict it absent instead of jumping to a neighbour. ``entry_prob + exit_prob <= 1``.
    merge_same_text: referring training: objects of a video that share one expression are
        one referred target (the union of their masks), drawn once per clip. Ref-EndoVis18's
        grammar gives two instruments of one type and action the same sentence, so without
        this their targets contradict each other.
    type_maps: also build per-pixel object-type maps (``Clip.types``) from the datasets'
        categories, for the auxiliary type loss (:mod:`.aux_types`); draws nothing random.
    frame_resize: how frames become ``S x S``: ``"pil"`` (PIL bicubic on the uint8 frame,
        the engine's default, so the model trains on what it sees at inference) or
        ``"antialias"`` (float bilinear with antialiasing; runs before session 9 used it).
    paraphrase_prob: referring training: chance that a clip's expression (each distinct one,
        after the flip) is reworded with the training wordings of
        :mod:`surgsam.data.paraphrase` (never its held-out-only ones); texts outside the
        Ref-EndoVis grammar are kept. 0 (the default) draws nothing, so the sample stream is
        unchanged.
    photometric_prob: chance that a clip's frames get one random change of colour and light
        (:mod:`.photometric`: channel gains, brightness, contrast, saturation, gamma), the same
        for all its frames. 0 (the default) draws nothing, so the sample stream is unchanged.
    """

    num_frames: int = 8
    max_objects: int = 3
    image_size: int = 512
    reverse_prob: float = 0.5
    hflip_prob: float = 0.5
    min_pixels: int = 4
    entry_prob: float = 0.0
    exit_prob: float = 0.0
    merge_same_text: bool = False
    type_maps: bool = False
    frame_resize: ResizeMode = "pil"
    paraphrase_prob: float = 0.0
    photometric_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.frame_resize not in ("pil", "antialias"):
            raise ValueError(f"frame_resize must be 'pil' or 'antialias', got {self.frame_resize!r}")
        if self.num_frames < 1 or self.max_objects < 1:
            raise ValueError("num_frames and max_objects must be >= 1")
        for name in ("entry_prob", "exit_prob", "paraphrase_prob", "photometric_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.entry_prob + self.exit_prob > 1.0:
            raise ValueError(f"entry_prob + exit_prob must be <= 1, got {self.entry_prob} + {self.exit_prob}")
        if self.image_size <= 0 or self.image_size % 32:
            raise ValueError(f"image_size must be a positive multiple of 32, got {self.image_size}")


@dataclass
class Clip:
    """One sample. frames: ``T x 3 x S x S`` float (ImageNet-normalised); masks: ``T x K x S x S``
    bool; obj_ids: the K dataset ids; texts: one expression per object where the dataset has
    them (flipped along with the frames), else None; types: ``T x S x S`` uint8 object-type
    classes of every pixel (all objects, not only the K; :func:`.aux_types.type_map`) when
    ``ClipConfig.type_maps`` is on."""

    frames: torch.Tensor
    masks: torch.Tensor
    obj_ids: list[int]
    video: str
    frame_indices: list[int]
    texts: list[str | None] = field(default_factory=list)
    flipped: bool = False
    reversed: bool = False
    types: torch.Tensor | None = None


@dataclass
class ClipBatch:
    """B samples of equal length T, their objects concatenated (N = sum of K).

    frames: ``B x T x 3 x S x S``; masks: ``T x N x S x S`` bool; obj_to_clip: ``N`` long
    (which sample each object belongs to); types: ``B x T x S x S`` uint8 type maps or None.
    """

    frames: torch.Tensor
    masks: torch.Tensor
    obj_to_clip: torch.Tensor
    obj_ids: list[int]
    texts: list[str | None]
    videos: list[str]
    types: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        return self.frames.shape[1]

    @property
    def num_objects(self) -> int:
        return self.masks.shape[1]

    @property
    def is_image(self) -> bool:
        return self.num_frames == 1

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "ClipBatch":
        types = None if self.types is None else self.types.to(device, non_blocking=non_blocking)
        return ClipBatch(
            self.frames.to(device, non_blocking=non_blocking),
            self.masks.to(device, non_blocking=non_blocking),
            self.obj_to_clip.to(device, non_blocking=non_blocking),
            self.obj_ids,
            self.texts,
            self.videos,
            types,
        )

    def pin_memory(self) -> "ClipBatch":  # used by DataLoader(pin_memory=True)
        return ClipBatch(
            self.frames.pin_memory(),
            self.masks.pin_memory(),
            self.obj_to_clip.pin_memory(),
            self.obj_ids,
            self.texts,
            self.videos,
            None if self.types is None else self.types.pin_memory(),
        )


def collate(samples: Sequence[Clip]) -> ClipBatch:
    """Stack samples of the same length into a :class:`ClipBatch`."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    t = samples[0].frames.shape[0]
    if any(s.frames.shape[0] != t for s in samples):
        raise ValueError("all samples of a batch must have the same number of frames")
    owner = torch.cat([torch.full((len(s.obj_ids),), i, dtype=torch.long) for i, s in enumerate(samples)])
    texts = [x for s in samples for x in (s.texts or [None] * len(s.obj_ids))]
    types = [s.types for s in samples if s.types is not None]  # type maps, when every sample has one
    return ClipBatch(
        torch.stack([s.frames for s in samples]),
        torch.cat([s.masks for s in samples], dim=1),
        owner,
        [k for s in samples for k in s.obj_ids],
        texts,
        [s.video for s in samples],
        torch.stack(types) if len(types) == len(samples) else None,
    )


_LR = re.compile(r"\b(left|right|Left|Right|LEFT|RIGHT)\b")
_SWAP = {"left": "right", "right": "left", "Left": "Right", "Right": "Left", "LEFT": "RIGHT", "RIGHT": "LEFT"}


def swap_left_right(text: str) -> str:
    """Swap the words "left" and "right" (a horizontal flip changes which side is which)."""
    return _LR.sub(lambda m: _SWAP[m.group(0)], text)


def epoch_index(counter: int, n: int, seed: int) -> int:
    """The ``counter``-th draw of an endless stream of seeded per-epoch permutations of
    ``range(n)``: ranks taking counters ``(step * world + rank) * B + b`` see disjoint
    samples within an epoch (a DistributedSampler without state)."""
    epoch, pos = divmod(int(counter), n)
    return int(_permutation(int(n), int(seed), epoch)[pos])


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def open_datasets(paths: Sequence[str], split: str | None = "train", layout: DatasetLayout = "auto") -> list:
    """Open dataset folders with :func:`surgsam.data.open_dataset`: ``split`` selects a split
    subfolder (Ref-EndoVis, synthetic, EndoVis VOS) or filters raw EndoVis sequences; folders
    without splits are used whole. ``layout`` (``surgsam.data.LAYOUTS``) applies to every folder."""
    from ..data import open_dataset

    return [open_dataset(Path(p), split, layout=layout) for p in paths]


class ClipSampler:
    """Index of clip windows and image frames over one or more datasets.

    ``clip(i, rng)`` / ``image(i, rng)`` build sample ``i`` (``0 <= i < num_clips`` /
    ``num_images``); the rng draws objects, reversal and flip.
    """

    def __init__(self, datasets: Sequence[Sequence], cfg: ClipConfig) -> None:
        self.cfg = cfg
        self.videos = [v for ds in datasets for v in ds]
        self.windows: list[tuple[int, int]] = []  # (video, position in its annotated-frame list)
        self.images: list[tuple[int, int]] = []  # (video, frame index)
        self.entries: list[tuple[int, int, int]] = []  # (video, position in its annotated-frame list, object id)
        self.exits: list[tuple[int, int, int]] = []  # (video, position of the first frame without the object, id)
        self._annotated: list[list[int]] = []
        T = cfg.num_frames
        for vi, v in enumerate(self.videos):
            if not getattr(v, "has_frames", True):
                raise ValueError(f"video {v.name!r} has no frames; training needs frames")
            ids = v.scan()
            ann = [i for i, x in enumerate(ids) if x is not None]
            self._annotated.append(ann)
            self.images.extend((vi, i) for i in ann if ids[i])
            for j in range(len(ann) - T + 1):
                first, last = ids[ann[j]], ids[ann[j + T - 1]]
                if first or (cfg.reverse_prob > 0 and last):
                    self.windows.append((vi, j))
            for j in range(1, len(ann) - T + 1):  # objects entering the view on frame ann[j]
                before = set(ids[ann[j - 1]] or ())
                self.entries.extend((vi, j, k) for k in ids[ann[j]] or () if k not in before)
            for j in range(1, len(ann) if len(ann) >= T else 0):  # objects leaving the view on frame ann[j]
                now = set(ids[ann[j]] or ())
                self.exits.extend((vi, j, k) for k in ids[ann[j - 1]] or () if k not in now)
        if not self.images:
            raise ValueError("no annotated frame with an object in the training data")
        if cfg.type_maps and not any(video_categories(v) for v in self.videos):
            raise ValueError(
                "type maps need object categories (a Ref-EndoVis layout with Meta json, e.g. "
                "`surgsam synth` output); none of the training videos has them"
            )

    @property
    def num_clips(self) -> int:
        return len(self.windows)

    @property
    def num_images(self) -> int:
        return len(self.images)

    # ------------------------------------------------------------------ samples
    def clip(self, index: int, rng: np.random.Generator, retries: int = 10) -> Clip:
        """Clip number ``index`` (another random window if its first frame's objects vanish
        at the model's resolution)."""
        if not self.windows:
            raise ValueError(f"no video has {self.cfg.num_frames} annotated frames with an object at one end")
        cfg = self.cfg
        # one draw picks entry / exit / random window (none when both are off: the old stream)
        u = rng.random() if (cfg.entry_prob > 0 and self.entries) or (cfg.exit_prob > 0 and self.exits) else 1.0
        if u < cfg.entry_prob and self.entries:
            vi, j, k = self.entries[int(rng.integers(len(self.entries)))]
            clip = self._build(vi, self._annotated[vi][j : j + cfg.num_frames], rng, reversed_=False, first=k)
            if clip is not None:
                return clip
        elif u < cfg.entry_prob + cfg.exit_prob and self.exits:
            clip = self._exit_clip(rng)
            if clip is not None:
                return clip
        for attempt in range(retries + 1):
            vi, j = self.windows[index if attempt == 0 else int(rng.integers(len(self.windows)))]
            frames = self._annotated[vi][j : j + self.cfg.num_frames]
            ids = self.videos[vi].scan()
            rev = bool(rng.random() < self.cfg.reverse_prob)
            if not ids[frames[-1 if rev else 0]]:
                rev = not rev  # only the other end has objects
            if rev:
                frames = frames[::-1]
            clip = self._build(vi, frames, rng, reversed_=rev)
            if clip is not None:
                return clip
        raise RuntimeError(f"could not draw a clip with a visible object after {retries} retries")

    def _exit_clip(self, rng: np.random.Generator) -> Clip | None:
        """A forward clip that starts ``d`` frames before a drawn exit (``d`` drawn from
        ``2 .. max(2, T - 2)``, moved into the range where the clip fits and the exit is inside
        it, fewer if the object was not there yet) and tracks that object; None if impossible."""
        T = self.cfg.num_frames
        vi, j, k = self.exits[int(rng.integers(len(self.exits)))]
        ann, ids = self._annotated[vi], self.videos[vi].scan()
        lo, hi = max(1, j + T - len(ann)), min(j, T - 1)  # the clip fits and the exit is inside it
        d = int(np.clip(rng.integers(2, max(3, T - 1)), lo, hi))
        while d > lo and k not in (ids[ann[j - d]] or ()):  # the object came in after j - d
            d -= 1
        if k not in (ids[ann[j - d]] or ()):
            return None
        start = j - d
        return self._build(vi, ann[start : start + T], rng, reversed_=False, first=k)

    def image(self, index: int, rng: np.random.Generator, retries: int = 10) -> Clip:
        """A single annotated frame (``T = 1``) with up to ``max_objects`` objects."""
        for attempt in range(retries + 1):
            vi, t = self.images[index if attempt == 0 else int(rng.integers(len(self.images)))]
            clip = self._build(vi, [t], rng, reversed_=False)
            if clip is not None:
                return clip
        raise RuntimeError(f"could not draw an image with a visible object after {retries} retries")

    def _build(
        self, vi: int, frames: list[int], rng: np.random.Generator, reversed_: bool, first: int | None = None
    ) -> Clip | None:
        """The clip of ``frames`` (None if no object is visible at size S in the first);
        ``first``: an object id drawn before the random others (if visible)."""
        cfg, video = self.cfg, self.videos[vi]
        s = cfg.image_size
        labels0 = video.labels(frames[0])
        present = [int(k) for k in np.unique(labels0) if k != 0 and k != getattr(video, "void_id", None)]
        if not present:
            return None
        order = rng.permutation(len(present))
        flip = bool(rng.random() < cfg.hflip_prob)
        # resize the first frame's masks of all candidates; keep those still visible
        area = _resize_masks(torch.from_numpy(np.stack([labels0 == k for k in present]))[None], s)[0]
        visible = [present[i] for i in order if int(area[i].sum()) >= cfg.min_pixels]
        if not visible:
            return None
        if first in visible:
            visible.remove(first)
            visible.insert(0, first)
        groups = self._text_groups(video) if cfg.merge_same_text else {}
        if groups:  # one draw per expression: skip objects whose sentence is already drawn
            drawn: dict[tuple[int, ...], int] = {}
            for k in visible:
                drawn.setdefault(groups.get(k, (k,)), k)
            visible = list(drawn.values())
        obj_ids = sorted(visible[: cfg.max_objects])
        members = [groups.get(k, (k,)) for k in obj_ids]
        cats = video_categories(video) if cfg.type_maps else None
        imgs, labs, types = [], [], []
        for t in frames:
            imgs.append(video.frames[t])
            lab = labels0 if t == frames[0] else video.labels(t)
            labs.append(np.stack([np.isin(lab, ks) for ks in members]))
            if cfg.type_maps:
                types.append(type_map(lab, cats, getattr(video, "void_id", None)))
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)  # T x 3 x H x W uint8
        m = torch.from_numpy(np.stack(labs))  # T x K x H x W bool
        ty = torch.from_numpy(np.stack(types)) if types else None  # T x H x W uint8
        if flip:
            x, m = x.flip(-1), m.flip(-1)
            ty = None if ty is None else ty.flip(-1)
        if cfg.photometric_prob > 0 and rng.random() < cfg.photometric_prob:
            x = draw_photometric(rng).apply(x)
        texts = self._texts(video, obj_ids, flip)
        if cfg.paraphrase_prob > 0:
            texts = _paraphrased(texts, cfg.paraphrase_prob, rng)
        return Clip(
            normalize_frames(x, s, cfg.frame_resize),
            _resize_masks(m, s),
            obj_ids,
            video.name,
            list(frames),
            texts,
            flip,
            reversed_,
            None if ty is None else _resize_types(ty, s),
        )

    @staticmethod
    def _text_groups(video) -> dict[int, tuple[int, ...]]:
        """``{obj_id: the ids of all objects its text names}`` for texts shared by several
        objects (:func:`~surgsam.data.refendovis.shared_texts`); the first id is the group's."""
        from ..data.refendovis import shared_texts

        get = getattr(video, "expressions", None)
        return {} if get is None else {k: ids for ids in shared_texts(get()).values() for k in ids}

    @staticmethod
    def _texts(video, obj_ids: list[int], flip: bool) -> list[str | None]:
        get = getattr(video, "expressions", None)
        if get is None:
            return [None] * len(obj_ids)
        by_obj: dict[int, str] = {}
        for e in get():
            by_obj.setdefault(e.obj_id, e.text)
        return [(swap_left_right(by_obj[k]) if flip else by_obj[k]) if k in by_obj else None for k in obj_ids]


def _paraphrased(texts: list[str | None], prob: float, rng: np.random.Generator) -> list[str | None]:
    """Each distinct text reworded with chance ``prob`` (training wordings only), the same way
    for every object that has it."""
    from ..data.paraphrase import paraphrase_text

    new: dict[str, str] = {}
    for t in texts:
        if t is not None and t not in new:
            new[t] = paraphrase_text(t, rng=rng, part="train") if rng.random() < prob else t
    return [None if t is None else new[t] for t in texts]


def normalize_frames(frames: torch.Tensor, size: int, resize: ResizeMode = "pil") -> torch.Tensor:
    """``T x 3 x H x W`` uint8 -> ``T x 3 x S x S`` float, exactly as
    ``SAM2Model.preprocess(frames, resize)``: resized, /255, ImageNet mean/std."""
    if resize == "pil":
        x = pil_resize(frames, size)
    elif frames.shape[-2:] == (size, size):
        x = frames.float() / 255.0
    else:
        x = F.interpolate(frames.float() / 255.0, (size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _resize_types(types: torch.Tensor, size: int) -> torch.Tensor:
    """``T x H x W`` uint8 class maps -> ``T x S x S`` (nearest: classes are not blended)."""
    if types.shape[-2:] == (size, size):
        return types
    return F.interpolate(types[:, None].float(), (size, size), mode="nearest-exact")[:, 0].to(torch.uint8)


def _resize_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
    """``T x K x H x W`` bool -> ``T x K x S x S`` bool (bilinear + antialias, >= 0.5: the
    engine's mask-prompt resize, so training targets match inference prompts)."""
    if masks.shape[-2:] == (size, size):
        return masks.bool()
    t, k = masks.shape[:2]
    if k == 0:
        return masks.new_zeros(t, 0, size, size, dtype=torch.bool)
    m = F.interpolate(
        masks.float().flatten(0, 1)[:, None], (size, size), mode="bilinear", align_corners=False, antialias=True
    )
    return (m[:, 0] >= 0.5).view(t, k, size, size)
