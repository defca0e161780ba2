"""Generic video-object-segmentation folders (DAVIS / YouTube-VOS / SA-V style).

Layout::

    ROOT/JPEGImages/<video>/<frame>.jpg|png     frames (RGB)
    ROOT/Annotations/<video>/<frame>.png        palette id maps (0 = background), possibly sparse
    ROOT/Annotations/<video>/<obj>/<frame>.png  or SA-V style: one binary PNG per object

Everything is lazy: building a dataset lists files; frames and masks are decoded on access.
Structural problems (annotation without a frame, gaps in numbered frames, size mismatches,
colour PNGs, ids outside the declared set) raise :class:`DatasetError` naming the file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .palette import AnnotationFormatError, read_mask

__all__ = [
    "DatasetError",
    "LazyFrames",
    "ObjectPrompt",
    "VOSDataset",
    "VOSVideo",
    "Video",
    "find_subdir",
    "list_images",
    "natural_key",
    "read_rgb",
]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
FRAME_DIRS = ("JPEGImages", "JPEGImages_24fps", "images", "frames")
ANNOTATION_DIRS = ("Annotations", "Annotations_6fps", "annotations", "masks")


class DatasetError(ValueError):
    """A dataset folder is malformed; the message names the offending path."""


@dataclass(frozen=True)
class ObjectPrompt:
    """Where an object is first given to a tracker: ``frame_idx`` and its ``H x W`` bool mask."""

    frame_idx: int
    mask: np.ndarray


def natural_key(name: str) -> list:
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder in natural order (hidden files ignored)."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.stem))


def find_subdir(root: Path, candidates: Sequence[str]) -> Path | None:
    """The first of ``candidates`` that is a folder under ``root``."""
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    return None


def read_rgb(path: Path, crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Decode an image as ``H x W x 3`` uint8 RGB; ``crop = (top, left, height, width)``."""
    try:
        with Image.open(path) as im:
            arr = np.array(im.convert("RGB"))  # a writable copy (torch.from_numpy warns on read-only)
    except OSError as exc:
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

    def __getitem__(self, i):  # type: ignore[override]
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


class VOSVideo(Video):
    """A video of a VOS folder: palette id maps per frame, or SA-V per-object binary PNGs."""

    def __init__(
        self,
        name: str,
        frame_names: Sequence[str],
        frame_paths: Sequence[Path] | None,
        ann_paths: Sequence[Path | None] | None = None,
        object_dirs: dict[int, Path] | None = None,
        **kw,
    ):
        super().__init__(name, frame_names, frame_paths, **kw)
        if (ann_paths is None) == (object_dirs is None):
            raise ValueError("give exactly one of ann_paths (palette maps) or object_dirs (per-object PNGs)")
        self.ann_paths = list(ann_paths) if ann_paths is not None else None
        self.object_dirs = dict(sorted(object_dirs.items())) if object_dirs is not None else None

    def is_annotated(self, i: int) -> bool:
        if self.ann_paths is not None:
            return self.ann_paths[i] is not None
        stem = self.frame_names[i]
        return any(_find_frame_file(d, stem) is not None for d in self.object_dirs.values())  # type: ignore[union-attr]

    def _label_source(self, i: int) -> str:
        if self.ann_paths is not None and self.ann_paths[i] is not None:
            return str(self.ann_paths[i])
        return super()._label_source(i)

    def _read_labels(self, i: int) -> np.ndarray:
        if self.ann_paths is not None:
            return read_mask(self.ann_paths[i])  # type: ignore[arg-type]
        out: np.ndarray | None = None
        for k, d in self.object_dirs.items():  # type: ignore[union-attr]
            p = _find_frame_file(d, self.frame_names[i])
            if p is None:
                continue
            m = read_mask(p) > 0
            if out is None:
                out = np.zeros(m.shape, dtype=np.int32)
            elif m.shape != out.shape:
                raise DatasetError(f"{p}: size {m.shape[::-1]} differs from the other objects' {out.shape[::-1]}")
            out[m & (out == 0)] = k  # ids ascend: the lowest id keeps overlaps (surgsam.io.labels rule)
        assert out is not None
        return out


def _find_frame_file(folder: Path, stem: str) -> Path | None:
    p = folder / f"{stem}.png"
    return p if p.is_file() else None


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


