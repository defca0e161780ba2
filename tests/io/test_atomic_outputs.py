"""Atomic outputs and the output folder (issue 17): a failed write never destroys an earlier
valid file, names the file and frame, and leaves no temporary file behind; an output folder is
used by one run at a time and never mixes two runs."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from surgsam.io import PaletteMaskWriter, PerObjectMaskWriter, read_palette_png, write_palette_png
from surgsam.io.atomic import OutputError, atomic_path, atomic_write_json, is_temporary_name
from surgsam.io.outdir import LOCK_NAME, MANIFEST, OutputFolder, OutputFolderError, check_output_file


def _label(value: int, h: int = 24, w: int = 32) -> np.ndarray:
    lab = np.zeros((h, w), np.uint8)
    lab[4:12, 5:20] = value
    return lab


def _full_disk_after(nbytes: int):
    """A stand-in for PIL's ``Image.save`` that writes ``nbytes`` and then fails with ENOSPC."""

    def save(self, fp, format=None, **params):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG" + b"x" * nbytes)
        raise OSError(errno.ENOSPC, "No space left on device")

    return save


def test_failed_png_write_keeps_the_earlier_file(tmp_path, monkeypatch):
    path = write_palette_png(tmp_path / "00000.png", _label(1))
    before = path.read_bytes()
    monkeypatch.setattr(Image.Image, "save", _full_disk_after(10))
    with pytest.raises(OutputError, match=r"00000\.png \(frame 0\): no space left on device") as e:
        PaletteMaskWriter(tmp_path).write_label_map(0, _label(2))
    assert e.value.errno == errno.ENOSPC and "left intact" in str(e.value)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["00000.png"]
    assert isinstance(e.value, OSError)


def test_failed_per_object_write_keeps_the_earlier_file(tmp_path, monkeypatch):
    writer = PerObjectMaskWriter(tmp_path)
    masks = np.zeros((1, 24, 32), bool)
    masks[0, 2:5, 2:9] = True
    (path,) = writer.write(3, [7], masks)
    before = path.read_bytes()
    monkeypatch.setattr(Image.Image, "save", _full_disk_after(5))
    with pytest.raises(OutputError, match=r"frame 3, object 7"):
        writer.write(3, [7], ~masks)
    assert path.read_bytes() == before and os.listdir(path.parent) == ["00003.png"]


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("encoder crashed")
    assert json.loads(target.read_text()) == {"v": 1} and os.listdir(tmp_path) == ["a.json"]
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and is_temporary_name(tmp.name) and tmp.name.endswith(".json")
        tmp.write_text('{"v": 2}')
    assert json.loads(target.read_text()) == {"v": 2}
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # like a plain open()
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(OutputError, match="a folder has this name"):
        atomic_write_json(tmp_path / "dir.json", {})


def test_atomic_path_private_files_are_only_the_users(tmp_path):
    """``private=True`` (the app's outputs): 0600 from the moment the temporary file exists, so
    no other user can read even a half-written overlay; the final file keeps the mode."""
    target = tmp_path / "overlay.mp4"
    with atomic_path(target, private=True) as tmp:
        assert oct(tmp.stat().st_mode & 0o777) == "0o600"
        tmp.write_bytes(b"video")
    assert oct(target.stat().st_mode & 0o777) == "0o600" and target.read_bytes() == b"video"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- the file-size limit of a real process (`ulimit -f`, as on a full disk) ----------------------
_LIMITED = textwrap.dedent("""
    import resource, signal, sys
    import numpy as np
    from surgsam.io import PaletteMaskWriter
    from surgsam.io.atomic import OutputError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
    rng = np.random.default_rng(0)
    try:
        PaletteMaskWriter(sys.argv[1]).write_label_map(0, rng.integers(0, 3, (64, 64)).astype(np.uint8))
    except OutputError as e:
        print(e)
        sys.exit(3)
""")


