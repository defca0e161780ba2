"""Upload checks (size, kind, damage) and frame access by index."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from PIL import Image

from surgsam.app.video import FrameReader, UploadError, check_video
from surgsam.io import write_video


def test_accepts_a_video_and_counts_its_frames(clip_mp4, decoded):
    meta = check_video(clip_mp4, max_mb=500)
    assert meta.num_frames == len(decoded) == 10
    assert meta.size == (256, 320) and meta.fps == pytest.approx(10.0) and meta.codec == "h264"
    assert meta.pts is not None and len(meta.pts) == 10
    assert "320x256, 10 frames" in meta.describe()


def test_refuses_an_oversized_upload(clip_mp4):
    limit = clip_mp4.stat().st_size / 2**20 / 2
    with pytest.raises(UploadError, match=r"clip\.mp4 is 0\.\d MB; the limit is .* MB"):
        check_video(clip_mp4, max_mb=limit)


def test_refuses_what_is_not_a_video(tmp_path, clip_frames):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    with pytest.raises(UploadError, match="notes.mp4 is not a video") as e:
        check_video(text, 500)
    assert str(tmp_path) not in str(e.value)  # no server folders in messages
    png = tmp_path / "frame.png"
    Image.fromarray(clip_frames[0]).save(png)
    with pytest.raises(UploadError, match="still image"):
        check_video(png, 500)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(UploadError, match="empty"):
        check_video(tmp_path / "empty.mp4", 500)
    with pytest.raises(UploadError, match="folder"):
        check_video(tmp_path, 500)
    with pytest.raises(UploadError, match="no such file"):
        check_video(tmp_path / "absent.mp4", 500)
    with pytest.raises(UploadError, match="no video given"):
        check_video("  ", 500)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_refuses_a_pipe_without_blocking(tmp_path):
    fifo = tmp_path / "feed.mp4"
    os.mkfifo(fifo)
    with pytest.raises(UploadError, match="not a regular file"):
        check_video(fifo, 500)


def test_refuses_truncated_and_corrupt_videos(tmp_path, clip_mp4):
    data = clip_mp4.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UploadError, match="cut.mp4 is (damaged or truncated|truncated)"):
        check_video(cut, 500)
    bad = bytearray(data)
    start = len(data) // 3
    bad[start : start + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(bytes(bad))
    with pytest.raises(UploadError, match="corrupt.mp4 is damaged"):
        check_video(corrupt, 500)


@pytest.mark.parametrize("gop", [None, "3"])
def test_frame_reader_matches_a_sequential_decode(tmp_path, clip_frames, gop):
    from surgsam.io import VideoFileSource

    path = write_video(tmp_path / "c.mp4", clip_frames, fps=10, options={"g": gop} if gop else None)
    sequential = list(VideoFileSource(path))
    reader = FrameReader(check_video(path, 500), cache=2)
    order = list(range(10)) + [9, 0, 7, 3, 3, 8, 1]
    random.Random(0).shuffle(order)
    for i in order:
        assert np.array_equal(reader.get(i), sequential[i]), f"frame {i}"
    with pytest.raises(IndexError, match="outside the video"):
        reader.get(10)
    reader.close()
