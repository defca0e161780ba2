"""Training loss curves as a PNG (Pillow + numpy, no matplotlib).

    python -m surgsam.train.plot runs/a/log.jsonl runs/a2/log.jsonl --out loss.png \\
        --eval 5000:61.2 --eval 10000:68.4 --title "nano-synth"

Reads the trainer's ``log.jsonl`` files (rows with ``step`` and ``loss``; a re-logged step keeps its
last occurrence), splits them into mask-prompted clips, click/box-prompted clips and image batches,
and draws each series' trailing moving median of the loss per object on a log axis. Optional
held-out J&F points go in a second panel below, on the same step axis.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["SERIES_COLORS", "EVAL_COLOR", "read_log", "loss_series", "plot_training", "main"]

SERIES_COLORS = {
    "mask-prompted clips": (31, 119, 180),
    "click/box-prompted clips": (214, 39, 40),
    "image batches": (44, 160, 44),
}
EVAL_COLOR = (148, 103, 189)
_INK, _GRID, _WHITE = (0, 0, 0), (225, 225, 225), (255, 255, 255)

PathLike = str | Path


def read_log(paths: PathLike | Iterable[PathLike]) -> list[dict]:
    """Training rows (with ``step`` and ``loss``) of one or more logs, one per step, sorted by step.

    Files are read in order; a step logged more than once (resumed runs) keeps its last occurrence.
    Lines that are blank, unparsable (e.g. a truncated last line) or lack ``step``/``loss`` are skipped.
    ``"PATH+N"`` (when no file of that name exists) shifts that file's steps by ``N``: a run started
    with ``--init`` from another run's step-N weights counts its steps from 0 again.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    rows: dict[int, dict] = {}
    for spec in paths:
        path, offset = _with_offset(spec)
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "step" in row and "loss" in row:
                row = dict(row, step=int(row["step"]) + offset)
                rows[row["step"]] = row
    return [rows[s] for s in sorted(rows)]


def _with_offset(spec: PathLike) -> tuple[Path, int]:
    """``PATH`` -> (PATH, 0); ``PATH+N`` -> (PATH, N) unless a file is literally named so."""
    path = Path(spec)
    head, sep, tail = str(spec).rpartition("+")
    if not path.exists() and sep and tail.isdigit():
        return Path(head), int(tail)
    return path, 0


def _series_name(row: dict) -> str | None:
    if row.get("batch") == "image":
        return "image batches"
    return {"mask": "mask-prompted clips", "point": "click/box-prompted clips", "box": "click/box-prompted clips"}.get(
        row.get("prompt", "")
    )


def _trailing_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median of each value and the ``window - 1`` before it (fewer at the start): robust to
    the rare loss spikes of correction-click clips, which would put ``window``-wide steps into a mean."""
    w = max(1, window)
    return np.array([np.median(values[max(0, i - w + 1) : i + 1]) for i in range(len(values))])


def loss_series(rows: Sequence[dict], smooth: int = 200) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per non-empty series: (steps, trailing moving median over ``smooth`` rows of loss / objects).

    Series: "mask-prompted clips", "click/box-prompted clips" (point or box prompts) and
    "image batches"; the window counts rows of the same series. Non-finite losses are dropped.
    """
    points: dict[str, list[tuple[int, float]]] = {name: [] for name in SERIES_COLORS}
    for row in rows:
        name, value = _series_name(row), float(row["loss"]) / max(1, int(row.get("objects") or 1))
        if name is not None and math.isfinite(value):
            points[name].append((int(row["step"]), value))
    out = {}
    for name, pts in points.items():
        if pts:
            steps, values = np.array(pts, dtype=np.float64).T
            out[name] = (steps.astype(np.int64), _trailing_median(values, smooth))
    return out


# ----------------------------------------------------------------------------- drawing helpers


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # scalable (Pillow >= 10.1 with FreeType)
    except (TypeError, ImportError, OSError, AttributeError):
        return ImageFont.load_default()


