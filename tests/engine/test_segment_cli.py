"""`surgsam segment` and `segment_video` end to end on a small mp4 (nano preset, random weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from surgsam.cli import main
from surgsam.engine import Prompt, segment_video
from surgsam.io import read_palette_png, write_palette_png, write_video
from surgsam.modeling import build_model
from synthetic import moving_objects_video

pytest.importorskip("av")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    frames, gt = moving_objects_video(n=8, h=120, w=160)
    write_video(d / "clip.mp4", frames, fps=10)
    label = np.zeros((120, 160), np.uint8)
    label[gt[1][0]] = 1
    label[gt[2][0]] = 2
    write_palette_png(d / "first.png", label)
    return d, frames, gt


def test_segment_cli_writes_masks_and_overlay(clip, capsys):
    d, frames, gt = clip
    out = d / "out"
    rc = main(["segment", str(d / "clip.mp4"), "--model", "nano", "--mask", str(d / "first.png"),
               "--memory", "efp", "--out", str(out), "--overlay", str(d / "ov.mp4"), "--no-progress"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 8 and summary["memory"] == "efp"
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(8)]
    first = read_palette_png(pngs[0])
    assert set(np.unique(first)) <= {0, 1, 2} and first.shape == (120, 160)
    import av

    with av.open(str(d / "ov.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 8


def test_segment_cli_points_per_object_layout(clip, tmp_path):
    d, _, _ = clip
    rc = main(["segment", str(d / "clip.mp4"), "--model", "nano", "--points", "60,70;10,10", "--labels", "1,0",
               "--obj-id", "4", "--frame", "2", "--format", "per-object", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "004").glob("*.png"))[0] == "00002.png"


@pytest.mark.parametrize(
    "extra,err",
    [(["--points", "500,10"], "outside"), (["--points", "1,2,3"], "groups of 2"),
     (["--box", "10,10,5,5"], "x1 > x0"), (["--points", "5,5", "--labels", "1,1"], "--labels")],
)
def test_segment_cli_bad_prompts(clip, tmp_path, extra, err):
    d, _, _ = clip
    with pytest.raises(ValueError, match=err):
        main(["segment", str(d / "clip.mp4"), "--model", "nano", "--out", str(tmp_path), "--no-progress", *extra])


def test_segment_video_late_objects_and_unused_prompts(clip):
    d, frames, gt = clip
    model = build_model("nano")
    prompts = [Prompt(1, 0, mask=gt[1][0]), Prompt(2, 3, mask=gt[2][3])]
    res = list(segment_video(frames, prompts, model, memory="dlm"))
    assert [r.obj_ids for r in res] == [[1]] * 3 + [[1, 2]] * 5
    with pytest.raises(ValueError, match="never used"):
        list(segment_video(frames, [Prompt(1, 20, mask=gt[1][0])], model))
    with pytest.raises(ValueError, match="at least one prompt"):
        list(segment_video(frames, [], model))
