"""Video files (mp4, avi, mkv, webm, ...) decoded lazily, frame by frame, with PyAV."""

from __future__ import annotations

import logging
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require_av
from .base import FrameSource, SourceOpenError, VideoDecodeError

__all__ = ["VIDEO_EXTENSIONS", "VideoFileSource", "VideoInfo"]

#: File extensions treated as video files by :func:`surgsam.io.open_source`.
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".avi",
        ".mkv",
        ".webm",
        ".mpg",
        ".mpeg",
        ".ts",
        ".mts",
        ".m2ts",
        ".wmv",
        ".flv",
        ".ogv",
        ".3gp",
        ".h264",
        ".264",
        ".hevc",
        ".h265",
    }
)

# A count estimated from the duration may overshoot by a few frames (audio longer than video,
# rounding), so only a clear shortfall is reported as truncation.
_ESTIMATE_SLACK_FRAC = 0.05
_ESTIMATE_SLACK_FRAMES = 2

_log = logging.getLogger(__name__)

#: Containers FFmpeg opens for a single still image (PNG, JPEG, ... whatever its extension):
#: an image is not a video (the web app refuses them the same way).
_STILL_IMAGE_FORMATS = ("image2", "apng")


def _av_major(av: Any) -> int:
    try:
        return int(str(av.__version__).split(".")[0])
    except ValueError:
        return 0


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream."""

    path: Path
    size: tuple[int, int]  # (H, W) of the decoded frames
    fps: float | None
    num_frames: int | None
    num_frames_exact: bool  # True when the container stores the count, False when estimated
    duration_s: float | None
    codec: str
    container_format: str


class VideoFileSource(FrameSource):
    """Decode a video file lazily: each iteration opens the file and yields RGB frames.

    Opening probes the header and decodes the first frame, so an unreadable file fails here
    rather than mid-run. Iterating never holds more than the decoder's few frames in memory.

    With ``strict=True`` (default) a damaged stream raises :class:`VideoDecodeError` naming the
    frame index instead of yielding concealed garbage: a demux/decode error, a packet or frame
    flagged corrupt, or a stream that ends short of the frame count the container declares
    (a truncated file). Where the count is only estimated from the duration (mkv, webm), a
    shortfall counts once it exceeds 5% + 2 frames, so a cut in the last few percent of such a
    file can pass. ``strict=False`` is best effort: it logs and skips what does not decode,
    stops at the last good frame, and accepts a short stream.

    Display-rotation metadata (phone videos) is not applied: frames come as stored.
    """

    def __init__(self, path: str | os.PathLike[str], *, strict: bool = True, threads: bool = True):
        self.path = Path(path)
        self.strict = strict
        self.threads = threads
        if not self.path.exists():
            raise FileNotFoundError(f"video file not found: {self.path}")
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a directory; use ImageFolderSource for a folder of frames")
        self.name = self.path.stem
        self.info = self._probe()

    # -- metadata ---------------------------------------------------------------------------
    @property
    def fps(self) -> float | None:
        return self.info.fps

    @property
    def size(self) -> tuple[int, int]:
        return self.info.size

    @property
    def num_frames(self) -> int | None:
        """Frame count: exact when the container stores it, else estimated from the duration."""
        return self.info.num_frames

    @property
    def num_frames_exact(self) -> bool:
        """Whether :attr:`num_frames` is stored in the container (not estimated from the duration)."""
        return self.info.num_frames_exact

    def __len__(self) -> int:
        if not self.info.num_frames_exact or self.info.num_frames is None:
            raise TypeError(
                f"{self.path.name}: the {self.info.container_format} container does not store a "
                f"frame count (estimate: {self.info.num_frames}); use .num_frames or iterate"
            )
        return self.info.num_frames

    # -- decoding ---------------------------------------------------------------------------
    def _open_container(self) -> Any:
        av = require_av()
        # PyAV < 19 decodes metadata strictly (a non-UTF-8 tag would fail the open); 19 dropped
        # the argument and always decodes with surrogateescape.
        kwargs = {"metadata_errors": "ignore"} if _av_major(av) < 19 else {}
        try:
            container = av.open(str(self.path), **kwargs)
        except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
            raise SourceOpenError(f"cannot open {self.path} as video: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise SourceOpenError(f"cannot open {self.path} as video: it has no video stream")
        return container

    def _probe(self) -> VideoInfo:
        container = self._open_container()
        try:
            fmt = container.format.name
            if fmt in _STILL_IMAGE_FORMATS or fmt.endswith("_pipe"):
                raise SourceOpenError(
                    f"{self.path} is a still image ({fmt.removesuffix('_pipe')}), not a video; for a "
                    "sequence of frames give a folder of images"
                )
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else None
            duration_s = None
            if stream.duration and stream.time_base:  # rationals: Fraction, or AVRational (19+)
                duration_s = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration_s = container.duration / 1_000_000  # AV_TIME_BASE
            exact = bool(stream.frames and stream.frames > 0)
            if exact:
                num_frames: int | None = int(stream.frames)
            elif duration_s and fps:
                num_frames = max(1, round(duration_s * fps))
            else:
                num_frames = None
            codec = stream.codec_context.name or "?"
        finally:
            container.close()
        # Decode one frame: it proves the stream decodes and gives the true output size.
        frames = self._decode(None)
        try:
            first = next(frames, None)
        finally:
            frames.close()
        if first is None:
            raise VideoDecodeError(f"{self.path}: no decodable video frames", frame_index=0, path=self.path)
        h, w = first.shape[:2]
        return VideoInfo(self.path, (h, w), fps, num_frames, exact, duration_s, codec, fmt)

    def __iter__(self) -> Iterator[np.ndarray]:
        yield from self._decode(self.info)

    def _fail(self, index: int, what: str, exc: BaseException | None = None) -> VideoDecodeError:
        detail = f": {exc}" if exc is not None else ""
        return VideoDecodeError(
            f"{self.path}: failed to decode frame {index} ({what}){detail}",
            frame_index=index,
            path=self.path,
        )

    def _decode(self, info: VideoInfo | None) -> Generator[np.ndarray, None, None]:
        """Yield frames; with ``info`` (after probing) also check sizes and the final count."""
        av = require_av()
        errors = (av.error.FFmpegError, OSError, ValueError, RuntimeError)
        container = self._open_container()
        try:
            stream = container.streams.video[0]
            if self.threads:
                stream.thread_type = "AUTO"
            packets = container.demux(stream)
            index = 0
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except errors as exc:
                    if self.strict:
                        raise self._fail(index, "demuxing failed", exc) from exc
                    _log.warning("%s: demuxing stopped at frame %d: %s", self.path, index, exc)
                    break
                if self.strict and getattr(packet, "is_corrupt", False):
                    raise self._fail(index, "packet flagged corrupt, file truncated or damaged")
                try:
                    frames = packet.decode()
                except errors as exc:
                    if self.strict:
                        raise self._fail(index, "decoder error", exc) from exc
                    _log.warning("%s: skipped a packet near frame %d: %s", self.path, index, exc)
                    continue
                for frame in frames:
                    if getattr(frame, "is_corrupt", False):
                        if self.strict:
                            raise self._fail(index, "decoder flagged the frame corrupt")
                        continue
                    try:
                        rgb = frame.to_ndarray(format="rgb24")
                    except errors as exc:
                        raise self._fail(index, "colour conversion failed", exc) from exc
                    if info is not None and rgb.shape[:2] != info.size:
                        raise self._fail(index, f"frame size changed from {info.size} to {rgb.shape[:2]}")
                    yield rgb
                    index += 1
            if info is not None:
                self._check_count(index)
        finally:
            container.close()

    def _check_count(self, decoded: int) -> None:
        if decoded == 0:
            raise VideoDecodeError(f"{self.path}: no decodable video frames", frame_index=0, path=self.path)
        expected = self.info.num_frames
        if not self.strict or expected is None:
            return
        slack = 0
        if not self.info.num_frames_exact:
            slack = int(expected * _ESTIMATE_SLACK_FRAC) + _ESTIMATE_SLACK_FRAMES
        if decoded < expected - slack:
            kind = "declares" if self.info.num_frames_exact else "implies (from its duration)"
            raise VideoDecodeError(
                f"{self.path}: stream ended at frame {decoded}, but the container {kind} "
                f"{expected} frames; the file is probably truncated "
                "(pass strict=False to accept the frames that decode)",
                frame_index=decoded,
                path=self.path,
            )
