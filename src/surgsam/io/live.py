"""Cameras, network streams and pipes through OpenCV, optionally dropping frames to stay current."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from ._optional import require_cv2
from .base import FrameSource, SourceOpenError

__all__ = ["STREAM_SCHEMES", "CaptureLike", "LiveSource", "LiveStats", "parse_camera_index"]

#: URL schemes opened as live network streams.
STREAM_SCHEMES: frozenset[str] = frozenset(
    {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "rtp", "srt"}
)

# cv2.CAP_PROP_* values, stable across OpenCV releases; literal so that an injected capture
# needs no OpenCV.
_PROP_WIDTH, _PROP_HEIGHT, _PROP_FPS = 3, 4, 5

_log = logging.getLogger(__name__)


class CaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` that :class:`LiveSource` uses (``get`` is optional)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class LiveStats:
    """Frame accounting: ``grabbed == delivered + dropped`` (+1 while a frame is pending)."""

    grabbed: int
    delivered: int
    dropped: int


def parse_camera_index(spec: object) -> int | None:
    """``0`` or ``"0"`` -> camera index 0; anything else -> ``None``."""
    if isinstance(spec, bool):
        return None
    if isinstance(spec, int):
        return spec
    if isinstance(spec, str) and spec.strip().isascii() and spec.strip().isdigit():
        return int(spec.strip())
    return None


def _mask_url(url: str) -> str:
    """Hide a password in ``scheme://user:password@host/...`` for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]  # keeps the port and IPv6 brackets as written
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class LiveSource(FrameSource):
    """Frames from a camera index, a stream URL, a named pipe or a video file read as live.

    ``drop_frames=True`` (default) runs a background grabber thread that keeps only the newest
    frame: :meth:`read` returns the most recent frame not yet returned, so a slow consumer stays
    current instead of lagging, and overwritten frames are counted in :attr:`stats`.
    ``drop_frames=False`` reads every frame in order, in the caller's thread.

    ``realtime`` paces reading at the source fps (default: on for regular files, which would
    otherwise be read as fast as they decode; off for cameras and streams, which arrive in real
    time). ``capture`` injects a ``cv2.VideoCapture``-like object (tests, custom backends).
    A failed read ends the stream. Opening a named pipe blocks until a writer connects.
    """

    def __init__(
        self,
        spec: int | str | os.PathLike[str],
        *,
        drop_frames: bool = True,
        realtime: bool | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        capture: CaptureLike | None = None,
    ):
        self.spec = spec
        self.drop_frames = drop_frames
        self._cv2: Any = None
        is_file = False
        index = parse_camera_index(spec)
        text = os.fspath(spec) if not isinstance(spec, int) else str(spec)
        if index is not None:
            self.name, kind = f"camera:{index}", "camera"
        elif urlsplit(text).scheme.lower() in STREAM_SCHEMES:
            self.name, kind = _mask_url(text), "stream"
        else:
            path = Path(text)
            if capture is None and not path.exists():
                raise FileNotFoundError(f"live source not found: {path}")
            is_file = path.is_file()
            self.name, kind = path.name or text, "file" if is_file else "device"
            if path.exists() and stat.S_ISFIFO(path.stat().st_mode):
                kind = "pipe"
        self.kind = kind
        if capture is None:
            capture = self._open_cv2(index, text, kind, open_timeout_s, read_timeout_s)
        self._cap = capture
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._latest: np.ndarray | None = None
        self._ended = False
        self._closed = False
        self._thread_done = False
        self._release_in_thread = False
        self._error: BaseException | None = None
        self._grabbed = self._delivered = self._dropped = 0
        self._fps = self._prop(_PROP_FPS)
        w, h = self._prop(_PROP_WIDTH), self._prop(_PROP_HEIGHT)
        self._size = (int(h), int(w)) if w and h else None
        pace = is_file if realtime is None else realtime
        self._pace_dt = 1.0 / (self._fps or 30.0) if pace else 0.0
        self._next_due: float | None = None

    def _open_cv2(
        self, index: int | None, text: str, kind: str, open_timeout_s: float, read_timeout_s: float
    ) -> Any:
        cv2 = require_cv2()
        self._cv2 = cv2
        if index is not None or kind == "device":
            cap = cv2.VideoCapture(index if index is not None else text)
        else:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1000),
            ]
            cap = cv2.VideoCapture(text, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            hint = {
                "camera": "check the index, device permissions and that no other program uses it",
                "stream": f"check the address, credentials and network (timeout {open_timeout_s}s)",
            }.get(kind, "check that it is a video OpenCV's FFmpeg backend can read")
            raise SourceOpenError(f"cannot open {kind} {self.name}: {hint}")
        if self.drop_frames and index is not None:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # not every backend honours it; harmless
        return cap

    def _prop(self, prop: int) -> float | None:
        get = getattr(self._cap, "get", None)
        try:
            value = float(get(prop)) if get is not None else 0.0
        except (TypeError, ValueError):
            return None
        return value if 0 < value < 10_000 else None

    # -- metadata ---------------------------------------------------------------------------
    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size

    @property
    def is_live(self) -> bool:
        return True

    @property
    def stats(self) -> LiveStats:
        """Grabbed / delivered / dropped frame counts so far."""
        with self._lock:
            return LiveStats(self._grabbed, self._delivered, self._dropped)

    @property
    def dropped_frames(self) -> int:
        return self.stats.dropped

    # -- reading ----------------------------------------------------------------------------
    def _read_raw(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        if self._pace_dt:
            now = time.monotonic()
            if self._next_due is None or now - self._next_due > 1.0:  # start, or fell behind
                self._next_due = now
            delay = self._next_due - now
            if delay > 0:
                self._stop.wait(delay)
            self._next_due += self._pace_dt
        return frame

    def _to_rgb(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim == 2:
            rgb = np.repeat(frame[:, :, None], 3, axis=2)
        elif self._cv2 is not None and frame.shape[2] == 3:
            rgb = self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)
        else:
            rgb = np.ascontiguousarray(frame[:, :, 2::-1])  # BGR(A) -> RGB, alpha dropped
        if self._size is None:
            self._size = (rgb.shape[0], rgb.shape[1])
        return rgb

    def _grab_loop(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self._read_raw()
                with self._lock:
                    if frame is None:
                        self._ended = True
                        self._lock.notify_all()
                        return
                    if self._latest is not None:
                        self._dropped += 1
                    self._latest = frame
                    self._grabbed += 1
                    self._lock.notify_all()
        except BaseException as exc:  # handed to the consumer thread by read()
            with self._lock:
                self._error = exc
                self._ended = True
                self._lock.notify_all()
        finally:
            with self._lock:
                self._thread_done = True
                release = self._release_in_thread
            if release:
                self._cap.release()

    def start(self) -> None:
        """Start the grabber thread (``drop_frames=True``); the first read does it otherwise."""
        if not self.drop_frames:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: source is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._grab_loop, name=f"LiveSource({self.name})", daemon=True
                )
                self._thread.start()

    def read_latest(self, timeout: float | None = None) -> np.ndarray | None:
        """Newest frame not yet returned, waiting for one if needed; ``None`` at end of stream.

        Frames grabbed since the previous call, except the newest, are dropped. Raises
        ``TimeoutError`` when no frame arrives within ``timeout`` seconds, and re-raises an
        error the grabber hit. Returns ``None`` too when another thread closes the source.
        """
        if not self.drop_frames:
            raise RuntimeError("read_latest() needs LiveSource(..., drop_frames=True); use read()")
        self.start()
        with self._lock:
            ready = self._lock.wait_for(
                lambda: self._latest is not None or self._ended or self._closed, timeout
            )
            if not ready:
                raise TimeoutError(f"{self.name}: no frame within {timeout}s")
            if self._closed:  # closed by another thread while this one waited
                return None
            if self._latest is None:
                if self._error is not None:
                    raise self._error
                return None
            frame, self._latest = self._latest, None
            self._delivered += 1
        return self._to_rgb(frame)

    def read(self, timeout: float | None = None) -> np.ndarray | None:
        """Next frame as ``H x W x 3`` RGB (the newest one when dropping), ``None`` at the end."""
        if self.drop_frames:
            return self.read_latest(timeout)
        if self._closed:
            raise RuntimeError(f"{self.name}: source is closed")
        frame = self._read_raw()
        if frame is None:
            return None
        with self._lock:
            self._grabbed += 1
            self._delivered += 1
        return self._to_rgb(frame)

    def __iter__(self) -> Iterator[np.ndarray]:
        while (frame := self.read()) is not None:
            yield frame

    def close(self, join_timeout_s: float = 2.0) -> None:
        """Stop the grabber and release the capture.

        A grabber stuck inside a blocking ``read()`` (stalled stream) releases the capture
        itself when that read returns, so it is never released under a running read.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._lock.notify_all()
        self._stop.set()
        if thread is not None:
            thread.join(join_timeout_s)
            with self._lock:
                if not self._thread_done:
                    self._release_in_thread = True
                    _log.warning("%s: grabber still blocked in read(); releasing later", self.name)
                    return
        self._cap.release()
