"""End-to-end evaluation of text-referred segmentation (ReSurgSAM2) on Ref-EndoVis-layout data.

For each video, every expression of the video (``RefVideo.expressions()``) becomes one referred
object with its text; a :class:`~surgsam.referring.ReferringSegmenter` streams the video's frames
and each expression's masks are scored against its object's ground truth with the evaluator's
protocol (``resurgsam2`` by default: every frame counts, EndoVis18 instruments and tissue are
reported separately), on the one-id-per-pixel map the palette predictions hold: where
expressions overlap, the highest logit keeps the pixel (:func:`surgsam.io.labels.resolve_overlaps`,
as ReSurgSAM2's ``tools/rvos_inference.py`` builds its combined PNGs). An expression that is
never credibly found keeps EMPTY masks and is scored as such (never skipped). Besides the usual
:class:`EvalResult`, the run keeps one :class:`ExpressionRecord` per expression (the frame CIFS
chose, the frame tracking started on or "never found") and the per-frame latencies split into
detection frames (some expression still searching, or handed over on that frame) and tracking
frames.

Expressions of one video with the SAME text that name different objects (Ref-EndoVis18's
grammar gives two idle instruments of one type one sentence) are one referred target: the
first of them is run and scored against the union of those objects' masks, and its record
lists the other ids in ``merged_ids``. EndoVis18's own masks are per instrument type, so this
is the datasets' meaning; ``run_referring(..., merge_texts=False)`` scores each against its own
object instead.

Expressions of one video that refer to distinct objects share one session (one image-encoder
pass per frame). When several expressions refer to the SAME object (possible in Ref-EndoVis
files), the extra ones run in further passes over the video and are scored under the name
``<video>#<pass>`` so that every expression stays its own row.

A *session* is anything with ``add_texts({id: text})``, ``step(frame) -> FrameResult`` and
``statuses() -> [ReferringStatus]`` (the :class:`ReferringSegmenter` verbs), so tests and
baselines can stand in for the network through ``session_factory``.
"""

from __future__ import annotations

import copy
import csv
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.palette import write_mask
from ..data.vos import Video, natural_key
from ..io.labels import label_map_from_result
from .evaluator import (
    EvalResult,
    IoULevel,
    Protocol,
    ProtocolName,
    evaluate_video,
    format_metric,
    get_protocol,
    json_safe,
)

if TYPE_CHECKING:  # the referring package is imported when a session is made
    from ..engine.precision import Precision
    from ..referring.cifs import SearchOutput

__all__ = [
    "ExpressionRecord",
    "NEVER_FOUND",
    "ReferringEvalSegmenter",
    "ReferringRun",
    "merge_same_text",
    "run_referring",
]

NEVER_FOUND = "never found"


@dataclass
class ExpressionRecord:
    """One expression of one video: where it was found and how it scored (x100; NaN when its
    object is never visible in the evaluated frames, as the evaluator's ``excluded``)."""

    video: str  # as scored (``<video>#<pass>`` for a repeated object)
    exp_id: str
    obj_id: int
    text: str
    group: str  # "instruments", "tissue" or "all" (protocol groups)
    credible_frame: int | None = None
    found_frame: int | None = None
    tracking_from: int | None = None
    n_frames: int = 0
    J: float = float("nan")
    F: float = float("nan")
    Dice: float = float("nan")
    merged_ids: list[int] = field(default_factory=list)  # other objects with the same text (scored as one)

    @property
    def objects(self) -> str:
        """``"1"``, or ``"1+2"`` for a text shared by several objects."""
        return "+".join(str(k) for k in [self.obj_id, *self.merged_ids])

    @property
    def JF(self) -> float:
        return (self.J + self.F) / 2

    @property
    def started(self) -> str:
        """The frame tracking started on, or ``"never found"``."""
        return NEVER_FOUND if self.tracking_from is None else str(self.tracking_from)


