"""Live mode on synthetic streams: a scripted camera on a scripted clock (exact dropped-frame
accounting and latency, whatever the machine's load), a file paced as a camera and a named pipe
(accounting only), damaged files, signals, the recording, the click prompter."""

from __future__ import annotations

import json
import os
import threading
import types

import numpy as np
import pytest

from app_helpers import ManualClock, ScriptedCamera, TickingSegmenter
from surgsam.app.live import Interrupted, LiveError, apply_prompts, open_live, run_live
from surgsam.engine import Prompt, VideoSegmenter

pytest.importorskip("cv2")

FPS, N = 50.0, 40
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


def _camera(clip_frames, total: int = N, fps: float = FPS):
    """A scripted camera and its live source, the first frame already there (at t = 1/fps)."""
    clock = ManualClock()
    cam = ScriptedCamera(clip_frames, total, fps, clock)
    src = open_live("scripted-camera", capture=cam, clock=clock)
    cam.source = src
    src.start()
    cam.tick()
    return cam, src


def _expected_processed(total: int, first_chunk: int, k: int) -> int:
    """Frames a newest-frame loop processes when prompting takes ``first_chunk`` intervals and
    each step ``k``: the last frame of every chunk."""
    processed, sent, chunk = 1, 1, first_chunk
    while sent < total:
        sent, processed, chunk = min(total, sent + chunk), processed + 1, k
    return processed


@pytest.mark.parametrize("k", [1, 3])
def test_a_slow_segmenter_drops_frames_and_latency_stays_bounded(clip_frames, model, tmp_path, k):
    """Every step takes k frame intervals on the scripted clock: exactly k - 1 frames are dropped
    per step and every latency is exactly k intervals (the last one at most 2 k): no backlog."""
    cam, src = _camera(clip_frames)
    seg = TickingSegmenter(VideoSegmenter(model, memory="efp"), cam, k)
    latencies: list[float] = []
    report = run_live(src, seg, PROMPTS, record=tmp_path / "rec.mp4", on_frame=lambda res, ms: latencies.append(ms))
    dt_ms = 1000.0 / FPS
    assert report.end == "end of stream"
    assert report.frames_read == N and report.processed == _expected_processed(N, 2 * k, k)  # 2 prompts
    assert report.processed == 1 + seg.steps == 1 + len(latencies)
    assert report.processed + report.dropped == N and report.dropped_while_prompting == 0
    stats = src.stats  # the grabber's own count of overwritten frames agrees
    assert stats.delivered == report.processed and stats.dropped == report.dropped
    assert latencies[:-1] == pytest.approx([k * dt_ms] * (len(latencies) - 1))
    assert k * dt_ms - 1e-6 <= latencies[-1] <= 2 * k * dt_ms + 1e-6
    assert report.latency_max_ms == pytest.approx(max(latencies))
    assert report.engine_median_ms == pytest.approx(k * dt_ms) and report.fps == pytest.approx(FPS / k)
    assert report.wall_s == pytest.approx((N + 2 * k) / FPS, abs=(k + 1) / FPS)  # the stream's time, not the CPU's
    # the recording is in real time: the last overlay is repeated for each dropped frame
    assert report.recorded == report.processed + report.dropped - report.dropped_while_prompting
    assert _count_frames(tmp_path / "rec.mp4") == report.recorded


def test_a_real_file_paced_as_a_camera(live_clip, model):
    """The file at its frame rate through OpenCV: counts that hold however loaded the machine is."""
    src = open_live(live_clip[0])
    assert src.kind == "file" and src.fps == pytest.approx(FPS)
    report = run_live(src, VideoSegmenter(model, memory="efp"), PROMPTS)
    assert report.end == "end of stream" and report.frames_read == N
    assert report.processed + report.dropped == N and report.processed >= 1
    assert src.stats.delivered == report.processed


