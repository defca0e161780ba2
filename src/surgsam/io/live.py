"""Cameras, network streams and pipes through OpenCV, optionally dropping frames to stay current.

Every wait is bounded: opening a source (a named pipe with no writer included) gives up after
``open_timeout_s``, a read after the ``timeout`` given to :meth:`LiveSource.read`, in both
modes. A video file that ends before the frame count its container declares is reported as
damaged (:class:`~surgsam.io.base.FrameReadError`), not as the end of the stream. Time (pacing,
arrival stamps) comes from an injectable :class:`Clock`, so tests need not depend on wall time.
"""

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

from .._optional import require_cv2
from .base import FrameReadError, FrameSource, SourceOpenError

__all__ = ["STREAM_SCHEMES", "CaptureLike", "Clock", "LiveSource", "LiveStats", "parse_camera_index"]

#: URL schemes opened as live network streams.
STREAM_SCHEMES: frozenset[str] = frozenset(
    {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "rtp", "srt"}
)

# cv2.CAP_PROP_* values, stable across OpenCV releases; literal so that an injected capture
# needs no OpenCV.
_PROP_WIDTH, _PROP_HEIGHT, _PROP_FPS, _PROP_FRAME_COUNT = 3, 4, 5, 7
# A frame count OpenCV estimated from the duration may overshoot a little (see video_file.py).
_ESTIMATE_SLACK_FRAC, _ESTIMATE_SLACK_FRAMES = 0.05, 2

_log = logging.getLogger(__name__)


class CaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` that :class:`LiveSource` uses (``get`` is optional)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


class Clock:
    """The time live mode sees: :meth:`now` (monotonic seconds) and :meth:`sleep`, which returns
    early when ``stop`` is set. Pass another one to drive pacing and latency from a script."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(seconds)


SYSTEM_CLOCK = Clock()


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


def _open_bounded(open_fn: Any, timeout_s: float, message: str, unstick: Any = None) -> Any:
    """``open_fn()`` in a helper thread, given up on after ``timeout_s`` (OpenCV blocks in
    ``open(2)`` on a pipe with no writer, whatever its own timeouts say). On giving up,
    ``unstick()`` is called to end the blocked open, which matters: a thread stuck there keeps a
    lock of OpenCV's, and every later capture would wait for it. A capture that opens after the
    caller gave up is released by the helper."""
    box: dict[str, Any] = {}
    done = threading.Event()
    lock = threading.Lock()

    def target() -> None:
        try:
            result = open_fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        else:
            with lock:
                if box.get("abandoned"):
                    result.release()
                else:
                    box["cap"] = result
        finally:
            done.set()

    def abandon() -> None:
        """Give up on the open (a capture that arrives later is released)."""
        with lock:
            if "error" in box:
                return
            if "cap" in box:  # opened after all, but the caller is going away
                box.pop("cap").release()
                return
            box["abandoned"] = True
        if unstick is not None:
            unstick()
            done.wait(5.0)

    threading.Thread(target=target, name="LiveSource-open", daemon=True).start()
    try:
        finished = done.wait(timeout_s + 1.0)  # a little over: OpenCV's own open timeout speaks first
    except BaseException:  # Ctrl+C, SIGTERM while waiting
        abandon()
        raise
    if not finished:
        with lock:
            late = "cap" in box or "error" in box
        if not late:
            abandon()
            raise SourceOpenError(message)
    if "error" in box:
        raise box["error"]
    return box["cap"]


def _unstick_fifo(path: str) -> None:
    """Let a reader blocked opening the named pipe ``path`` go: connect as a writer and leave at
    once (the reader then sees an empty stream and fails)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader is waiting (any more)
        return
    os.close(fd)


class LiveSource(FrameSource):
    """Frames from a camera index, a stream URL, a named pipe or a video file read as live.

    ``drop_frames=True`` (default) runs a background grabber thread that keeps only the newest
    frame: :meth:`read` returns the most recent frame not yet returned, so a slow consumer stays
    current instead of lagging, and overwritten frames are counted in :attr:`stats`.
    ``drop_frames=False`` reads every frame in order, in the caller's thread.

    ``realtime`` paces reading at the source fps (default: on for regular files, which would
    otherwise be read as fast as they decode; off for cameras and streams, which arrive in real
    time). ``capture`` injects a ``cv2.VideoCapture``-like object (tests, custom backends);
    ``clock`` the time source (:class:`Clock`).

    Frames are read by a background thread in both modes (without dropping it waits for each
    frame to be taken before reading the next), so :meth:`read` can give up after ``timeout``
    on any source. Opening waits at most ``open_timeout_s`` (a named pipe: for a writer). A
    failed read ends the stream; for a video file that has not delivered the frames its
    container declares, :meth:`read` raises :class:`FrameReadError` instead (truncated or
    damaged).
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
        clock: Clock | None = None,
    ):
        self.spec = spec
        self.drop_frames = drop_frames
        self.clock = clock or SYSTEM_CLOCK
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
            capture = _open_bounded(
                lambda: self._open_cv2(index, text, kind, open_timeout_s, read_timeout_s),
                open_timeout_s,
                self._open_timeout_message(open_timeout_s),
                unstick=(lambda: _unstick_fifo(text)) if kind == "pipe" else None,
            )
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
        self._expected = self._declared_frames(text) if kind == "file" else None

    def _open_timeout_message(self, timeout_s: float) -> str:
        if self.kind == "pipe":
            return f"no writer connected to pipe {self.name} within {timeout_s:g} s"
        return f"could not open {self.kind} {self.name} within {timeout_s:g} s"

    def _declared_frames(self, path: str) -> tuple[int, bool] | None:
        """(frame count, exact?) of a video file: exact when the container lists its frames
        (PyAV's ``stream.frames``), else OpenCV's estimate from the duration."""
        count = self._prop(_PROP_FRAME_COUNT)
        exact = False
        try:
            import av

            with av.open(path) as container:
                n = int(container.streams.video[0].frames or 0)
            if n > 0:
                count, exact = float(n), True
        except Exception:  # PyAV missing or unable to read it: OpenCV's estimate will do
            pass
        return (int(count), exact) if count else None

    def _check_complete(self) -> None:
        """Raise :class:`FrameReadError` when a file ended short of its declared frames."""
        if self._expected is None:
            return
        expected, exact = self._expected
        slack = 0 if exact else int(expected * _ESTIMATE_SLACK_FRAC) + _ESTIMATE_SLACK_FRAMES
        if self._grabbed < expected - slack:
            kind = "declares" if exact else "implies (from its duration)"
            raise FrameReadError(
                f"{self.name} is truncated or damaged: it ended at frame {self._grabbed}, but "
                f"the container {kind} {expected} frames",
                frame_index=self._grabbed,
            )

    def _open_cv2(self, index: int | None, text: str, kind: str, open_timeout_s: float, read_timeout_s: float) -> Any:
        cv2 = require_cv2()
        self._cv2 = cv2
        if index is not None or kind == "device":
            cap = cv2.VideoCapture(index if index is not None else text)
        else:
            params = [  # OpenCV's own read timeout later than the caller's, which names the stall
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int((2 * read_timeout_s + 1) * 1000),
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
            now = self.clock.now()
            if self._next_due is None or now - self._next_due > 1.0:  # start, or fell behind
                self._next_due = now
            delay = self._next_due - now
            if delay > 0:
                self.clock.sleep(delay, self._stop)
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
                if not self.drop_frames:  # in order: wait until the frame waiting is taken
                    with self._lock:
                        self._lock.wait_for(lambda: self._latest is None or self._closed)
                        if self._closed:
                            return
                frame = self._read_raw()
                with self._lock:
                    if frame is None:
                        self._check_complete()
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
        """Start the grabber thread (the first read does it otherwise)."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: source is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._grab_loop, name=f"LiveSource({self.name})", daemon=True)
                self._thread.start()

    def read_latest(self, timeout: float | None = None) -> np.ndarray | None:
        """Newest frame not yet returned, waiting for one if needed; ``None`` at end of stream.

        Frames grabbed since the previous call, except the newest, are dropped. Raises
        ``TimeoutError`` when no frame arrives within ``timeout`` seconds, and re-raises an
        error the grabber hit. Returns ``None`` too when another thread closes the source.
        """
        if not self.drop_frames:
            raise RuntimeError("read_latest() needs LiveSource(..., drop_frames=True); use read()")
        return self._take(timeout)

    def _take(self, timeout: float | None) -> np.ndarray | None:
        self.start()  # raises once the source is closed
        with self._lock:
            ready = self._lock.wait_for(lambda: self._latest is not None or self._ended or self._closed, timeout)
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
            self._lock.notify_all()  # without dropping, the grabber waits for the slot to empty
        return self._to_rgb(frame)

    def read(self, timeout: float | None = None) -> np.ndarray | None:
        """Next frame as ``H x W x 3`` RGB (the newest one when dropping), ``None`` at the end.

        Raises ``TimeoutError`` when none arrives within ``timeout`` seconds, and
        :class:`FrameReadError` when a video file ends short of its declared length."""
        return self._take(timeout)

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
