"""Evaluation protocols, per-(video, object) tables, summaries and CSV/JSON output.

Protocols (``PROTOCOLS``):

* ``surgsam2`` — Surgical SAM 2 / SA-V semi-supervised VOS: an object's *track* runs from its
  first ground-truth appearance (where it is prompted) to the end of the video; J, F and Dice
  skip the track's first and last frame; challenge IoU skips the track's first frame.
* ``resurgsam2`` — ReSurgSAM2 referring segmentation: every frame of the video counts, nothing
  is skipped, and EndoVis18 instruments (ids 1-10) and tissue (11, 12, 17) are also reported
  separately.
* ``davis`` — DAVIS 2017 semi-supervised: all frames, minus the video's first and last.

J/F/Dice are averaged over an object's evaluated frames, then over (video, object) pairs
(x100); J&F = (J + F) / 2. Objects whose ground truth is empty on all their evaluated frames are
left out (as SA-V does) and listed in ``EvalResult.excluded``. Every metric is computed on the
combined (overlap-free) prediction, one id per pixel as the written palette PNGs hold it
(overlaps resolved by :func:`surgsam.io.labels.resolve_overlaps`); the EndoVis IoU family per
object id (``level="instance"``, the papers' CIoU) or per category (``level="category"``,
ISINet's type-level definition).
"""

from __future__ import annotations

import csv
import json
import math
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..data.palette import AnnotationFormatError, read_mask
from ..data.vos import DatasetError, Video, natural_key
from ..io.labels import label_map_from_dict
from .metrics import ClassIoU, endovis_ious, frame_scores

__all__ = [
    "PROTOCOLS",
    "ArrayVideo",
    "EvalResult",
    "FrameScore",
    "IoULevel",
    "ObjectScore",
    "PredictionFolder",
    "Protocol",
    "ProtocolName",
    "compose_labels",
    "evaluate_folders",
    "evaluate_video",
    "get_protocol",
]

ENDOVIS18_GROUPS = {"instruments": tuple(range(1, 11)), "tissue": (11, 12, 17)}

#: The protocols of :data:`PROTOCOLS`, by name.
ProtocolName = Literal["surgsam2", "resurgsam2", "davis"]
#: What one IoU record counts: an object id (the papers' CIoU) or a category (ISINet's type level).
IoULevel = Literal["instance", "category"]
LEVELS: tuple[IoULevel, ...] = ("instance", "category")


@dataclass(frozen=True)
class Protocol:
    """Which frames count for each object, and how results are grouped."""

    name: str
    start: Literal["track", "video"] = "track"  # "track": from the object's first appearance; "video": from frame 0
    skip_first_last: bool = True  # J/F/Dice skip the first and last frame of the range
    ciou_skip_first: bool = True  # challenge IoU skips the first frame of the range
    groups: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    bound_th: float = 0.008

    def ranges(self, first: int, n_frames: int) -> tuple[range, range]:
        """``(J/F/Dice frames, IoU frames)`` of an object first seen at ``first``."""
        s = first if self.start == "track" else 0
        jf = range(s + 1, n_frames - 1) if self.skip_first_last else range(s, n_frames)
        ciou = range(s + 1 if self.ciou_skip_first else s, n_frames)
        return jf, ciou


PROTOCOLS: dict[str, Protocol] = {
    "surgsam2": Protocol("surgsam2", "track", True, True),
    "resurgsam2": Protocol("resurgsam2", "video", False, False, ENDOVIS18_GROUPS),
    "davis": Protocol("davis", "video", True, True),
}


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


@dataclass
class ObjectScore:
    """Mean J, F, Dice (x100) of one object of one video over ``n_frames`` evaluated frames."""

    video: str
    obj_id: int
    category: str
    n_frames: int
    J: float
    F: float
    Dice: float

    @property
    def JF(self) -> float:
        return (self.J + self.F) / 2


@dataclass
class FrameScore:
    """J, F, Dice (x100) of one object of one video on one evaluated frame (``frame``: 0-based
    index in the video). An object's :class:`ObjectScore` is the mean of its frames' scores."""

    video: str
    frame: int
    obj_id: int
    J: float
    F: float
    Dice: float


def _nanmean(v: Sequence[float]) -> float:
    return float(np.mean(v)) if len(v) else float("nan")


