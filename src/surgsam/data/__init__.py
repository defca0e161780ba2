"""Datasets: generic VOS folders, EndoVis 2017/2018, Ref-EndoVis17/18, and a synthetic
surgical video generator (:mod:`surgsam.data.synth`).

Every dataset is a sequence of videos; a video gives lazy frames (``H x W x 3`` uint8 RGB),
id-map annotations (``H x W`` int, 0 = background), categories, and the papers' mask prompts
(each object's mask at its first appearance).
"""

from __future__ import annotations

from pathlib import Path

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


def open_dataset(path: str | Path, split: str | None = None, *, require_frames: bool = True,
                 videos: list[str] | None = None):
    """Open a dataset folder, recognising its layout.

    * ``path/split`` (or ``path``) with a ``Meta/`` folder: Ref-EndoVis (:class:`RefEndoVis`);
    * a folder with ``JPEGImages``/``Annotations``: generic VOS (:class:`VOSDataset`);
    * raw EndoVis 2017 (``instrument_dataset_*``) or 2018 (``seq_*/left_frames``);
    * with ``require_frames=False``, an annotation folder on its own.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    base = root / split if split and (root / split).is_dir() else root
    if (base / "Meta").is_dir():
        return RefEndoVis(base, split or "valid", videos=videos, require_frames=require_frames)
    if any(root.glob("instrument_dataset_*")):
        ds = EndoVis17Raw(root, split=split)
        return _subset(ds, videos)
    if any(p.is_dir() for p in root.glob("seq_*/left_frames")) or any(root.glob("*/seq_*/left_frames")):
        return _subset(EndoVis18Raw(root, split=split), videos)
    return VOSDataset(base, require_frames=require_frames, videos=videos)


def _subset(ds, videos):
    if videos is None:
        return ds
    missing = sorted(set(videos) - set(ds.names))
    if missing:
        raise DatasetError(f"videos {missing} not in the dataset")
    return [ds[n] for n in videos]
