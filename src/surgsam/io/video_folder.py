"""A folder of videos: the video files and frame folders in it, each with the name its outputs get."""

from __future__ import annotations

import os
from pathlib import Path

from .image_folder import IMAGE_EXTENSIONS, natural_sort_key
from .video_file import VIDEO_EXTENSIONS

__all__ = ["find_videos"]


def _visible(entries: list[os.DirEntry]) -> list[os.DirEntry]:
    return [e for e in entries if not e.name.startswith(".")]


def _has_images(path: str | os.PathLike[str]) -> bool:
    with os.scandir(path) as it:
        return any(e.is_file() and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS for e in _visible(list(it)))


def find_videos(path: str | os.PathLike[str]) -> list[tuple[str, Path]] | None:
    """The videos of a folder of videos, as ``(name, path)`` in natural order; None when
    ``path`` is not one (a file, a URL, a missing path, or a folder of frames: a folder with
    images of its own).

    A video is a video file in the folder (name: its stem, ``case1.mp4`` -> ``case1``) or a
    sub-folder with images (name: the sub-folder's). Hidden entries and sub-folders without
    images are ignored. Two videos with one name (``a.mp4`` and ``a/``) are refused, and so is
    a folder with neither images nor videos.
    """
    folder = Path(path)
    if not folder.is_dir() or _has_images(folder):
        return None
    found: dict[str, Path] = {}
    with os.scandir(folder) as it:
        entries = sorted(_visible(list(it)), key=lambda e: natural_sort_key(e.name))
    for e in entries:
        p = Path(e.path)
        if e.is_dir():
            if not _has_images(p):
                continue
            name = p.name
        elif e.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
            name = p.stem
        else:
            continue
        if name in found:
            raise ValueError(
                f"{folder}: two videos are named {name!r} ({found[name].name} and {p.name}); their "
                f"outputs would share OUT/{name}/: rename one"
            )
        found[name] = p
    if not found:
        raise ValueError(
            f"{folder} holds no frames ({'/'.join(sorted(IMAGE_EXTENSIONS))}) and no videos (video "
            f"files: {'/'.join(sorted(VIDEO_EXTENSIONS))}; or folders of frames)"
        )
    return [(n, found[n]) for n in found]