@dataclass
class EvalResult:
    """Everything an evaluation produced; mergeable across shards (see :meth:`merge`)."""

    protocol: str
    level: IoULevel = "instance"
    objects: list[ObjectScore] = field(default_factory=list)
    ious: list[ClassIoU] = field(default_factory=list)
    excluded: list[tuple[str, int]] = field(default_factory=list)
    class_names: dict[int, str] = field(default_factory=dict)
    categories: dict[str, dict[int, str]] = field(default_factory=dict)  # video -> obj -> category
    group_defs: dict[str, tuple[int, ...]] = field(default_factory=dict)  # extra summary groups
    frames: list[FrameScore] = field(default_factory=list)  # per frame, of the objects in ``objects``

    # ---- aggregation ----------------------------------------------------------------------
    def groups(self) -> dict[str, tuple[int, ...] | None]:
        """``{"all": None, group: ids}`` for the protocol's groups that have objects."""
        out: dict[str, tuple[int, ...] | None] = {"all": None}
        present = {o.obj_id for o in self.objects}
        for g, ids in self.group_defs.items():
            if present & set(ids):
                out[g] = tuple(ids)
        return out

    def summary(self) -> dict[str, dict[str, float]]:
        """Per group: J, F, J&F, Dice, challenge IoU, IoU, mc-IoU, cumulative IoU (x100), counts."""
        out = {}
        for g, ids in self.groups().items():
            objs = [o for o in self.objects if ids is None or o.obj_id in ids]
            if ids is None:
                recs = self.ious
            elif self.level == "instance":
                recs = [r for r in self.ious if r.cls in ids]
            else:
                cats = {self.categories.get(v, {}).get(k) for v, m in self.categories.items() for k in m if k in ids}
                codes = {category_code(c) for c in cats if c}
                recs = [r for r in self.ious if r.cls in codes]
            j, f = _nanmean([o.J for o in objs]), _nanmean([o.F for o in objs])
            row = {"J&F": (j + f) / 2, "J": j, "F": f, "Dice": _nanmean([o.Dice for o in objs])}
            row.update(endovis_ious(recs))
            row["n_objects"] = float(len(objs))
            row["n_videos"] = float(len({o.video for o in objs}))
            out[g] = row
        return out

    def per_video(self) -> list[dict[str, float | str]]:
        """Mean J, F, J&F, Dice over each video's objects."""
        by: dict[str, list[ObjectScore]] = defaultdict(list)
        for o in self.objects:
            by[o.video].append(o)
        rows: list[dict[str, float | str]] = []
        for v in sorted(by, key=natural_key):
            os_ = by[v]
            j, f = _nanmean([o.J for o in os_]), _nanmean([o.F for o in os_])
            rows.append(
                {
                    "video": v,
                    "n_objects": len(os_),
                    "J&F": (j + f) / 2,
                    "J": j,
                    "F": f,
                    "Dice": _nanmean([o.Dice for o in os_]),
                }
            )
        return rows

    def over_time(self, metric: Literal["J", "F", "Dice"] = "J") -> dict[str, tuple[list[int], list[float]]]:
        """Per video: ``(frames, values)``, the mean ``metric`` (J, F or Dice, x100) over the
        video's scored objects on each frame where at least one of them is evaluated."""
        if metric not in ("J", "F", "Dice"):
            raise ValueError(f"metric must be J, F or Dice, got {metric!r}")
        by: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in self.frames:
            by[r.video][r.frame].append(getattr(r, metric))
        return {
            v: (sorted(by[v]), [float(np.mean(by[v][t])) for t in sorted(by[v])]) for v in sorted(by, key=natural_key)
        }

    # ---- presentation ---------------------------------------------------------------------
    def table(self, per_object: bool = True) -> str:
        """A plain-text table: per (video, object) rows, then the summary per group."""
        lines = []
        if per_object and self.objects:
            w = max(8, *(len(o.video) for o in self.objects))
            lines.append(
                f"{'video':<{w}} {'obj':>4} {'category':<26} {'frames':>6} {'J&F':>6} {'J':>6} {'F':>6} {'Dice':>6}"
            )
            for o in sorted(self.objects, key=lambda o: (natural_key(o.video), o.obj_id)):
                lines.append(
                    f"{o.video:<{w}} {o.obj_id:>4} {o.category[:26]:<26} {o.n_frames:>6} "
                    f"{o.JF:6.2f} {o.J:6.2f} {o.F:6.2f} {o.Dice:6.2f}"
                )
            lines.append("")
        lines.append(f"protocol {self.protocol}, IoU level {self.level}")
        lines.append(
            f"{'group':<12} {'J&F':>6} {'J':>6} {'F':>6} {'Dice':>6} {'CIoU':>6} {'IoU':>6} {'mcIoU':>6} {'objects':>7}"
        )
        for g, r in self.summary().items():
            lines.append(
                f"{g:<12} {r['J&F']:6.2f} {r['J']:6.2f} {r['F']:6.2f} {r['Dice']:6.2f} "
                f"{r['challenge_iou']:6.2f} {r['iou']:6.2f} {r['mc_iou']:6.2f} {int(r['n_objects']):>7}"
            )
        if self.excluded:
            lines.append(f"({len(self.excluded)} object(s) never visible in their evaluated frames were left out)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "level": self.level,
            "summary": self.summary(),
            "videos": self.per_video(),
            "objects": [dict(asdict(o), JF=o.JF) for o in self.objects],
            "ious": [[r.video, r.frame, r.cls, r.inter, r.union, r.in_gt] for r in self.ious],
            "excluded": [list(x) for x in self.excluded],
            "class_names": {str(k): v for k, v in self.class_names.items()},
            "categories": {v: {str(k): c for k, c in m.items()} for v, m in self.categories.items()},
            "group_defs": {g: list(ids) for g, ids in self.group_defs.items()},
            "frames": [[r.video, r.frame, r.obj_id, r.J, r.F, r.Dice] for r in self.frames],
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "EvalResult":
        objs = [ObjectScore(**{k: v for k, v in o.items() if k != "JF"}) for o in d.get("objects", [])]
        ious = [ClassIoU(str(a), int(b), int(c), int(e), int(f), bool(g)) for a, b, c, e, f, g in d.get("ious", [])]
        return cls(
            protocol=d["protocol"],
            level=d.get("level", "instance"),
            objects=objs,
            ious=ious,
            excluded=[(str(v), int(k)) for v, k in d.get("excluded", [])],
            class_names={int(k): v for k, v in d.get("class_names", {}).items()},
            categories={v: {int(k): c for k, c in m.items()} for v, m in d.get("categories", {}).items()},
            group_defs={g: tuple(int(i) for i in ids) for g, ids in d.get("group_defs", {}).items()},
            frames=[
                FrameScore(str(v), int(t), int(k), *(float("nan") if x is None else float(x) for x in (j, f, dc)))
                for v, t, k, j, f, dc in d.get("frames", [])
            ],
        )

    @classmethod
    def merge(cls, parts: Iterable["EvalResult"]) -> "EvalResult":
        """Concatenate results of disjoint video sets (e.g. from several ranks)."""
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to merge")
        out = cls(protocol=parts[0].protocol, level=parts[0].level, group_defs=dict(parts[0].group_defs))
        seen: set[str] = set()
        for p in parts:
            if (p.protocol, p.level) != (out.protocol, out.level):
                raise ValueError("cannot merge results of different protocols or IoU levels")
            vids = {o.video for o in p.objects} | set(p.categories)
            if vids & seen:
                raise ValueError(f"videos evaluated twice: {sorted(vids & seen)}")
            seen |= vids
            out.objects += p.objects
            out.ious += p.ious
            out.frames += p.frames
            out.excluded += p.excluded
            out.class_names.update(p.class_names)
            out.categories.update(p.categories)
        out.objects.sort(key=lambda o: (natural_key(o.video), o.obj_id))
        out.frames.sort(key=lambda r: (natural_key(r.video), r.frame, r.obj_id))
        return out

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``objects.csv``, ``videos.csv``, ``frames.csv`` (per frame and object),
        ``summary.csv`` and ``results.json`` to ``out_dir``."""
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        paths = {
            "objects": d / "objects.csv",
            "videos": d / "videos.csv",
            "frames": d / "frames.csv",
            "summary": d / "summary.csv",
            "json": d / "results.json",
        }
        with open(paths["objects"], "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["video", "obj_id", "category", "n_frames", "J&F", "J", "F", "Dice"])
            for o in self.objects:
                w.writerow(
                    [o.video, o.obj_id, o.category, o.n_frames, *(format_metric(x) for x in (o.JF, o.J, o.F, o.Dice))]
                )
        with open(paths["videos"], "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["video", "n_objects", "J&F", "J", "F", "Dice"])
            for row in self.per_video():
                w.writerow(
                    [row["video"], row["n_objects"], *(format_metric(float(row[k])) for k in ("J&F", "J", "F", "Dice"))]
                )
        with open(paths["frames"], "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["video", "frame", "obj_id", "J", "F", "Dice"])
            for fr in self.frames:
                w.writerow([fr.video, fr.frame, fr.obj_id, *(format_metric(x) for x in (fr.J, fr.F, fr.Dice))])
        summ = self.summary()
        keys = [
            "J&F",
            "J",
            "F",
            "Dice",
            "challenge_iou",
            "iou",
            "mc_iou",
            "cum_iou",
            "n_objects",
            "n_videos",
            "n_frames",
        ]
        with open(paths["summary"], "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["protocol", "level", "group", *keys])
            for g, r in summ.items():
                w.writerow([self.protocol, self.level, g, *(format_metric(r[k]) for k in keys)])
        paths["json"].write_text(json.dumps(json_safe(self.to_dict()), indent=1))
        return paths


def format_metric(x: float) -> str:
    """A metric for CSV: 4 decimals, ``nan`` for undefined."""
    return "nan" if isinstance(x, float) and math.isnan(x) else f"{x:.4f}"


def json_safe(obj):
    """``obj`` with every NaN float replaced by None (JSON has no NaN: written as null)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    return obj


def category_code(name: str) -> int:
    """A stable integer for a category name (class id of category-level IoU records)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def compose_labels(masks: Mapping[int, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """``{obj_id: H x W bool}`` -> ``H x W`` id map with the package's one overlap rule
    (:func:`surgsam.io.labels.resolve_overlaps`; binary masks alone: the lowest id wins, as
    SAM 2's ``put_per_obj_mask``). Segmenters with logits resolve with them and hand over the
    id map instead."""
    return label_map_from_dict(masks, shape)


Pred = Mapping[int, np.ndarray] | np.ndarray | None


class ArrayVideo(Video):
    """A video held in memory as ``T x H x W`` id maps (every frame annotated), e.g. a rendered
    synthetic clip scored without writing it to disk (``surgsam demo``)."""

    def __init__(self, name: str, labels: Sequence[np.ndarray] | np.ndarray, categories: dict[int, str] | None = None):
        super().__init__(name, [f"{t:05d}" for t in range(len(labels))], None, categories=categories)
        self._labels = [np.asarray(lab) for lab in labels]

    def is_annotated(self, i: int) -> bool:
        return True

    def _read_labels(self, i: int) -> np.ndarray:
        return self._labels[i]


@dataclass
class _Track:
    """One object's scores while its video is scored: J/F/Dice on the frames of ``jf_frames``
    (and which frames they were), challenge IoU on those of ``iou_frames``."""

    category: str
    jf_frames: range
    iou_frames: range
    scores: list[tuple[float, float, float]] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    seen_gt: bool = False  # the object is visible on at least one of its J/F/Dice frames


def evaluate_video(
    video: Video,
    preds: Iterable[Pred],
    protocol: ProtocolName | Protocol = "surgsam2",
    *,
    level: IoULevel = "instance",
    object_ids: Sequence[int] | None = None,
    keep_overlaps: bool = False,
) -> EvalResult:
    """Score one video. ``preds`` yields, per frame in order, an ``H x W`` id map or
    ``{obj_id: H x W bool}`` (``None`` = nothing predicted). Unannotated frames are skipped.

    Every metric scores the one-label-per-pixel map a palette PNG of the frame would hold: masks
    given as a dict are first merged by :func:`compose_labels` (overlaps: lowest id wins without
    logits), so an object never scores pixels another object holds in the written map. A
    segmenter that has mask logits passes the id map resolved with them
    (:func:`surgsam.io.labels.resolve_overlaps`, SAM 2's highest-logit rule).
    ``keep_overlaps=True`` scores J, F and Dice on each object's own mask instead: for
    predictions stored one binary PNG per object (SA-V layout), which may overlap on disk and
    are scored that way by the SA-V benchmark; IoU still uses the merged map.
    """
    proto = get_protocol(protocol)
    if level not in LEVELS:
        raise ValueError(f"level must be 'instance' or 'category', got {level!r}")
    T = len(video)
    first = video.first_appearance()
    tracks = {
        k: _Track(video.categories.get(k, f"object {k}"), *proto.ranges(first[k], T))
        for k in first
        if object_ids is None or k in object_ids
    }
    ious: list[ClassIoU] = []
    n = 0
    for t, pred in enumerate(preds):
        if t >= T:
            raise ValueError(f"video {video.name!r}: more predictions than its {T} frames")
        n += 1
        gt = video.labels(t)
        if gt is None:
            continue
        combined, pmask = _scored_masks(video, t, pred, gt, list(tracks), keep_overlaps)
        gmask = {k: gt == k for k in tracks}
        empty = np.zeros(gt.shape, dtype=bool)
        for k, tr in tracks.items():
            if t in tr.jf_frames:
                tr.seen_gt |= bool(gmask[k].any())
                tr.scores.append(frame_scores(pmask.get(k, empty), gmask[k], proto.bound_th))
                tr.frames.append(t)
        live = [k for k, tr in tracks.items() if t in tr.iou_frames]
        ious += _frame_ious(video.name, t, combined, gt, gmask, {k: tracks[k].category for k in live}, level)
    if n != T:
        raise ValueError(f"video {video.name!r}: {n} predictions for {T} frames")
    return _video_result(video.name, proto, level, tracks, ious)


def _scored_masks(
    video: Video, t: int, pred: Pred, gt: np.ndarray, objs: list[int], keep_overlaps: bool
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Frame ``t``'s prediction checked against its ``H x W`` ground truth: the merged id map
    (what IoU scores) and each object's mask (what J, F and Dice score)."""
    if pred is None:
        pred = {}
    if isinstance(pred, np.ndarray):
        if pred.shape != gt.shape:
            raise ValueError(
                f"video {video.name!r} frame {video.frame_names[t]}: prediction {pred.shape[::-1]} "
                f"vs ground truth {gt.shape[::-1]} (W x H)"
            )
        return pred, {k: pred == k for k in objs}
    for k, m in pred.items():
        if np.shape(m) != gt.shape:
            raise ValueError(
                f"video {video.name!r} frame {video.frame_names[t]}: mask of object {k} is "
                f"{np.shape(m)[::-1]}, ground truth is {gt.shape[::-1]} (W x H)"
            )
    combined = compose_labels({k: np.asarray(m, dtype=bool) for k, m in pred.items()}, gt.shape)
    if keep_overlaps:
        return combined, {k: np.asarray(m, dtype=bool) for k, m in pred.items()}
    return combined, {k: combined == k for k in pred}  # the one-label-per-pixel map a palette PNG holds


def _frame_ious(
    video: str,
    t: int,
    combined: np.ndarray,
    gt: np.ndarray,
    gmask: Mapping[int, np.ndarray],
    live: Mapping[int, str],
    level: IoULevel,
) -> list[ClassIoU]:
    """The IoU records of frame ``t`` for the objects ``live`` there (id -> category): one per
    object (``level="instance"``) or per category; pairs with an empty union are left out."""
    out: list[ClassIoU] = []
    if level == "instance":
        for k in live:
            p, g = combined == k, gmask[k]
            u = int(np.count_nonzero(p | g))
            if u:
                out.append(ClassIoU(video, t, k, int(np.count_nonzero(p & g)), u, bool(g.any())))
        return out
    by_cat: dict[str, list[int]] = defaultdict(list)
    for k, c in live.items():
        by_cat[c].append(k)
    for c, ks in by_cat.items():
        p = np.isin(combined, ks)
        g = np.isin(gt, ks)
        u = int(np.count_nonzero(p | g))
        if u:
            out.append(ClassIoU(video, t, category_code(c), int(np.count_nonzero(p & g)), u, bool(g.any())))
    return out


def _video_result(
    video: str, proto: Protocol, level: IoULevel, tracks: Mapping[int, _Track], ious: list[ClassIoU]
) -> EvalResult:
    """The :class:`EvalResult` of one scored video: objects never visible on their J/F/Dice
    frames are excluded; the others get their mean and per-frame scores (x100)."""
    cats = {k: tr.category for k, tr in tracks.items()}
    res = EvalResult(
        protocol=proto.name,
        level=level,
        ious=ious,
        categories={video: cats},
        group_defs={g: tuple(ids) for g, ids in proto.groups.items()},
    )
    for k, tr in tracks.items():
        if not tr.scores or not tr.seen_gt:
            res.excluded.append((video, k))
            continue
        a = np.asarray(tr.scores, dtype=np.float64) * 100.0
        res.objects.append(ObjectScore(video, k, tr.category, len(a), *map(float, a.mean(axis=0))))
        res.frames += [FrameScore(video, t, k, *map(float, row)) for t, row in zip(tr.frames, a)]
    if level == "category":
        res.class_names = {category_code(c): c for c in set(cats.values())}
    else:
        res.class_names = dict(cats)
    return res


class PredictionFolder:
    """Predicted masks on disk, per video: palette maps ``ROOT/<video>/<frame>.png`` (DAVIS) or
    per-object binary PNGs ``ROOT/<video>/<obj_id>/<frame>.png`` (SA-V; a missing file means an
    empty mask; each object's own mask is scored, overlaps included, as the SA-V benchmark
    does). ``allow_missing`` treats missing palette frames as empty instead of failing.
    """

    def __init__(self, root: str | Path, allow_missing: bool = False):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: prediction folder does not exist")
        self.allow_missing = allow_missing

    def videos(self) -> list[str]:
        return sorted((d.name for d in self.root.iterdir() if d.is_dir()), key=natural_key)

    def is_per_object(self, video: Video) -> bool:
        """Whether ``video``'s predictions are SA-V per-object folders (not palette maps)."""
        d = self.root / video.name
        return d.is_dir() and any(p.is_dir() and p.name.isdigit() for p in d.iterdir())

    def frames(self, video: Video) -> Iterator[Pred]:
        d = self.root / video.name
        if not d.is_dir():
            raise DatasetError(f"{self.root}: no predictions for video {video.name!r}")
        obj_dirs = {int(p.name): p for p in d.iterdir() if p.is_dir() and p.name.isdigit()}
        for name in video.frame_names:
            if obj_dirs:
                out = {}
                for k, od in obj_dirs.items():
                    f = od / f"{name}.png"
                    if f.is_file():
                        out[k] = _read_pred(f) > 0
                yield out
                continue
            f = d / f"{name}.png"
            if not f.is_file():
                if self.allow_missing:
                    yield None
                    continue
                raise DatasetError(
                    f"{f}: prediction missing for frame {name!r} of video {video.name!r} "
                    "(use --allow-missing to count it as empty)"
                )
            yield _read_pred(f)


def _read_pred(path: Path) -> np.ndarray:
    try:
        return read_mask(path)
    except AnnotationFormatError as exc:
        raise DatasetError(str(exc)) from exc


def evaluate_folders(
    gt: Sequence[Video],
    pred_root: str | Path,
    protocol: ProtocolName | Protocol = "surgsam2",
    *,
    level: IoULevel = "instance",
    allow_missing: bool = False,
    strict: bool = True,
    progress: bool = True,
) -> EvalResult:
    """Score a prediction folder against a ground-truth dataset (a sequence of videos).

    With ``strict`` every ground-truth video needs predictions; otherwise only the videos in
    both are scored.
    """
    preds = PredictionFolder(pred_root, allow_missing=allow_missing)
    have = set(preds.videos())
    videos = [v for v in gt if strict or v.name in have]
    missing = [v.name for v in videos if v.name not in have]
    if missing:
        raise DatasetError(
            f"{pred_root}: no predictions for video(s) {missing[:5]} (pass strict=False / "
            "--no-strict to score only the videos that have predictions)"
        )
    if not videos:
        raise DatasetError(f"{pred_root}: no prediction folder matches a ground-truth video")
    parts = []
    from tqdm import tqdm

    for v in tqdm(videos, desc="eval", unit="video", disable=not progress):
        parts.append(evaluate_video(v, preds.frames(v), protocol, level=level, keep_overlaps=preds.is_per_object(v)))
    return EvalResult.merge(parts)
