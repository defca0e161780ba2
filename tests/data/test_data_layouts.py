"""Dataset layouts chosen explicitly, Ref-EndoVis Meta variants, precise errors for unreadable
meta files, and the one frame-reading rule of dataset folders and image folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from surgsam.cli import main
from surgsam.data import LAYOUTS, DatasetError, RefEndoVis, RefMeta, VOSDataset, open_dataset, write_mask
from surgsam.data.refendovis import load_meta_expressions
from surgsam.data.video import list_images, read_rgb
from surgsam.io import ImageFolderSource


def _video(base, name="seq_2", frames=3):
    """Frames and palette annotations of one 8 x 8 video under ``base`` (objects 1 and 2)."""
    for t in range(frames):
        (base / "JPEGImages" / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 40 * t, np.uint8)).save(base / "JPEGImages" / name / f"{t:05d}.png")
        lab = np.zeros((8, 8), np.uint8)
        lab[0:3, 0:3] = 1
        lab[5:8, 5:8] = 2
        write_mask(base / "Annotations" / name / f"{t:05d}.png", lab)


def _ref(root, meta: dict, split="valid", name="seq_2"):
    base = root / split
    _video(base, name)
    (base / "Meta").mkdir(parents=True)
    (base / "Meta" / f"{name}.json").write_text(json.dumps(meta))
    return base / "Meta" / f"{name}.json"


CATS = {"1": "bipolar forceps", "2": "bipolar forceps"}
FRAMES = {
    f"{t:05d}": {"1": {"action": 6, "location": 7, "unique": False}, "2": {"action": 1, "location": 3, "unique": False}}
    for t in range(3)
}


# ---- layouts ---------------------------------------------------------------------------------
def test_davis_folder_with_an_unrelated_meta_folder_reads_as_vos_when_asked(tmp_path):
    _video(tmp_path, "bear")
    (tmp_path / "Meta").mkdir()
    (tmp_path / "Meta" / "notes.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"no Meta json for video 'bear'.*layout='vos' \(--layout vos\)"):
        open_dataset(tmp_path)  # auto: Meta/ means Ref-EndoVis, and the error says how to choose
    ds = open_dataset(tmp_path, layout="vos")
    assert isinstance(ds, VOSDataset) and ds.names == ["bear"] and ds["bear"].object_ids == [1, 2]
    assert main(["data-check", str(tmp_path), "--layout", "vos"]) == 0
    assert main(["data-check", str(tmp_path)]) == 1


def test_forced_layouts_and_unknown_layout(tmp_path):
    _video(tmp_path, "bear")
    with pytest.raises(DatasetError, match="no Meta/ folder"):
        open_dataset(tmp_path, layout="ref-endovis")
    with pytest.raises(DatasetError, match="instrument_dataset_"):
        open_dataset(tmp_path, layout="endovis17-raw")
    with pytest.raises(DatasetError, match="seq_"):
        open_dataset(tmp_path, layout="endovis18-raw")
    with pytest.raises(ValueError, match="unknown dataset layout 'davis'; choose one of auto, vos, ref-endovis"):
        open_dataset(tmp_path, layout="davis")  # type: ignore[arg-type]
    assert LAYOUTS == ("auto", "vos", "ref-endovis", "endovis17-raw", "endovis18-raw")


def test_layout_option_reaches_eval_and_train(tmp_path):
    from surgsam.cli import build_parser
    from surgsam.train.cli import config_from_args

    parser = build_parser()
    args = parser.parse_args(["eval", "--gt", str(tmp_path), "--pred", str(tmp_path), "--layout", "vos"])
    assert args.layout == "vos"
    args = parser.parse_args(
        [
            "train",
            "--recipe",
            "nano-synth",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--layout",
            "ref-endovis",
        ]
    )
    assert config_from_args(args).layout == "ref-endovis"
    with pytest.raises(SystemExit):
        parser.parse_args(["data-check", str(tmp_path), "--layout", "davis"])


def test_eval_scores_a_davis_folder_with_meta_when_told_it_is_vos(tmp_path, capsys):
    gt = tmp_path / "gt"
    _video(gt, "bear")
    (gt / "Meta").mkdir()
    pred = tmp_path / "pred"
    for t in range(3):  # predictions = ground truth
        write_mask(pred / "bear" / f"{t:05d}.png", np.asarray(Image.open(gt / "Annotations" / "bear" / f"{t:05d}.png")))
    assert main(["eval", "--gt", str(gt), "--pred", str(pred), "--protocol", "davis", "--no-progress"]) == 2
    assert "layout='vos'" in capsys.readouterr().err
    assert (
        main(["eval", "--gt", str(gt), "--pred", str(pred), "--protocol", "davis", "--layout", "vos", "--no-progress"])
        == 0
    )
    assert "100.0" in capsys.readouterr().out


# ---- Meta variants -----------------------------------------------------------------------------
def test_meta_with_the_category_map_at_top_level(tmp_path):
    _ref(tmp_path, {"category": CATS, "frames": FRAMES})
    v = RefEndoVis(tmp_path, "valid", version=17)["seq_2"]
    assert v.categories == {1: "bipolar forceps", 2: "bipolar forceps"}
    assert [e.text for e in v.expressions()] == [
        "bipolar forceps are grasping tissue on the top left",
        "bipolar forceps are idle on the bottom right",
    ]
    assert type(open_dataset(tmp_path, "valid")).__name__ == "RefEndoVis"


@pytest.mark.parametrize("key", ["categories", "info.categories"])
def test_meta_category_key_variants(tmp_path, key):
    raw = {"frames": FRAMES}
    if key.startswith("info."):
        raw["info"] = {"categories": CATS}
    else:
        raw[key] = CATS
    assert RefMeta.from_json(raw).categories == {1: "bipolar forceps", 2: "bipolar forceps"}


def test_meta_with_action_and_location_words(tmp_path):
    frames = {
        f"{t:05d}": {
            "1": {"action": "Grasping tissue", "location": "top-left", "unique": "false"},
            "2": {"action": "idle", "location": "bottom_right", "unique": 0},
        }
        for t in range(3)
    }
    _ref(tmp_path, {"info": {"category": CATS}, "frames": frames})
    v = RefEndoVis(tmp_path, "valid", version=17)["seq_2"]
    assert v.meta.frames["00001"][1].action == 6 and v.meta.frames["00001"][1].location == 7
    assert v.meta.frames["00001"][2].unique is False
    assert [e.text for e in v.expressions()] == [
        "bipolar forceps are grasping tissue on the top left",
        "bipolar forceps are idle on the bottom right",
    ]
    # same meta as the id form
    ids = RefMeta.from_json({"info": {"category": CATS}, "frames": FRAMES})
    assert RefMeta.from_json({"info": {"category": CATS}, "frames": frames}) == ids


# ---- precise errors ----------------------------------------------------------------------------
BAD_META = [
    ({"frames": FRAMES}, r"no category map: expected info\.category \{obj_id: name\}.*top-level keys are \['frames'\]"),
    ({"info": {"name": "x"}, "frames": FRAMES}, r"no category map.*info keys are \['name'\]"),
    (
        {"info": {"category": CATS}, "category": {"1": "suction"}},
        "info.category and category are both given and differ",
    ),
    ({"info": {"category": ["bipolar forceps"]}}, r"info\.category: expected \{obj_id: category name\}"),
    ({"category": {"one": "bipolar forceps"}}, r"category\['one'\]: expected an object id"),
    ({"category": {"1": 5}}, r"category\['1'\]: expected a category name"),
    (
        {"category": CATS, "frames": {"00001": {"1": {"action": "juggling"}}}},
        r"frames\['00001'\]\['1'\]\.action: unknown action 'juggling'; expected an id 1\.\.13 or one of \[",
    ),
    (
        {"category": CATS, "frames": {"00001": {"1": {"action": 99}}}},
        r"frames\['00001'\]\['1'\]\.action: unknown action id 99",
    ),
    (
        {"category": CATS, "frames": {"00001": {"1": {"location": "upstairs"}}}},
        r"frames\['00001'\]\['1'\]\.location: unknown location 'upstairs'",
    ),
    (
        {"category": CATS, "frames": {"00001": {"1": {"unique": "maybe"}}}},
        r"frames\['00001'\]\['1'\]\.unique: expected true/false \(or 1/0\), got 'maybe'",
    ),
    ({"category": CATS, "frames": {"00001": {"1": 6}}}, r"frames\['00001'\]\['1'\]: expected \{'action'"),
    (
        {"category": CATS, "frames": {"00001": {"7": {"action": 1}}}},
        r"frames\['00001'\]\['7'\] refers to object id 7, which category does not declare \(declared: \[1, 2\]\)",
    ),
    ({"category": CATS, "frames": ["00001"]}, r"frames: expected \{frame name"),
]


@pytest.mark.parametrize("meta,message", BAD_META)
def test_unreadable_meta_names_file_key_path_and_expectation(tmp_path, meta, message):
    path = _ref(tmp_path, meta)
    with pytest.raises(DatasetError, match=message) as info:
        RefEndoVis(tmp_path, "valid", version=17)
    assert str(info.value).startswith(f"{path}: ")
    assert "KeyError" not in str(info.value)


def test_meta_that_is_not_json(tmp_path):
    path = _ref(tmp_path, {})
    path.write_text("{'info': 1}")
    with pytest.raises(DatasetError, match=r"seq_2\.json: cannot read Meta json \(Expecting property name"):
        RefEndoVis(tmp_path, "valid", version=17)


BAD_EXPRESSIONS = [
    ({"seq_2": {}}, r"videos: expected \{'videos'.*got top-level keys \['seq_2'\]"),
    (
        {"videos": {"seq_2": {"expressions": {"0": {"exp": "a forceps"}}}}},
        r"videos\['seq_2'\]\.expressions\['0'\]: expected \{'exp': text, 'obj_id': id\}",
    ),
    (
        {"videos": {"seq_2": {"expressions": {"0": {"exp": "a forceps", "obj_id": "one"}}}}},
        r"videos\['seq_2'\]\.expressions\['0'\]\.obj_id: expected an object id, got 'one'",
    ),
    (
        {"videos": {"seq_2": {"expressions": {}, "first_frame": {"0": "first"}}}},
        r"videos\['seq_2'\]\.first_frame\['0'\]: expected a frame index",
    ),
]


@pytest.mark.parametrize("content,message", BAD_EXPRESSIONS)
def test_unreadable_meta_expressions(tmp_path, content, message):
    path = tmp_path / "meta_expressions.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DatasetError, match=message) as info:
        load_meta_expressions(path)
    assert str(info.value).startswith(f"{path}: ")


# ---- one frame-reading rule ---------------------------------------------------------------------
def test_dataset_frames_are_listed_and_decoded_like_an_image_folder(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    for i, name in enumerate(["Frame10.png", "frame2.png", "frame1.png", "FRAME3.png"]):
        Image.fromarray(np.full((4, 5), 1000 * (i + 1), np.uint16)).save(folder / name)  # 16-bit grayscale
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(folder / "._frame0.png")  # macOS resource fork: hidden
    listed = list_images(folder)
    assert [p.name for p in listed] == [p.name for p in ImageFolderSource(folder).paths]
    assert [p.name for p in listed] == ["frame1.png", "frame2.png", "FRAME3.png", "Frame10.png"]
    frame = read_rgb(listed[0])
    assert frame.shape == (4, 5, 3) and frame.flags.writeable
    assert np.array_equal(frame, ImageFolderSource(folder)[0])
    assert int(frame[0, 0, 0]) == round(3000 / 257)  # 16 bits scaled to 8, not clipped to 255
