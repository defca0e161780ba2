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
    expected = {
        0: (0, 0, 0),
        1: (128, 0, 0),
        2: (0, 128, 0),
        3: (128, 128, 0),
        4: (0, 0, 128),
        5: (128, 0, 128),
        7: (128, 128, 128),
        8: (64, 0, 0),
        255: (224, 224, 192),
    }
    for i, rgb in expected.items():
        assert tuple(pal[i]) == rgb
    assert len({tuple(c) for c in pal}) == 256  # injective, so colours map back to ids
    assert davis_palette(4).tolist() == pal[:4].tolist()
    pal[1] = 0  # a copy: the cached palette is not modified
    assert tuple(davis_palette()[1]) == (128, 0, 0)


def test_matches_the_data_package_palette():
    from surgsam.data import palette as palette_mod

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


def test_masks_to_label_map_without_logits_the_lowest_id_wins():
    """Binary masks alone: the lowest id keeps overlaps whatever the order (SAM 2's
    put_per_obj_mask); the old writer let the later object win."""
    masks = np.zeros((3, 4, 5), dtype=bool)
    masks[0, :2] = True
    masks[1, 1:3] = True  # overlaps object 0 on row 1
    masks[2, 3, 4] = True
    label = masks_to_label_map([3, 7, 255], masks)
    assert label.dtype == np.uint8
    assert label[:, 0].tolist() == [3, 3, 7, 0]
    assert label[3, 4] == 255
    np.testing.assert_array_equal(masks_to_label_map([7, 3, 255], masks[[1, 0, 2]]), label)
    assert masks_to_label_map([], np.zeros((0, 4, 5), dtype=bool)).shape == (4, 5)
    assert masks_to_label_map([], None, shape=(2, 3)).sum() == 0
    with pytest.raises(ValueError, match=r"1\.\.255"):
        masks_to_label_map([256], masks[:1])
    with pytest.raises(ValueError, match="2 obj_ids but 3 masks"):
        masks_to_label_map([1, 2], masks)
    with pytest.raises(ValueError, match="boolean"):
        masks_to_label_map([1], masks[:1].astype(np.float32))


def test_masks_to_label_map_with_logits_the_highest_logit_wins():
    masks = np.zeros((2, 3, 4), dtype=bool)
    masks[0, :2] = True  # id 1
    masks[1, 1:] = True  # id 2; both on row 1
    logits = np.where(masks, 1.0, -5.0).astype(np.float32)
    logits[1, 1, :2] = 3.0  # id 2 is surer on the left half of the shared row
    logits[0, 1, 3] = 2.0
    logits[1, 1, 3] = 2.0  # a tie: the lowest id
    label = masks_to_label_map([1, 2], masks, logits=logits)
    assert label.tolist() == [[1, 1, 1, 1], [2, 2, 1, 1], [2, 2, 2, 2]]
    # a high logit does not claim a pixel its own mask leaves out
    logits[1, 0] = 9.0
    assert masks_to_label_map([1, 2], masks, logits=logits)[0].tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="logits must match"):
        masks_to_label_map([1, 2], masks, logits=logits[:1])


def _sam2_palette(logits: np.ndarray, ids: list[int]) -> np.ndarray:
    """What Meta's tools/vos_inference.py writes: the predictor's non-overlap constraint on the
    N x H x W logits (``SAM2Base._apply_non_overlapping_constraints``), logits > 0, then objects
    painted in descending id order (``put_per_obj_mask``)."""
    torch = pytest.importorskip("torch")
    sam2_base = pytest.importorskip("sam2.modeling.sam2_base")
    scores = sam2_base.SAM2Base._apply_non_overlapping_constraints(None, torch.from_numpy(logits)[:, None])
    per_obj = {k: (scores[i, 0] > 0).numpy() for i, k in enumerate(ids)}
    out = np.zeros(logits.shape[1:], dtype=np.uint8)
    for k in sorted(per_obj, reverse=True):
        out[per_obj[k]] = k
    return out


def test_resolve_overlaps_is_sam2_vos_rule():
    """Overlapping logits of three objects (added in id order, as vos_inference.py adds them):
    our map equals the PNG Meta's VOS inference writes; with equal logits the lowest id wins."""
    from surgsam.io.labels import resolve_overlaps

    rng = np.random.default_rng(0)
    logits = rng.normal(0.5, 2.0, size=(3, 24, 32)).astype(np.float32)
    logits[:, :4, :4] = 1.5  # ties on positive logits
    ids = [2, 5, 9]
    expected = _sam2_palette(logits, ids)
    assert (expected == 2).any() and (expected == 9).any() and len(np.unique(expected)) == 4
    np.testing.assert_array_equal(resolve_overlaps(ids, logits > 0, logits), expected)
    np.testing.assert_array_equal(masks_to_label_map(ids, logits > 0, logits=logits), expected)
    perm = [2, 0, 1]  # the order objects are listed in does not matter
    np.testing.assert_array_equal(resolve_overlaps([ids[i] for i in perm], logits[perm] > 0, logits[perm]), expected)
    # and it differs from both binary rules on this input (so the logits are used)
    assert not np.array_equal(resolve_overlaps(ids, logits > 0), expected)


def test_palette_writer_writes_an_engine_result_with_its_logits(tmp_path):
    """write_result resolves a FrameResult with its own logits: the PNG read back is SAM 2's map,
    where plain ``write`` (masks only) gives contested pixels to the lowest id."""
    torch = pytest.importorskip("torch")
    from surgsam.engine.state import FrameResult, upsample_logits

    low = torch.full((2, 1, 8, 8), -4.0)
    low[0, 0, 1:6, 1:6] = 2.0  # object 3
    low[1, 0, 3:8, 3:8] = 5.0  # object 8, surer where they overlap
    masks = (upsample_logits(low, (16, 16))[:, 0] > 0).numpy()
    res = FrameResult(4, [3, 8], masks, np.ones(2, np.float32), np.ones(2, np.float32), low)
    with PaletteMaskWriter(tmp_path) as writer:
        path = writer.write_result(res)
        plain = read_palette_png(writer.write(5, res.obj_ids, res.masks))
    got = read_palette_png(path)
    assert path.name == "00004.png"
    np.testing.assert_array_equal(got, _sam2_palette(res.logits().numpy(), [3, 8]))
    overlap = masks[0] & masks[1]
    assert overlap.sum() > 20 and (got[overlap] == 8).mean() > 0.9 and (plain[overlap] == 3).all()


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


def test_writers_name_files_after_the_input_frames(tmp_path):
    from surgsam.io import PaletteMaskWriter, PerObjectMaskWriter

    masks = np.zeros((1, 8, 8), bool)
    masks[0, 2:5, 2:5] = True
    pal = PaletteMaskWriter(tmp_path / "pal", names=["a10", "a20"])
    assert pal.write(1, [3], masks).name == "a20.png"
    assert pal.write(2, [3], masks).name == "00002.png"  # beyond the names: the index
    per = PerObjectMaskWriter(tmp_path / "per", names=["a10", "a20"])
    assert per.write(0, [3], masks)[0].relative_to(tmp_path / "per").as_posix() == "003/a10.png"
    with pytest.raises(ValueError, match="unique"):
        PaletteMaskWriter(tmp_path / "x", names=["a", "a"])
    with pytest.raises(ValueError, match="unique"):
        PaletteMaskWriter(tmp_path / "x", names=["../evil"])