@dataclass
class ReferringRun:
    """A referring evaluation: scores, per-expression records and per-frame latencies."""

    result: EvalResult
    expressions: list[ExpressionRecord] = field(default_factory=list)
    detection_ms: list[float] = field(default_factory=list)
    tracking_ms: list[float] = field(default_factory=list)
    frames: int = 0
    step_s: float = 0.0  # wall time of the segmenter's per-frame calls (decoding and scoring excluded)
    settings: dict[str, Any] = field(default_factory=dict)

    def timing(self) -> dict[str, float | None]:
        med = lambda v: float(np.median(v)) if v else None  # noqa: E731
        return {
            "frames": self.frames,
            "fps": self.frames / self.step_s if self.step_s > 0 else None,
            "detection_latency_ms": med(self.detection_ms),
            "tracking_latency_ms": med(self.tracking_ms),
            "detection_frames": len(self.detection_ms),
            "tracking_frames": len(self.tracking_ms),
        }

    def found_count(self) -> tuple[int, int]:
        return sum(e.tracking_from is not None for e in self.expressions), len(self.expressions)

    def table(self, per_object: bool = True) -> str:
        lines = []
        if self.settings.get("untrained"):
            lines.append("NOTE: UNTRAINED referring weights (random): these numbers are not meaningful")
        if per_object and self.expressions:
            w = max(8, *(len(e.video) for e in self.expressions))
            lines.append(
                f"{'video':<{w}} {'exp':>4} {'obj':>5} {'expression':<34} {'group':<11} {'tracking from':>13} "
                f"{'J&F':>6} {'J':>6} {'F':>6} {'Dice':>6}"
            )
            for e in self.expressions:
                lines.append(
                    f"{e.video:<{w}} {e.exp_id:>4} {e.objects:>5} {e.text[:34]:<34} {e.group:<11} "
                    f"{e.started:>13} {e.JF:6.2f} {e.J:6.2f} {e.F:6.2f} {e.Dice:6.2f}"
                )
            lines.append("")
        lines.append(self.result.table(per_object=False))
        found, n = self.found_count()
        t = self.timing()
        fmt = lambda x: "n/a" if x is None else f"{x:.1f}"  # noqa: E731
        lines.append(
            f"expressions found {found}/{n}; {t['frames']} frames, FPS {fmt(t['fps'])}, median latency "
            f"detection {fmt(t['detection_latency_ms'])} ms ({t['detection_frames']} frames), "
            f"tracking {fmt(t['tracking_latency_ms'])} ms ({t['tracking_frames']} frames)"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "result": self.result.to_dict(),
            "expressions": [dict(asdict(e), JF=e.JF, started=e.started) for e in self.expressions],
            "detection_ms": list(self.detection_ms),
            "tracking_ms": list(self.tracking_ms),
            "frames": self.frames,
            "step_s": self.step_s,
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ReferringRun":
        exps = [
            ExpressionRecord(**{k: v for k, v in e.items() if k not in ("JF", "started")})
            for e in d.get("expressions", [])
        ]
        for e in exps:  # JSON has no NaN
            for k in ("J", "F", "Dice"):
                if getattr(e, k) is None:
                    setattr(e, k, float("nan"))
        return cls(
            EvalResult.from_dict(d["result"]),
            exps,
            list(d.get("detection_ms", [])),
            list(d.get("tracking_ms", [])),
            int(d.get("frames", 0)),
            float(d.get("step_s", 0.0)),
            dict(d.get("settings", {})),
        )

    @classmethod
    def merge(cls, parts: Sequence["ReferringRun"]) -> "ReferringRun":
        """Concatenate runs on disjoint video sets. ``step_s`` adds up: with parallel ranks the
        FPS stays a per-process figure."""
        parts = list(parts)
        out = cls(EvalResult.merge([p.result for p in parts]), settings=dict(parts[0].settings))
        for p in parts:
            out.expressions += p.expressions
            out.detection_ms += p.detection_ms
            out.tracking_ms += p.tracking_ms
            out.frames += p.frames
            out.step_s += p.step_s
        out.expressions.sort(key=lambda e: (natural_key(e.video), natural_key(e.exp_id)))
        return out

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """The evaluator's files plus ``expressions.csv`` and ``referring.json`` (records, timing,
        settings)."""
        paths = self.result.write(out_dir)
        d = Path(out_dir)
        paths["expressions"] = d / "expressions.csv"
        with open(paths["expressions"], "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(
                [
                    "video",
                    "exp_id",
                    "obj_id",
                    "expression",
                    "group",
                    "credible_frame",
                    "found_frame",
                    "tracking_from",
                    "n_frames",
                    "J&F",
                    "J",
                    "F",
                    "Dice",
                ]
            )
            for e in self.expressions:
                w.writerow(
                    [
                        e.video,
                        e.exp_id,
                        e.objects,
                        e.text,
                        e.group,
                        _opt(e.credible_frame),
                        _opt(e.found_frame),
                        e.started,
                        e.n_frames,
                        *(format_metric(x) for x in (e.JF, e.J, e.F, e.Dice)),
                    ]
                )
        paths["referring"] = d / "referring.json"
        found, n = self.found_count()
        doc = {
            "settings": self.settings,
            "timing": self.timing(),
            "found": found,
            "expressions_total": n,
            "summary": self.result.summary(),
            "expressions": [dict(asdict(e), JF=e.JF, started=e.started) for e in self.expressions],
        }
        paths["referring"].write_text(json.dumps(json_safe(doc), indent=1))
        return paths


def _opt(x: int | None) -> str:
    return "" if x is None else str(x)


class ReferringEvalSegmenter:
    """Runs text-referred segmentation over a video's expressions.

    The network is built once, lazily, as ``surgsam refer`` builds it
    (:func:`surgsam.referring.build.build_referring`: without ``checkpoint`` an UNTRAINED ``nano``
    + ``tiny`` network with MiniLM), or given ready as ``net`` (+ ``text_encoder``). Each pass
    over a video gets a fresh session from ``session_factory(video)`` (default: a
    :class:`ReferringSegmenter` with ``memory``, ``cifs``, ``precision`` and ``search_output``).
    """

    def __init__(
        self,
        *,
        checkpoint: str | None = None,
        model: str | None = None,
        referring: str | None = None,
        image_size: int | None = None,
        text_encoder: Any = None,
        device: str = "cpu",
        memory: str = "dlm",
        cifs: Any = None,
        precision: Precision = "fp32",
        seed: int = 0,
        net: Any = None,
        session_factory: Callable[[Video], Any] | None = None,
        untrained: bool | None = None,
        search_output: SearchOutput = "detection",
    ):
        from ..referring.cifs import CIFSConfig

        self.build_kw = dict(
            checkpoint=checkpoint,
            model=model,
            referring=referring,
            image_size=image_size,
            text_encoder=None if net is not None else text_encoder,
            device=device,
            seed=seed,
        )
        self.net = net
        self.text_encoder = text_encoder if net is not None else None
        self.memory = memory
        self.cifs = cifs if cifs is not None else CIFSConfig()
        self.precision = precision
        self.search_output = search_output
        self.session_factory = session_factory
        self.untrained = untrained if untrained is not None else (net is None and checkpoint is None)

    def _build(self) -> None:
        if self.net is None:
            from ..referring.build import build_referring

            self.net, self.text_encoder, self.untrained = build_referring(**self.build_kw)

    def new_session(self, video: Video):
        if self.session_factory is not None:
            return self.session_factory(video)
        from ..referring.segmenter import ReferringSegmenter

        self._build()
        return ReferringSegmenter(
            self.net,
            self.text_encoder,
            memory=self.memory,
            cifs=self.cifs,
            precision=self.precision,
            num_frames=len(video),
            search_output=self.search_output,
        )

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "segmenter": "referring",
            "memory": self.memory,
            "cifs": bool(self.cifs.enabled),
            "search_output": self.search_output,
            "untrained": bool(self.untrained),
            "checkpoint": self.build_kw["checkpoint"],
        }
        if self.session_factory is not None:
            out["session"] = getattr(self.session_factory, "__name__", type(self.session_factory).__name__)
        if self.net is not None and hasattr(self.net, "sam"):
            out.update(model=self.net.sam.cfg.name, referring=self.net.cfg.name, image_size=self.net.sam.image_size)
        if self.text_encoder is not None:
            out["text_encoder"] = getattr(self.text_encoder, "name", str(self.text_encoder))
        return out


