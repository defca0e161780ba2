"""A folder of frame images (DAVIS ``00000.jpg``, EndoVis ``frame000.png``), read lazily."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .base import FrameReadError, FrameSource, SourceOpenError

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderSource", "list_image_files", "natural_sort_key", "read_rgb_file", "to_rgb"]

#: Image extensions (lower case) that :class:`ImageFolderSource` picks up.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp"})

_DIGITS = re.compile(r"(\d+)")


def natural_sort_key(path: str | os.PathLike[str]) -> tuple[tuple[str | int, ...], ...]:
    """Sort key that orders numbers by value, per path component: ``2.png < 10.png``,
    ``seq_2/frame9.png < seq_10/frame0.png``."""
    key = []
    for part in Path(path).parts:
        pieces = _DIGITS.split(part)
        # re.split alternates text / number, so position i has the same type in every key.
        key.append(tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(pieces)))
    return tuple(key)


def to_rgb(image: Image.Image) -> np.ndarray:
    """Convert any PIL image to an ``H x W x 3`` uint8 RGB array.

    Grayscale is replicated, alpha is dropped, palette images are expanded, and 16-bit
    grayscale is scaled to 8 bits (``v / 257``) rather than clipped.
    """
    if image.mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if image.mode.startswith("I") or image.mode == "F":
        gray = np.asarray(image, dtype=np.float64)
        if gray.size and gray.max() > 255:
            gray = gray / 257.0
        gray8 = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return np.repeat(gray8[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def list_image_files(
    folder: str | os.PathLike[str], *, recursive: bool = False, extensions: Iterable[str] = IMAGE_EXTENSIONS
) -> list[Path]:
    """The image files of ``folder`` (and its sub-folders with ``recursive``) in natural order
    of their relative paths; hidden files and folders (``.*``, e.g. macOS ``._00000.jpg``) are
    skipped. The one listing rule of image folders and dataset folders (``surgsam.data``)."""
    root = Path(folder)
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    candidates = root.rglob("*") if recursive else root.iterdir()
    paths = [
        p
        for p in candidates
        if p.suffix.lower() in exts
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.is_file()
    ]
    paths.sort(key=lambda p: natural_sort_key(p.relative_to(root)))
    return paths


def read_rgb_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file as a writable ``H x W x 3`` uint8 RGB array (:func:`to_rgb`); the one
    image reader of image folders and dataset folders. Raises ``OSError`` (``PIL``'s
    ``UnidentifiedImageError`` included) or ``ValueError`` when the file does not decode."""
    with Image.open(path) as im:
        rgb = to_rgb(im)
    return rgb if rgb.flags.writeable else rgb.copy()  # torch.from_numpy warns on read-only arrays


class ImageFolderSource(FrameSource):
    """Frames from the images in one folder, in natural (numeric) order, loaded on access.

    Supports ``len()``, indexing (negative too) and iteration. Hidden files (``.*``, e.g. macOS
    ``._00000.jpg``) are skipped. With ``recursive=True`` images in sub-folders are included,
    ordered by their relative path (``seq_1/frame000.png`` ...). Every frame must have the size
    of the first; a frame that differs or does not decode raises :class:`FrameReadError` naming
    it, when it is read. A folder without images raises :class:`SourceOpenError`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fps: float | None = None,
        recursive: bool = False,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
    ):
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        if not self.root.is_dir():
            raise NotADirectoryError(f"not a folder of frames: {self.root}")
        self.name = self.root.name
        self._fps = fps
        exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
        paths = list_image_files(self.root, recursive=recursive, extensions=exts)
        if not paths:
            raise SourceOpenError(self._empty_message(exts, recursive))
        self.paths: list[Path] = paths
        self._size = self._header_size(0)

    def _empty_message(self, exts: set[str], recursive: bool) -> str:
        msg = f"no images ({', '.join(sorted(exts))}) in {self.root}"
        if not recursive:
            subdirs = [d.name for d in self.root.iterdir() if d.is_dir()]
            subdirs.sort(key=natural_sort_key)
            if subdirs:
                shown = ", ".join(subdirs[:5]) + (", ..." if len(subdirs) > 5 else "")
                msg += (
                    f"; it has sub-folders ({shown}): pass one sequence folder, "
                    "or recursive=True to read all of them as one sequence"
                )
        return msg

    def _header_size(self, index: int) -> tuple[int, int]:
        path = self.paths[index]
        try:
            with Image.open(path) as im:  # reads the header only
                w, h = im.size
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise FrameReadError(f"cannot read frame {index} ({path}): {exc}", frame_index=index, path=path) from exc
        return h, w

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def num_frames(self) -> int:
        return len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        """Load frame ``index`` as ``H x W x 3`` uint8 RGB."""
        n = len(self.paths)
        if not -n <= index < n:
            raise IndexError(f"frame index {index} out of range for {n} frames in {self.root}")
        index %= n
        path = self.paths[index]
        try:
            rgb = read_rgb_file(path)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise FrameReadError(f"cannot read frame {index} ({path}): {exc}", frame_index=index, path=path) from exc
        if rgb.shape[:2] != self._size:
            h, w = rgb.shape[:2]
            raise FrameReadError(
                f"frame {index} ({path}) is {h}x{w} but frame 0 ({self.paths[0].name}) is "
                f"{self._size[0]}x{self._size[1]}; all frames of a sequence must share one size",
                frame_index=index,
                path=path,
            )
        return rgb

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self.paths)):
            yield self[i]