def test_file_size_limit_keeps_the_earlier_png(tmp_path):
    path = write_palette_png(tmp_path / "00000.png", _label(1))
    before = path.read_bytes()
    proc = subprocess.run([sys.executable, "-c", _LIMITED, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "00000.png (frame 0): file too large" in proc.stdout
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["00000.png"]
    assert read_palette_png(path).max() == 1


# -- video ------------------------------------------------------------------------------------
def _frames(n: int, value: int = 0) -> list[np.ndarray]:
    return [np.full((32, 48, 3), (value + 20 * i) % 256, np.uint8) for i in range(n)]


def test_video_is_renamed_into_place_on_close(tmp_path):
    pytest.importorskip("av")
    from surgsam.io import VideoWriter

    path = tmp_path / "ov.mp4"
    writer = VideoWriter(path, fps=10)
    for f in _frames(3):
        writer.write(f)
    assert not path.exists()  # encoded under a temporary name until close()
    writer.close()
    assert os.listdir(tmp_path) == ["ov.mp4"] and path.stat().st_size > 0


def test_video_write_failure_keeps_the_earlier_video(tmp_path, monkeypatch):
    av = pytest.importorskip("av")
    from surgsam.io import OverlayVideoWriter, write_video

    path = write_video(tmp_path / "ov.mp4", _frames(4), fps=10)
    before = path.read_bytes()
    real_mux, calls = av.container.OutputContainer.mux, []

    def mux(self, packets):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mux(self, packets)

    monkeypatch.setattr(av.container.OutputContainer, "mux", mux)
    writer = OverlayVideoWriter(path, fps=10)
    with pytest.raises(OutputError, match=r"ov\.mp4 \(frame \d+\): no space left on device"):
        for f in _frames(40, 7):
            writer.write(f)
    writer.close()  # harmless after the failure
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ov.mp4"]


def test_video_abort_and_exception_in_with_block(tmp_path):
    pytest.importorskip("av")
    from surgsam.io import VideoWriter, write_video

    path = write_video(tmp_path / "ov.mp4", _frames(2), fps=10)
    before = path.read_bytes()
    writer = VideoWriter(path, fps=10)
    writer.write(_frames(1, 99)[0])
    writer.abort()
    with pytest.raises(KeyError):
        with VideoWriter(path, fps=10) as w:
            w.write(_frames(1, 50)[0])
            raise KeyError("interrupted")
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ov.mp4"]


# -- the output folder ------------------------------------------------------------------------
def test_output_folder_rules(tmp_path):
    out = tmp_path / "out"
    with OutputFolder(out) as folder:  # created
        assert (out / LOCK_NAME).exists()
        folder.will_write()
        folder.record(write_palette_png(out / "00000.png", _label(1)))
        folder.finish({"command": "test", "frames_written": 1})
    assert sorted(os.listdir(out)) == ["00000.png", MANIFEST]  # the lock is gone
    doc = json.loads((out / MANIFEST).read_text())
    assert doc["frames_written"] == 1 and doc["command"] == "test" and "finished" in doc
    with pytest.raises(OutputFolderError, match="not empty .*--overwrite"):
        OutputFolder(out).open()
    assert not (out / LOCK_NAME).exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="is a file, not a folder"):
        OutputFolder(tmp_path / "file").open()


def test_second_run_refused_while_the_first_holds_the_folder(tmp_path):
    out = tmp_path / "out"
    with OutputFolder(out):
        with pytest.raises(OutputFolderError, match=r"another surgsam run \(process \d+\) is writing to"):
            OutputFolder(out).open()
        code = f"from surgsam.io.outdir import OutputFolder\nOutputFolder({str(out)!r}).open()"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and "another surgsam run" in proc.stderr
    with OutputFolder(out, overwrite=True):  # free again
        pass


def test_overwrite_removes_the_earlier_runs_leftovers_at_the_end(tmp_path):
    out = tmp_path / "out"
    with OutputFolder(out) as folder:
        for t in range(5):
            folder.record(write_palette_png(out / f"{t:05d}.png", _label(1)))
        folder.finish({"frames_written": 5})
    (out / "notes.txt").write_text("mine")  # not a mask: kept
    (out / ".00003.0123abcd.part.png").write_bytes(b"x")  # a killed run's temporary file
    with OutputFolder(out, overwrite=True) as folder:
        assert (out / MANIFEST).exists()  # nothing written yet: the earlier run is still whole
        assert not (out / ".00003.0123abcd.part.png").exists()
        for t in range(2):
            folder.will_write()
            assert not (out / MANIFEST).exists()
            folder.record(write_palette_png(out / f"{t:05d}.png", _label(2)))
        assert (out / "00004.png").exists()
        folder.finish({"frames_written": 2})
    assert sorted(os.listdir(out)) == sorted(["00000.png", "00001.png", MANIFEST, "notes.txt"])
    assert read_palette_png(out / "00001.png").max() == 2


def test_overwrite_per_object_layout(tmp_path):
    out = tmp_path / "out"
    masks = np.ones((2, 8, 8), bool)
    with OutputFolder(out) as folder:
        writer = PerObjectMaskWriter(out)
        for t in range(3):
            folder.record(writer.write(t, [1, 2], masks))
        folder.finish({})
    with OutputFolder(out, overwrite=True) as folder:
        folder.record(PerObjectMaskWriter(out).write(0, [1], masks[:1]))
        folder.finish({})
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["001/00000.png"]


def test_check_output_file(tmp_path):
    (tmp_path / "ov.mp4").write_bytes(b"x")
    with pytest.raises(OutputFolderError, match="already exists: pass --overwrite"):
        check_output_file(tmp_path / "ov.mp4", overwrite=False)
    assert check_output_file(tmp_path / "ov.mp4", overwrite=True) == tmp_path / "ov.mp4"
    with pytest.raises(OutputFolderError, match="is a folder"):
        check_output_file(tmp_path, overwrite=True)
    assert check_output_file(Path(tmp_path / "new.mp4"), overwrite=False).name == "new.mp4"


def test_file_system_without_locks_runs_with_a_warning(tmp_path, monkeypatch, capsys):
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with OutputFolder(tmp_path / "out") as folder:
        folder.finish({})
    assert "cannot be locked" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "out")) == [MANIFEST]
