"""Segmentation metrics, bit-exact with the DAVIS 2017 / SA-V evaluation code and the EndoVis
(ISINet) IoU family.

Per frame and object: ``J`` (region IoU), ``F`` (DAVIS boundary F-measure) and Dice. Conventions:

* J and Dice are 1 when prediction and ground truth are both empty.
* F: boundaries come from :func:`seg2bmap` (a pixel is on the boundary when it differs from its
  east, south or south-east neighbour; the frame border itself is never a boundary, so an empty
  and a full-frame mask both have no boundary and score F = 1 against each other). Boundary
  pixels match when within ``ceil(0.008 * diagonal)`` pixels (a disk, as skimage's ``disk``).
  No boundary on either side: F = 1; on one side only: F = 0.

Per frame over classes (EndoVis): ``challenge IoU`` averages the IoU over the classes present in
the ground truth, ``IoU`` over the classes present in the prediction or the ground truth, then
both average over frames (frames without such classes are skipped); ``mc-IoU`` averages each
class over the frames where it is present (prediction or ground truth), then over classes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ClassIoU",
    "boundary_f",
    "boundary_tolerance",
    "dice",
    "dilate_disk",
    "disk",
    "endovis_ious",
    "frame_scores",
    "region_iou",
    "seg2bmap",
]


def _as_bool(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m)
    if m.ndim != 2:
        raise ValueError(f"masks must be H x W, got shape {m.shape}")
    return m if m.dtype == bool else m != 0


def _check(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None):
    pred, gt = _as_bool(pred), _as_bool(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    if void is not None:
        keep = ~_as_bool(void)
        pred, gt = pred & keep, gt & keep
    return pred, gt


def region_iou(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """J: ``|P & G| / |P | G|`` for ``H x W`` masks; 1 when both are empty; void pixels ignored."""
    pred, gt = _check(pred, gt, void)
    inter = np.count_nonzero(pred & gt)
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else inter / union


def dice(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """Dice ``2|P & G| / (|P| + |G|)``; 1 when both are empty."""
    pred, gt = _check(pred, gt, void)
    total = np.count_nonzero(pred) + np.count_nonzero(gt)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(pred & gt) / total


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """DAVIS one-pixel boundary map of an ``H x W`` mask (boundaries offset half a pixel to the origin).

    A pixel is on the boundary when it differs from its east, south or south-east neighbour; in
    the last row only the east neighbour counts, in the last column only the south one, and the
    bottom-right pixel is never a boundary.
    """
    m = _as_bool(mask)
    h, w = m.shape
    b = np.zeros_like(m)
    if h > 1 and w > 1:
        inner = m[:-1, :-1]
        b[:-1, :-1] = (inner != m[:-1, 1:]) | (inner != m[1:, :-1]) | (inner != m[1:, 1:])
    if w > 1:
        b[-1, :-1] = m[-1, :-1] != m[-1, 1:]
    if h > 1:
        b[:-1, -1] = m[:-1, -1] != m[1:, -1]
    b[-1, -1] = False
    return b


def boundary_tolerance(shape: tuple[int, ...], bound_th: float = 0.008) -> int:
    """Match radius in pixels: ``bound_th`` itself if >= 1, else ``ceil(bound_th * diagonal)``."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def disk(radius: int) -> np.ndarray:
    """``(2r+1) x (2r+1)`` bool disk ``x^2 + y^2 <= r^2`` (skimage's ``disk``)."""
    r = int(radius)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


