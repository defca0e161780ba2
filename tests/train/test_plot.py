"""Loss-curve plotting: log reading/dedup, series moving medians, the PNG and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from surgsam.train.plot import EVAL_COLOR, SERIES_COLORS, loss_series, main, plot_training, read_log


def _row(step: int, loss: float, batch: str = "video", prompt: str = "mask", objects: int = 2) -> dict:
    return {"step": step, "loss": loss, "lr": 1e-4, "batch": batch, "prompt": prompt, "objects": objects}


def _write(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def _synthetic_log(path, steps: int = 300) -> str:
    rng = np.random.default_rng(0)
    kinds = [("video", "mask"), ("video", "point"), ("video", "box"), ("image", "image")]
    rows = [
        _row(s, float(20 * np.exp(-s / 150) + rng.uniform(1, 2)), *kinds[s % 4], objects=1 + s % 3)
        for s in range(1, steps + 1)
    ]
    return _write(path, [{"event": "start"}] + rows + [{"event": "done", "step": steps}])


def _colors(png) -> set[tuple[int, int, int]]:
    return {c for _, c in Image.open(png).convert("RGB").getcolors(maxcolors=1 << 20)}


def test_read_log_keeps_last_occurrence_in_resumed_log(tmp_path):
    log = _write(
        tmp_path / "log.jsonl",
        [
            {"event": "config"},
            _row(1, 9.0),
            _row(2, 8.0),
            _row(3, 7.0),
            _row(2, 80.0),
            _row(3, 70.0),
            {"step": 3, "eval": 50.0},
            _row(4, 6.0),
            '{"step": 5, "lo',
        ],
    )
    rows = read_log(log)
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 9.0), (2, 80.0), (3, 70.0), (4, 6.0)]


def test_read_log_later_files_win(tmp_path):
    a = _write(tmp_path / "a.jsonl", [_row(1, 1.0), _row(2, 2.0), _row(3, 3.0)])
    b = _write(tmp_path / "b.jsonl", [_row(3, 30.0), _row(4, 40.0)])
    assert [r["loss"] for r in read_log([a, b])] == [1.0, 2.0, 30.0, 40.0]
    assert [r["loss"] for r in read_log([b, a])] == [1.0, 2.0, 3.0, 40.0]


def test_loss_series_split_and_trailing_median():
    rows = [
        _row(1, 4.0, prompt="mask", objects=2),
        _row(2, 9.0, prompt="point", objects=3),
        _row(3, 6.0, prompt="mask", objects=1),
        _row(4, 5.0, batch="image", prompt="image", objects=0),
        _row(5, 8.0, prompt="box", objects=2),
        _row(6, 12.0, prompt="mask", objects=4),
        _row(7, 1.0, prompt="text"),
    ]  # an unknown prompt belongs to no series
    s = loss_series(rows, smooth=2)
    assert list(s) == ["mask-prompted clips", "click/box-prompted clips", "image batches"]
    steps, vals = s["mask-prompted clips"]  # per object: 2, 6, 3
    assert steps.tolist() == [1, 3, 6] and np.allclose(vals, [2.0, 4.0, 4.5])
    steps, vals = s["click/box-prompted clips"]  # per object: 3, 4
    assert steps.tolist() == [2, 5] and np.allclose(vals, [3.0, 3.5])
    steps, vals = s["image batches"]  # objects 0 counts as 1
    assert steps.tolist() == [4] and np.allclose(vals, [5.0])
    assert np.allclose(loss_series(rows, smooth=200)["mask-prompted clips"][1], [2.0, 4.0, 3.0])  # medians


def test_plot_training_png(tmp_path):
    out = plot_training(
        _synthetic_log(tmp_path / "log.jsonl"),
        tmp_path / "sub" / "loss.png",
        title="synthetic",
        smooth=20,
        size=(640, 400),
    )
    img = Image.open(out)
    assert img.format == "PNG" and img.size == (640, 400)
    panel = np.asarray(img.convert("RGB"))[60:300, 100:600]
    assert (panel != 255).any(axis=-1).mean() > 0.01
    colors = _colors(out)
    assert sum(c in colors for c in SERIES_COLORS.values()) >= 2
    assert EVAL_COLOR not in colors


def test_plot_training_with_evals(tmp_path):
    out = plot_training(_synthetic_log(tmp_path / "log.jsonl"), tmp_path / "loss.png", evals=[(100, 42.0), (300, 61.5)])
    assert Image.open(out).size == (960, 540)
    rgb = np.asarray(Image.open(out).convert("RGB"))
    ys, _ = np.nonzero((rgb == EVAL_COLOR).all(axis=-1))
    assert len(ys) > 0 and ys.min() > 540 * 0.6  # drawn in the lower panel


def test_eval_panel_is_named_as_asked(tmp_path):
    log = _synthetic_log(tmp_path / "log.jsonl")
    held = np.asarray(Image.open(plot_training(log, tmp_path / "a.png", evals=[(100, 42.0)])).convert("RGB"))
    valid = plot_training(log, tmp_path / "b.png", evals=[(100, 42.0)], eval_label="validation J&F")
    valid_px = np.asarray(Image.open(valid).convert("RGB"))
    differs = np.nonzero((held != valid_px).any(axis=-1))
    assert len(differs[1]) > 0 and differs[1].max() < 40  # only the panel's vertical label, at the left edge
    assert main([log, "--out", str(tmp_path / "c.png"), "--eval", "100:42", "--eval-label", "validation J&F"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c.png").convert("RGB")), valid_px)


def test_cli_writes_png(tmp_path, capsys):
    log = _synthetic_log(tmp_path / "log.jsonl")
    out = tmp_path / "cli.png"
    assert main([log, "--out", str(out), "--eval", "200:55.5", "--title", "t", "--smooth", "10"]) == 0
    assert Image.open(out).size == (960, 540) and EVAL_COLOR in _colors(out)
    with pytest.raises(SystemExit):
        main([log, "--out", str(out), "--eval", "oops"])


def test_empty_log_raises(tmp_path):
    log = _write(tmp_path / "log.jsonl", [{"event": "start"}, {"step": 3, "eval": 50.0}])
    with pytest.raises(ValueError, match="no training rows"):
        plot_training(log, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_read_log_shifts_a_continued_run(tmp_path):
    first = tmp_path / "a.jsonl"
    second = tmp_path / "b.jsonl"
    first.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3)))
    second.write_text("".join(json.dumps({"step": s, "loss": 2.0}) + "\n" for s in (1, 2)))
    rows = read_log([first, f"{second}+2"])
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0)]
