"""Evaluation plots (``surgsam eval --plots DIR``): J&F per video, and J over time per video.

Drawn with matplotlib (the ``plots`` extra), imported only here and only when a plot is made;
no pyplot state is touched (a bare ``Figure`` rendered by the Agg backend), so the caller's
matplotlib backend and figures are left alone. Each PNG is written atomically. The values drawn
are read back from the plotted artists and returned, so what the images show can be checked
against the evaluation's numbers.
"""

from __future__ import annotations

import importlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._optional import require_matplotlib
from ..io.atomic import atomic_write_bytes
from .evaluator import EvalResult

__all__ = ["J_OVER_TIME", "JF_PER_VIDEO", "EvalPlots", "plot_eval", "require_matplotlib"]

#: File names :func:`plot_eval` writes into its folder.
JF_PER_VIDEO = "jf_per_video.png"
J_OVER_TIME = "j_over_time.png"
_MAX_LEGEND = 20  # more videos than this: no legend (the lines stay)


@dataclass
class EvalPlots:
    """What :func:`plot_eval` drew (values read back from the plot) and where.

    videos / jf: the bars of the J&F plot, in order; overall_jf: its dashed line (the J&F of all
    objects, the summary's); j_over_time: per video, ``(frames, J)`` of its line.
    """

    paths: dict[str, Path] = field(default_factory=dict)
    videos: list[str] = field(default_factory=list)
    jf: list[float] = field(default_factory=list)
    overall_jf: float = math.nan
    j_over_time: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return atomic_write_bytes(path, buf.getvalue(), what="plot")


def plot_eval(result: EvalResult, out_dir: str | Path, *, title: str | None = None) -> EvalPlots:
    """Write :data:`JF_PER_VIDEO` (a bar per video: the mean J&F of its objects, as
    ``videos.csv``; a dashed line at the J&F of all objects) and :data:`J_OVER_TIME` (a line
    per video: on each evaluated frame, the mean J of its objects, from ``frames.csv``) into
    ``out_dir``. ``title`` heads both (default: the protocol). Returns what was drawn."""
    figure_mod = require_matplotlib()
    rows = result.per_video()
    if not rows:
        raise ValueError("nothing to plot: no object was scored")
    out = Path(out_dir)
    head = title or f"protocol {result.protocol}"
    drawn = EvalPlots()

    n = len(rows)
    fig = figure_mod.Figure(figsize=(min(16.0, max(5.0, 1.0 + 0.45 * n)), 3.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    names = [str(r["video"]) for r in rows]
    bars = ax.bar(range(n), [float(r["J&F"]) for r in rows], color="#4c72b0")
    overall = float(result.summary()["all"]["J&F"])
    ref = ax.axhline(overall, color="#dd8452", linestyle="--", linewidth=1.2, label=f"all objects: {overall:.1f}")
    for b in bars:
        ax.annotate(
            f"{b.get_height():.1f}",
            (b.get_x() + b.get_width() / 2, b.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 1),
            textcoords="offset points",
        )
    ax.set_xticks(range(n), names, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("J&F")
    ax.set_title(f"J&F per video ({head})", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    drawn.paths["jf_per_video"] = _save(fig, out / JF_PER_VIDEO)
    drawn.videos = [t.get_text() for t in ax.get_xticklabels()]
    drawn.jf = [float(b.get_height()) for b in bars]
    drawn.overall_jf = float(ref.get_ydata()[0])

    series = result.over_time("J")
    fig = figure_mod.Figure(figsize=(8.0, 3.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    cmap = importlib.import_module("matplotlib").colormaps["tab10" if len(series) <= 10 else "tab20"]
    for i, (video, (frames, values)) in enumerate(series.items()):
        ax.plot(
            frames,
            values,
            linewidth=1.1,
            marker="." if len(frames) < 40 else None,
            markersize=3,
            label=video,
            color=cmap(i % cmap.N),
        )
    ax.set_ylim(0, 105)
    ax.xaxis.set_major_locator(importlib.import_module("matplotlib.ticker").MaxNLocator(integer=True))
    ax.set_xlabel("frame")
    ax.set_ylabel("J (mean over the video's objects)")
    ax.set_title(f"J over time ({head})", fontsize=10)
    ax.grid(alpha=0.3)
    if len(series) <= _MAX_LEGEND:
        ax.legend(fontsize=7, ncol=1 if len(series) <= 10 else 2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    drawn.paths["j_over_time"] = _save(fig, out / J_OVER_TIME)
    drawn.j_over_time = {
        str(line.get_label()): ([int(x) for x in line.get_xdata()], [float(y) for y in line.get_ydata()])
        for line in ax.get_lines()
    }
    return drawn
