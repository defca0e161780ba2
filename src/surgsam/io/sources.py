"""``open_source``: turn a camera index, URL, folder or file path into a frame source."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .base import FrameSource, SourceOpenError
from .image_folder import IMAGE_EXTENSIONS, ImageFolderSource
from .live import STREAM_SCHEMES, LiveSource, parse_camera_index
from .video_file import VIDEO_EXTENSIONS, VideoFileSource

__all__ = ["ImageFolderSource", "LiveSource", "VideoFileSource", "open_source"]

_ACCEPTED = (
    "accepted: a camera index (0 or '0'); a stream URL ("
    + ", ".join(f"{s}://" for s in sorted(STREAM_SCHEMES))
    + "); a folder of frames ("
    + "/".join(sorted(IMAGE_EXTENSIONS))
    + "); a video file ("
    + "/".join(sorted(VIDEO_EXTENSIONS))
    + "); a named pipe or capture device (/dev/video0)"
)


def open_source(spec: int | str | os.PathLike[str] | FrameSource, *, live: bool = False, **kwargs: Any) -> FrameSource:
    """Open ``spec`` as the matching :class:`FrameSource`.

    - camera index (``0``, ``"0"``), stream URL, named pipe, device -> :class:`LiveSource`
    - folder -> :class:`ImageFolderSource`
    - video file -> :class:`VideoFileSource`, or :class:`LiveSource` with ``live=True``
      (read at its own fps, dropping frames a slow consumer cannot keep up with)
    - a :class:`FrameSource` is returned unchanged.

    ``kwargs`` go to the chosen class. Anything else raises ``ValueError`` listing what is
    accepted; a path that does not exist raises ``FileNotFoundError``.
    """
    if isinstance(spec, FrameSource):
        return spec
    if parse_camera_index(spec) is not None:
        return LiveSource(spec, **kwargs)
    if isinstance(spec, str) and "://" in spec:
        scheme = urlsplit(spec).scheme.lower()
        if scheme in STREAM_SCHEMES:
            return LiveSource(spec, **kwargs)
        if scheme != "file":
            raise ValueError(f"unsupported URL scheme {scheme!r} in {spec!r}; {_ACCEPTED}")
        spec = unquote(urlsplit(spec).path)
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"cannot open a {type(spec).__name__} as a frame source; {_ACCEPTED}")
    path = Path(spec)
    if not path.exists():
        if path.is_symlink():  # exists() is False for a dangling link and for a link loop alike
            try:
                os.stat(path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise SourceOpenError(f"{path} is a symbolic link loop (links that point at each other)") from None
            raise FileNotFoundError(f"{path} is a broken symbolic link (its target does not exist)")
        raise FileNotFoundError(f"source not found: {path} ({_ACCEPTED})")
    if path.is_dir():
        if live:
            raise ValueError(f"{path} is a folder of frames, which cannot be read live")
        return ImageFolderSource(path, **kwargs)
    mode = path.stat().st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return LiveSource(path, **kwargs)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return LiveSource(path, **kwargs) if live else VideoFileSource(path, **kwargs)
    raise ValueError(
        f"cannot tell what kind of source {path} is (extension {path.suffix!r}); {_ACCEPTED}. "
        "For a video with another extension use VideoFileSource(path) directly."
    )
