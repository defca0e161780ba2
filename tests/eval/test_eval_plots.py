"""Per-frame scores (frames.csv, results.json) and `surgsam eval --plots` (J&F per video, J over time)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from surgsam.data.synth import SynthConfig, generate
from surgsam.eval import ArrayVideo, EvalResult, evaluate_video
from surgsam.eval.cli import register

pytest.importorskip("matplotlib")


def run_cli(*argv: str) -> int:
    p = argparse.ArgumentParser(prog="surgsam")
    register(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(list(argv))
    return args.func(args)


def _hand_result() -> EvalResult:
    """Two videos whose per-frame J is known: "v" scores 100 then 0 (surgsam2 protocol: frames
    1 and 2 of 4), "w" scores 50 on frames 1..3 (half the object predicted)."""
    lab = np.zeros((4, 20, 20), np.uint8)
    lab[:, 5:10, 5:10] = 1
    preds = [{1: lab[t] == 1} for t in range(4)]
    preds[2] = {}
    v = evaluate_video(ArrayVideo("v", lab), iter(preds), "surgsam2")
    lab5 = np.zeros((5, 20, 20), np.uint8)
    lab5[:, 4:12, 4:12] = 2
    half = np.zeros((20, 20), bool)
    half[4:12, 4:8] = True
    w = evaluate_video(ArrayVideo("w", lab5), iter([{2: half}] * 5), "surgsam2")
    return EvalResult.merge([v, w])


def test_per_frame_scores_are_kept_round_trip_and_average_to_the_object_scores():
    r = _hand_result()
    assert [(f.video, f.frame, f.obj_id, f.J) for f in r.frames] == [
        ("v", 1, 1, 100.0),
        ("v", 2, 1, 0.0),
        ("w", 1, 2, 50.0),
        ("w", 2, 2, 50.0),
        ("w", 3, 2, 50.0),
    ]
    assert r.over_time("J") == {"v": ([1, 2], [100.0, 0.0]), "w": ([1, 2, 3], [50.0, 50.0, 50.0])}
    for o in r.objects:
        mine = [f for f in r.frames if (f.video, f.obj_id) == (o.video, o.obj_id)]
        assert len(mine) == o.n_frames and np.mean([f.J for f in mine]) == o.J and np.mean([f.F for f in mine]) == o.F
    back = EvalResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.frames == r.frames
    with pytest.raises(ValueError, match="metric"):
        r.over_time("IoU")


def test_plot_eval_draws_the_evaluations_numbers(tmp_path):
    from surgsam.eval.plots import plot_eval

    r = _hand_result()
    drawn = plot_eval(r, tmp_path / "plots")
    assert drawn.videos == ["v", "w"]
    assert drawn.jf == pytest.approx([row["J&F"] for row in r.per_video()])
    assert drawn.overall_jf == pytest.approx(r.summary()["all"]["J&F"])
    assert drawn.j_over_time == {"v": ([1, 2], [100.0, 0.0]), "w": ([1, 2, 3], [50.0, 50.0, 50.0])}
    for name in ("jf_per_video.png", "j_over_time.png"):
        with Image.open(tmp_path / "plots" / name) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 200
            im.verify()
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["j_over_time.png", "jf_per_video.png"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_plots")
    generate(
        root, SynthConfig(width=96, height=80, frames=8), videos=3, seed=5, valid=3, overwrite=True, progress=False
    )
    return root


def test_eval_cli_plots_match_the_written_results(data, tmp_path, capsys):
    """`--plots` next to `--out`: the bars are videos.csv's J&F, each line the per-frame mean of
    frames.csv's J, and each object's frames average to its objects.csv J."""
    from surgsam.eval.plots import plot_eval

    out, plots = tmp_path / "out", tmp_path / "plots"
    assert (
        run_cli(
            "eval",
            "--e2e",
            "--data",
            str(data),
            "--split",
            "valid",
            "--segmenter",
            "copy",
            "--no-progress",
            "--summary-only",
            "--out",
            str(out),
            "--plots",
            str(plots),
        )
        == 0
    )
    assert "jf_per_video.png" in capsys.readouterr().out
    for name in ("jf_per_video.png", "j_over_time.png"):
        with Image.open(plots / name) as im:
            assert im.format == "PNG"
    videos = list(csv.DictReader(open(out / "videos.csv")))
    frames = list(csv.DictReader(open(out / "frames.csv")))
    objects = list(csv.DictReader(open(out / "objects.csv")))
    assert len(videos) == 3 and frames
    per_frame: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    per_obj: dict[tuple[str, str], list[float]] = defaultdict(list)
    for f in frames:
        per_frame[f["video"]][int(f["frame"])].append(float(f["J"]))
        per_obj[(f["video"], f["obj_id"])].append(float(f["J"]))
    for o in objects:
        assert np.mean(per_obj[(o["video"], o["obj_id"])]) == pytest.approx(float(o["J"]), abs=1e-3)
        assert len(per_obj[(o["video"], o["obj_id"])]) == int(o["n_frames"])
    drawn = plot_eval(EvalResult.from_dict(json.loads((out / "results.json").read_text())), tmp_path / "again")
    assert drawn.videos == [v["video"] for v in videos]
    assert drawn.jf == pytest.approx([float(v["J&F"]) for v in videos], abs=1e-3)
    assert set(drawn.j_over_time) == set(per_frame)
    for v, (ts, js) in drawn.j_over_time.items():
        assert ts == sorted(per_frame[v])
        assert js == pytest.approx([np.mean(per_frame[v][t]) for t in ts], abs=1e-3)
    assert (plots / "jf_per_video.png").read_bytes() == (tmp_path / "again" / "jf_per_video.png").read_bytes()


def test_plots_need_the_extra_and_say_so_before_any_work(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install "surgsam\[plots\]"'):
        run_cli(
            "eval",
            "--e2e",
            "--data",
            str(data),
            "--split",
            "valid",
            "--segmenter",
            "copy",
            "--no-progress",
            "--out",
            str(tmp_path / "out"),
            "--plots",
            str(tmp_path / "plots"),
        )
    assert not (tmp_path / "out").exists() and not (tmp_path / "plots").exists()
