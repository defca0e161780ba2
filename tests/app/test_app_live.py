"""Live mode on synthetic streams: a file paced as a camera and a named pipe, a deliberately slow
segmenter, exact dropped-frame accounting, bounded latency, the recording, the click prompter."""

from __future__ import annotations

import json
import os
import threading
import types

import numpy as np
import pytest

from app_helpers import SlowSegmenter
from surgsam.app.live import LiveError, apply_prompts, open_live, run_live
from surgsam.engine import Prompt, VideoSegmenter

pytest.importorskip("cv2")

FPS, N = 50.0, 40
DELAY = 0.06  # the slow segmenter's time per frame: 3 frame intervals
PROMPTS = [Prompt(1, 0, points=[[100, 120]], labels=[1]), Prompt(2, 0, box=(170, 60, 300, 200))]


@pytest.fixture(scope="module")
def live_clip(tmp_path_factory, clip_frames):
    from surgsam.io import write_video

    d = tmp_path_factory.mktemp("live")
    frames = [clip_frames[i % len(clip_frames)] for i in range(N)]
    return write_video(d / "live.mp4", frames, fps=FPS), write_video(d / "live.ts", frames, fps=FPS)


def _count_frames(path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_file_paced_as_a_camera_drops_frames_and_keeps_latency_bounded(live_clip, model, tmp_path):
    src = open_live(live_clip[0])
    assert src.kind == "file" and src.fps == pytest.approx(FPS)
    seg = SlowSegmenter(VideoSegmenter(model, memory="efp"), DELAY)
    latencies: list[float] = []
    report = run_live(src, seg, PROMPTS, record=tmp_path / "rec.mp4",
                      on_frame=lambda res, ms: latencies.append(ms))
    assert report.end == "end of stream"
    # exact accounting: every frame of the file was read, and each was processed or dropped
    assert report.frames_read == N
    assert report.processed == 1 + seg.steps == 1 + len(latencies)
    assert report.processed + report.dropped == N
    stats = src.stats  # the grabber's own count of overwritten frames agrees
    assert stats.delivered == report.processed and stats.dropped == report.dropped
    assert report.dropped > N / 3  # 3 intervals per step: it cannot keep up
    # latency: arrival -> overlay, at least one step, never a backlog
    assert min(latencies) >= DELAY * 1000
    assert max(latencies) < (2 * DELAY + 1 / FPS) * 1000 + 250, latencies
    assert np.mean(latencies[-4:]) < np.mean(latencies[:4]) + 100, latencies  # a queue would grow ~40 ms/frame
    assert report.latency_max_ms == pytest.approx(max(latencies))
    assert report.wall_s < N / FPS + 3.0  # real time, not processing time x frames
    # the recording is in real time: the last overlay is repeated for each dropped frame
    assert report.recorded == report.processed + report.dropped - report.dropped_while_prompting
    assert _count_frames(tmp_path / "rec.mp4") == report.recorded


def test_without_dropping_every_frame_is_processed(live_clip, model):
    src = open_live(live_clip[0], drop_frames=False, realtime=False)
    seg = SlowSegmenter(VideoSegmenter(model, memory="fifo"), 0.005)
    report = run_live(src, seg, PROMPTS[:1])
    assert (report.frames_read, report.processed, report.dropped) == (N, N, 0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_named_pipe_source(live_clip, model, tmp_path):
    data = live_clip[1].read_bytes()  # MPEG-TS: streamable
    pipe = tmp_path / "feed"
    os.mkfifo(pipe)

    def feed() -> None:
        with open(pipe, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    src = open_live(pipe)  # blocks until the writer connects
    assert src.kind == "pipe"
    report = run_live(src, SlowSegmenter(VideoSegmenter(model), 0.02), PROMPTS[:1])
    writer.join(5)
    assert report.frames_read == N and report.processed + report.dropped == N
    assert report.processed >= 2


def test_stopping_early_counts_the_waiting_frame_as_dropped(live_clip, model):
    src = open_live(live_clip[0])
    report = run_live(src, SlowSegmenter(VideoSegmenter(model), 0.03), PROMPTS[:1], max_frames=5)
    assert report.end == "max frames" and report.processed == 5
    assert report.frames_read == report.processed + report.dropped < N

    class StopAfter:
        shown = 0

        def show(self, image):
            assert image.shape == (256, 320, 3)
            self.shown += 1
            return self.shown < 3

        def close(self):
            pass

    sink = StopAfter()
    report = run_live(open_live(live_clip[0]), VideoSegmenter(model), PROMPTS[:1], sink=sink)
    assert report.end == "stopped by user" and report.processed == sink.shown == 3
    report = run_live(open_live(live_clip[0]), VideoSegmenter(model), lambda frame: None)
    assert report.end == "stopped by user" and report.processed == 0 and report.frames_read >= 1


def test_bad_prompts_and_sources(live_clip, model, tmp_path):
    src = open_live(live_clip[0])
    with pytest.raises(LiveError, match="outside the 320x256 frame"):
        run_live(src, VideoSegmenter(model), [Prompt(1, 0, box=(0, 0, 400, 50))])
    assert src._closed
    with pytest.raises(LiveError, match="no prompt"):
        apply_prompts(VideoSegmenter(model), np.zeros((8, 8, 3), np.uint8), [])
    with pytest.raises(LiveError, match="folder"):
        open_live(tmp_path)


def test_live_cli_headless_writes_the_overlay(live_clip, tmp_path, capsys):
    from surgsam.cli import main

    out = tmp_path / "ov.mp4"
    rc = main(["live", "--source", str(live_clip[0]), "--headless", "--points", "100,120;200,60", "--labels", "1,0",
               "--record", str(out), "--max-frames", "6"])
    assert rc == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert report["processed"] == 6 and report["end"] == "max frames"
    assert report["frames_read"] == report["processed"] + report["dropped"]
    assert _count_frames(out) == report["recorded"] > 0
    assert "6 of" in captured.err and "dropped" in captured.err


def test_live_cli_without_a_window_says_what_to_do(live_clip, monkeypatch):
    from surgsam.app import live_gui
    from surgsam.cli import main

    monkeypatch.setattr(live_gui, "gui_support", lambda: "this OpenCV has no GUI support (opencv-python-headless)")
    with pytest.raises(ValueError, match=r"no GUI support.*--headless with --mask, --points or --box.*opencv-python"):
        main(["live", "--source", str(live_clip[0])])
    with pytest.raises(ValueError, match="--headless needs the prompts"):
        main(["live", "--source", str(live_clip[0]), "--headless"])
    with pytest.raises(ValueError, match="exclude each other"):
        main(["live", "--source", str(live_clip[0]), "--headless", "--points", "10,10", "--untrained",
              "--checkpoint", "surgsam-nano-synth"])
    with pytest.raises(ValueError, match="exclude each other"):  # the referring network too
        main(["live", "--source", str(live_clip[0]), "--headless", "--text", "a", "--untrained",
              "--checkpoint", "surgsam-ref-nano-synth"])


def test_gui_support_detection(monkeypatch):
    from surgsam.app.live_gui import gui_support

    def fake(gui: str):
        return types.SimpleNamespace(getBuildInformation=lambda: f"  Video I/O:\n    GUI:     {gui}\n")

    assert "no GUI support" in gui_support(fake("NONE"))
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert "no display" in gui_support(fake("GTK3"))
    monkeypatch.setenv("DISPLAY", ":0")
    assert gui_support(fake("GTK3")) is None


def test_click_prompter_turns_mouse_and_keys_into_prompts(decoded):
    import cv2

    from surgsam.app.live_gui import ClickPrompter

    previews = []
    p = ClickPrompter(None, cv2=cv2, preview=lambda frame, ps: previews.append(len(ps)))
    frame = decoded[0]
    p.start(frame)
    p.mouse(cv2.EVENT_LBUTTONDOWN, 100, 120, 0)
    p.mouse(cv2.EVENT_LBUTTONUP, 101, 121, 0)  # a click, not a drag
    p.mouse(cv2.EVENT_RBUTTONUP, 30, 40, 0)
    p.mouse(cv2.EVENT_LBUTTONDOWN, 10, 12, 0)
    p.mouse(cv2.EVENT_LBUTTONUP, 11, 12, cv2.EVENT_FLAG_SHIFTKEY)  # shift + click: negative
    assert p.key(ord("2")) is True and p.obj_id == 2
    p.mouse(cv2.EVENT_LBUTTONDOWN, 200, 60, 0)
    p.mouse(cv2.EVENT_MOUSEMOVE, 280, 150, cv2.EVENT_FLAG_LBUTTON)
    assert p._drag == (200, 60, 280, 150)
    p.mouse(cv2.EVENT_LBUTTONUP, 280, 150, 0)  # a drag: a box
    p.mouse(cv2.EVENT_LBUTTONUP, 999, 5, 0)  # release without a press: ignored
    p.mouse(cv2.EVENT_RBUTTONUP, 999, 5, 0)  # outside the frame: a message, no crash
    assert "outside" in p.message
    img = p.render(frame)
    assert img.shape == frame.shape and np.abs(img[:10].astype(int) - frame[:10]).mean() > 10  # help text
    assert previews == [2]
    p.key(ord("u"))
    p.key(ord("u"))  # box and the shift-click taken back
    prompts = p.key(13)
    assert [(q.obj_id, q.points.tolist(), q.labels.tolist()) for q in prompts] == [
        (1, [[101.0, 121.0], [30.0, 40.0]], [1, 0])]
    assert p.key(ord("c")) is True and p.key(32) is True and p.message == "click an object first"
    assert p.key(ord("q")) is None