def _text(
    draw: ImageDraw.ImageDraw, x: float, y: float, text: str, font, ha: str = "left", va: str = "top", fill=_INK
) -> None:
    """Draw ``text`` aligned on (x, y): ha in left/center/right, va in top/center/bottom."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    x -= {"left": 0, "center": w / 2, "right": w}[ha] + left
    y -= {"top": 0, "center": h / 2, "bottom": h}[va] + top
    draw.text((x, y), text, font=font, fill=fill)


def _vtext(img: Image.Image, x: float, y: float, text: str, font) -> None:
    """Text rotated 90 degrees counter-clockwise, centred on (x, y)."""
    left, top, right, bottom = ImageDraw.Draw(img).textbbox((0, 0), text, font=font)
    tile = Image.new("RGBA", (int(right - left + 2), int(bottom - top + 2)), (255, 255, 255, 0))
    ImageDraw.Draw(tile).text((1 - left, 1 - top), text, font=font, fill=_INK + (255,))
    tile = tile.rotate(90, expand=True)
    img.paste(tile, (round(x - tile.width / 2), round(y - tile.height / 2)), tile)


def _step_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    raw = max(hi - lo, 1.0) / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [float(t) for t in np.arange(math.ceil(lo / step) * step, hi + 1e-9, step)]


def _log_ticks(lo: float, hi: float, max_ticks: int = 8) -> tuple[list[float], float, float]:
    """Nice ticks (m * 10^k) and axis limits widened to the nearest ticks around [lo, hi]."""
    decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    for mantissas in ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 5), (1, 3), (1,)):
        cands = sorted(m * 10.0**k for k in decades for m in mantissas)
        below = max(t for t in cands if t <= lo * (1 + 1e-9))
        above = min(t for t in cands if t >= hi * (1 - 1e-9))
        ticks = [t for t in cands if below <= t <= above]
        if len(ticks) <= max_ticks:
            return ticks, below, above
    return ticks, below, above


@dataclass
class _Panel:
    box: tuple[int, int, int, int]  # left, top, right, bottom in pixels
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    log: bool = False

    def px(self, x: float) -> float:
        return self.box[0] + (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * (self.box[2] - self.box[0])

    def py(self, y: float) -> float:
        f = math.log10 if self.log else float
        lo, hi = f(self.ylim[0]), f(self.ylim[1])
        return self.box[3] - (f(y) - lo) / (hi - lo) * (self.box[3] - self.box[1])

    def frame(self, draw, xticks, yticks, font, xlabels: bool) -> None:
        left, top, right, bottom = self.box
        for t in xticks:
            draw.line([(self.px(t), top), (self.px(t), bottom)], fill=_GRID)
            if xlabels:
                _text(draw, self.px(t), bottom + 5, f"{t:g}", font, ha="center")
        for t in yticks:
            draw.line([(left, self.py(t)), (right, self.py(t))], fill=_GRID)
            _text(draw, left - 6, self.py(t), f"{t:g}", font, ha="right", va="center")
        draw.rectangle(self.box, outline=_INK)


def plot_training(
    paths: PathLike | Iterable[PathLike],
    out_png: PathLike,
    *,
    evals: list[tuple[int, float]] | None = None,
    title: str = "",
    smooth: int = 200,
    size: tuple[int, int] = (960, 540),
    eval_label: str = "held-out J&F",
) -> Path:
    """Write a PNG of the smoothed loss per object by series (log y axis), plus the J&F points of
    ``evals`` if given, in a lower panel named ``eval_label`` (e.g. ``"validation J&F"``)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    series = loss_series(read_log(paths), smooth)
    if not series:
        raise ValueError(f"no training rows (lines with 'step' and 'loss') in {', '.join(map(str, paths))}")
    evals = sorted((int(s), float(v)) for s, v in evals or [])
    width, height = size
    img = Image.new("RGB", size, _WHITE)
    draw = ImageDraw.Draw(img)
    small, normal, big = _font(12), _font(14), _font(16)

    steps = np.concatenate([s for s, _ in series.values()] + [np.array([s for s, _ in evals], dtype=np.int64)])
    values = np.concatenate([v for _, v in series.values()])
    values = values[values > 0]
    xlim = (0.0 if steps.min() <= 0.1 * steps.max() else float(steps.min()), float(max(steps.max(), 1)))
    yticks, ylo, yhi = _log_ticks(float(values.min()), float(values.max())) if len(values) else ([1.0], 0.1, 10.0)
    xticks = _step_ticks(*xlim)
    last_label = draw.textlength(f"{xticks[-1]:g}", font=small) / 2 + 6  # keep it inside the image
    left, right, top, bottom = 78, width - max(16, round(last_label)), (38 if title else 14), height - 46
    main_bottom = round(top + (bottom - top) * 0.7) if evals else bottom

    main = _Panel((left, top, right, main_bottom), xlim, (ylo, yhi), log=True)
    main.frame(draw, xticks, yticks, small, xlabels=not evals)
    for name, (xs, ys) in series.items():
        pts = [(main.px(x), main.py(y)) for x, y in zip(xs, ys) if y > 0]
        if len(pts) > 1:
            draw.line(pts, fill=SERIES_COLORS[name], width=2, joint="curve")
        elif pts:
            ((x, y),) = pts
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=SERIES_COLORS[name])
    ylabel = f"loss per object (moving median of {smooth} steps)"
    if draw.textlength(ylabel, font=normal) > main_bottom - top:
        ylabel = f"loss / object (median {smooth} steps)"
    _vtext(img, 18, (top + main_bottom) / 2, ylabel, normal)

    # legend, top right of the main panel
    line_h = 18
    legend_w = max(int(draw.textlength(n, font=small)) for n in series) + 42
    lx, ly = right - legend_w - 8, top + 8
    draw.rectangle([lx, ly, lx + legend_w, ly + line_h * len(series) + 8], fill=_WHITE, outline=(150, 150, 150))
    for i, name in enumerate(series):
        cy = ly + 4 + line_h * i + line_h / 2
        draw.line([(lx + 8, cy), (lx + 30, cy)], fill=SERIES_COLORS[name], width=3)
        _text(draw, lx + 36, cy, name, small, va="center")

    if evals:
        ev = _Panel((left, main_bottom + 14, right, bottom), xlim, (0.0, 100.0))
        ev.frame(draw, xticks, [0, 50, 100], small, xlabels=True)
        for t in (25, 75):
            draw.line([(left + 1, ev.py(t)), (right - 1, ev.py(t))], fill=(242, 242, 242))
        pts = [(ev.px(s), ev.py(min(max(v, 0.0), 100.0))) for s, v in evals]
        if len(pts) > 1:
            draw.line(pts, fill=EVAL_COLOR, width=2)
        for (x, y), (_, v) in zip(pts, evals):
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=EVAL_COLOR)
            if len(evals) <= 12:
                _text(
                    draw,
                    x,
                    y - 6 if v < 80 else y + 6,
                    f"{v:.1f}",
                    small,
                    ha="center",
                    va="bottom" if v < 80 else "top",
                    fill=EVAL_COLOR,
                )
        _vtext(img, 18, (ev.box[1] + bottom) / 2, eval_label, normal)

    _text(draw, (left + right) / 2, height - 6, "training step", normal, ha="center", va="bottom")
    if title:
        _text(draw, (left + right) / 2, top / 2, title, big, ha="center", va="center")
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out


