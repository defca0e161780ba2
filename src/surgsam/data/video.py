"""Generic videos of a dataset: frame files read lazily, (possibly sparse) id-map annotations,
and the papers' mask prompts. Dataset layouts (:mod:`.vos`, :mod:`.endovis`, :mod:`.refendovis`)
build their videos on :class:`Video`.

Frame files are listed, ordered (natural order: ``frame2`` before ``frame10``) and decoded by
the same functions as :class:`surgsam.io.ImageFolderSource` (:mod:`surgsam.io.image_folder`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..io.image_folder import IMAGE_EXTENSIONS, list_image_files, natural_sort_key, read_rgb_file
from .palette import AnnotationFormatError

__all__ = [
    "IMAGE_EXTS",
    "DatasetError",
    "LazyFrames",
    "ObjectPrompt",
    "Video",
    "VideoList",
    "check_frame_gaps",
    "list_images",
    "natural_key",
    "read_rgb",
]

#: Extensions of frame files (those :class:`surgsam.io.ImageFolderSource` reads).
IMAGE_EXTS: tuple[str, ...] = tuple(sorted(IMAGE_EXTENSIONS))


class DatasetError(ValueError):
    """A dataset folder is malformed; the message names the offending path."""


@dataclass(frozen=True)
class ObjectPrompt:
    """Where an object is first given to a tracker: ``frame_idx`` and its ``H x W`` bool mask."""

    frame_idx: int
    mask: np.ndarray


def natural_key(name: str | os.PathLike[str]) -> tuple:
    """Sort key that orders ``frame2`` before ``frame10`` (numbers by value, text ignoring case;
    :func:`surgsam.io.natural_sort_key`)."""
    return natural_sort_key(name)


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder in natural order (hidden files ignored)."""
    return list_image_files(folder)