def expression_passes(expressions: Sequence) -> list[list]:
    """Split expressions into passes in which every object id appears once (order kept)."""
    passes: list[list] = []
    for e in expressions:
        for p in passes:
            if all(x.obj_id != e.obj_id for x in p):
                p.append(e)
                break
        else:
            passes.append([e])
    return passes


def merge_same_text(expressions: Sequence) -> tuple[list, dict[int, tuple[int, ...]]]:
    """Keep the first expression of each text that names several objects
    (:func:`~surgsam.data.refendovis.shared_texts`); returns the kept expressions and
    ``{kept obj_id: the other object ids with that text}``."""
    from ..data.refendovis import shared_texts

    shared = shared_texts(expressions)
    out = [e for e in expressions if e.text not in shared or int(e.obj_id) == shared[e.text][0]]
    return out, {ids[0]: ids[1:] for ids in shared.values()}


def _merged_labels(video: Video, extra: dict[int, tuple[int, ...]]) -> Video:
    """``video`` whose ground truth shows each merged object under its kept expression's id."""
    lut = {k: rep for rep, ks in extra.items() for k in ks}
    read = video.labels

    def labels(i: int) -> np.ndarray | None:
        lab = read(i)
        if lab is None:
            return None
        out = lab.copy()
        for k, rep in lut.items():
            out[lab == k] = rep
        return out

    v = copy.copy(video)
    v._ids = None  # the id scan is redone on the merged labels
    v.labels = labels  # type: ignore[method-assign]  # this copy alone reads the merged labels
    return v


def _group_of(obj_id: int, proto: Protocol) -> str:
    return next((g for g, ids in proto.groups.items() if obj_id in ids), "all")


