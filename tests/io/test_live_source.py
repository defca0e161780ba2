"""LiveSource: newest-frame grabber accounting (scripted capture, scripted clock), bounded waits,
and OpenCV on files/pipes (truncated files reported as damage)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from io_helpers import HEIGHT, NUM_FRAMES, WIDTH, wait_until
from surgsam.io import LiveSource, LiveStats, SourceOpenError, open_source
from surgsam.io.base import FrameReadError
from surgsam.io.live import _mask_url, parse_camera_index


def _value(frame: np.ndarray) -> int:
    """Frame index encoded by FakeCapture (RGB = (255 - i, 0, i))."""
    return int(frame[0, 0, 2])


def test_latest_frame_grabber_drops_and_counts(fake_capture):
    cap = fake_capture(num_frames=8)
    src = LiveSource("scripted", capture=cap)
    assert (src.fps, src.size, src.is_live, src.num_frames) == (25.0, (6, 8), True, None)
    src.start()
    cap.feed(5)
    wait_until(lambda: src.stats.grabbed == 5)
    frame = src.read_latest()
    assert _value(frame) == 4 and frame[0, 0].tolist() == [251, 0, 4]  # BGR -> RGB
    assert src.stats == LiveStats(grabbed=5, delivered=1, dropped=4)
    with pytest.raises(TimeoutError):
        src.read_latest(timeout=0.02)  # nothing newer than frame 4 yet
    cap.feed(3)
    wait_until(lambda: src.stats.grabbed == 8)
    assert _value(src.read()) == 7
    assert src.stats == LiveStats(grabbed=8, delivered=2, dropped=6)
    cap.feed(1)  # the capture now reports the end of the stream
    assert src.read_latest() is None
    assert list(src) == []
    assert src.dropped_frames == 6
    src.close()
    assert cap.released


def test_sequential_mode_delivers_every_frame(fake_capture):
    cap = fake_capture(num_frames=5)
    cap.feed(6)
    with LiveSource("scripted", capture=cap, drop_frames=False) as src:
        assert [_value(f) for f in src] == [0, 1, 2, 3, 4]
        assert src.stats == LiveStats(5, 5, 0)
        with pytest.raises(RuntimeError, match="drop_frames=True"):
            src.read_latest()
    assert cap.released


def test_grabber_error_reaches_the_consumer(fake_capture):
    cap = fake_capture(num_frames=5)
    cap.error = RuntimeError("camera unplugged")
    cap.feed(1)
    with LiveSource("scripted", capture=cap) as src, pytest.raises(RuntimeError, match="unplugged"):
        src.read()


def test_close_while_grabber_blocked_releases_later(fake_capture):
    cap = fake_capture(num_frames=5)
    src = LiveSource("scripted", capture=cap)
    src.start()
    src.close(join_timeout_s=0.05)  # grabber is stuck inside read()
    assert not cap.released
    cap.feed(1)  # the read returns; the grabber sees the stop flag and releases
    wait_until(lambda: cap.released)
    with pytest.raises(RuntimeError, match="closed"):
        src.read()


def test_close_wakes_a_waiting_reader(fake_capture):
    cap = fake_capture(num_frames=5)
    src = LiveSource("scripted", capture=cap)
    got = []
    reader = threading.Thread(target=lambda: got.append(src.read()))
    reader.start()
    wait_until(lambda: src._thread is not None)  # past start(): the reader waits or will
    time.sleep(0.02)
    src.close(join_timeout_s=0.05)
    reader.join(2)
    assert not reader.is_alive() and got == [None]
    cap.feed(1)
    wait_until(lambda: cap.released)


class StepClock:
    """A clock that moves only by the sleeps asked of it (pacing), recording them."""

    def __init__(self) -> None:
        self.t, self.sleeps = 0.0, []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float, stop) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def test_realtime_pacing(fake_capture):
    cap = fake_capture(num_frames=6, fps=100.0)
    cap.feed(7)
    clock = StepClock()
    src = LiveSource("scripted", capture=cap, drop_frames=False, realtime=True, clock=clock)
    assert len(list(src)) == 6
    assert clock.sleeps == pytest.approx([0.01] * 5) and clock.t == pytest.approx(0.05)  # 5 intervals of 10 ms


def test_reads_give_up_after_their_timeout_in_both_modes(fake_capture):
    for drop in (True, False):
        cap = fake_capture(num_frames=3)
        src = LiveSource("scripted", capture=cap, drop_frames=drop)
        with pytest.raises(TimeoutError, match="no frame within 0.05s"):
            src.read(timeout=0.05)  # nothing arrives: without dropping this used to block for ever
        cap.feed(1)
        assert _value(src.read(timeout=30)) == 0
        src.close(join_timeout_s=0.05)
        cap.feed(5)
        wait_until(lambda: cap.released)


def test_in_order_mode_reads_one_frame_ahead_at_most(fake_capture):
    cap = fake_capture(num_frames=5)
    cap.feed(6)
    src = LiveSource("scripted", capture=cap, drop_frames=False)
    assert _value(src.read()) == 0
    wait_until(lambda: src.stats.grabbed == 2)  # the next frame waits in the slot; no more is read
    assert cap.index == 2 and src.stats == LiveStats(2, 1, 0)
    assert [_value(f) for f in src] == [1, 2, 3, 4]
    src.close()


def test_names_and_camera_index(fake_capture):
    assert parse_camera_index(0) == 0 and parse_camera_index(" 2 ") == 2
    assert parse_camera_index("cam") is None and parse_camera_index(True) is None
    assert LiveSource("1", capture=fake_capture(1)).name == "camera:1"
    url = "rtsp://admin:secret@10.0.0.5:554/stream1"
    assert _mask_url(url) == "rtsp://admin:***@10.0.0.5:554/stream1"
    assert "secret" not in LiveSource(url, capture=fake_capture(1)).name


# -- real OpenCV ---------------------------------------------------------------------------------
def test_video_file_read_as_live(mp4_clip, frames):
    pytest.importorskip("cv2")
    with LiveSource(mp4_clip, drop_frames=False, realtime=False) as src:
        assert src.fps == pytest.approx(30.0) and src.size == (HEIGHT, WIDTH)
        got = list(src)
    assert len(got) == NUM_FRAMES
    diff = np.abs(got[5].astype(int) - frames[5].astype(int)).mean()
    assert diff < 6.0  # RGB order: a BGR frame would differ by far more
    with open_source(mp4_clip, live=True, realtime=False) as src:
        n = sum(1 for _ in src)
        stats = src.stats
    assert stats.grabbed == NUM_FRAMES and stats.delivered == n
    assert stats.delivered + stats.dropped == NUM_FRAMES


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_named_pipe(make_clip, tmp_path):
    pytest.importorskip("cv2")
    data = make_clip("square.ts").read_bytes()  # MPEG-TS: streamable, no index needed
    pipe = tmp_path / "feed"
    os.mkfifo(pipe)

    def feed() -> None:
        with open(pipe, "wb") as f:
            for i in range(0, len(data), 4096):
                f.write(data[i : i + 4096])

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    with open_source(pipe, drop_frames=False) as src:  # blocks until the writer connects
        assert isinstance(src, LiveSource) and src.kind == "pipe"
        got = list(src)
    writer.join(5)
    assert len(got) == NUM_FRAMES and got[0].shape == (HEIGHT, WIDTH, 3)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_named_pipe_without_a_writer_times_out(make_clip, tmp_path):
    pytest.importorskip("cv2")
    pipe = tmp_path / "nobody"
    os.mkfifo(pipe)
    with pytest.raises(SourceOpenError, match="no writer connected to pipe nobody within 0.1 s"):
        LiveSource(pipe, open_timeout_s=0.1)
    # the abandoned open was let go: OpenCV opens the next source at once (it used to wait for it)
    with LiveSource(make_clip("square.mp4"), drop_frames=False, realtime=False) as src:
        assert sum(1 for _ in src) == NUM_FRAMES


def test_truncated_file_is_reported_as_damage(make_clip, tmp_path):
    pytest.importorskip("cv2")
    pytest.importorskip("av")
    data = make_clip("square.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 85 // 100])
    got = []
    with LiveSource(cut, drop_frames=False, realtime=False) as src:
        with pytest.raises(
            FrameReadError,
            match=rf"cut.mp4 is truncated or damaged: it ended at frame \d+, but the "
            rf"container declares {NUM_FRAMES} frames",
        ):
            for frame in src:
                got.append(frame)
    assert 0 < len(got) < NUM_FRAMES
    ts = tmp_path / "whole.ts"  # a complete stream without a declared count is not damage
    ts.write_bytes(make_clip("square.ts").read_bytes())
    with LiveSource(ts, drop_frames=False, realtime=False) as src:
        assert sum(1 for _ in src) == NUM_FRAMES


def test_unopenable_sources_name_themselves(tmp_path):
    pytest.importorskip("cv2")
    with pytest.raises(SourceOpenError, match="camera camera:97"):
        LiveSource(97)
    with pytest.raises(SourceOpenError, match=r"stream rtsp://127\.0\.0\.1:9/x"):
        LiveSource("rtsp://127.0.0.1:9/x", open_timeout_s=2)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceOpenError, match="junk.mp4"):
        LiveSource(junk)
    with pytest.raises(FileNotFoundError, match="absent.mp4"):
        LiveSource(tmp_path / "absent.mp4")
