"""`surgsam segment` outputs and prompts of issue 18: COCO RLE JSON, `--object`, folders of videos."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from surgsam.cli import main
from surgsam.engine import Prompt, parse_object_spec, read_prompt_file, read_prompts, segment_video
from surgsam.io import read_palette_png, write_palette_png, write_video
from surgsam.modeling import build_model
from synthetic import moving_objects_video

pytest.importorskip("av")

H, W = 96, 128


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    frames, gt = moving_objects_video(n=6, h=H, w=W)
    write_video(d / "clip.mp4", frames, fps=10)
    label = np.zeros((H, W), np.uint8)
    label[gt[1][0]] = 1
    label[gt[2][0]] = 2
    write_palette_png(d / "first.png", label)
    return d, frames, gt


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory):
    """The engine tests' seeded nano as a checkpoint file: two runs of the CLI build the same network."""
    import torch

    path = tmp_path_factory.mktemp("weights") / "nano.pt"
    torch.save({"model": model.state_dict()}, path)
    return ["--model", "nano", "--checkpoint", str(path)]


def _run(*argv, capsys=None) -> dict:
    assert main(["segment", *map(str, argv), "--no-progress"]) == 0
    if capsys is None:
        return {}
    captured = capsys.readouterr()
    return dict(json.loads(captured.out.strip().splitlines()[-1]), stderr=captured.err)


# -- COCO RLE ------------------------------------------------------------------------------------
def test_coco_rle_decodes_to_the_palette_pngs_with_the_engines_scores(clip, weights, tmp_path, capsys):
    """Objects whose own masks overlap (random weights: large blobs): decoding every annotation
    of a frame with pycocotools gives back that frame's palette PNG exactly (one object per
    pixel, highest logit), and each annotation carries the engine's object score and IoU."""
    pytest.importorskip("pycocotools")
    from pycocotools import mask as mask_api
    from pycocotools.coco import COCO

    d, frames, _ = clip
    objects = ["1:box=10,20,60,75", "2:box=10,20,120,90", "3@2:points=95,63"]
    out = tmp_path / "out"
    summary = _run(
        d / "clip.mp4", *weights, *[a for o in objects for a in ("--object", o)], "--coco", "--out", out, capsys=capsys
    )
    assert summary["coco"] == str(out / "coco_rle.json")
    doc = json.loads((out / "coco_rle.json").read_text())
    assert [im["frame_name"] for im in doc["images"]] == [f"{t:05d}" for t in range(6)]
    assert [c["id"] for c in doc["categories"]] == [1, 2, 3]
    assert json.loads((out / "surgsam_manifest.json").read_text())["coco"] == "coco_rle.json"

    expected = list(
        segment_video(
            d / "clip.mp4",
            [parse_object_spec(o) for o in objects],
            build_model("nano", checkpoint=weights[-1]),
            memory="efp",
            precision="auto",
        )
    )
    assert any((r.masks.sum(0) > 1).any() for r in expected)  # the overlap rule is exercised
    coco = COCO(str(out / "coco_rle.json"))
    for t, res in enumerate(expected):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[t]))
        assert [a["object_id"] for a in anns] == res.obj_ids  # every object the engine holds, also empty ones
        label = np.zeros((H, W), np.int32)
        for a in anns:
            m = mask_api.decode(a["segmentation"]).astype(bool)
            assert not label[m].any()  # disjoint
            label[m] = a["object_id"]
            assert a["area"] == int(m.sum()) and a["category_id"] == a["object_id"] and a["image_id"] == t
            k = res.obj_ids.index(a["object_id"])
            assert a["score"] == pytest.approx(float(res.object_scores[k]), abs=1e-6)
            assert a["predicted_iou"] == pytest.approx(float(res.ious[k]), abs=1e-6)
        np.testing.assert_array_equal(label, read_palette_png(out / f"{t:05d}.png"))


