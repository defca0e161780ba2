"""The FPS on live mode's overlay and in its report are one computation (issue 18: the overlay
showed 0.0 FPS while the report said 1.8). A scripted camera and clock make every number exact."""

from __future__ import annotations

import pytest

from app_helpers import ManualClock, ScriptedCamera, TickingSegmenter
from surgsam.app import live
from surgsam.app.live import open_live, run_live
from surgsam.engine import Prompt, VideoSegmenter

pytest.importorskip("cv2")

FPS = 50.0


def test_overlay_and_report_fps_agree(clip_frames, model, monkeypatch):
    clock = ManualClock()
    cam = ScriptedCamera(clip_frames, 12, FPS, clock)
    src = open_live("scripted-camera", capture=cam, clock=clock)
    cam.source = src
    src.start()
    cam.tick()
    k = 3  # every engine call takes 3 frame intervals: 50 / 3 = 16.7 frames/s
    seg = TickingSegmenter(VideoSegmenter(model, memory="efp"), cam, k)
    shown: list[str] = []
    draw = live._draw
    monkeypatch.setattr(live, "_draw", lambda frame, res, lines: shown.append(lines[0]) or draw(frame, res, lines))
    report = run_live(src, seg, [Prompt(1, 0, points=[[100, 120]], labels=[1])])
    tracked = [line for line in shown if "FPS" in line]
    assert shown[0] == "prompt frame" and len(tracked) == report.processed - 1 >= 2
    assert report.fps == pytest.approx(FPS / k)
    # every overlay, the first tracked frame's included, shows the rate the report gives
    assert [line.split(" FPS")[0] for line in tracked] == [f"{FPS / k:.1f}"] * len(tracked)