def build_vos_video(
    name: str,
    frame_dir: Path | None,
    ann_dir: Path | None,
    *,
    allow_gaps: bool = False,
    cls: type[VOSVideo] | None = None,
    **kw,
) -> VOSVideo:
    """Pair a frame folder with an annotation folder (either may be absent, not both).

    ``cls`` (a :class:`VOSVideo` subclass) and ``kw`` are passed on to build the video.
    """
    cls = cls or VOSVideo
    if frame_dir is None and ann_dir is None:
        raise DatasetError(f"video {name!r}: neither a frame folder nor an annotation folder")
    frame_paths: list[Path] | None = None
    if frame_dir is not None:
        frame_paths = list_images(frame_dir)
        if not frame_paths:
            raise DatasetError(f"{frame_dir}: no frames (.jpg/.png) in the frame folder of video {name!r}")
        names = [p.stem for p in frame_paths]
        if len(set(names)) != len(names):
            raise DatasetError(f"{frame_dir}: two frames share a name with different extensions")
        if not allow_gaps:
            check_frame_gaps(name, names, frame_dir)
    object_dirs: dict[int, Path] | None = None
    ann_by_stem: dict[str, Path] = {}
    if ann_dir is not None:
        subdirs = [d for d in ann_dir.iterdir() if d.is_dir() and not d.name.startswith(".")]
        if subdirs:
            bad = [d.name for d in subdirs if not d.name.isdigit()]
            if bad:
                raise DatasetError(f"{ann_dir}: per-object annotation folders must be numeric ids, found {bad[:3]}")
            object_dirs = {int(d.name): d for d in subdirs}
            for d in object_dirs.values():
                for p in list_images(d):
                    ann_by_stem.setdefault(p.stem, p)
        else:
            for p in list_images(ann_dir):
                if p.suffix.lower() != ".png":
                    raise DatasetError(f"{p}: annotations must be PNG (lossy formats corrupt ids)")
                ann_by_stem[p.stem] = p
        if not ann_by_stem:
            raise DatasetError(f"{ann_dir}: no annotation PNGs for video {name!r}")
    if frame_paths is None:
        names = sorted(ann_by_stem, key=natural_key)
        if not allow_gaps:
            check_frame_gaps(name, names, ann_dir)  # type: ignore[arg-type]
    else:
        names = [p.stem for p in frame_paths]
        orphans = sorted(set(ann_by_stem) - set(names), key=natural_key)
        if orphans:
            raise DatasetError(
                f"{ann_dir}: annotation(s) {', '.join(orphans[:5])} of video {name!r} have no frame in "
                f"{frame_dir} (missing frames?)"
            )
    if object_dirs is not None:
        return cls(name, names, frame_paths, object_dirs=object_dirs, **kw)
    return cls(name, names, frame_paths, ann_paths=[ann_by_stem.get(n) for n in names], **kw)


class VideoList:
    """Sequence access to ``self.videos`` by index or by name (for loaders that list their
    videos eagerly)."""

    videos: list

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.videos]

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, str):
            i = self.names.index(i)
        return self.videos[i]


class VOSDataset(Sequence[VOSVideo]):
    """A DAVIS/SA-V style folder: ``root/<frames>/<video>/`` and ``root/<annotations>/<video>/``.

    ``root`` may also be an annotation folder itself (videos of PNGs), for evaluation without
    frames. ``videos`` (or ``split_file``, one name per line, DAVIS ``ImageSets`` style) selects
    a subset. ``require_frames=False`` accepts a missing frame folder.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        videos: Sequence[str] | None = None,
        split_file: str | Path | None = None,
        frame_dir: str | None = None,
        ann_dir: str | None = None,
        require_frames: bool = True,
        require_annotations: bool = True,
        allow_gaps: bool = False,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder does not exist")
        self.frame_root = self.root / frame_dir if frame_dir else find_subdir(self.root, FRAME_DIRS)
        self.ann_root = self.root / ann_dir if ann_dir else find_subdir(self.root, ANNOTATION_DIRS)
        if self.frame_root is None and self.ann_root is None and not require_frames:
            self.ann_root = self.root  # root is itself an annotation folder
        if require_frames and (self.frame_root is None or not self.frame_root.is_dir()):
            raise DatasetError(f"{self.root}: no frame folder (looked for {', '.join(FRAME_DIRS)})")
        if require_annotations and (self.ann_root is None or not self.ann_root.is_dir()):
            raise DatasetError(f"{self.root}: no annotation folder (looked for {', '.join(ANNOTATION_DIRS)})")
        frame_videos = _subdirs(self.frame_root)
        ann_videos = _subdirs(self.ann_root)
        if split_file is not None:
            videos = [ln.strip() for ln in Path(split_file).read_text().splitlines() if ln.strip()]
        if videos is None:
            names = sorted(set(frame_videos) | set(ann_videos), key=natural_key)
        else:
            names = list(videos)
        if not names:
            raise DatasetError(f"{self.root}: no videos found")
        self._specs: list[tuple[str, Path | None, Path | None]] = []
        for n in names:
            fd = frame_videos.get(n)
            ad = ann_videos.get(n)
            if fd is None and (require_frames or ad is None):
                raise DatasetError(f"{self.root}: video {n!r} has no frame folder in {self.frame_root}")
            if ad is None and require_annotations:
                raise DatasetError(f"{self.root}: video {n!r} has no annotation folder in {self.ann_root}")
            self._specs.append((n, fd, ad))
        self.allow_gaps = allow_gaps
        self._cache: dict[int, VOSVideo] = {}

    @property
    def names(self) -> list[str]:
        return [s[0] for s in self._specs]

    def __len__(self) -> int:
        return len(self._specs)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, str):
            i = self.names.index(i)
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        if i not in self._cache:
            self._cache[i] = self._make_video(*self._specs[i])
        return self._cache[i]

    def _make_video(self, name: str, frame_dir: Path | None, ann_dir: Path | None) -> VOSVideo:
        return build_vos_video(name, frame_dir, ann_dir, allow_gaps=self.allow_gaps)

    def validate(self) -> None:
        """Eagerly check every video (see :meth:`Video.validate`)."""
        for v in self:
            v.validate()


def _subdirs(root: Path | None) -> dict[str, Path]:
    if root is None or not root.is_dir():
        return {}
    return {d.name: d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
