"""EndoVis 2017 / 2018 robotic instrument datasets: raw challenge layouts, the instance-level
VOS layout used by Surgical SAM 2 and ReSurgSAM2, label vocabularies and the papers' splits.

Raw EndoVis 2017 (``instrument_dataset_k/left_frames/frameNNN.png`` with one binary folder per
instrument under ``ground_truth/<Type>_labels/``): 1920x1080 frames are cropped to the 1280x1024
region at (top 28, left 320) as every paper does; each ``*_labels`` folder is one instance.

Raw EndoVis 2018 (``seq_k/left_frames/frameNNN.png`` + colour-coded ``seq_k/labels/frameNNN.png``
with ``labels.json``): a scene-segmentation label map whose ids are the ``classid`` of
``labels.json`` (instrument parts, organs, thread, ...).

The instance-level VOS layout (``{train,valid}/{JPEGImages,Annotations}/seq_k/00000.png``) is
read with :class:`EndoVisVOS`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .video import DatasetError, Video, VideoList, check_frame_gaps, list_images, natural_key
from .vos import VOSDataset

__all__ = [
    "ENDOVIS17_FOLDS",
    "ENDOVIS17_TYPES",
    "ENDOVIS18_INSTRUMENT_IDS",
    "ENDOVIS18_TISSUE",
    "ENDOVIS18_TISSUE_IDS",
    "ENDOVIS18_TYPES",
    "ENDOVIS_CROP",
    "SPLITS",
    "EndoVis17Raw",
    "EndoVis18Raw",
    "EndoVisVOS",
    "split_sequences",
]

# EndoVis 2017 instrument types (ids as in TernausNet / ISINet type segmentation).
ENDOVIS17_TYPES: dict[int, str] = {
    1: "bipolar forceps",
    2: "prograsp forceps",
    3: "large needle driver",
    4: "vessel sealer",
    5: "grasping retractor",
    6: "monopolar curved scissors",
    7: "other",
}
# EndoVis 2018 instrument types (ISINet's instrument-type annotation of the 2018 scenes).
ENDOVIS18_TYPES: dict[int, str] = {
    1: "bipolar forceps",
    2: "prograsp forceps",
    3: "large needle driver",
    4: "monopolar curved scissors",
    5: "ultrasound probe",
    6: "suction instrument",
    7: "clip applier",
}
# Ref-EndoVis18 object ids: instruments 1-10, tissue 11, 12, 17 (names as in its Meta files).
ENDOVIS18_INSTRUMENT_IDS: tuple[int, ...] = tuple(range(1, 11))
ENDOVIS18_TISSUE: dict[int, str] = {11: "kidney-parenchyma", 12: "covered-kidney", 17: "small-intestine"}
ENDOVIS18_TISSUE_IDS: tuple[int, ...] = tuple(ENDOVIS18_TISSUE)

# (top, left, height, width) of the 1280x1024 region of the 1920x1080 da Vinci frames.
ENDOVIS_CROP: tuple[int, int, int, int] = (28, 320, 1024, 1280)

# Sequence splits. "valid" is the papers' evaluation split (Ref-EndoVis17 / ISINet for 2018).
SPLITS: dict[str, dict[str, tuple[int, ...]]] = {
    "endovis17": {"train": (1, 3, 4, 7, 8, 9, 10), "valid": (2, 5, 6)},
    "endovis18": {"train": (1, 3, 4, 6, 7, 10, 11, 12, 13, 14, 16), "valid": (2, 5, 9, 15)},
}
# TernausNet 4-fold cross-validation of the EndoVis 2017 training sequences.
ENDOVIS17_FOLDS: dict[int, tuple[int, int]] = {0: (1, 3), 1: (2, 5), 2: (4, 8), 3: (6, 7)}


def split_sequences(version: int, split: str) -> tuple[int, ...]:
    """Sequence numbers of ``split`` ("train", "valid", or "fold0".."fold3" for 2017)."""
    key = f"endovis{version}"
    if key not in SPLITS:
        raise ValueError(f"unknown EndoVis version {version!r} (17 or 18)")
    m = re.fullmatch(r"fold([0-3])", split)
    if m and version == 17:
        return ENDOVIS17_FOLDS[int(m.group(1))]
    if split not in SPLITS[key]:
        raise ValueError(f"unknown split {split!r} for EndoVis {version}; known: {sorted(SPLITS[key])}")
    return SPLITS[key][split]


def _seq_number(name: str) -> int | None:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else None


def _wanted_sequences(year: int, split: str | None, sequences: Sequence[int] | None) -> set[int] | None:
    """The sequence numbers a raw loader keeps (None: all): the paper's ``split`` or ``sequences``."""
    if split is not None:
        sequences = split_sequences(year, split)
    return None if sequences is None else set(sequences)


