"""open_source dispatch, lazy optional imports and the missing-extra error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import surgsam.io as sio
from surgsam.io import (
    ImageFolderSource,
    LiveSource,
    VideoFileSource,
    open_source,
)


def test_dispatch_live_specs(fake_capture, tmp_path):
    for spec, name in [
        (0, "camera:0"),
        ("3", "camera:3"),
        ("rtsp://host/s", "rtsp://host/s"),
        ("http://host:8080/video.mjpg", "http://host:8080/video.mjpg"),
    ]:
        src = open_source(spec, capture=fake_capture(1))
        assert isinstance(src, LiveSource) and src.name == name
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")
        src = open_source(tmp_path / "pipe", capture=fake_capture(1))
        assert isinstance(src, LiveSource) and src.kind == "pipe"


def test_dispatch_paths(tmp_path, mp4_clip):
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "00000.jpg")
    assert isinstance(open_source(tmp_path), ImageFolderSource)
    assert isinstance(open_source(str(tmp_path), fps=10), ImageFolderSource)
    assert isinstance(open_source(mp4_clip), VideoFileSource)
    assert isinstance(open_source(f"file://{mp4_clip}"), VideoFileSource)
    src = VideoFileSource(mp4_clip)
    assert open_source(src) is src


def test_video_file_as_live(mp4_clip):
    pytest.importorskip("cv2")
    with open_source(mp4_clip, live=True) as src:
        assert isinstance(src, LiveSource) and src.kind == "file"


def test_rejections_list_what_is_accepted(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hi")
    with pytest.raises(ValueError, match=r"camera index .*stream URL .*\.mp4"):
        open_source(notes)
    with pytest.raises(FileNotFoundError, match="absent.mp4"):
        open_source(tmp_path / "absent.mp4")
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'"):
        open_source("ftp://host/clip.mp4")
    with pytest.raises(ValueError, match="cannot be read live"):
        open_source(tmp_path, live=True)
    with pytest.raises(TypeError, match="list"):
        open_source([1, 2])  # type: ignore[arg-type]


def test_import_has_no_side_effects():
    code = "import sys, surgsam.io; print('av' in sys.modules, 'cv2' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(Path(sio.__file__).parents[2])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_missing_extra_is_named(monkeypatch, tmp_path, mp4_clip):
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` fail
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match=r'pip install "surgsam\[video\]"'):
        VideoFileSource(mp4_clip)
    with pytest.raises(ImportError, match=r"surgsam\[video\]"):
        LiveSource(0)
    with pytest.raises(ImportError, match=r"surgsam\[video\]"):
        sio.VideoWriter(tmp_path / "x.mp4")


def test_symlink_loop_and_broken_link_named(tmp_path):
    """Issue 17: a link loop is not reported as "not found"."""
    from surgsam.io import SourceOpenError

    (tmp_path / "a.mp4").symlink_to(tmp_path / "b.mp4")
    (tmp_path / "b.mp4").symlink_to(tmp_path / "a.mp4")
    with pytest.raises(SourceOpenError, match="symbolic link loop"):
        open_source(tmp_path / "a.mp4")
    (tmp_path / "c.mp4").symlink_to(tmp_path / "gone.mp4")
    with pytest.raises(FileNotFoundError, match="broken symbolic link"):
        open_source(tmp_path / "c.mp4")


def test_still_image_named_like_a_video_is_refused(tmp_path):
    pytest.importorskip("av")
    from surgsam.io import SourceOpenError

    for fmt, name in [("PNG", "still.mp4"), ("JPEG", "still.mkv")]:
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / name, format=fmt)
        with pytest.raises(SourceOpenError, match="is a still image"):
            open_source(tmp_path / name)
