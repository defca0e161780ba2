"""Palette PNG masks: the DAVIS/SA-V annotation format (pixel value = object id, 0 = background).

Readers accept palette (``P``) and single-channel (``L``, ``I``, ``I;16``, ``1``) PNGs and return
the raw index values; colour PNGs are refused with an explanation, because their pixel values
are colours, not ids. Writers always produce palette PNGs with the DAVIS palette.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..io.writers import davis_palette  # one palette for the whole package

__all__ = [
    "DAVIS_PALETTE",
    "AnnotationFormatError",
    "colorize",
    "davis_palette",
    "read_mask",
    "write_mask",
]


class AnnotationFormatError(ValueError):
    """An annotation file is not an id map (wrong mode, unreadable, wrong size)."""


DAVIS_PALETTE: np.ndarray = davis_palette()

_INDEX_MODES = {"P", "L", "I", "I;16", "I;16B", "I;16L", "1"}


def read_mask(path: str | Path) -> np.ndarray:
    """Read an id-map PNG as an ``H x W`` integer array (uint8, or int32 for 16/32-bit files).

    Raises :class:`AnnotationFormatError` for colour images (RGB/RGBA/LA), which hold colours
    rather than ids, and for files PIL cannot decode.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode not in _INDEX_MODES:
                raise AnnotationFormatError(
                    f"{path}: annotation is a {mode} image; expected a palette ('P') or single-channel "
                    "PNG whose pixel values are object ids (0 = background). Colour-coded label maps "
                    "(e.g. EndoVis 2018 'labels/') need their colour table: use "
                    "surgsam.data.endovis.EndoVis18Raw, or convert the file to a palette PNG."
                )
            arr = np.asarray(im)
    except AnnotationFormatError:
        raise
    except (OSError, ValueError) as exc:
        raise AnnotationFormatError(f"{path}: cannot read annotation ({exc})") from exc
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.int32)
    return arr


def write_mask(path: str | Path, ids: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write an ``H x W`` id map (values 0..255) as a palette PNG (DAVIS palette by default)."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"id map must be H x W, got shape {ids.shape}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) > 255):
        raise ValueError(f"palette PNGs hold ids 0..255, got range [{ids.min()}, {ids.max()}]")
    im = Image.fromarray(ids.astype(np.uint8))  # mode "L"; putpalette turns it into "P"
    pal = DAVIS_PALETTE if palette is None else np.asarray(palette, dtype=np.uint8)
    im.putpalette(pal.reshape(-1).tolist())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    im.save(path, optimize=False)


def colorize(ids: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """Map an ``H x W`` id map to an ``H x W x 3`` uint8 RGB image with the palette."""
    pal = DAVIS_PALETTE if palette is None else np.asarray(palette, dtype=np.uint8)
    return pal[np.clip(np.asarray(ids), 0, len(pal) - 1)]
