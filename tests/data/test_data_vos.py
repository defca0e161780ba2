"""Palette PNGs and generic VOS folders, including malformed inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from surgsam.data import (
    DAVIS_PALETTE,
    AnnotationFormatError,
    DatasetError,
    VOSDataset,
    open_dataset,
    read_mask,
    write_mask,
)


def make_vos(root, videos=None, size=(40, 32), ext="jpg"):
    """A tiny VOS folder: video 'a' (6 frames, object 1 from frame 0, object 2 from frame 3)."""
    w, h = size
    videos = videos or {"a": 6}
    for name, T in videos.items():
        (root / "JPEGImages" / name).mkdir(parents=True, exist_ok=True)
        for t in range(T):
            Image.fromarray(np.full((h, w, 3), 10 * t, np.uint8)).save(root / "JPEGImages" / name / f"{t:05d}.{ext}")
            lab = np.zeros((h, w), np.uint8)
            lab[2:8, 2 + t : 8 + t] = 1
            if t >= 3:
                lab[20:26, 20:30] = 2
            write_mask(root / "Annotations" / name / f"{t:05d}.png", lab)
    return root


def test_davis_palette():
    assert DAVIS_PALETTE.shape == (256, 3)
    assert DAVIS_PALETTE[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert DAVIS_PALETTE[255].tolist() == [224, 224, 192]


def test_palette_roundtrip_and_modes(tmp_path):
    ids = np.zeros((5, 7), np.uint8)
    ids[1, 2], ids[3, 4] = 17, 255
    write_mask(tmp_path / "m.png", ids)
    assert Image.open(tmp_path / "m.png").mode == "P"
    assert (read_mask(tmp_path / "m.png") == ids).all()
    Image.fromarray(ids).save(tmp_path / "l.png")  # grayscale ids are fine
    assert (read_mask(tmp_path / "l.png") == ids).all()
    Image.fromarray(ids.astype(np.uint16) * 100).save(tmp_path / "i16.png")  # 16-bit ids too
    assert read_mask(tmp_path / "i16.png").max() == 25500
    with pytest.raises(ValueError):
        write_mask(tmp_path / "bad.png", np.full((2, 2), 300))


def test_rgb_annotation_is_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(AnnotationFormatError, match="RGB image.*palette"):
        read_mask(tmp_path / "rgb.png")


def test_vos_dataset_basics(tmp_path):
    ds = VOSDataset(make_vos(tmp_path))
    assert ds.names == ["a"] and len(ds) == 1
    v = ds["a"]
    assert len(v) == 6 and v.image_size == (32, 40)
    f = v.frames[2]
    assert f.shape == (32, 40, 3) and f.dtype == np.uint8
    assert len(v.frames[1:3]) == 2
    assert v.object_ids == [1, 2]
    assert v.first_appearance() == {1: 0, 2: 3}
    p = v.prompts()
    assert p[2].frame_idx == 3 and p[2].mask.sum() == 60
    assert set(v.masks(4)) == {1, 2}
    ds.validate()
    assert type(open_dataset(tmp_path)).__name__ == "VOSDataset"


def test_sparse_annotations_and_annotation_only(tmp_path):
    make_vos(tmp_path)
    (tmp_path / "Annotations" / "a" / "00001.png").unlink()
    v = VOSDataset(tmp_path)["a"]
    assert v.labels(1) is None and v.masks(1) == {}
    with pytest.raises(DatasetError, match="missing 1 frame"):  # without frames, a hole is suspicious
        VOSDataset(tmp_path / "Annotations", require_frames=False)["a"]
    ann_only = VOSDataset(tmp_path / "Annotations", require_frames=False, allow_gaps=True)
    assert ann_only.names == ["a"] and len(ann_only["a"]) == 5 and not ann_only["a"].has_frames


def test_sav_per_object_layout(tmp_path):
    for t in range(3):
        Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / f"f{t}.jpg")
        (tmp_path / "JPEGImages" / "v").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "JPEGImages" / "v" / f"{t:05d}.jpg")
        m = np.zeros((10, 12), np.uint8)
        m[t : t + 3, 2:5] = 255
        write_mask(tmp_path / "Annotations" / "v" / "004" / f"{t:05d}.png", m)
    v = VOSDataset(tmp_path)["v"]
    assert v.object_ids == [4] and v.labels(1)[1:4, 2:5].min() == 4


# ---- malformed folders --------------------------------------------------------------------
def test_missing_frame_for_annotation(tmp_path):
    make_vos(tmp_path)
    (tmp_path / "JPEGImages" / "a" / "00005.jpg").unlink()
    with pytest.raises(DatasetError, match="00005.*no frame"):
        VOSDataset(tmp_path)["a"]


def test_gap_in_frame_numbers(tmp_path):
    make_vos(tmp_path)
    (tmp_path / "JPEGImages" / "a" / "00002.jpg").unlink()
    (tmp_path / "Annotations" / "a" / "00002.png").unlink()
    with pytest.raises(DatasetError, match="missing 1 frame.*00002"):
        VOSDataset(tmp_path)["a"]
    assert len(VOSDataset(tmp_path, allow_gaps=True)["a"]) == 5


def test_annotation_size_mismatch(tmp_path):
    make_vos(tmp_path)
    write_mask(tmp_path / "Annotations" / "a" / "00004.png", np.zeros((16, 20), np.uint8))
    v = VOSDataset(tmp_path)["a"]
    with pytest.raises(DatasetError, match=r"00004.png.*20x16.*frame is 40x32"):
        v.labels(4)
    with pytest.raises(DatasetError):
        v.validate()


def test_rgb_annotation_in_dataset(tmp_path):
    make_vos(tmp_path)
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(tmp_path / "Annotations" / "a" / "00002.png")
    with pytest.raises(DatasetError, match="00002.png.*RGB image"):
        VOSDataset(tmp_path)["a"].labels(2)


def test_missing_folders(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        VOSDataset(tmp_path / "nope")
    (tmp_path / "JPEGImages" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no annotation folder"):
        VOSDataset(tmp_path)
    (tmp_path / "Annotations" / "a").mkdir(parents=True)
    (tmp_path / "Annotations" / "b").mkdir(parents=True)
    with pytest.raises(DatasetError, match="'b' has no frame folder"):
        VOSDataset(tmp_path)
    with pytest.raises(DatasetError, match="no frames"):
        VOSDataset(tmp_path, videos=["a"])["a"]


def test_lossy_annotation_refused(tmp_path):
    make_vos(tmp_path)
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(tmp_path / "Annotations" / "a" / "00000.jpg")
    (tmp_path / "Annotations" / "a" / "00000.png").unlink()
    with pytest.raises(DatasetError, match="must be PNG"):
        VOSDataset(tmp_path)["a"]