def _expressions_of(video: Video) -> list:
    """The referring expressions of a Ref-EndoVis video (a clear error for any other video)."""
    get = getattr(video, "expressions", None)
    if get is None:
        raise ValueError(
            f"video {video.name!r} has no referring expressions: the referring segmenter needs a "
            "Ref-EndoVis-layout dataset (Meta/ and meta_expressions.json)"
        )
    return list(get())


def run_referring(
    videos: Sequence[Video],
    segmenter: ReferringEvalSegmenter,
    protocol: ProtocolName | Protocol = "resurgsam2",
    *,
    level: IoULevel = "instance",
    save_dir: str | Path | None = None,
    progress: bool = True,
    desc: str = "refer-eval",
    merge_texts: bool = True,
) -> ReferringRun:
    """Segment every expression of every video from its text and score it (see module doc;
    ``merge_texts``: one target per shared text).
    ``save_dir`` gets palette predictions ``<video>/<frame>.png`` (object ids as in the ground
    truth; a repeated object's extra passes go to ``<video>#<pass>/``)."""
    from tqdm import tqdm

    proto = get_protocol(protocol)
    expressions = [_expressions_of(v) for v in videos]  # every video checked before any work
    plan = []
    for v, ve in zip(videos, expressions):
        exps, extra = merge_same_text(ve) if merge_texts else (ve, {})
        gt = _merged_labels(v, extra) if extra else v
        plan += [(v, gt, extra, p) for p in expression_passes(exps)]
    bar = tqdm(total=sum(len(v) for v, *_ in plan), desc=desc, unit="frame", disable=not progress)
    parts: list[EvalResult] = []
    run = ReferringRun(EvalResult(protocol=proto.name, level=level, group_defs=dict(proto.groups)))
    pass_no: dict[str, int] = {}
    try:
        for v, gt, extra, exps in plan:
            k = pass_no[v.name] = pass_no.get(v.name, -1) + 1
            scored = gt if k == 0 else _renamed(gt, f"{v.name}#{k}")
            session = segmenter.new_session(v)
            ids = {i + 1: e for i, e in enumerate(exps)}  # session ids 1..N -> expressions
            session.add_texts({i: e.text for i, e in ids.items()})
            stream = _stream(session, v, ids, run, bar, save_dir, scored.name)
            res = evaluate_video(scored, stream, proto, level=level, object_ids=[e.obj_id for e in exps])
            parts.append(res)
            by_obj = {o.obj_id: o for o in res.objects}
            status = {s.obj_id: s for s in session.statuses()}
            for i, e in ids.items():
                s, o = status.get(i), by_obj.get(e.obj_id)
                rec = ExpressionRecord(
                    scored.name,
                    str(e.exp_id),
                    int(e.obj_id),
                    e.text,
                    _group_of(e.obj_id, proto),
                    merged_ids=list(extra.get(e.obj_id, ())),
                )
                if s is not None:
                    rec.credible_frame, rec.found_frame = s.credible_frame, s.found_frame
                    rec.tracking_from = s.tracking_from
                if o is not None:
                    rec.n_frames, rec.J, rec.F, rec.Dice = o.n_frames, o.J, o.F, o.Dice
                run.expressions.append(rec)
    finally:
        bar.close()
    if parts:
        run.result = EvalResult.merge(parts)
    run.settings = segmenter.settings()
    run.settings["protocol"] = proto.name
    run.settings["merge_same_text"] = bool(merge_texts)
    return run


def _stream(session, video: Video, ids: dict, run: ReferringRun, bar, save_dir, name: str) -> Iterator[np.ndarray]:
    """Steps the session through the video, yielding the id map (ground-truth ids) per frame and
    recording latencies (a detection frame: some expression searching or handed over there)."""
    for t in range(len(video)):
        frame = video.frame(t)
        t0 = time.perf_counter()
        res = session.step(frame)
        run.step_s += time.perf_counter() - t0
        run.frames += 1
        handed = any(s.found_frame == res.frame_idx for s in session.statuses())
        (run.detection_ms if (res.searching or handed) else run.tracking_ms).append(float(res.latency_ms))
        # one id per pixel, overlaps resolved with the logits (SAM 2's rule): written and scored
        label = label_map_from_result(res, {i: int(e.obj_id) for i, e in ids.items()})
        if save_dir is not None:
            write_mask(Path(save_dir) / name / f"{video.frame_names[t]}.png", label)
        bar.update(1)
        bar.set_postfix(searching=len(res.searching))
        yield label


def _renamed(video: Video, name: str) -> Video:
    v = copy.copy(video)
    v.name = name
    return v