def test_coco_follows_a_reverse_pass_frame_for_frame(clip, weights, tmp_path, capsys):
    """--direction both visits frames out of order (and the prompted one twice): the COCO file
    still has each frame once, in order, decoding to the PNG written last for it."""
    pytest.importorskip("pycocotools")
    from pycocotools import mask as mask_api

    d, _, _ = clip
    out = tmp_path / "out"
    _run(
        d / "clip.mp4",
        *weights,
        "--object",
        "1@3:box=10,20,60,75",
        "--object",
        "2@3:box=60,40,120,90",
        "--direction",
        "both",
        "--coco",
        "--out",
        out,
        capsys=capsys,
    )
    doc = json.loads((out / "coco_rle.json").read_text())
    assert [im["id"] for im in doc["images"]] == list(range(6))
    assert [a["id"] for a in doc["annotations"]] == list(range(1, len(doc["annotations"]) + 1))
    for t in range(6):
        label = np.zeros((H, W), np.int32)
        anns = [a for a in doc["annotations"] if a["image_id"] == t]
        assert [a["object_id"] for a in anns] == [1, 2]
        for a in anns:
            label[mask_api.decode(a["segmentation"]).astype(bool)] = a["object_id"]
        np.testing.assert_array_equal(label, read_palette_png(out / f"{t:05d}.png"))
    assert (read_palette_png(out / "00000.png") > 0).any()  # frames before the prompt got masks


def test_coco_writer_keeps_the_last_version_of_a_frame(tmp_path):
    pytest.importorskip("pycocotools")
    from surgsam.io.coco import CocoRleWriter, decode_rle

    w = CocoRleWriter(tmp_path / "c.json")
    first, again = np.zeros((4, 5), np.uint8), np.zeros((4, 5), np.uint8)
    first[0, :2] = 3
    again[1:3, 1:4] = 3
    w.add_label_map(2, first, [3], [0.9], [0.8])
    w.add_label_map(0, np.zeros((4, 5), np.uint8), [3], [0.1], [0.2])
    w.add_label_map(2, again, [3], [0.7], [0.6])
    doc = json.loads(w.write().read_text())
    assert [im["id"] for im in doc["images"]] == [0, 2] and [a["image_id"] for a in doc["annotations"]] == [0, 2]
    last = doc["annotations"][1]
    assert (last["score"], last["predicted_iou"], last["area"], last["bbox"]) == (0.7, 0.6, 6, [1.0, 1.0, 3.0, 2.0])
    np.testing.assert_array_equal(decode_rle(last["segmentation"]), again == 3)
    assert doc["annotations"][0]["area"] == 0 and doc["annotations"][0]["bbox"] == [0.0, 0.0, 0.0, 0.0]


