"""The VOS folder layout (DAVIS / YouTube-VOS / SA-V style).

Layout::

    ROOT/JPEGImages/<video>/<frame>.jpg|png     frames (RGB)
    ROOT/Annotations/<video>/<frame>.png        palette id maps (0 = background), possibly sparse
    ROOT/Annotations/<video>/<obj>/<frame>.png  or SA-V style: one binary PNG per object

Everything is lazy: building a dataset lists files; frames and masks are decoded on access.
Structural problems (annotation without a frame, gaps in numbered frames, size mismatches,
colour PNGs, ids outside the declared set) raise :class:`DatasetError` naming the file.
The generic video classes (:class:`Video`, :class:`LazyFrames`, ...) live in :mod:`.video`
and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .palette import read_mask
from .video import (
    IMAGE_EXTS,
    DatasetError,
    LazyFrames,
    ObjectPrompt,
    Video,
    VideoList,
    check_frame_gaps,
    list_images,
    natural_key,
    read_rgb,
)

__all__ = [
    "ANNOTATION_DIRS",
    "FRAME_DIRS",
    "IMAGE_EXTS",
    "DatasetError",
    "LazyFrames",
    "ObjectPrompt",
    "VOSDataset",
    "VOSVideo",
    "Video",
    "VideoList",
    "build_vos_video",
    "check_frame_gaps",
    "find_subdir",
    "list_images",
    "natural_key",
    "read_rgb",
]

FRAME_DIRS = ("JPEGImages", "JPEGImages_24fps", "images", "frames")
ANNOTATION_DIRS = ("Annotations", "Annotations_6fps", "annotations", "masks")


def find_subdir(root: Path, candidates: Sequence[str]) -> Path | None:
    """The first of ``candidates`` that is a folder under ``root``."""
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    return None


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

    def __getitem__(self, i):
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
