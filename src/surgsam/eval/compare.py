"""Is one evaluation really better than another? A paired comparison over the same objects.

Two runs of the same dataset (two checkpoints, two memory policies ...) score the same
``(video, object)`` pairs, so their J&F difference is best judged pair by pair: the mean of
the per-object differences is exactly the difference of the two J&F summaries, and how much
it would move on other videos is estimated by a *video-level* bootstrap (videos are drawn with
replacement, each with all its objects, since the objects of one video share its look and
fail together). The interval is the percentile interval of the resampled mean differences.

    python -m surgsam.eval.compare runs/eval-new runs/eval-old      # two `surgsam eval --out` folders
    python -m surgsam.eval.compare new/results.json old/results.json --group instruments

With 16 videos, a difference whose interval contains 0 is not evidence either way.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .evaluator import EvalResult, ObjectScore

ObjectKey = tuple[str, int]  # (video, obj_id)


@dataclass(frozen=True)
class PairedDifference:
    """``new - old`` J&F (points, x100 scale) over the objects both runs scored.

    ``mean`` is the difference of the two runs' J&F over those objects; ``low``/``high`` the
    bootstrap interval at ``level`` (videos resampled ``resamples`` times with ``seed``);
    ``videos_better``/``videos_worse`` count videos whose mean J&F rose / fell."""

    new: float
    old: float
    mean: float
    low: float
    high: float
    level: float
    resamples: int
    n_objects: int
    n_videos: int
    videos_better: int
    videos_worse: int

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0

    def describe(self) -> str:
        sig = "" if self.significant else ": contains 0"
        return (
            f"J&F {self.old:.1f} -> {self.new:.1f}, {self.mean:+.2f} "
            f"({100 * self.level:.0f} % CI {self.low:+.2f} to {self.high:+.2f}{sig}) over {self.n_objects} "
            f"objects in {self.n_videos} videos; {self.videos_better} videos better, {self.videos_worse} worse"
        )


def score_map(rows: Iterable[tuple[str, int, float | None]]) -> dict[ObjectKey, float]:
    """``{(video, obj_id): J&F}`` of ``(video, obj_id, J&F)`` rows (``None``: undefined, NaN);
    an object given twice is an error."""
    out: dict[ObjectKey, float] = {}
    for video, obj_id, jf in rows:
        key = (str(video), int(obj_id))
        if key in out:
            raise ValueError(f"object {key} is scored twice")
        out[key] = math.nan if jf is None else float(jf)
    return out


def object_scores(objects: Sequence[ObjectScore], ids: Sequence[int] | None = None) -> dict[ObjectKey, float]:
    """``{(video, obj_id): J&F}`` of ``objects`` (only ``ids`` when given)."""
    keep = None if ids is None else set(ids)
    return score_map((o.video, o.obj_id, o.JF) for o in objects if keep is None or o.obj_id in keep)


def paired_difference(
    new: Mapping[ObjectKey, float],
    old: Mapping[ObjectKey, float],
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Paired ``new - old`` J&F difference with a video-level bootstrap interval.

    Both runs must have scored the same objects (a different set means different data or
    protocol, and the difference would mean nothing): otherwise ``ValueError`` naming a few.
    Objects whose J&F is undefined (NaN) in either run are left out of both."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    only_new, only_old = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    if only_new or only_old:
        raise ValueError(
            "the two runs scored different objects "
            f"(only in new: {only_new[:5]}{' ...' if len(only_new) > 5 else ''}; "
            f"only in old: {only_old[:5]}{' ...' if len(only_old) > 5 else ''}): same data and protocol?"
        )
    by_video: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for key in sorted(new):
        a, b = new[key], old[key]
        if not (math.isnan(a) or math.isnan(b)):
            by_video[key[0]].append((a, b))
    if not by_video:
        raise ValueError("no object has a J&F in both runs")
    videos = sorted(by_video)
    news = np.array([sum(a for a, _ in by_video[v]) for v in videos], dtype=np.float64)
    olds = np.array([sum(b for _, b in by_video[v]) for v in videos], dtype=np.float64)
    sums = news - olds  # per video: the sum of its objects' differences
    counts = np.array([len(by_video[v]) for v in videos], dtype=np.float64)
    n = counts.sum()
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(videos), size=(resamples, len(videos)))
    boot = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    per_video = sums / counts
    return PairedDifference(
        new=float(news.sum() / n),
        old=float(olds.sum() / n),
        mean=float(sums.sum() / n),
        low=float(low),
        high=float(high),
        level=level,
        resamples=resamples,
        n_objects=int(n),
        n_videos=len(videos),
        videos_better=int((per_video > 0).sum()),
        videos_worse=int((per_video < 0).sum()),
    )


def compare_results(new: EvalResult, old: EvalResult, group: str = "all", **kw) -> PairedDifference:
    """:func:`paired_difference` of two :class:`EvalResult` over one summary group
    (``"all"``, or a protocol group such as ``"instruments"``)."""
    if (new.protocol, new.level) != (old.protocol, old.level):
        raise ValueError(
            f"different protocols: {new.protocol}/{new.level} vs {old.protocol}/{old.level}; "
            "score both runs the same way"
        )
    groups = new.groups()
    if group not in groups:
        raise ValueError(f"group {group!r} has no objects; known: {', '.join(groups)}")
    ids = groups[group]
    return paired_difference(object_scores(new.objects, ids), object_scores(old.objects, ids), **kw)


def load_result(path: str | Path) -> EvalResult:
    """An :class:`EvalResult` from ``results.json`` or a folder holding it (``surgsam eval --out``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no results.json (write one with `surgsam eval ... --out DIR`)")
    try:
        return EvalResult.from_dict(json.loads(p.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{p}: not an evaluation result ({e})") from None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m surgsam.eval.compare",
        description="Paired J&F difference of two evaluations of the same data, with a video-level bootstrap interval.",
    )
    ap.add_argument("new", help="results.json (or its folder) of the run to judge")
    ap.add_argument("old", help="results.json (or its folder) of the run to compare against")
    ap.add_argument("--group", nargs="+", default=None, help="summary groups (default: every group both runs have)")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        new, old = load_result(args.new), load_result(args.old)
        groups = args.group or [g for g in new.groups() if g in old.groups()]
        for g in groups:
            d = compare_results(new, old, g, resamples=args.resamples, level=args.level, seed=args.seed)
            print(f"{g}: {d.describe()}")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
