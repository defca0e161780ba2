"""Palette PNGs (DAVIS), label-map merging and the per-frame / per-object mask writers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from surgsam.io import (
    PaletteMaskWriter,
    PerObjectMaskWriter,
    davis_palette,
    masks_to_label_map,
    read_palette_png,
    write_palette_png,
)


def test_davis_palette_known_colours():
    pal = davis_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
                5: (128, 0, 128), 7: (128, 128, 128), 8: (64, 0, 0), 255: (224, 224, 192)}
    for i, rgb in expected.items():
        assert tuple(pal[i]) == rgb
    assert len({tuple(c) for c in pal}) == 256  # injective, so colours map back to ids
    assert davis_palette(4).tolist() == pal[:4].tolist()
    pal[1] = 0  # a copy: the cached palette is not modified
    assert tuple(davis_palette()[1]) == (128, 0, 0)


def test_matches_the_data_package_palette():
    palette_mod = pytest.importorskip("surgsam.data.palette")
    np.testing.assert_array_equal(davis_palette(), palette_mod.davis_palette())


def test_palette_png_round_trip_all_ids(tmp_path):
    ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = write_palette_png(tmp_path / "sub" / "m.png", ids)
    with Image.open(path) as im:
        assert im.mode == "P"
        assert im.getpalette()[3:6] == [128, 0, 0]
    np.testing.assert_array_equal(read_palette_png(path), ids)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 256, size=(37, 53)).astype(np.int64)  # int input, odd size
    write_palette_png(tmp_path / "r.png", labels)
    out = read_palette_png(tmp_path / "r.png")
    assert out.dtype == np.uint8 and (out == labels).all()


@pytest.mark.parametrize(
    ("label_map", "match"),
    [
        (np.full((2, 2), 256), r"0\.\.255"),
        (np.full((2, 2), -1), r"0\.\.255"),
        (np.zeros((2, 2), dtype=np.float32), "integer"),
        (np.zeros((2, 2, 3), dtype=np.uint8), "H x W"),
    ],
)
def test_write_palette_png_rejects(tmp_path, label_map, match):
    with pytest.raises(ValueError, match=match):
        write_palette_png(tmp_path / "x.png", label_map)


def test_read_refuses_rgb_unless_allowed(tmp_path):
    pal = davis_palette()
    ids = np.array([[0, 1, 2], [3, 200, 255]], dtype=np.uint8)
    Image.fromarray(pal[ids]).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="allow_rgb=True"):
        read_palette_png(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_palette_png(tmp_path / "rgb.png", allow_rgb=True), ids)
    odd = pal[ids].copy()
    odd[0, 0] = (1, 2, 3)
    Image.fromarray(odd).save(tmp_path / "odd.png")
    with pytest.raises(ValueError, match=r"not in the DAVIS palette: \[\(1, 2, 3\)\]"):
        read_palette_png(tmp_path / "odd.png", allow_rgb=True)
    Image.fromarray(np.array([[0, 7]], dtype=np.uint8)).save(tmp_path / "gray.png")
    assert read_palette_png(tmp_path / "gray.png").tolist() == [[0, 7]]


def test_masks_to_label_map_later_objects_win():
    masks = np.zeros((3, 4, 5), dtype=bool)
    masks[0, :2] = True
    masks[1, 1:3] = True  # overlaps object 0 on row 1
    masks[2, 3, 4] = True
    label = masks_to_label_map([7, 3, 255], masks)
    assert label.dtype == np.uint8
    assert label[:, 0].tolist() == [7, 3, 3, 0]
    assert label[3, 4] == 255
    assert masks_to_label_map([], np.zeros((0, 4, 5), dtype=bool)).shape == (4, 5)
    assert masks_to_label_map([], None, shape=(2, 3)).sum() == 0
    with pytest.raises(ValueError, match=r"1\.\.255"):
        masks_to_label_map([256], masks[:1])
    with pytest.raises(ValueError, match="2 obj_ids but 3 masks"):
        masks_to_label_map([1, 2], masks)
    with pytest.raises(ValueError, match="boolean"):
        masks_to_label_map([1], masks[:1].astype(np.float32))


def test_palette_mask_writer(tmp_path):
    masks = np.zeros((2, 6, 8), dtype=bool)
    masks[0, :3], masks[1, 3:] = True, True
    with PaletteMaskWriter(tmp_path / "out") as writer:
        p0 = writer.write(0, [1, 2], masks)
        p12 = writer.write(12, [2], masks[1:])
        p3 = writer.write_label_map(3, np.full((6, 8), 9, dtype=np.uint8))
    assert [p.name for p in (p0, p12, p3)] == ["00000.png", "00012.png", "00003.png"]
    assert read_palette_png(p0)[:, 0].tolist() == [1, 1, 1, 2, 2, 2]
    assert set(np.unique(read_palette_png(p12))) == {0, 2}
    assert read_palette_png(p3).max() == 9


def test_per_object_writer_sav_layout(tmp_path):
    masks = np.zeros((2, 1, 6, 8), dtype=np.uint8)  # N x 1 x H x W, integer masks
    masks[0, 0, 1, 1] = 1
    masks[1, 0, 4:, :] = 1
    writer = PerObjectMaskWriter(tmp_path)
    for frame_idx in (0, 1):
        writer.write(frame_idx, np.array([1, 12]), masks)
    writer.close()
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert files == ["001/00000.png", "001/00001.png", "012/00000.png", "012/00001.png"]
    with Image.open(tmp_path / "012" / "00001.png") as im:
        assert im.mode == "L"
        arr = np.asarray(im)
    assert set(np.unique(arr)) == {0, 255} and arr[4:].all() and not arr[:4].any()