def _eval_point(text: str) -> tuple[int, float]:
    try:
        step, jf = text.split(":")
        return int(step), float(jf)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected STEP:JF (e.g. 5000:61.2), got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m surgsam.train.plot LOG [LOG ...] --out PNG [--eval STEP:JF ...]``."""
    p = argparse.ArgumentParser(prog="python -m surgsam.train.plot", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "logs",
        nargs="+",
        metavar="LOG",
        help="log.jsonl files, in order (later files win); "
        "LOG+N shifts a file's steps by N (a run started with --init from step N of another)",
    )
    p.add_argument("--out", required=True, metavar="PNG", help="output image")
    p.add_argument(
        "--eval",
        action="append",
        type=_eval_point,
        default=[],
        metavar="STEP:JF",
        help="held-out J&F (0-100) at a step; repeatable",
    )
    p.add_argument(
        "--eval-label",
        default="held-out J&F",
        help="name of the --eval panel, e.g. 'validation J&F' for checkpoints chosen on a validation split",
    )
    p.add_argument("--title", default="")
    p.add_argument("--smooth", type=int, default=200, metavar="N", help="moving-median window (rows per series)")
    args = p.parse_args(argv)
    try:
        out = plot_training(
            args.logs,
            args.out,
            evals=args.eval or None,
            title=args.title,
            smooth=args.smooth,
            eval_label=args.eval_label,
        )
    except (ValueError, OSError) as e:
        p.error(str(e))
    print(out)
    return 0


if __name__ == "__main__":
    main()
