"""Draw masks, contours, object ids and text onto frames with numpy and Pillow (no OpenCV)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["as_masks", "draw_overlay", "overlay_color"]

# Golden-ratio hue steps: consecutive ids are ~138 degrees apart and ids ten apart (the
# instrument / tissue ids 1-10, 11, 12, 17 of EndoVis) ~65 degrees; hues stay within
# 30..330 degrees so no object is drawn pure red on red tissue.
_GOLDEN = (5**0.5 - 1) / 2


def overlay_color(obj_id: int) -> tuple[int, int, int]:
    """Display colour of an object id: a bright hue from a golden-ratio sequence, so that
    neighbouring ids and ids ten apart never share a colour (ids 1 and 11 once did).

    Overlay colours favour visibility on tissue; palette PNGs use the DAVIS palette instead.
    """
    hue = 30.0 + 300.0 * ((int(obj_id) * _GOLDEN) % 1.0)
    return _hsv_to_rgb(hue, 1.0, 1.0)


def _hsv_to_rgb(hue: float, sat: float, val: float) -> tuple[int, int, int]:
    c = val * sat
    x = c * (1 - abs((hue / 60.0) % 2 - 1))
    sector = int(hue // 60) % 6
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][sector]
    m = val - c
    return int(round(255 * (r + m))), int(round(255 * (g + m))), int(round(255 * (b + m)))


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on an accelerator
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_masks(
    obj_ids: Sequence[int] | Any, masks: Any, shape: tuple[int, int] | None = None
) -> tuple[list[int], np.ndarray]:
    """Validate ``(obj_ids, masks)`` and return ``(ids, N x H x W bool)``.

    Accepts numpy arrays or tensors shaped ``N x H x W`` or ``N x 1 x H x W`` (and ``H x W`` for
    one object). Integer masks count non-zero as inside; float masks are refused, since a
    threshold (logits > 0, probabilities > 0.5) is the caller's decision. ``masks=None`` means
    no objects and needs ``shape``.
    """
    ids = [int(i) for i in _to_numpy(obj_ids).reshape(-1)]
    if masks is None:
        if ids or shape is None:
            raise ValueError("masks=None is only valid with no obj_ids and a known frame shape")
        return ids, np.zeros((0, *shape), dtype=bool)
    arr = _to_numpy(masks)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 2 and len(ids) == 1:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"masks must be N x H x W, got shape {arr.shape}")
    if arr.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} obj_ids but {arr.shape[0]} masks")
    if shape is not None and arr.shape[1:] != tuple(shape):
        raise ValueError(f"masks are {arr.shape[1:]} but the frame is {tuple(shape)} (H, W)")
    if arr.dtype.kind == "f":
        raise ValueError(
            f"masks must be boolean, got {arr.dtype}; threshold logits (> 0) or probabilities (> 0.5) first"
        )
    return ids, arr if arr.dtype == bool else arr != 0


def _check_frame(frame: Any) -> np.ndarray:
    img = _to_numpy(frame)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"frame must be H x W x 3 uint8 RGB, got {img.shape} {img.dtype}")
    return img


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _erode(mask: np.ndarray, iterations: int) -> np.ndarray:
    out = mask
    for _ in range(iterations):
        p = np.pad(out, 1, mode="edge")  # the frame edge is not drawn as a contour
        out = out & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return out


@functools.lru_cache(maxsize=16)
def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)  # scalable with FreeType (Pillow >= 10.1)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text_size(font: Any, text: str) -> tuple[int, int]:
    x0, y0, x1, y1 = font.getbbox(text)
    return int(x1 - min(x0, 0)), int(y1 - min(y0, 0))


def draw_overlay(
    frame: Any,
    obj_ids: Sequence[int] | Any = (),
    masks: Any = None,
    text: str | Sequence[str] | None = None,
    *,
    alpha: float = 0.45,
    contour_width: int = 2,
    show_ids: bool = True,
    colors: Mapping[int, tuple[int, int, int]] | None = None,
    legend: bool | Mapping[int, str] = False,
) -> np.ndarray:
    """Return a copy of ``frame`` (``H x W x 3`` uint8 RGB) with the masks drawn on it.

    Each object gets a semi-transparent fill (``alpha``), an inner contour ``contour_width``
    pixels wide and, with ``show_ids``, its id in a box at the mask pixel nearest its centroid.
    ``text`` (a string or lines, e.g. ``"12.5 FPS"``) goes top-left on a darkened band.
    ``masks``: ``N x H x W`` bool (see :func:`as_masks`); colours from :func:`overlay_color`
    unless ``colors`` maps an id to ``(r, g, b)``. ``legend`` (True, or a mapping id -> name)
    lists every drawn object top-right, one box in its colour per object ("3" or "3 grasper").
    """
    img = _check_frame(frame)
    h, w = img.shape[:2]
    ids, ms = as_masks(obj_ids, masks, (h, w))
    out = img.copy()
    a256 = round(min(max(alpha, 0.0), 1.0) * 256)
    labels: list[tuple[int, int, int, tuple[int, int, int]]] = []
    drawn: list[tuple[int, tuple[int, int, int]]] = []
    for oid, mask in zip(ids, ms):
        box = _bbox(mask)
        if box is None:
            continue
        y0, y1, x0, x1 = box
        r, g, b = (colors or {}).get(oid, overlay_color(oid))
        color = (int(r), int(g), int(b))
        drawn.append((oid, color))
        if a256 > 0:
            # Blend the whole bbox in 1/256 steps, then copy where the mask is: ~3x faster
            # than gathering and scattering the masked pixels.
            region = out[y0:y1, x0:x1]
            blend = region.astype(np.uint16)
            blend *= 256 - a256
            blend += np.asarray(color, dtype=np.uint16) * a256 + 128
            blend >>= 8
            np.copyto(region, blend, casting="unsafe", where=mask[y0:y1, x0:x1, None])
        if contour_width > 0:
            # One pixel of margin (inside the frame) so the bbox edge erodes like the interior.
            ey0, ey1, ex0, ex1 = max(y0 - 1, 0), min(y1 + 1, h), max(x0 - 1, 0), min(x1 + 1, w)
            sub = mask[ey0:ey1, ex0:ex1]
            edge = sub & ~_erode(sub, contour_width)
            out[ey0:ey1, ex0:ex1][edge] = color
        if show_ids:
            # Mask pixel nearest the centroid, on a grid of <= ~100 x 100 (need not be exact).
            step = max(1, max(y1 - y0, x1 - x0) // 100)
            ys, xs = np.nonzero(mask[y0:y1:step, x0:x1:step])
            i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
            labels.append((oid, x0 + int(xs[i]) * step, y0 + int(ys[i]) * step, color))
    lines = [text] if isinstance(text, str) else list(text or [])
    if labels or lines:
        out = _draw_labels(out, labels, lines)
    if legend and drawn:
        out = _draw_legend(out, drawn, legend if isinstance(legend, Mapping) else {})
    return out


def _draw_legend(
    img: np.ndarray, entries: list[tuple[int, tuple[int, int, int]]], names: Mapping[int, str]
) -> np.ndarray:
    """One box per object, stacked at the top-right corner, in the object's colour."""
    h, w = img.shape[:2]
    font = _font(max(10, round(h / 28)))
    y = 2
    for oid, color in sorted(entries):
        label = f"{oid} {names[oid]}" if oid in names else str(oid)
        tw, _ = _text_size(font, label)
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        y += _put_text(
            img, max(w - tw - 6, 0), y, label, font, (0, 0, 0) if luminance > 140 else (255, 255, 255), color
        )
    return img