def _left_frames(seq_dir: Path) -> tuple[Path, list[Path]]:
    """A raw sequence's ``left_frames`` folder and its frame files."""
    frames_dir = seq_dir / "left_frames"
    if not frames_dir.is_dir():
        raise DatasetError(f"{seq_dir}: missing left_frames/")
    return frames_dir, list_images(frames_dir)


# ---------------------------------------------------------------------------------------------
# Instance-level VOS layout
# ---------------------------------------------------------------------------------------------
class EndoVisVOS(VOSDataset):
    """Instance-level EndoVis in VOS layout, optionally restricted to a split.

    ``root`` is either a split folder (with ``JPEGImages``/``Annotations``) or a folder holding
    ``train``/``valid`` ones; with ``split`` set and a flat folder, the videos ``seq_k`` are
    filtered to the split's sequence numbers.
    """

    def __init__(self, root: str | Path, version: int, split: str | None = None, **kw):
        root = Path(root)
        self.version = version
        if split is not None and (root / split).is_dir():
            super().__init__(root / split, **kw)
            return
        if split is not None and "videos" not in kw:
            wanted = set(split_sequences(version, split))
            probe = VOSDataset(root, **kw)
            kw["videos"] = [n for n in probe.names if _seq_number(n) in wanted]
            if not kw["videos"]:
                raise DatasetError(f"{root}: none of the {split} sequences {sorted(wanted)} is present")
        super().__init__(root, **kw)


# ---------------------------------------------------------------------------------------------
# Raw EndoVis 2017
# ---------------------------------------------------------------------------------------------
def _type_from_folder(folder: str) -> str:
    """``Left_Prograsp_Forceps_labels`` -> ``prograsp forceps``; ``Maryland_Bipolar_...`` too."""
    key = folder.lower().replace("_labels", "").replace("_", " ")
    for name in sorted(ENDOVIS17_TYPES.values(), key=len, reverse=True):
        if name in key:
            return name
    raise DatasetError(f"ground-truth folder {folder!r}: cannot tell the instrument type from its name")


def _read_binary(path: Path, crop: tuple[int, int, int, int] | None) -> np.ndarray:
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ground truth ({exc})") from exc
    if arr.ndim == 3:
        arr = arr[..., 0]
    if crop is not None:
        top, left, h, w = crop
        arr = arr[top : top + h, left : left + w]
    return arr > 0


class EndoVis17RawVideo(Video):
    """One ``instrument_dataset_k``; object ``j`` is the ``j``-th ``*_labels`` folder (sorted)."""

    def __init__(self, name: str, frame_paths: list[Path], label_dirs: dict[int, Path], crop):
        categories = {k: _type_from_folder(d.name) for k, d in label_dirs.items()}
        super().__init__(name, [p.stem for p in frame_paths], frame_paths, crop=crop, categories=categories)
        self.label_dirs = label_dirs

    def is_annotated(self, i: int) -> bool:
        return bool(self.label_dirs) and all(
            (d / f"{self.frame_names[i]}.png").is_file() for d in self.label_dirs.values()
        )

    def _read_labels(self, i: int) -> np.ndarray:
        out = None
        for k, d in self.label_dirs.items():
            m = _read_binary(d / f"{self.frame_names[i]}.png", self.crop)
            if out is None:
                out = np.zeros(m.shape, dtype=np.uint8)
            out[m] = k
        return out  # type: ignore[return-value]