def read_rgb(path: Path, crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Decode an image as ``H x W x 3`` uint8 RGB; ``crop = (top, left, height, width)``."""
    try:
        arr = read_rgb_file(path)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read frame ({exc})") from exc
    if crop is not None:
        arr = _crop(arr, crop, path)
    return arr


def _crop(arr: np.ndarray, crop: tuple[int, int, int, int], path: Path) -> np.ndarray:
    top, left, h, w = crop
    if arr.shape[0] < top + h or arr.shape[1] < left + w:
        raise DatasetError(f"{path}: {arr.shape[1]}x{arr.shape[0]} image is too small for crop {crop}")
    return arr[top : top + h, left : left + w]


def _image_hw(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            w, h = im.size
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read image header ({exc})") from exc
    return h, w


class LazyFrames(Sequence[np.ndarray]):
    """A video's frames, decoded on access: ``frames[i]`` is ``H x W x 3`` uint8 RGB."""

    def __init__(self, paths: Sequence[Path], crop: tuple[int, int, int, int] | None = None):
        self.paths = list(paths)
        self.crop = crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return LazyFrames(self.paths[i], self.crop)
        return read_rgb(self.paths[i], self.crop)

    def __iter__(self) -> Iterator[np.ndarray]:
        for p in self.paths:
            yield read_rgb(p, self.crop)


class Video:
    """A video with (possibly sparse) id-map annotations; subclasses say how labels are stored.

    ``frame_names[i]`` is the stem of frame ``i``. ``labels(i)`` is an ``H x W`` int id map (or
    ``None`` where frame ``i`` is not annotated), checked against the frame's size and, when
    ``allowed_ids`` is set, against the declared object ids.
    """

    def __init__(
        self,
        name: str,
        frame_names: Sequence[str],
        frame_paths: Sequence[Path] | None = None,
        crop: tuple[int, int, int, int] | None = None,
        categories: dict[int, str] | None = None,
        allowed_ids: set[int] | None = None,
        void_id: int | None = None,
    ):
        self.name = name
        self.frame_names = list(frame_names)
        self.frame_paths = list(frame_paths) if frame_paths is not None else None
        self.crop = crop
        self.categories = dict(categories or {})
        self.allowed_ids = allowed_ids
        self.void_id = void_id
        self._ids: list[tuple[int, ...] | None] | None = None
        self._hw: tuple[int, int] | None = None

    # ---- frames -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.frame_names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, frames={len(self)})"

    @property
    def has_frames(self) -> bool:
        return self.frame_paths is not None

    @property
    def frames(self) -> LazyFrames:
        """Lazy ``T``-long sequence of ``H x W x 3`` uint8 RGB frames."""
        if self.frame_paths is None:
            raise DatasetError(f"video {self.name!r} has annotations only (no frame folder was found)")
        return LazyFrames(self.frame_paths, self.crop)

    def frame(self, i: int) -> np.ndarray:
        return self.frames[i]

    def frame_hw(self, i: int) -> tuple[int, int] | None:
        """``(H, W)`` of frame ``i`` from its header (after cropping); ``None`` without frames."""
        if self.frame_paths is None:
            return None
        if self.crop is not None:
            return self.crop[2], self.crop[3]
        return _image_hw(self.frame_paths[i])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the video (first frame, or first annotation when there are no frames)."""
        if self._hw is None:
            hw = self.frame_hw(0)
            if hw is None:
                first = next(i for i in range(len(self)) if self.is_annotated(i))
                hw = self._read_labels(first).shape[:2]
            self._hw = (int(hw[0]), int(hw[1]))
        return self._hw

    # ---- annotations --------------------------------------------------------------------
    def is_annotated(self, i: int) -> bool:
        raise NotImplementedError

    def _read_labels(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def _label_source(self, i: int) -> str:
        return f"{self.name}/{self.frame_names[i]}"

    def labels(self, i: int) -> np.ndarray | None:
        """``H x W`` int id map of frame ``i`` (0 = background), or ``None`` if not annotated."""
        if not self.is_annotated(i):
            return None
        try:
            lab = self._read_labels(i)
        except AnnotationFormatError as exc:
            raise DatasetError(str(exc)) from exc
        hw = self.frame_hw(i) if self.frame_paths is not None else self.image_size
        if hw is not None and tuple(lab.shape[:2]) != tuple(hw):
            raise DatasetError(
                f"{self._label_source(i)}: annotation is {lab.shape[1]}x{lab.shape[0]} but the frame "
                f"is {hw[1]}x{hw[0]} (width x height); annotations must match their frames"
            )
        if self.allowed_ids is not None:
            ids = set(np.unique(lab).tolist()) - {0} - ({self.void_id} if self.void_id is not None else set())
            unknown = ids - self.allowed_ids
            if unknown:
                raise DatasetError(
                    f"{self._label_source(i)}: annotation holds ids {sorted(unknown)} that are not declared "
                    f"for video {self.name!r} (declared: {sorted(self.allowed_ids)})"
                )
        return lab

    def masks(self, i: int) -> dict[int, np.ndarray]:
        """``{obj_id: H x W bool}`` of the objects annotated in frame ``i`` (empty if none)."""
        lab = self.labels(i)
        if lab is None:
            return {}
        return {k: lab == k for k in self._frame_ids(lab)}

    def _frame_ids(self, lab: np.ndarray) -> list[int]:
        ids = [int(v) for v in np.unique(lab) if v != 0]
        return [v for v in ids if v != self.void_id]

    def scan(self) -> list[tuple[int, ...] | None]:
        """Object ids present in each frame (``None`` for unannotated frames); cached."""
        if self._ids is None:
            out: list[tuple[int, ...] | None] = []
            for i in range(len(self)):
                lab = self.labels(i)
                out.append(None if lab is None else tuple(self._frame_ids(lab)))
            self._ids = out
        return self._ids

    @property
    def object_ids(self) -> list[int]:
        """Sorted ids of every object annotated anywhere in the video."""
        return sorted({k for ids in self.scan() if ids for k in ids})

    def first_appearance(self) -> dict[int, int]:
        """``{obj_id: index of the first frame where its mask is non-empty}``."""
        first: dict[int, int] = {}
        for i, ids in enumerate(self.scan()):
            for k in ids or ():
                first.setdefault(k, i)
        return dict(sorted(first.items()))

    def prompts(self, obj_ids: Sequence[int] | None = None) -> dict[int, ObjectPrompt]:
        """Mask prompt of each object at its first appearance (the papers' VOS protocol)."""
        first = self.first_appearance()
        wanted = first.keys() if obj_ids is None else [k for k in obj_ids if k in first]
        cache: dict[int, np.ndarray] = {}
        out: dict[int, ObjectPrompt] = {}
        for k in sorted(wanted):
            t = first[k]
            if t not in cache:
                cache[t] = self.labels(t)  # type: ignore[assignment]
            out[k] = ObjectPrompt(t, cache[t] == k)
        return out

    def validate(self) -> None:
        """Check every frame and annotation (readable, sizes agree, declared ids); raises on error."""
        if self.frame_paths is not None:
            for i in range(len(self)):
                self.frame_hw(i) if self.crop is None else _crop_check(self.frame_paths[i], self.crop)
        self._ids = None
        self.scan()


def _crop_check(path: Path, crop: tuple[int, int, int, int]) -> None:
    h, w = _image_hw(path)
    if h < crop[0] + crop[2] or w < crop[1] + crop[3]:
        raise DatasetError(f"{path}: {w}x{h} image is too small for crop {crop}")


def check_frame_gaps(video: str, names: Sequence[str], where: Path) -> None:
    """Raise if numbered frame names skip values (``00000, 00001, 00003``: 00002 is missing)."""
    if len(names) < 3 or not all(n.isdigit() for n in names):
        return
    nums = [int(n) for n in names]
    step = 0
    for a, b in zip(nums, nums[1:]):
        step = math.gcd(step, b - a)
    if step <= 0:
        return
    present = set(nums)
    missing = [n for n in range(nums[0], nums[-1] + 1, step) if n not in present]
    if missing:
        width = len(names[0])
        shown = ", ".join(str(m).zfill(width) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetError(
            f"{where}: video {video!r} is missing {len(missing)} frame(s): {shown} "
            "(pass allow_gaps=True if the video is sampled irregularly on purpose)"
        )


class VideoList:
    """Sequence access to ``self.videos`` by index or by name (for loaders that list their
    videos eagerly)."""

    videos: list

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.videos]

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i):
        if isinstance(i, str):
            i = self.names.index(i)
        return self.videos[i]