def test_coco_needs_the_extra_and_says_so_before_any_work(clip, tmp_path, monkeypatch):
    d, _, _ = clip
    monkeypatch.setitem(sys.modules, "pycocotools.mask", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install "surgsam\[coco\]"'):
        main(
            [
                "segment",
                str(d / "clip.mp4"),
                "--untrained",
                "--box",
                "10,20,60,75",
                "--coco",
                "--out",
                str(tmp_path / "out"),
                "--no-progress",
            ]
        )
    assert not (tmp_path / "out").exists()


def test_overwrite_without_coco_removes_the_earlier_coco_file(clip, tmp_path, capsys):
    pytest.importorskip("pycocotools")
    d, _, _ = clip
    out = tmp_path / "out"
    _run(d / "clip.mp4", "--untrained", "--box", "10,20,60,75", "--coco", "--out", out)
    assert (out / "coco_rle.json").is_file()
    _run(d / "clip.mp4", "--untrained", "--box", "10,20,60,75", "--out", out, "--overwrite")
    assert not (out / "coco_rle.json").exists()  # the folder holds one run only
    capsys.readouterr()


# -- --object --------------------------------------------------------------------------------
def _same(a: Prompt, b: Prompt) -> bool:
    def eq(x, y):
        return (x is None and y is None) or (
            x is not None and y is not None and np.array_equal(np.asarray(x), np.asarray(y))
        )

    return (a.obj_id, a.frame_idx) == (b.obj_id, b.frame_idx) and all(
        eq(getattr(a, k), getattr(b, k)) for k in ("points", "labels", "box", "mask")
    )


def test_object_specs_give_the_prompts_file_prompts(clip, tmp_path, monkeypatch):
    d, _, _ = clip
    monkeypatch.chdir(d)
    specs = [
        "1:mask=first.png:mask_id=1",
        "2@3:box=10,20,60,75",
        "3@1:points=95,63;10,10:labels=1,0",
        "4:points=60,40",
        "5:points=60,40:box=10,20,60,75",
    ]
    (tmp_path / "p.json").write_text(
        json.dumps(
            [
                {"obj_id": 1, "mask": str(d / "first.png"), "mask_id": 1},
                {"obj_id": 2, "frame": 3, "box": [10, 20, 60, 75]},
                {"obj_id": 3, "frame": 1, "points": [[95, 63], [10, 10]], "labels": [1, 0]},
                {"obj_id": 4, "frame": 2, "points": [[60, 40]]},
                {"obj_id": 5, "frame": 2, "points": [[60, 40]], "box": [10, 20, 60, 75]},
            ]
        )
    )
    from surgsam.engine.prompt_file import parse_object_specs

    got = parse_object_specs(specs, frame=2)  # --frame 2 for the specs without @FRAME ...
    want = read_prompts(tmp_path / "p.json")
    want[0].frame_idx = 2  # ... the mask one included
    assert len(got) == len(want) and all(_same(a, b) for a, b in zip(got, want))


def test_object_flag_segments_each_object_from_its_frame(clip, tmp_path, capsys):
    d, _, _ = clip
    out = tmp_path / "out"
    _run(
        d / "clip.mp4",
        "--untrained",
        "--object",
        "4:box=10,20,60,75",
        "--object",
        "9@3:points=95,63",
        "--format",
        "per-object",
        "--out",
        out,
    )
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["004", "009"]
    assert sorted(p.name for p in (out / "009").glob("*.png"))[0] == "00003.png"
    assert json.loads((out / "surgsam_manifest.json").read_text())["objects"] == [4, 9]
    capsys.readouterr()


@pytest.mark.parametrize(
    "spec,err",
    [
        ("2box=1,2,3,4", "expected ID"),
        ("x:box=1,2,3,4", "expected ID"),
        ("2@:box=1,2,3,4", "expected ID"),
        ("2:box=1,2,3", "groups of 4"),
        ("2:box=5,5,1,1", "x1 > x0"),
        ("2:colour=red", "not KEY=VALUE"),
        ("2:box=1,2,3,4:box=1,2,3,4", "given twice"),
        ("300:box=1,2,3,4", "1..255"),
        ("2:labels=1", "labels given without points"),
        ("2:points=1,2;3,4:labels=1", "2 points but 1 labels"),
        ("2:mask=nope.png", "mask file not found"),
        ("2:mask_id=x:mask=a.png", "cannot parse mask_id"),
    ],
)
def test_object_spec_errors_name_the_spec(spec, err):
    with pytest.raises(ValueError, match=err) as e:
        parse_object_spec(spec)
    assert f"--object {spec!r}" in str(e.value)


def test_object_flag_refusals(clip, tmp_path):
    d, _, _ = clip
    base = ["segment", str(d / "clip.mp4"), "--untrained", "--out", str(tmp_path / "o"), "--no-progress"]
    with pytest.raises(ValueError, match="prompted twice on frame 0"):
        main([*base, "--object", "2:box=1,2,30,40", "--object", "2:points=5,5"])
    with pytest.raises(ValueError, match="labels inside it"):
        main([*base, "--object", "2:points=5,5", "--labels", "0"])
    with pytest.raises(SystemExit):  # argparse: not allowed with --box
        main([*base, "--object", "2:points=5,5", "--box", "1,2,30,40"])
    assert not (tmp_path / "o").exists()


# -- folders of videos ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def videos(clip, tmp_path_factory):
    """A folder with a.mp4 (6 frames) and b/ (4 jpg frames), plus a folder without images."""
    from PIL import Image

    _, frames, _ = clip
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "a.mp4", frames, fps=10)
    (root / "b").mkdir()
    for i, f in enumerate(frames[:4]):
        Image.fromarray(f).save(root / "b" / f"frame{i:03d}.jpg")
    (root / "notes").mkdir()  # no images: not a video
    (root / "readme.txt").write_text("not a video")
    return root


