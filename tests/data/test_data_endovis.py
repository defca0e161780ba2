"""EndoVis 2017/2018 raw layouts, the VOS layout with the papers' splits, Ref-EndoVis."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from surgsam.data import (
    ACTIONS,
    DatasetError,
    EndoVis17Raw,
    EndoVis18Raw,
    EndoVisVOS,
    RefEndoVis,
    build_expression,
    open_dataset,
    split_sequences,
    write_mask,
)
from surgsam.data.refendovis import location_id


def test_splits():
    assert split_sequences(17, "valid") == (2, 5, 6)
    assert split_sequences(18, "valid") == (2, 5, 9, 15)
    assert 8 not in split_sequences(18, "train") and len(split_sequences(18, "train")) == 11
    assert split_sequences(17, "fold1") == (2, 5)
    with pytest.raises(ValueError):
        split_sequences(18, "test")


def _raw17(root, seq=2, frames=2):
    d = root / f"instrument_dataset_{seq}"
    (d / "left_frames").mkdir(parents=True)
    for t in range(frames):
        img = np.zeros((1080, 1920, 3), np.uint8)
        img[28:1052, 320:1600] = 100  # the image region; the black border is cropped away
        Image.fromarray(img).save(d / "left_frames" / f"frame{t:03d}.png")
        for name, x in (("Left_Prograsp_Forceps_labels", 400), ("Maryland_Bipolar_Forceps_labels", 900)):
            gt = np.zeros((1080, 1920), np.uint8)
            gt[100:200, x : x + 50] = 10  # shaft
            gt[200:220, x : x + 50] = 30  # clasper
            (d / "ground_truth" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(gt).save(d / "ground_truth" / name / f"frame{t:03d}.png")
    return root


def test_endovis17_raw(tmp_path):
    ds = EndoVis17Raw(_raw17(tmp_path))
    v = ds["seq_2"]
    assert v.categories == {1: "prograsp forceps", 2: "bipolar forceps"}
    f = v.frame(0)
    assert f.shape == (1024, 1280, 3) and f.min() == 100  # cropped at (28, 320)
    lab = v.labels(1)
    assert lab.shape == (1024, 1280)
    assert lab[72, 80] == 1 and lab[72, 580] == 2 and lab[72 + 100, 580] == 2
    assert v.object_ids == [1, 2]
    assert type(open_dataset(tmp_path)).__name__ == "EndoVis17Raw"
    with pytest.raises(DatasetError, match="none of the requested"):
        EndoVis17Raw(tmp_path, split="fold0")


def test_endovis17_raw_orphan_ground_truth(tmp_path):
    _raw17(tmp_path)
    (tmp_path / "instrument_dataset_2" / "left_frames" / "frame001.png").unlink()
    with pytest.raises(DatasetError, match="frame001.*no frame"):
        EndoVis17Raw(tmp_path)


def _raw18(root):
    d = root / "release_1" / "seq_5"
    (d / "left_frames").mkdir(parents=True)
    (d / "labels").mkdir()
    table = [
        {"name": "background-tissue", "color": [0, 255, 0], "classid": 0},
        {"name": "instrument-shaft", "color": [0, 255, 255], "classid": 1},
        {"name": "kidney-parenchyma", "color": [255, 55, 0], "classid": 4},
    ]
    (d / "labels.json").write_text(json.dumps(table))
    for t in range(2):
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(d / "left_frames" / f"frame{t:03d}.png")
        lab = np.zeros((48, 64, 3), np.uint8)
        lab[:] = (0, 255, 0)
        lab[5:10, 5:20] = (0, 255, 255)
        lab[30:40, 30:50] = (255, 55, 0)
        Image.fromarray(lab).save(d / "labels" / f"frame{t:03d}.png")
    return d


def test_endovis18_raw(tmp_path):
    d = _raw18(tmp_path)
    ds = EndoVis18Raw(tmp_path, split="valid")
    v = ds["seq_5"]
    assert v.categories == {1: "instrument-shaft", 4: "kidney-parenchyma"}
    lab = v.labels(0)
    assert lab[7, 7] == 1 and lab[35, 35] == 4 and lab[0, 0] == 0
    bad = np.zeros((48, 64, 3), np.uint8)
    bad[:] = (1, 2, 3)
    Image.fromarray(bad).save(d / "labels" / "frame001.png")
    with pytest.raises(DatasetError, match=r"colour \(1, 2, 3\) is not in labels.json"):
        v.labels(1)


def _vos_split(root, seqs, T=3):
    for k in seqs:
        for t in range(T):
            (root / "JPEGImages" / f"seq_{k}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "JPEGImages" / f"seq_{k}" / f"{t:05d}.png")
            write_mask(root / "Annotations" / f"seq_{k}" / f"{t:05d}.png", np.ones((8, 8), np.uint8))


def test_endovis_vos_split_filter(tmp_path):
    _vos_split(tmp_path, [1, 2, 5, 9, 15, 16])
    assert EndoVisVOS(tmp_path, 18, "valid").names == ["seq_2", "seq_5", "seq_9", "seq_15"]
    assert EndoVisVOS(tmp_path, 18, "train").names == ["seq_1", "seq_16"]
    assert EndoVisVOS(tmp_path, 17, "valid").names == ["seq_2", "seq_5"]


# ---- Ref-EndoVis --------------------------------------------------------------------------
def test_expression_grammar():
    assert build_expression("prograsp forceps", 6, 4, True, 17) == "prograsp forceps are grasping tissue"
    assert build_expression("prograsp forceps", 6, 4, False, 17) == "prograsp forceps are grasping tissue on the left"
    assert (
        build_expression("large needle driver", 4, 9, False, 17)
        == "large needle driver is suturing tissue on the top right"
    )
    assert build_expression("large needle driver", 4, 9, False, 18) == "large needle driver is suturing tissue"
    assert build_expression("kidney-parenchyma", 0, 5, True, 18) == "kidney-parenchyma"
    assert ACTIONS[13] == "cauterizing tissue"
    assert location_id(5, 5, 300, 300) == 7 and location_id(150, 150, 300, 300) == 5
    assert location_id(299, 299, 300, 300) == 3


def _ref(root, split="valid", meta_ids=(1, 11), ann_ids=(1, 11), exp_obj=1):
    base = root / split
    _vos_split(base, [2], T=3)
    for t in range(3):
        lab = np.zeros((8, 8), np.uint8)
        lab[0:3, 0:3] = ann_ids[0]
        if t >= 1:
            lab[5:8, 5:8] = ann_ids[1]
        write_mask(base / "Annotations" / "seq_2" / f"{t:05d}.png", lab)
    cats = {1: "bipolar forceps", 11: "kidney-parenchyma"}
    meta = {
        "info": {"category": {str(k): cats.get(k, "x") for k in meta_ids}},
        "frames": {
            f"{t:05d}": {
                "1": {"action": 6, "location": 7, "unique": True},
                **({"11": {"action": 0, "location": 3, "unique": True}} if t >= 1 else {}),
            }
            for t in range(3)
        },
    }
    (base / "Meta").mkdir()
    (base / "Meta" / "seq_2.json").write_text(json.dumps(meta))
    exps = {
        "videos": {
            "seq_2": {
                "expressions": {"0": {"exp": "bipolar forceps is grasping tissue", "obj_id": str(exp_obj)}},
                "frames": ["00000", "00001", "00002"],
                "first_frame": {"0": 0},
            }
        }
    }
    (base / "meta_expressions.json").write_text(json.dumps(exps))
    return root


def test_ref_endovis_loads(tmp_path):
    ds = RefEndoVis(_ref(tmp_path / "Ref-Endovis18"), "valid")
    assert ds.version == 18
    v = ds["seq_2"]
    assert v.categories[11] == "kidney-parenchyma" and v.first_appearance() == {1: 0, 11: 1}
    (e,) = v.expressions()
    assert (e.obj_id, e.first_frame, e.text) == (1, 0, "bipolar forceps is grasping tissue")
    assert v.meta.frames["00001"][11].action == 0
    ds.validate()
    assert type(open_dataset(tmp_path / "Ref-Endovis18", "valid")).__name__ == "RefEndoVis"


def test_ref_endovis_builds_expressions_without_meta_expressions(tmp_path):
    root = _ref(tmp_path / "Ref-Endovis18", split="train")
    (root / "train" / "meta_expressions.json").unlink()
    v = RefEndoVis(root, "train")["seq_2"]
    assert [(e.obj_id, e.first_frame, e.text) for e in v.expressions()] == [
        (1, 0, "bipolar forceps are grasping tissue"),
        (11, 1, "kidney-parenchyma"),
    ]  # plural "forceps"


def test_ref_unknown_annotation_id(tmp_path):
    ds = RefEndoVis(_ref(tmp_path, ann_ids=(1, 12)), "valid", version=18)
    with pytest.raises(DatasetError, match=r"ids \[12\] that are not declared"):
        ds.validate()


def test_ref_unknown_expression_object(tmp_path):
    with pytest.raises(DatasetError, match="refers to object id 5"):
        RefEndoVis(_ref(tmp_path, exp_obj=5), "valid", version=18)


def test_ref_meta_frame_with_undeclared_object(tmp_path):
    with pytest.raises(DatasetError, match="refers to object id 11"):
        RefEndoVis(_ref(tmp_path, meta_ids=(1,)), "valid", version=18)


def test_ref_missing_meta(tmp_path):
    _ref(tmp_path)
    (tmp_path / "valid" / "Meta" / "seq_2.json").unlink()
    with pytest.raises(DatasetError, match="no Meta json for video 'seq_2'"):
        RefEndoVis(tmp_path, "valid", version=18)