class EndoVis17Raw(VideoList, Sequence[EndoVis17RawVideo]):
    """The EndoVis 2017 challenge folders under ``root`` (``instrument_dataset_1`` ...).

    ``sequences`` or ``split`` selects videos (named ``seq_k``); ``crop`` (default on) cuts the
    1920x1080 frames to the 1280x1024 image region; frames already 1280x1024 are left alone.
    """

    def __init__(
        self, root: str | Path, *, split: str | None = None, sequences: Sequence[int] | None = None, crop: bool = True
    ):
        self.root = Path(root)
        dirs = sorted(self.root.glob("instrument_dataset_*"), key=lambda p: natural_key(p.name))
        if not dirs:
            raise DatasetError(f"{self.root}: no instrument_dataset_* folders (raw EndoVis 2017 layout)")
        wanted = _wanted_sequences(17, split, sequences)
        self.videos: list[EndoVis17RawVideo] = []
        for d in dirs:
            k = _seq_number(d.name)
            if wanted is not None and k not in wanted:
                continue
            frames_dir, frames = _left_frames(d)
            if not frames:
                raise DatasetError(f"{frames_dir}: no frames")
            check_frame_gaps(d.name, [p.stem.replace("frame", "") for p in frames], frames_dir)
            gt = d / "ground_truth"
            label_dirs = sorted(gt.glob("*_labels"), key=lambda p: p.name) if gt.is_dir() else []
            for ld in label_dirs:
                have = {p.stem for p in list_images(ld)}
                orphans = sorted(have - {p.stem for p in frames}, key=natural_key)
                if orphans:
                    raise DatasetError(f"{ld}: ground truth {orphans[:3]} has no frame in {frames_dir}")
            use_crop = None
            if crop:
                with Image.open(frames[0]) as im:
                    if im.size == (1920, 1080):
                        use_crop = ENDOVIS_CROP
            self.videos.append(
                EndoVis17RawVideo(f"seq_{k}", frames, {j + 1: ld for j, ld in enumerate(label_dirs)}, use_crop)
            )
        if not self.videos:
            raise DatasetError(f"{self.root}: none of the requested sequences {sorted(wanted or [])} exist")


# ---------------------------------------------------------------------------------------------
# Raw EndoVis 2018
# ---------------------------------------------------------------------------------------------
def load_label_colors(path: Path) -> dict[int, tuple[str, tuple[int, int, int]]]:
    """``labels.json`` -> ``{classid: (name, (r, g, b))}``."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read label table ({exc})") from exc
    out = {}
    for e in entries:
        try:
            out[int(e["classid"])] = (str(e["name"]), tuple(int(c) for c in e["color"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: entry {e!r} lacks name/color/classid") from exc
    return out  # type: ignore[return-value]


class EndoVis18RawVideo(Video):
    """One ``seq_k`` of EndoVis 2018 with its colour label maps decoded to class ids."""

    def __init__(self, name: str, frame_paths: list[Path], label_dir: Path | None, colors):
        cats = {k: n for k, (n, _) in colors.items() if k != 0}
        super().__init__(name, [p.stem for p in frame_paths], frame_paths, categories=cats)
        self.label_dir = label_dir
        self._lut = {(c[0] << 16) | (c[1] << 8) | c[2]: k for k, (_, c) in colors.items()}

    def is_annotated(self, i: int) -> bool:
        return self.label_dir is not None and (self.label_dir / f"{self.frame_names[i]}.png").is_file()

    def _read_labels(self, i: int) -> np.ndarray:
        path = self.label_dir / f"{self.frame_names[i]}.png"  # type: ignore[operator]
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB")).astype(np.int32)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        uniq, inv = np.unique(code, return_inverse=True)
        ids = np.empty(len(uniq), dtype=np.uint8)
        for j, c in enumerate(uniq.tolist()):
            if c not in self._lut:
                rgbc = ((c >> 16) & 255, (c >> 8) & 255, c & 255)
                raise DatasetError(f"{path}: colour {rgbc} is not in labels.json")
            ids[j] = self._lut[c]
        return ids[inv.reshape(code.shape)]


class EndoVis18Raw(VideoList, Sequence[EndoVis18RawVideo]):
    """EndoVis 2018 challenge folders (``seq_k`` anywhere under ``root``, release folders too)."""

    def __init__(
        self,
        root: str | Path,
        *,
        split: str | None = None,
        sequences: Sequence[int] | None = None,
        labels_json: str | Path | None = None,
    ):
        self.root = Path(root)
        seqs = sorted(
            (p for p in self.root.rglob("seq_*") if p.is_dir() and "__MACOSX" not in p.parts),
            key=lambda p: natural_key(p.name),
        )
        if not seqs:
            raise DatasetError(f"{self.root}: no seq_* folders (raw EndoVis 2018 layout)")
        wanted = _wanted_sequences(18, split, sequences)
        self.videos: list[EndoVis18RawVideo] = []
        for d in seqs:
            if wanted is not None and _seq_number(d.name) not in wanted:
                continue
            _, frames = _left_frames(d)
            label_dir = d / "labels" if (d / "labels").is_dir() else None
            table = Path(labels_json) if labels_json else d / "labels.json"
            if not table.is_file():
                table = self.root / "labels.json"
            colors = load_label_colors(table) if label_dir is not None else {}
            if label_dir is not None and not colors:
                raise DatasetError(f"{d}: labels/ present but no labels.json found")
            self.videos.append(EndoVis18RawVideo(d.name, frames, label_dir, colors))


__all__ += ["EndoVis17RawVideo", "EndoVis18RawVideo", "load_label_colors"]
