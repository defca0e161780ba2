"""Videos the app opens: checks (size, kind, integrity) and access to any frame by index.

:func:`check_video` decodes the whole video once (without colour conversion), so a file that
is not a video, is damaged or is truncated is refused before anyone clicks on it, and the frame
count is exact. It keeps each frame's presentation time, which lets :class:`FrameReader` jump
to frame ``i`` by seeking to the keyframe before it and decoding forward: the frame shown for
index ``i`` is the ``i``-th frame a sequential decode yields, as in the segmentation run.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require_av

__all__ = ["FrameReader", "UploadError", "VideoMeta", "check_video"]

_DEFAULT_FPS = 25.0
#: Containers PyAV opens for still images: an image is not a video.
_IMAGE_FORMATS = ("image2", "apng")
#: Decode forward instead of seeking when the wanted frame is at most this far ahead.
_FORWARD_WINDOW = 48


class UploadError(ValueError):
    """A video the app refuses; the message is written for the person who gave it."""


@dataclass(frozen=True)
class VideoMeta:
    """A checked video. ``pts`` holds each frame's presentation time (stream time base) in
    decode-output order, or is None when the stream has no usable timestamps."""

    path: Path
    size: tuple[int, int]  # (H, W)
    fps: float
    num_frames: int
    codec: str
    file_mb: float
    pts: tuple[int, ...] | None

    def describe(self) -> str:
        h, w = self.size
        return (
            f"{self.path.name}: {w}x{h}, {self.num_frames} frames at {self.fps:.3g} fps "
            f"({self.num_frames / self.fps:.1f} s, {self.codec}, {self.file_mb:.1f} MB)"
        )


def _reason(exc: BaseException, path: Path | None = None) -> str:
    text = str(exc).strip() or type(exc).__name__
    if path is not None:  # the name is already in the message; the folder (a temp dir) is noise
        text = text.replace(f": '{path}'", "").replace(str(path), path.name)
    return text if len(text) < 160 else text[:157] + "..."


def check_video(path: str | os.PathLike[str] | None, max_mb: float) -> VideoMeta:
    """Check that ``path`` is a readable, undamaged video of at most ``max_mb`` MiB.

    Raises :class:`UploadError` with a message for the user otherwise: missing, a folder or
    a device, empty, too large, not a video (or a still image), no video stream, damaged or
    truncated data, no decodable frame.
    """
    if path is None or not str(path).strip():
        raise UploadError("no video given: upload a file or type the path of one")
    p = Path(str(path).strip()).expanduser()
    name = p.name or str(p)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UploadError(f"no such file: {p}") from None
    except OSError as exc:
        raise UploadError(f"cannot read {p}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UploadError(f"{p} is a folder: give a video file")
    if not stat.S_ISREG(st.st_mode):
        raise UploadError(f"{p} is not a regular file (cameras and pipes are for `surgsam live`)")
    if st.st_size == 0:
        raise UploadError(f"{name} is empty (0 bytes)")
    mb = st.st_size / 2**20
    if mb > max_mb:
        raise UploadError(f"{name} is {mb:.1f} MB; the limit is {max_mb:g} MB (see --max-upload-mb)")
    av = require_av("reading and writing video in the app")
    try:
        container = _open(av, p)
    except Exception as exc:  # PyAV raises many types for non-media input
        raise UploadError(f"{name} is not a video PyAV can read ({_reason(exc, p)})") from None
    try:
        if container.format.name in _IMAGE_FORMATS or container.format.name.endswith("_pipe"):
            raise UploadError(f"{name} is a still image, not a video")
        if not container.streams.video:
            raise UploadError(f"{name} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate and float(rate) > 0 else _DEFAULT_FPS
        declared = int(stream.frames or 0)
        codec = stream.codec_context.name or "?"
        pts, size = _decode_all(container, stream, name)
    finally:
        container.close()
    if declared and len(pts) < declared:
        raise UploadError(f"{name} is truncated: {len(pts)} of the {declared} frames it declares decode")
    known = [t for t in pts if t is not None]
    usable = len(known) == len(pts) and all(a < b for a, b in zip(known, known[1:]))
    return VideoMeta(p, size, fps, len(pts), codec, mb, tuple(known) if usable else None)


def _open(av: Any, path: Path) -> Any:
    """``av.open`` that tolerates non-UTF-8 metadata (PyAV < 19 decodes it strictly)."""
    try:
        major = int(str(av.__version__).split(".")[0])
    except ValueError:
        major = 0
    return av.open(str(path), metadata_errors="ignore") if major < 19 else av.open(str(path))


def _decode_all(container: Any, stream: Any, name: str) -> tuple[list[int | None], tuple[int, int]]:
    """Decode every frame (no colour conversion); returns the pts list and the (H, W) size."""
    stream.thread_type = "AUTO"
    pts: list[int | None] = []
    size: tuple[int, int] | None = None
    try:
        for packet in container.demux(stream):
            if getattr(packet, "is_corrupt", False):
                raise UploadError(f"{name} is damaged or truncated: corrupt data near frame {len(pts)}")
            for frame in packet.decode():
                if getattr(frame, "is_corrupt", False):
                    raise UploadError(f"{name} is damaged: frame {len(pts)} does not decode cleanly")
                if size is None:
                    size = (frame.height, frame.width)
                elif (frame.height, frame.width) != size:
                    raise UploadError(f"{name}: the frame size changes at frame {len(pts)}, which is not supported")
                pts.append(frame.pts)
    except UploadError:
        raise
    except Exception as exc:
        raise UploadError(
            f"{name} is damaged or truncated: decoding failed at frame {len(pts)} ({_reason(exc)})"
        ) from None
    if not pts or size is None:
        raise UploadError(f"{name} has no decodable video frame")
    return pts, size


class FrameReader:
    """Frame ``i`` of a checked video as ``H x W x 3`` uint8 RGB, for scrubbing.

    Seeks to the keyframe before the frame's timestamp and decodes forward (or decodes on from
    the last frame read when the wanted one is a little ahead); without timestamps it decodes
    from the start. Keeps the last ``cache`` frames and one open file.
    """

    def __init__(self, meta: VideoMeta, cache: int = 8):
        self.meta = meta
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = max(1, cache)
        self._lock = threading.Lock()
        self._container: Any = None
        self._frames: Iterator[tuple[int, np.ndarray]] | None = None
        self._next = -1  # index the open iterator yields next (-1: none open)
        self._index = {t: i for i, t in enumerate(meta.pts)} if meta.pts is not None else None

    def __len__(self) -> int:
        return self.meta.num_frames

    def get(self, idx: int) -> np.ndarray:
        """Frame ``idx`` (0-based); raises IndexError outside the video."""
        idx = int(idx)
        if not 0 <= idx < self.meta.num_frames:
            raise IndexError(f"frame {idx} is outside the video (0..{self.meta.num_frames - 1})")
        with self._lock:
            if idx in self._cache:
                self._cache.move_to_end(idx)
                return self._cache[idx]
            frames = self._frames
            if frames is None or not 0 <= idx - self._next <= _FORWARD_WINDOW:
                frames = self._open_at(idx)
            for i, rgb in frames:
                self._next = i + 1
                self._remember(i, rgb)
                if i == idx:
                    return rgb
                if i > idx:
                    break
            # the stream did not deliver frame idx where expected: decode from the start
            for i, rgb in self._open_at(None):
                self._next = i + 1
                if i == idx:
                    self._remember(i, rgb)
                    return rgb
        raise IndexError(f"frame {idx} could not be decoded again from {self.meta.path.name}")

    def _remember(self, i: int, rgb: np.ndarray) -> None:
        self._cache[i] = rgb
        self._cache.move_to_end(i)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _open_at(self, idx: int | None) -> Iterator[tuple[int, np.ndarray]]:
        """Start a decode iterator at the keyframe before frame ``idx`` (None: the start); returns it."""
        self.close()
        av = require_av("reading and writing video in the app")
        self._container = _open(av, self.meta.path)
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        pts, index = self.meta.pts, self._index
        if idx is not None and pts is not None and index is not None and idx > 0:
            self._container.seek(int(pts[idx]), stream=stream, backward=True, any_frame=False)
            self._frames = self._by_pts(stream, index)
        else:
            self._frames = self._in_order(stream)
        self._next = 0
        return self._frames

    def _by_pts(self, stream: Any, index: dict[int, int]) -> Iterator[tuple[int, np.ndarray]]:
        for frame in self._container.decode(stream):
            i = index.get(frame.pts) if frame.pts is not None else None
            if i is None:  # a timestamp the check did not see: give up on seeking
                return
            yield i, frame.to_ndarray(format="rgb24")

    def _in_order(self, stream: Any) -> Iterator[tuple[int, np.ndarray]]:
        for i, frame in enumerate(self._container.decode(stream)):
            yield i, frame.to_ndarray(format="rgb24")

    def close(self) -> None:
        """Close the open file (the reader reopens it when needed)."""
        self._frames = None
        self._next = -1
        if self._container is not None:
            self._container.close()
            self._container = None
