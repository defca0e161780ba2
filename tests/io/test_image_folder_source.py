"""ImageFolderSource: natural ordering, lazy loading, colour conversion, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from surgsam.io import FrameReadError, ImageFolderSource, SourceOpenError, natural_sort_key


def _save(path: Path, value: int, size: tuple[int, int] = (6, 8), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    Image.fromarray(np.full((h, w, 3), value, dtype=np.uint8)).convert(mode).save(path)


def _values(src: ImageFolderSource) -> list[int]:
    return [int(frame[0, 0, 0]) for frame in src]


def test_natural_order(tmp_path):
    for v in (1, 2, 10, 11, 20):
        _save(tmp_path / f"{v}.png", v)
    src = ImageFolderSource(tmp_path)
    assert [p.name for p in src.paths] == ["1.png", "2.png", "10.png", "11.png", "20.png"]
    assert _values(src) == [1, 2, 10, 11, 20]
    assert (len(src), src.num_frames, src.size, src.fps) == (5, 5, (6, 8), None)


@pytest.mark.parametrize("pattern", ["{:05d}.jpg", "frame{:03d}.png", "img_{}.JPEG", "{}.bmp"])
def test_dataset_namings(tmp_path, pattern):
    order = [0, 1, 2, 9, 10, 100]
    for v in reversed(order):
        _save(tmp_path / pattern.format(v), v * 2)
    src = ImageFolderSource(tmp_path, fps=24.0)
    assert src.fps == 24.0
    got = _values(src)
    if pattern.endswith("jpg") or pattern.endswith("JPEG"):  # lossy: compare loosely
        assert np.allclose(got, [v * 2 for v in order], atol=3)
    else:
        assert got == [v * 2 for v in order]


def test_recursive_sequences_and_hidden_files(tmp_path):
    for seq in (10, 2, 1):
        for f in (0, 1):
            _save(tmp_path / f"seq_{seq}" / f"frame{f:03d}.png", seq * 10 + f)
    _save(tmp_path / "seq_1" / "._frame000.png", 255)  # macOS resource fork: skipped
    (tmp_path / "seq_1" / "notes.txt").write_text("not an image")
    with pytest.raises(SourceOpenError, match="sub-folders .*seq_1, seq_2, seq_10.*recursive"):
        ImageFolderSource(tmp_path)
    src = ImageFolderSource(tmp_path, recursive=True)
    assert _values(src) == [10, 11, 20, 21, 100, 101]
    assert ImageFolderSource(tmp_path / "seq_1").paths[0].name == "frame000.png"


def test_natural_sort_key():
    names = ["frame10.png", "frame9.png", "Frame1.png", "a/2.png", "a/10.png", "b/1.png"]
    assert sorted(names, key=natural_sort_key) == [
        "a/2.png",
        "a/10.png",
        "b/1.png",
        "Frame1.png",
        "frame9.png",
        "frame10.png",
    ]


def test_indexing_is_lazy(tmp_path):
    for v in range(3):
        _save(tmp_path / f"{v}.png", v)
    (tmp_path / "1.png").write_bytes(b"broken")  # only reading index 1 fails
    src = ImageFolderSource(tmp_path)
    assert src[0][0, 0, 0] == 0 and src[-1][0, 0, 0] == 2
    with pytest.raises(FrameReadError, match=r"frame 1 \(.*1\.png\)") as info:
        src[1]
    assert info.value.frame_index == 1 and info.value.path == tmp_path / "1.png"
    with pytest.raises(IndexError):
        src[3]


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(SourceOpenError, match="no images"):
        ImageFolderSource(tmp_path)
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(SourceOpenError, match="no images"):
        ImageFolderSource(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing"):
        ImageFolderSource(tmp_path / "missing")
    with pytest.raises(NotADirectoryError):
        ImageFolderSource(tmp_path / "readme.txt")


def test_size_mismatch_raises_at_that_frame(tmp_path):
    _save(tmp_path / "00000.png", 0)
    _save(tmp_path / "00001.png", 1)
    _save(tmp_path / "00002.png", 2, size=(7, 8))
    src = ImageFolderSource(tmp_path)
    seen = []
    with pytest.raises(FrameReadError, match=r"frame 2 \(.*00002\.png\) is 7x8 .* is 6x8"):
        for frame in src:
            seen.append(frame)
    assert len(seen) == 2


def test_unreadable_first_frame_fails_at_open(tmp_path):
    (tmp_path / "00000.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(FrameReadError, match="00000.jpg"):
        ImageFolderSource(tmp_path)


def test_modes_are_converted_to_rgb(tmp_path):
    h, w = 4, 5
    Image.fromarray(np.full((h, w), 77, dtype=np.uint8), mode="L").save(tmp_path / "0.png")
    rgba = np.zeros((h, w, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "1.png")
    pal = Image.fromarray(np.ones((h, w), dtype=np.uint8), mode="L").convert("P")
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.save(tmp_path / "2.png")
    Image.fromarray(np.full((h, w), 65535, dtype=np.uint16)).save(tmp_path / "3.png")  # 16-bit
    Image.fromarray(np.full((h, w, 3), 9, dtype=np.uint8)).save(tmp_path / "4.bmp")
    frames = list(ImageFolderSource(tmp_path))
    for frame in frames:
        assert frame.shape == (h, w, 3) and frame.dtype == np.uint8
    assert frames[0][0, 0].tolist() == [77, 77, 77]
    assert frames[1][0, 0].tolist() == [200, 0, 0]  # alpha dropped, not blended
    assert frames[2][0, 0].tolist() == [10, 20, 30]
    assert frames[3][0, 0].tolist() == [255, 255, 255]  # scaled, not clipped garbage
    assert frames[4][0, 0].tolist() == [9, 9, 9]
