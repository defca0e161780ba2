"""VideoFileSource: lazy PyAV decoding, metadata, and clear errors on bad files."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from io_helpers import HEIGHT, NUM_FRAMES, WIDTH, make_frames

av = pytest.importorskip("av")

from surgsam.io import (  # noqa: E402
    FrameReadError,
    SourceOpenError,
    VideoDecodeError,
    VideoFileSource,
)

# Mean absolute error per frame allowed after a lossy round trip of the synthetic clip.
CODEC_TOL = 6.0


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_mp4_metadata_and_content(mp4_clip, frames):
    src = VideoFileSource(mp4_clip)
    assert (src.size, src.num_frames, len(src), src.name) == ((HEIGHT, WIDTH), 30, 30, "square")
    assert src.fps == pytest.approx(30.0)
    assert src.info.num_frames_exact and src.info.codec == "h264"
    it = iter(src)
    assert isinstance(it, types.GeneratorType)  # lazy: nothing decoded until asked
    decoded = list(it)
    assert len(decoded) == NUM_FRAMES
    for i, frame in enumerate(decoded):
        assert frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8
        assert _mae(frame, frames[i]) < CODEC_TOL
        # Order check: the square moved, so a frame 8 steps away is clearly different.
        assert _mae(frame, frames[(i + 8) % NUM_FRAMES]) > _mae(frame, frames[i])
    # The square is red in RGB order.
    r, g, b = decoded[0][HEIGHT // 4 + 8, 8].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_iterating_twice_and_breaking_early(mp4_clip):
    src = VideoFileSource(mp4_clip)
    first = next(iter(src))
    assert sum(1 for _ in src) == NUM_FRAMES
    np.testing.assert_array_equal(next(iter(src)), first)


@pytest.mark.parametrize(("name", "exact"), [("square.mkv", False), ("square.avi", True), ("square.webm", False)])
def test_other_containers(make_clip, frames, name, exact):
    src = VideoFileSource(make_clip(name))
    assert src.size == (HEIGHT, WIDTH)
    assert src.info.num_frames_exact is exact
    assert src.num_frames == pytest.approx(NUM_FRAMES, abs=1)
    if not exact:
        with pytest.raises(TypeError, match="frame count"):
            len(src)
    decoded = list(src)
    assert len(decoded) == NUM_FRAMES
    assert max(_mae(a, b) for a, b in zip(decoded, frames)) < CODEC_TOL


def test_odd_size_is_kept_exactly(make_clip):
    odd = make_frames(n=10, h=47, w=65)
    src = VideoFileSource(make_clip("odd444.mp4", clip_frames=odd, pix_fmt="yuv444p"))
    assert src.size == (47, 65)
    decoded = list(src)
    assert len(decoded) == 10 and decoded[0].shape == (47, 65, 3)
    assert _mae(decoded[3], odd[3]) < CODEC_TOL


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        VideoFileSource(missing)


def test_directory_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="ImageFolderSource"):
        VideoFileSource(tmp_path)


@pytest.mark.parametrize(
    "content",
    [np.random.default_rng(0).bytes(20_000), b"", b"hello, I am not a video\n" * 50],
    ids=["random", "empty", "text"],
)
def test_not_a_video(tmp_path, content):
    path = tmp_path / "fake.mp4"
    path.write_bytes(content)
    with pytest.raises(SourceOpenError, match=r"cannot open .*fake\.mp4 as video") as info:
        VideoFileSource(path)
    assert isinstance(info.value, ValueError)


def test_audio_only_file(tmp_path):
    path = tmp_path / "audio.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(SourceOpenError, match="no video stream"):
        VideoFileSource(path)


def test_zero_frames(tmp_path):
    path = tmp_path / "empty.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()  # write the header although no frame follows
    with pytest.raises((SourceOpenError, VideoDecodeError), match="no (decodable )?video"):
        VideoFileSource(path)


def _truncate(src: Path, dst: Path, frac: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * frac)])
    return dst


@pytest.mark.parametrize("frac", [0.5, 0.8])
@pytest.mark.parametrize("name", ["square.mp4", "square.mkv", "square.avi", "square.webm"])
def test_truncated_file_never_passes_silently(make_clip, tmp_path, frames, name, frac):
    """Cut a clip short: either open fails clearly, or decoding fails naming the frame index.

    Frames yielded before the failure must be the real ones (no concealed garbage).
    """
    path = _truncate(make_clip(name), tmp_path / f"cut_{name}", frac)
    try:
        src = VideoFileSource(path)
    except (SourceOpenError, VideoDecodeError) as exc:
        assert "cut_" in str(exc)
        return
    good = []
    with pytest.raises(VideoDecodeError) as info:
        for frame in src:
            good.append(frame)
    err = info.value
    assert err.frame_index == len(good) < NUM_FRAMES
    assert f"frame {err.frame_index}" in str(err) and err.path == path
    assert isinstance(err, FrameReadError) and isinstance(err, ValueError)
    for i, frame in enumerate(good):
        assert _mae(frame, frames[i]) < CODEC_TOL


def test_truncated_non_strict_keeps_good_frames(make_clip, tmp_path):
    path = _truncate(make_clip("square.mkv"), tmp_path / "cut.mkv", 0.6)
    good = list(VideoFileSource(path, strict=False))
    assert 0 < len(good) < NUM_FRAMES
