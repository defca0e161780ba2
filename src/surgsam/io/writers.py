"""Mask writers (DAVIS palette PNGs, SA-V per-object folders) and video writers (PyAV, H.264).

Every file is written atomically (:mod:`surgsam.io.atomic`): to a temporary name in the same
folder, renamed into place once complete. A failed write raises :class:`OutputError` naming the
file and frame, and leaves an earlier file of that name intact.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._optional import require_av
from .atomic import OutputError, _remove_quietly, _temporary_path, atomic_path, describe_os_error
from .base import Closeable
from .labels import label_map_from_result, resolve_overlaps
from .overlay import as_masks, draw_overlay

__all__ = [
    "OverlayVideoWriter",
    "PaletteMaskWriter",
    "PerObjectMaskWriter",
    "VideoWriter",
    "davis_palette",
    "draw_overlay",
    "masks_to_label_map",
    "read_palette_png",
    "write_palette_png",
    "write_video",
]

PathLike = str | os.PathLike[str]


# -- palette PNGs -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _palette(num_colors: int) -> np.ndarray:
    ids = np.arange(num_colors, dtype=np.int64)
    pal = np.zeros((num_colors, 3), dtype=np.int64)
    for j in range(8):  # bit 3j of the id -> bit 7-j of R, 3j+1 -> G, 3j+2 -> B
        for channel in range(3):
            pal[:, channel] |= ((ids >> (3 * j + channel)) & 1) << (7 - j)
    out = pal.astype(np.uint8)
    out.flags.writeable = False
    return out


def davis_palette(num_colors: int = 256) -> np.ndarray:
    """The DAVIS / PASCAL VOC colour map, ``num_colors x 3`` uint8.

    Id 0 is black, 1 ``(128, 0, 0)``, 2 ``(0, 128, 0)``, ..., 255 ``(224, 224, 192)``: the id's
    bits are dealt round-robin to the high bits of R, G and B.
    """
    return _palette(int(num_colors)).copy()


def _as_label_map(label_map: Any) -> np.ndarray:
    arr = np.asarray(label_map.detach().cpu() if hasattr(label_map, "detach") else label_map)
    if arr.ndim != 2:
        raise ValueError(f"label map must be H x W, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"label map must hold integer object ids, got {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        raise ValueError(f"palette PNGs hold ids 0..255, got range [{int(arr.min())}, {int(arr.max())}]")
    return arr.astype(np.uint8, copy=False)


def write_palette_png(
    path: PathLike, label_map: Any, *, palette: np.ndarray | None = None, what: str | None = None
) -> Path:
    """Write an ``H x W`` id map (0 = background, 1..255 = objects) as a palette PNG.

    The pixel values are the ids; the palette (DAVIS by default) only colours them for viewing.
    Parent folders are created. The write is atomic: on failure :class:`OutputError` names the
    file (and ``what``, e.g. "frame 12") and an earlier file at ``path`` is left intact.
    """
    ids = _as_label_map(label_map)
    pal = davis_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    image = Image.fromarray(ids)  # "L"; putpalette turns it into "P" without remapping
    image.putpalette(pal.reshape(-1).tolist())
    path = Path(path)
    with atomic_path(path, what=what) as tmp:
        image.save(tmp, format="PNG")
    return path


def read_palette_png(path: PathLike, *, allow_rgb: bool = False) -> np.ndarray:
    """Read a palette (or single-channel) PNG as an ``H x W`` uint8 id map.

    An RGB(A) PNG holds colours, not ids, and is refused unless ``allow_rgb=True``, which maps
    DAVIS palette colours back to ids (any other colour is an error).
    """
    path = Path(path)
    with Image.open(path) as im:
        mode = im.mode
        if mode in ("P", "L", "1"):
            return np.array(im).astype(np.uint8, copy=False)
        if mode.startswith("I"):
            arr = np.array(im)
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise ValueError(f"{path}: ids outside 0..255 in a {mode} PNG")
            return arr.astype(np.uint8)
        if mode not in ("RGB", "RGBA"):
            raise ValueError(f"{path}: a {mode} image is not a mask PNG")
        if not allow_rgb:
            raise ValueError(
                f"{path} is an {mode} PNG, not a palette PNG: its pixels are colours, not object "
                "ids. Pass allow_rgb=True to map DAVIS palette colours back to ids."
            )
        rgb = np.asarray(im.convert("RGB"))
    return _rgb_to_ids(rgb, path)


def _rgb_to_ids(rgb: np.ndarray, path: Path) -> np.ndarray:
    rgb32 = rgb.astype(np.int32)
    packed = (rgb32[..., 0] << 16) | (rgb32[..., 1] << 8) | rgb32[..., 2]
    pal = davis_palette().astype(np.int32)
    pal_packed = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    colours, inverse = np.unique(packed, return_inverse=True)
    order = np.argsort(pal_packed)
    pos = np.clip(np.searchsorted(pal_packed[order], colours), 0, len(order) - 1)
    ids = order[pos]
    unknown = colours[pal_packed[ids] != colours]
    if unknown.size:
        shown = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in unknown[:5].tolist()]
        raise ValueError(f"{path}: colours not in the DAVIS palette: {shown}")
    return ids[inverse].reshape(rgb.shape[:2]).astype(np.uint8)


def masks_to_label_map(
    obj_ids: Sequence[int] | Any,
    masks: Any,
    shape: tuple[int, int] | None = None,
    *,
    logits: Any | None = None,
) -> np.ndarray:
    """Merge ``N x H x W`` bool masks into an ``H x W`` uint8 id map (0 = background).

    Overlaps are resolved by :func:`surgsam.io.labels.resolve_overlaps`, SAM 2's VOS rule:
    with ``logits`` (``N x H x W`` mask logits at the frame's size) the object with the highest
    logit keeps a contested pixel; without them the lowest id does. The order of ``obj_ids``
    does not matter. Ids must be 1..255. ``shape`` is needed only when there are no masks.
    """
    ids, ms = as_masks(obj_ids, masks, shape)
    bad = [i for i in ids if not 1 <= i <= 255]
    if bad:
        raise ValueError(f"object ids must be 1..255 to fit a palette PNG, got {bad}")
    return resolve_overlaps(ids, ms, logits, shape=shape if not ids else None).astype(np.uint8)


def frame_file_name(frame_idx: int, names: Sequence[str] | None) -> str:
    """File stem of a frame's mask: the input frame's own name (``names[frame_idx]``, e.g.
    ``frame100`` from ``frame100.jpg``: DAVIS tools match predictions by name) when known, else
    the zero-padded index ``00012``."""
    i = int(frame_idx)
    if names is not None and 0 <= i < len(names):
        return names[i]
    return f"{i:05d}"


def _check_names(names: Sequence[str] | None) -> list[str] | None:
    if names is None:
        return None
    out = [str(n) for n in names]
    if len(set(out)) != len(out) or any(not n or "/" in n or "\\" in n or n in (".", "..") for n in out):
        raise ValueError("frame names must be unique plain file names")
    return out


class PaletteMaskWriter(Closeable):
    """One DAVIS palette PNG per frame, ``out_dir/<name>.png``, pixel = object id; ``<name>``
    is the input frame's name when ``names`` (one per frame) is given, else ``{frame_idx:05d}``."""

    def __init__(self, out_dir: PathLike, *, palette: np.ndarray | None = None, names: Sequence[str] | None = None):
        self.out_dir = Path(out_dir)
        self.palette = palette
        self.names = _check_names(names)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def write(self, frame_idx: int, obj_ids: Sequence[int] | Any, masks: Any, *, logits: Any | None = None) -> Path:
        """Write the ``N x H x W`` bool masks of one frame, overlaps resolved as
        :func:`masks_to_label_map` does (pass the ``N x H x W`` ``logits`` for SAM 2's
        highest-logit rule; without them the lowest id wins)."""
        return self.write_label_map(frame_idx, masks_to_label_map(obj_ids, masks, logits=logits))

    def write_result(self, result: Any) -> Path:
        """Write an engine ``FrameResult`` (its masks resolved with its logits, SAM 2's rule)."""
        return self.write_label_map(result.frame_idx, label_map_from_result(result))

    def write_label_map(self, frame_idx: int, label_map: Any) -> Path:
        """Write an ``H x W`` id map for one frame."""
        path = self.out_dir / f"{frame_file_name(frame_idx, self.names)}.png"
        return write_palette_png(path, label_map, palette=self.palette, what=f"frame {int(frame_idx)}")


class PerObjectMaskWriter(Closeable):
    """SA-V layout: ``out_dir/{obj_id:03d}/<name>.png``, binary 0/255 grayscale PNGs (``<name>``
    as in :class:`PaletteMaskWriter`)."""

    def __init__(self, out_dir: PathLike, *, names: Sequence[str] | None = None):
        self.out_dir = Path(out_dir)
        self.names = _check_names(names)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def write(self, frame_idx: int, obj_ids: Sequence[int] | Any, masks: Any) -> list[Path]:
        """Write one PNG per object for this frame; returns the paths in ``obj_ids`` order."""
        ids, ms = as_masks(obj_ids, masks)
        paths = []
        for oid, mask in zip(ids, ms):
            if oid < 0:
                raise ValueError(f"object ids must be >= 0, got {oid}")
            path = self.out_dir / f"{oid:03d}" / f"{frame_file_name(frame_idx, self.names)}.png"
            with atomic_path(path, what=f"frame {int(frame_idx)}, object {oid}") as tmp:
                Image.fromarray(mask.astype(np.uint8) * 255).save(tmp, format="PNG")
            paths.append(path)
        return paths

    def write_result(self, result: Any) -> list[Path]:
        """Write an engine ``FrameResult``: each object's own mask, overlaps kept (one file per
        object cannot conflict; SAM 2's ``--per_obj_png_file`` output does the same)."""
        return self.write(result.frame_idx, result.obj_ids, result.masks)


# -- video ------------------------------------------------------------------------------------
_DEFAULT_CODECS = {".webm": "libvpx-vp9", ".avi": "mpeg4"}  # everything else: H.264


class VideoWriter(Closeable):
    """Encode ``H x W x 3`` uint8 RGB frames to a video file with PyAV.

    Default codec by extension: H.264 (libx264, ``crf``) for mp4/mov/mkv, VP9 for webm, MPEG-4
    Part 2 for avi. mp4/mov get ``+faststart`` so browsers can play them while loading. With a
    chroma-subsampled ``pix_fmt`` (``yuv420p``, the one every player decodes) odd sizes are padded
    to even by repeating the last row/column; ``pix_fmt="yuv444p"`` keeps odd sizes exact.
    The file is opened at the first frame, whose size every later frame must match.

    The video is encoded under a temporary name beside ``path`` and renamed onto ``path`` by
    :meth:`close`, so an earlier file at ``path`` survives a failed run: a write error (full
    disk, file-size limit) raises :class:`OutputError` naming the file and frame and discards
    the partial video; :meth:`abort` (or leaving a ``with`` block on an exception) discards it too.
    """

    def __init__(
        self,
        path: PathLike,
        fps: float = 30.0,
        *,
        codec: str | None = None,
        crf: int = 23,
        pix_fmt: str = "yuv420p",
        options: Mapping[str, str] | None = None,
    ):
        require_av("writing video")  # fail at construction, not at the first frame
        self.path = Path(path)
        self.fps = float(fps)
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.codec = codec or _DEFAULT_CODECS.get(self.path.suffix.lower(), "libx264")
        self.crf = crf
        self.pix_fmt = pix_fmt
        self.options = dict(options or {})
        self.frames_written = 0
        self._container: Any = None
        self._stream: Any = None
        self._tmp: Path | None = None  # where the video is encoded until close() renames it
        self._size: tuple[int, int] | None = None  # (H, W) of the input frames
        self._pad = (0, 0)
        self._closed = False

    def _open(self, h: int, w: int) -> None:
        av = require_av("writing video")
        ph = h % 2 if "420" in self.pix_fmt or "nv12" in self.pix_fmt else 0
        pw = w % 2 if any(s in self.pix_fmt for s in ("420", "422", "nv12")) else 0
        self._size, self._pad = (h, w), (ph, pw)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {describe_os_error(exc)}", exc.errno) from exc
        if self.path.is_dir():
            raise OutputError(f"cannot write {self.path}: a folder has this name")
        suffix = self.path.suffix.lower()
        container_opts = {"movflags": "+faststart"} if suffix in (".mp4", ".mov", ".m4v") else {}
        options = dict(self.options)
        if "264" in self.codec or "vpx" in self.codec:
            options.setdefault("crf", str(self.crf))
        if self.codec == "libx264":
            options.setdefault("preset", "veryfast")
        if "vpx" in self.codec:
            options.setdefault("b", "0")  # constant quality (crf) mode
        self._tmp = _temporary_path(self.path)
        try:
            container = av.open(str(self._tmp), "w", options=container_opts)
        except OSError as exc:
            _remove_quietly(self._tmp)
            raise OutputError(f"cannot write {self.path}: {describe_os_error(exc)}", exc.errno) from exc
        rate = Fraction(self.fps).limit_denominator(1001)
        try:
            try:
                stream = container.add_stream(self.codec, rate=rate, options=options)
            except (av.error.FFmpegError, ValueError) as exc:
                if self.codec != "libx264":
                    raise ValueError(f"cannot encode with {self.codec!r}: {exc}") from exc
                stream = container.add_stream("h264", rate=rate)  # any H.264 encoder there is
            stream.width, stream.height, stream.pix_fmt = w + pw, h + ph, self.pix_fmt
            if self.codec == "mpeg4":
                stream.codec_context.qscale = 3  # constant quality; the default bitrate is low
        except BaseException:
            container.close()
            _remove_quietly(self._tmp)
            raise
        self._container, self._stream = container, stream

    def write(self, frame: Any) -> None:
        """Append one ``H x W x 3`` uint8 RGB frame."""
        if self._closed:
            raise RuntimeError(f"{self.path}: writer is closed")
        img = np.asarray(frame.detach().cpu() if hasattr(frame, "detach") else frame)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"frame must be H x W x 3 uint8 RGB, got {img.shape} {img.dtype}")
        if self._container is None:
            self._open(*img.shape[:2])
        elif img.shape[:2] != self._size:
            raise ValueError(f"{self.path}: frame is {img.shape[:2]}, earlier frames {self._size}")
        if any(self._pad):
            img = np.pad(img, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        av = require_av()
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        try:
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
        except OSError as exc:
            self.abort()
            raise OutputError(
                f"cannot write {self.path} (frame {self.frames_written}): {describe_os_error(exc)}; "
                "the partial video was discarded and any earlier file of that name left intact",
                exc.errno,
            ) from exc
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder, finish the file and rename it onto ``path`` (no file is written
        if no frame was). A failure discards the partial video and raises :class:`OutputError`."""
        if self._closed:
            return
        self._closed = True
        if self._container is None or self._tmp is None:
            return
        container, self._container = self._container, None
        try:
            try:
                for packet in self._stream.encode():
                    container.mux(packet)
            finally:
                container.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            _remove_quietly(self._tmp)
            raise OutputError(
                f"cannot finish {self.path}: {describe_os_error(exc)}; the partial video was discarded and any "
                "earlier file of that name left intact",
                exc.errno,
            ) from exc
        except BaseException:
            _remove_quietly(self._tmp)
            raise

    def abort(self) -> None:
        """Stop without finishing: discard the partial video, leave ``path`` as it was."""
        self._closed = True
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:  # the container may be broken (that is why we abort)
                pass
        if self._tmp is not None:
            _remove_quietly(self._tmp)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


class OverlayVideoWriter(Closeable):
    """Write frames with their masks drawn on (see :func:`draw_overlay`) to an H.264 mp4."""

    def __init__(
        self,
        path: PathLike,
        fps: float = 30.0,
        *,
        alpha: float = 0.45,
        contour_width: int = 2,
        show_ids: bool = True,
        colors: Mapping[int, tuple[int, int, int]] | None = None,
        legend: bool | Mapping[int, str] = True,
        crf: int = 23,
        codec: str | None = None,
    ):
        self.video = VideoWriter(path, fps, codec=codec, crf=crf)
        self.style: dict[str, Any] = dict(
            alpha=alpha, contour_width=contour_width, show_ids=show_ids, colors=colors, legend=legend
        )

    @property
    def path(self) -> Path:
        return self.video.path

    @property
    def frames_written(self) -> int:
        return self.video.frames_written

    def write(
        self,
        frame: Any,
        obj_ids: Sequence[int] | Any = (),
        masks: Any = None,
        text: str | Sequence[str] | None = None,
    ) -> np.ndarray:
        """Draw ``masks`` (``N x H x W`` bool) and ``text`` on ``frame``, append it, return it."""
        drawn = draw_overlay(frame, obj_ids, masks, text, **self.style)
        self.video.write(drawn)
        return drawn

    def close(self) -> None:
        self.video.close()

    def abort(self) -> None:
        """Discard the partial video (see :meth:`VideoWriter.abort`)."""
        self.video.abort()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.video.__exit__(exc_type, exc, tb)


def write_video(path: PathLike, frames: Iterable[Any], fps: float = 30.0, **kwargs: Any) -> Path:
    """Write RGB frames to a video file (test and demo clips); ``kwargs`` go to VideoWriter."""
    with VideoWriter(path, fps, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    if writer.frames_written == 0:
        raise ValueError(f"no frames to write to {path}")
    return Path(path)