def _put_text(
    img: np.ndarray,
    x: int,
    y: int,
    text: str,
    font: Any,
    ink: tuple[int, int, int],
    background: tuple[int, int, int] | None,
) -> int:
    """Draw ``text`` in a box at ``(x, y)``: on ``background``, or on a darkened band if None.

    Pillow renders only the box's crop, not the whole frame (a full-frame round trip through
    PIL costs ~10 ms at 1080p). Returns the box height.
    """
    pad = 2
    tw, th = _text_size(font, text)
    h, w = img.shape[:2]
    x1, y1 = min(w, x + tw + 2 * pad), min(h, y + th + 2 * pad)
    if x1 <= x or y1 <= y:
        return th + 2 * pad
    region = img[y:y1, x:x1]
    if background is None:
        region //= 2
    else:
        region[:] = background
    crop = Image.fromarray(region)
    ImageDraw.Draw(crop).text((pad, pad), text, fill=ink, font=font)
    region[:] = np.asarray(crop)
    return th + 2 * pad


def _draw_labels(
    img: np.ndarray, labels: list[tuple[int, int, int, tuple[int, int, int]]], lines: list[str]
) -> np.ndarray:
    h, w = img.shape[:2]
    font = _font(max(10, round(h / 28)))
    y = 2
    for line in lines:
        y += _put_text(img, 0, y, line, font, (255, 255, 255), None)
    for oid, x, ly, color in labels:
        label = str(oid)
        tw, th = _text_size(font, label)
        bx = min(max(x - tw // 2 - 2, 0), max(w - tw - 4, 0))
        by = min(max(ly - th // 2 - 2, 0), max(h - th - 4, 0))
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        _put_text(img, bx, by, label, font, ink, color)
    return img