def dilate_disk(b: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of ``b`` (``H x W`` bool) by :func:`disk` ``(radius)``, exactly.

    The disk is a union of horizontal runs: for row offset ``dy`` it spans ``|dx| <=
    isqrt(r^2 - dy^2)``. Each run is a horizontal dilation (a window sum over a row-wise cumulative
    sum), shifted vertically by ``dy``; work is ``O((2r+1) H W)`` and only the bounding box of the
    set pixels (grown by ``r``) is touched.
    """
    b = _as_bool(b)
    r = int(radius)
    out = np.zeros_like(b)
    ys, xs = np.nonzero(b)
    if len(ys) == 0:
        return out
    if r <= 0:
        return b.copy()
    H, W = b.shape
    y0, y1 = max(0, ys.min() - r), min(H, ys.max() + r + 1)
    x0, x1 = max(0, xs.min() - r), min(W, xs.max() + r + 1)
    sub = b[y0:y1, x0:x1]
    h, w = sub.shape
    # row-wise cumulative sum with r zero columns on both sides, so every window is a plain slice
    cs = np.zeros((h, w + 2 * r + 1), dtype=np.int32)
    np.cumsum(sub, axis=1, out=cs[:, r + 1 : r + 1 + w])
    cs[:, r + 1 + w :] = cs[:, r + w : r + 1 + w]
    runs: dict[int, np.ndarray] = {}
    acc = np.zeros_like(sub)
    for dy in range(-r, r + 1):
        half = math.isqrt(r * r - dy * dy)
        run = runs.get(half)
        if run is None:
            # any(sub[y, x-half : x+half+1]) = cs[x+half+1] - cs[x-half] (in padded coordinates)
            run = cs[:, r + half + 1 : r + half + 1 + w] > cs[:, r - half : r - half + w]
            runs[half] = run
        if dy >= 0:
            if dy < h:
                acc[dy:] |= run[: h - dy]
        elif -dy < h:
            acc[: h + dy] |= run[-dy:]
    out[y0:y1, x0:x1] = acc
    return out


def boundary_f(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, bound_th: float = 0.008) -> float:
    """F: DAVIS boundary F-measure of ``H x W`` masks (see the module docstring)."""
    pred, gt = _check(pred, gt, void)
    r = boundary_tolerance(pred.shape, bound_th)
    pb, gb = seg2bmap(pred), seg2bmap(gt)
    n_p, n_g = int(np.count_nonzero(pb)), int(np.count_nonzero(gb))
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0  # precision or recall is 0 and the other 1
    precision = np.count_nonzero(pb & dilate_disk(gb, r)) / n_p
    recall = np.count_nonzero(gb & dilate_disk(pb, r)) / n_g
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def frame_scores(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> tuple[float, float, float]:
    """``(J, F, Dice)`` of one object in one frame; fast path when both masks are empty."""
    pred, gt = _as_bool(pred), _as_bool(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    if not pred.any() and not gt.any():
        return 1.0, 1.0, 1.0
    return region_iou(pred, gt), boundary_f(pred, gt, bound_th=bound_th), dice(pred, gt)


@dataclass(frozen=True)
class ClassIoU:
    """Intersection/union of one class in one frame, with where it was present."""

    video: str
    frame: int
    cls: int
    inter: int
    union: int
    in_gt: bool

    @property
    def iou(self) -> float:
        return self.inter / self.union if self.union else 1.0


def endovis_ious(records: Iterable[ClassIoU]) -> dict[str, float]:
    """Challenge IoU, IoU, mc-IoU and cumulative IoU (all x100) from per-frame class records.

    Records must only exist for classes present in the prediction or the ground truth of that
    frame (``union > 0``). Returns NaN for a metric with nothing to average.
    """
    per_frame: dict[tuple[str, int], list[ClassIoU]] = defaultdict(list)
    per_class: dict[int, list[float]] = defaultdict(list)
    cum_i = cum_u = 0
    for r in records:
        if r.union == 0:
            continue
        per_frame[(r.video, r.frame)].append(r)
        per_class[r.cls].append(r.iou)
        cum_i += r.inter
        cum_u += r.union
    challenge, plain = [], []
    for recs in per_frame.values():
        plain.append(np.mean([r.iou for r in recs]))
        gt_recs = [r.iou for r in recs if r.in_gt]
        if gt_recs:
            challenge.append(np.mean(gt_recs))
    nan = float("nan")
    return {
        "challenge_iou": 100.0 * float(np.mean(challenge)) if challenge else nan,
        "iou": 100.0 * float(np.mean(plain)) if plain else nan,
        "mc_iou": 100.0 * float(np.mean([np.mean(v) for v in per_class.values()])) if per_class else nan,
        "cum_iou": 100.0 * cum_i / cum_u if cum_u else nan,
        "n_frames": float(len(challenge)),
    }
