"""Datasets: generic VOS folders, EndoVis 2017/2018, Ref-EndoVis17/18, and a synthetic
surgical video generator (:mod:`surgsam.data.synth`).

Every dataset is a sequence of videos; a video gives lazy frames (``H x W x 3`` uint8 RGB),
id-map annotations (``H x W`` int, 0 = background), categories, and the papers' mask prompts
(each object's mask at its first appearance).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from .endovis import (
    ENDOVIS17_TYPES,
    ENDOVIS18_TISSUE,
    ENDOVIS18_TYPES,
    SPLITS,
    EndoVis17Raw,
    EndoVis18Raw,
    EndoVisVOS,
    split_sequences,
)
from .palette import DAVIS_PALETTE, AnnotationFormatError, colorize, read_mask, write_mask
from .refendovis import ACTIONS, LOCATIONS, Expression, RefEndoVis, RefMeta, RefVideo, build_expression
from .vos import DatasetError, LazyFrames, ObjectPrompt, VOSDataset, VOSVideo, Video

__all__ = [
    "ACTIONS",
    "DAVIS_PALETTE",
    "LAYOUTS",
    "ENDOVIS17_TYPES",
    "ENDOVIS18_TISSUE",
    "ENDOVIS18_TYPES",
    "LOCATIONS",
    "SPLITS",
    "AnnotationFormatError",
    "DatasetError",
    "EndoVis17Raw",
    "EndoVis18Raw",
    "EndoVisVOS",
    "DatasetLayout",
    "Expression",
    "LazyFrames",
    "ObjectPrompt",
    "RefEndoVis",
    "RefMeta",
    "RefVideo",
    "VOSDataset",
    "VOSVideo",
    "Video",
    "build_expression",
    "colorize",
    "open_dataset",
    "read_mask",
    "split_sequences",
    "write_mask",
]


#: How :func:`open_dataset` reads a folder: ``"auto"`` recognises it (see there); the others
#: force one layout.
DatasetLayout = Literal["auto", "vos", "ref-endovis", "endovis17-raw", "endovis18-raw"]
LAYOUTS: tuple[str, ...] = get_args(DatasetLayout)


def open_dataset(
    path: str | Path,
    split: str | None = None,
    *,
    require_frames: bool = True,
    videos: list[str] | None = None,
    layout: DatasetLayout = "auto",
):
    """Open a dataset folder in one of :data:`LAYOUTS`.

    ``layout="auto"`` (default) recognises the folder, in this order:

    * ``path/split`` (or ``path``) with a ``Meta/`` folder: Ref-EndoVis (:class:`RefEndoVis`);
    * raw EndoVis 2017 (``instrument_dataset_*``) or 2018 (``seq_*/left_frames``);
    * a folder with ``JPEGImages``/``Annotations``: generic VOS (:class:`VOSDataset`);
    * with ``require_frames=False``, an annotation folder on its own.

    ``"vos"``, ``"ref-endovis"``, ``"endovis17-raw"`` and ``"endovis18-raw"`` force a layout:
    e.g. ``layout="vos"`` reads a DAVIS-layout folder that also holds an unrelated ``Meta/``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    base = root / split if split and (root / split).is_dir() else root
    if layout == "auto":
        if (base / "Meta").is_dir():
            try:
                return RefEndoVis(base, split or "valid", videos=videos, require_frames=require_frames)
            except DatasetError as exc:
                raise DatasetError(
                    f"{exc} [read as Ref-EndoVis because {base / 'Meta'} exists; pass "
                    "layout='vos' (--layout vos) to read the folder as plain VOS]"
                ) from exc
        if any(root.glob("instrument_dataset_*")):
            layout = "endovis17-raw"
        elif any(p.is_dir() for p in root.glob("seq_*/left_frames")) or any(root.glob("*/seq_*/left_frames")):
            layout = "endovis18-raw"
        else:
            layout = "vos"
    if layout == "ref-endovis":
        return RefEndoVis(base, split or "valid", videos=videos, require_frames=require_frames)
    if layout == "endovis17-raw":
        return _subset(EndoVis17Raw(root, split=split), videos)
    if layout == "endovis18-raw":
        return _subset(EndoVis18Raw(root, split=split), videos)
    return VOSDataset(base, require_frames=require_frames, videos=videos)


def _subset(ds, videos):
    if videos is None:
        return ds
    missing = sorted(set(videos) - set(ds.names))
    if missing:
        raise DatasetError(f"videos {missing} not in the dataset")
    return [ds[n] for n in videos]
