"""Masks as COCO run-length encoding (RLE) in one JSON file, per frame and object, with scores.

``surgsam segment --coco`` / ``surgsam refer --coco`` write :data:`COCO_FILE` into the output
folder, beside the PNG masks. The masks are taken from the same one-label-per-pixel id map the
palette PNGs hold (overlaps resolved by :func:`surgsam.io.labels.resolve_overlaps`, the highest
logit), so decoding every annotation of a frame gives back that PNG exactly. The file is a COCO
*dataset* (``pycocotools.coco.COCO(path)`` loads it; ``annToMask`` decodes an annotation):

- ``images``: one per frame, ``id`` = ``frame_index`` (0-based), ``frame_name`` (the mask PNG's
  stem), ``height``, ``width``;
- ``categories``: one per object, ``id`` = the object id (1..255), ``name`` (``"object 2"``, or
  the text of ``surgsam refer``);
- ``annotations``: one per frame and object the segmenter holds on that frame (also when its
  mask is empty there): ``image_id``, ``category_id`` = ``object_id``, ``segmentation``
  (``{"size": [H, W], "counts": "..."}``, pycocotools' compressed RLE, column-major),
  ``area``, ``bbox`` ``[x, y, w, h]`` (``[0, 0, 0, 0]`` when empty), ``iscrowd`` 0,
  ``score`` (the probability that the object is visible: the sigmoid of SAM 2's object score),
  ``predicted_iou`` (the mask decoder's IoU prediction) and ``searching`` (``surgsam refer``: the
  text is not credibly found yet and the mask is its detection; else false).

Encoding uses pycocotools (the ``coco`` extra), imported only when a file is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .._optional import require_pycocotools
from .atomic import atomic_write_json

__all__ = ["COCO_FILE", "CocoRleWriter", "decode_rle", "encode_rle", "require_pycocotools"]

#: The file name ``--coco`` writes into the output folder.
COCO_FILE = "coco_rle.json"


def encode_rle(mask: Any, mask_api: ModuleType | None = None) -> dict[str, Any]:
    """``H x W`` bool mask -> ``{"size": [H, W], "counts": str}`` (compressed COCO RLE)."""
    api = mask_api or require_pycocotools()
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask to encode must be H x W, got shape {m.shape}")
    rle = api.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: Mapping[str, Any], mask_api: ModuleType | None = None) -> np.ndarray:
    """Compressed COCO RLE (as :func:`encode_rle` writes it) -> ``H x W`` bool mask."""
    api = mask_api or require_pycocotools()
    counts = rle["counts"]
    obj = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return api.decode(obj).astype(bool)


class CocoRleWriter:
    """Collect a video's masks as COCO RLE annotations; :meth:`write` saves the JSON atomically.

    Args:
        path: the JSON file (written once, by :meth:`write`).
        names: the frames' names (mask PNG stems), one per frame, or None (``00012``).
        categories: object id -> name (default ``"object <id>"``).
        info: extra fields for the file's ``info`` (e.g. the video's path).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        names: Sequence[str] | None = None,
        categories: Mapping[int, str] | None = None,
        info: Mapping[str, Any] | None = None,
    ):
        self.path = Path(path)
        self._api = require_pycocotools()  # refused before any frame is processed
        self.names = list(names) if names is not None else None
        self.categories = dict(categories or {})
        self.info = dict(info or {})
        # frame index -> (image, its annotations); a frame added again replaces the earlier one,
        # as its PNG is rewritten (a reverse pass may revisit frames, in any order)
        self._frames: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}

    def add_result(self, result: Any, label_map: Any) -> None:
        """Add one engine ``FrameResult``: each of its objects' pixels in ``label_map`` (the
        ``H x W`` id map written as the frame's palette PNG) with its score and predicted IoU."""
        ids = [int(k) for k in result.obj_ids]
        scores = np.asarray(result.object_scores, dtype=np.float64).reshape(-1)
        ious = np.asarray(result.ious, dtype=np.float64).reshape(-1)
        if scores.size != len(ids) or ious.size != len(ids):
            raise ValueError(f"frame {result.frame_idx}: {len(ids)} objects but {scores.size} scores, {ious.size} IoUs")
        searching = set(int(k) for k in getattr(result, "searching", ()) or ())
        self.add_label_map(
            result.frame_idx, label_map, ids, scores.tolist(), ious.tolist(), searching=[k in searching for k in ids]
        )

    def add_label_map(
        self,
        frame_idx: int,
        label_map: Any,
        obj_ids: Sequence[int],
        scores: Sequence[float],
        ious: Sequence[float],
        *,
        searching: Sequence[bool] | None = None,
    ) -> None:
        """Add one frame: an annotation for each id of ``obj_ids`` (its pixels in the ``H x W``
        ``label_map``, possibly none), with ``scores`` and ``ious`` in the same order. Frames
        may come in any order; a frame added again replaces its earlier annotations."""
        lab = np.asarray(label_map)
        if lab.ndim != 2:
            raise ValueError(f"label map must be H x W, got shape {lab.shape}")
        t = int(frame_idx)
        if t < 0:
            raise ValueError(f"frame index must be >= 0, got {t}")
        h, w = lab.shape
        name = self.names[t] if self.names is not None and 0 <= t < len(self.names) else f"{t:05d}"
        image = {"id": t, "frame_index": t, "frame_name": name, "height": int(h), "width": int(w)}
        flags = list(searching) if searching is not None else [False] * len(obj_ids)
        anns = []
        for k, score, iou, search in zip(obj_ids, scores, ious, flags, strict=True):
            k = int(k)
            rle = encode_rle(lab == k, self._api)
            coded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
            area = int(self._api.area(coded))
            bbox = [float(v) for v in self._api.toBbox(coded)] if area else [0.0, 0.0, 0.0, 0.0]
            anns.append(
                {
                    "image_id": t,
                    "category_id": k,
                    "object_id": k,
                    "segmentation": rle,
                    "area": area,
                    "bbox": bbox,
                    "iscrowd": 0,
                    "score": float(score),
                    "predicted_iou": float(iou),
                    "searching": bool(search),
                }
            )
        self._frames[t] = (image, anns)

    @property
    def images(self) -> list[dict[str, Any]]:
        """One COCO image per frame, in frame order."""
        return [self._frames[t][0] for t in sorted(self._frames)]

    @property
    def annotations(self) -> list[dict[str, Any]]:
        """The annotations in frame order (then in the order given), numbered from 1."""
        anns = [a for t in sorted(self._frames) for a in self._frames[t][1]]
        return [{"id": i + 1, **a} for i, a in enumerate(anns)]

    def to_dict(self) -> dict[str, Any]:
        """The COCO document (see the module docstring)."""
        from .. import __version__

        objects = {a["object_id"] for _, anns in self._frames.values() for a in anns}
        cats = [
            {"id": k, "name": self.categories.get(k, f"object {k}")} for k in sorted(objects | set(self.categories))
        ]
        info = {
            "description": "surgsam masks as COCO RLE: one object per pixel (overlaps resolved by the highest "
            "logit, as the palette PNGs); score = object visibility probability, predicted_iou = the mask "
            "decoder's IoU prediction",
            "surgsam": __version__,
            **self.info,
        }
        return {"info": info, "images": self.images, "categories": cats, "annotations": self.annotations}

    def write(self) -> Path:
        """Write the JSON file atomically; returns its path."""
        return atomic_write_json(self.path, self.to_dict(), indent=None, what="COCO RLE masks")