def test_find_videos(videos, tmp_path):
    from surgsam.io.video_folder import find_videos

    assert find_videos(videos) == [("a", videos / "a.mp4"), ("b", videos / "b")]
    assert find_videos(videos / "b") is None  # a folder of frames is one video
    assert find_videos(videos / "a.mp4") is None
    (tmp_path / "x").mkdir()
    write_video(tmp_path / "x.mp4", np.zeros((2, 16, 16, 3), np.uint8), fps=10)
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "x" / "0.png")
    with pytest.raises(ValueError, match="two videos are named 'x'"):
        find_videos(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no frames .* and no videos"):
        find_videos(tmp_path / "empty")


def test_folder_of_videos_with_one_prompts_list(videos, clip, weights, tmp_path, capsys):
    """The same prompts for every video; each video's masks are those of segmenting it alone."""
    d, _, _ = clip
    (tmp_path / "p.json").write_text(
        json.dumps(
            [
                {"obj_id": 1, "mask": str(d / "first.png"), "mask_id": 1},
                {"obj_id": 2, "frame": 1, "box": [60, 40, 120, 90]},
            ]
        )
    )
    out = tmp_path / "out"
    summary = _run(
        videos, *weights, "--prompts", tmp_path / "p.json", "--out", out, "--overlay", tmp_path / "ov", capsys=capsys
    )
    assert [(v["video"], v["frames"]) for v in summary["videos"]] == [("a", 6), ("b", 4)]
    assert sorted(p.name for p in (out / "b").iterdir()) == [f"frame{i:03d}.png" for i in range(4)] + [
        "surgsam_manifest.json"
    ]
    assert json.loads((out / "a" / "surgsam_manifest.json").read_text())["video"] == str(videos / "a.mp4")
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == ["a.mp4", "b.mp4"]
    _run(videos / "a.mp4", *weights, "--prompts", tmp_path / "p.json", "--out", tmp_path / "alone")
    for t in range(6):
        np.testing.assert_array_equal(
            read_palette_png(out / "a" / f"{t:05d}.png"), read_palette_png(tmp_path / "alone" / f"{t:05d}.png")
        )
    capsys.readouterr()


def test_folder_of_videos_with_prompts_per_video(videos, clip, tmp_path, capsys):
    d, _, _ = clip
    pf = tmp_path / "p.json"
    pf.write_text(json.dumps({"videos": {"b": [{"obj_id": 3, "frame": 2, "box": [60, 40, 120, 90]}]}}))
    assert list(read_prompt_file(pf).videos) == ["b"]
    out = tmp_path / "out"
    summary = _run(videos, "--untrained", "--prompts", pf, "--out", out, capsys=capsys)
    assert [v["video"] for v in summary["videos"]] == ["b"] and sorted(p.name for p in out.iterdir()) == ["b"]
    assert "has no prompts for a: skipped" in summary["stderr"]
    assert json.loads((out / "b" / "surgsam_manifest.json").read_text())["objects"] == [3]
    # one video of the mapped names: its entry is used
    _run(videos / "b", "--untrained", "--prompts", pf, "--out", tmp_path / "one")
    assert json.loads((tmp_path / "one" / "surgsam_manifest.json").read_text())["objects"] == [3]
    with pytest.raises(ValueError, match="no prompts for video 'a'"):
        main(["segment", str(videos / "a.mp4"), "--untrained", "--prompts", str(pf), "--out", str(tmp_path / "x")])
    # a name the folder does not have, and a non-empty output subfolder: refused before any video
    pf.write_text(
        json.dumps({"videos": {"b": [{"obj_id": 1, "box": [1, 1, 9, 9]}], "c": [{"obj_id": 1, "box": [1, 1, 9, 9]}]}})
    )
    with pytest.raises(ValueError, match="not in .*: c"):
        main(["segment", str(videos), "--untrained", "--prompts", str(pf), "--out", str(tmp_path / "y")])
    pf.write_text(json.dumps([{"obj_id": 1, "box": [1, 1, 9, 9]}]))
    with pytest.raises(ValueError, match="is not empty"):
        main(["segment", str(videos), "--untrained", "--prompts", str(pf), "--out", str(out), "--no-progress"])
    assert not (out / "a").exists()  # a comes before b, and was not started
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    capsys.readouterr()
