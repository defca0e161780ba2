"""The frame-source interface and the errors every source raises.

A source yields ``H x W x 3`` uint8 RGB numpy arrays. Sources that hold a file, a device or a
thread release it in :meth:`FrameSource.close` and work as context managers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np

__all__ = ["FrameReadError", "FrameSource", "SourceOpenError", "VideoDecodeError"]


class SourceOpenError(OSError, ValueError):
    """A source cannot be opened (not a video, unknown camera, unreachable stream).

    Subclasses both ``OSError`` and ``ValueError`` (as :class:`io.UnsupportedOperation` does), so
    callers may catch it either as an I/O failure or as a bad argument.
    """


class FrameReadError(ValueError):
    """A frame could not be read; ``frame_index`` says which (``None`` when unknown)."""

    def __init__(self, message: str, *, frame_index: int | None = None, path: Path | None = None):
        super().__init__(message)
        self.frame_index = frame_index
        self.path = path


class VideoDecodeError(FrameReadError):
    """Decoding a video stream failed part-way (truncated or corrupt file)."""


class Closeable:
    """``close()`` plus the context-manager protocol, shared by sources and writers."""

    def close(self) -> None:
        """Release what the object holds. Safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class FrameSource(Closeable, ABC):
    """An iterable of ``H x W x 3`` uint8 RGB frames with a little metadata."""

    #: Human-readable name for logs and output folders (file stem, ``camera:0``, masked URL).
    name: str = ""

    @property
    def fps(self) -> float | None:
        """Frames per second, or ``None`` when the source does not say."""
        return None

    @property
    def size(self) -> tuple[int, int] | None:
        """Frame size as ``(H, W)``, or ``None`` before the first frame when unknown."""
        return None

    @property
    def num_frames(self) -> int | None:
        """Number of frames (exact or estimated), or ``None`` for open-ended sources."""
        return None

    @property
    def is_live(self) -> bool:
        """True for cameras and streams, where frames arrive in real time and may be dropped."""
        return False

    @abstractmethod
    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield frames in order."""

    def close(self) -> None:
        """Release files, devices and threads. Safe to call twice."""

    def __repr__(self) -> str:
        try:
            details = f"size={self.size}, fps={self.fps}, num_frames={self.num_frames}"
        except AttributeError:  # failed half-way through __init__
            details = "not opened"
        return f"{type(self).__name__}(name={self.name!r}, {details})"