def test_without_dropping_every_frame_is_processed(live_clip, model):
    src = open_live(live_clip[0], drop_frames=False, realtime=False)
    report = run_live(src, VideoSegmenter(model, memory="fifo"), PROMPTS[:1])
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
    src = open_live(pipe, drop_frames=False)  # waits (at most its open timeout) for the writer
    assert src.kind == "pipe"
    report = run_live(src, VideoSegmenter(model), PROMPTS[:1])
    writer.join(5)
    assert (report.frames_read, report.processed, report.dropped) == (N, N, 0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_a_pipe_without_a_writer_times_out(tmp_path, capsys):
    from surgsam.cli import main
    from surgsam.io import SourceOpenError

    pipe = tmp_path / "nobody"
    os.mkfifo(pipe)
    with pytest.raises(SourceOpenError, match="no writer connected to pipe nobody within 0.2 s"):
        open_live(pipe, open_timeout_s=0.2)
    rc = main(["live", "--source", str(pipe), "--headless", "--points", "10,10", "--read-timeout", "0.2"])
    assert rc == 2 and "no writer connected" in capsys.readouterr().err


def test_stopping_early_counts_the_waiting_frame_as_dropped(clip_frames, live_clip, model):
    cam, src = _camera(clip_frames)
    report = run_live(src, TickingSegmenter(VideoSegmenter(model), cam, 2), PROMPTS[:1], max_frames=5)
    assert report.end == "max frames" and report.processed == 5
    assert report.frames_read == 1 + 2 * 5 and report.dropped == report.frames_read - 5  # the waiting one too

    class StopAfter:
        shown = 0

        def show(self, image):
            assert image.shape == (256, 320, 3)
            self.shown += 1
            return self.shown < 3

        def close(self):
            pass

    sink = StopAfter()
    cam, src = _camera(clip_frames)
    report = run_live(src, TickingSegmenter(VideoSegmenter(model), cam, 1), PROMPTS[:1], sink=sink)
    assert report.end == "stopped by user" and report.processed == sink.shown == 3
    report = run_live(open_live(live_clip[0]), VideoSegmenter(model), lambda frame: None)
    assert report.end == "stopped by user" and report.processed == 0 and report.frames_read >= 1


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_ends_the_run_with_its_report(clip_frames, model, tmp_path, signum):
    import signal

    cam, src = _camera(clip_frames)
    seg = TickingSegmenter(VideoSegmenter(model), cam, 1)
    step = seg.step

    def step_then_signal(frame):
        res = step(frame)
        if seg.steps == 3:
            raise Interrupted(getattr(signal, signum))  # what the CLI's handler raises
        return res

    seg.step = step_then_signal
    report = run_live(src, seg, PROMPTS[:1], record=tmp_path / "rec.mp4")
    assert report.end == f"interrupted ({signum})" and report.processed == 3  # the prompt frame + 2 finished steps
    assert report.frames_read == report.processed + report.dropped and src._closed
    assert _count_frames(tmp_path / "rec.mp4") == report.recorded > 0  # the recording is finished, not cut


def test_a_truncated_file_is_damage_not_the_end(live_clip, model, tmp_path, capsys):
    from surgsam.cli import main

    cut = tmp_path / "cut.mp4"
    data = live_clip[0].read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])  # mp4 with its index first (faststart): frames declared
    report = run_live(open_live(cut, drop_frames=False, realtime=False), VideoSegmenter(model), PROMPTS[:1])
    assert report.end == "damaged input" and 0 < report.processed < N
    assert f"but the container declares {N} frames" in report.error and "truncated" in report.error
    rc = main(
        [
            "live",
            "--source",
            str(cut),
            "--headless",
            "--points",
            "100,120",
            "--no-drop",
            "--no-realtime",
            "--record",
            str(tmp_path / "ov.mp4"),
        ]
    )
    out = capsys.readouterr()
    assert rc == 1 and json.loads(out.out.strip().splitlines()[-1])["end"] == "damaged input"
    assert "truncated" in out.err


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
    rc = main(
        [
            "live",
            "--source",
            str(live_clip[0]),
            "--headless",
            "--points",
            "100,120;200,60",
            "--labels",
            "1,0",
            "--record",
            str(out),
            "--max-frames",
            "6",
            "--no-drop",
            "--no-realtime",
        ]
    )  # counts independent of speed
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
        main(
            [
                "live",
                "--source",
                str(live_clip[0]),
                "--headless",
                "--points",
                "10,10",
                "--untrained",
                "--checkpoint",
                "surgsam-nano-synth",
            ]
        )
    with pytest.raises(ValueError, match="exclude each other"):  # the referring network too
        main(
            [
                "live",
                "--source",
                str(live_clip[0]),
                "--headless",
                "--text",
                "a",
                "--untrained",
                "--checkpoint",
                "surgsam-ref-nano-synth",
            ]
        )


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
        (1, [[101.0, 121.0], [30.0, 40.0]], [1, 0])
    ]
    assert p.key(ord("c")) is True and p.key(32) is True and p.message == "click an object first"
    assert p.key(ord("q")) is None


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has its own SIGTERM handler (Linux: SigCgt in /proc/PID/status)."""
    try:
        text = open(f"/proc/{pid}/status").read()
    except OSError:
        return False
    mask = int(next(line.split()[1] for line in text.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(mask & (1 << (15 - 1)))


@pytest.mark.slow
@pytest.mark.skipif(
    not (hasattr(os, "mkfifo") and os.path.exists("/proc/self/status")), reason="POSIX pipes, Linux /proc"
)
@pytest.mark.parametrize("signame,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_live_cli_on_a_silent_pipe_ends_on_a_signal_with_its_report(tmp_path, signame, code):
    """`surgsam live` waiting on a pipe nobody writes to: the signal ends it with the JSON report."""
    import signal
    import subprocess
    import sys
    import time

    pipe = tmp_path / "silent"
    os.mkfifo(pipe)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "surgsam",
            "live",
            "--source",
            str(pipe),
            "--headless",
            "--points",
            "10,10",
            "--read-timeout",
            "300",
            "--record",
            str(tmp_path / "o.mp4"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120  # a bound on start-up, not a timing assertion
        while not _catches_sigterm(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(getattr(signal, signame))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["end"] == f"interrupted ({signame})" and report["processed"] == 0
    assert "Traceback" not in err


@pytest.mark.slow
def test_soak_memory_is_bounded():
    """300 frames of live mode: the live tensors (found by walking the garbage collector, not by
    asking the session) and Python's allocations (tracemalloc) stop growing after warm-up.
    benchmarks/soak_memory.py runs the long version and reports resident memory."""
    import tracemalloc

    import torch
    from memory_census import live_tensors

    from surgsam.data.synth import SynthConfig, render_video
    from surgsam.modeling import build_model

    clip = render_video(SynthConfig(width=128, height=96, frames=40), seed=5, index=0, name="soak")
    ids = [int(i) for i in np.unique(clip.labels[0]) if i != 0][:2]
    torch.manual_seed(0)
    model = build_model("nano", image_size=128)  # untrained and small: memory, not masks, is the point

    class Loop:
        sent = 0

        def read(self):
            if self.sent >= 300:
                return False, None
            self.sent += 1
            return True, np.ascontiguousarray(clip.frames[self.sent % len(clip.frames)][:, :, ::-1])

        def get(self, prop):
            return {3: 128.0, 4: 96.0, 5: 25.0}.get(prop, 0.0)

        def release(self):
            pass

    samples: list[tuple[int, int, int]] = []
    processed = [1]

    def on_frame(res, ms):
        processed[0] += 1
        if processed[0] % 100 == 0:
            samples.append((*live_tensors(), tracemalloc.get_traced_memory()[0]))

    src = open_live("soak", capture=Loop(), drop_frames=False, realtime=False)
    prompts = [Prompt(obj_id=i, frame_idx=0, mask=clip.labels[0] == i) for i in ids]
    tracemalloc.start()
    try:
        report = run_live(src, VideoSegmenter(model, memory="efp"), prompts, on_frame=on_frame)
    finally:
        tracemalloc.stop()
    assert report.processed == 300 and len(samples) == 3
    (n1, b1, _), (n2, b2, py2), (n3, b3, py3) = samples
    assert n3 == n2 and b3 == b2, samples  # the memory bank is full by frame 200 and stays the same size
    assert py3 - py2 < 256 * 1024, samples  # Python's own heap: no per-frame growth
