"""Shared helpers of the app tests: a click the demo model segments, a scripted clock and camera."""

from __future__ import annotations

import time

import numpy as np


def find_click(model, frame: np.ndarray, step: int = 24) -> tuple[int, int]:
    """A grid point whose single positive click gives a mask that contains it and covers at
    most half the frame (the demo model has random weights, so not every click does)."""
    from surgsam.app.jobs import preview
    from surgsam.app.prompts import Click, ObjectPrompt

    h, w = frame.shape[:2]
    for y in range(step, h - step, step):
        for x in range(step, w - step, step):
            res = preview(model, frame, [ObjectPrompt(1, 0, [Click(x, y)])])
            m = res.masks[0]
            if m[y - 1 : y + 2, x - 1 : x + 2].all() and m.mean() < 0.5:  # a pixel off still hits it
                return x, y
    raise AssertionError("no grid click gives a usable mask with this model")


class ManualClock:
    """A :class:`surgsam.io.live.Clock` that moves only when told: ``sleep`` (pacing) and
    :meth:`advance` add to it; nothing depends on wall time."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float, stop) -> None:
        self.t += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class ScriptedCamera:
    """A camera as live mode sees it, on a :class:`ManualClock`: a ``cv2.VideoCapture`` stand-in
    (BGR frames of ``frames``, in a loop up to ``total``) whose frames arrive only when the test
    calls :meth:`tick` — one frame per interval of ``1 / fps`` on the clock.

    :meth:`tick` waits until the source's grabber has taken each frame, so the source's newest-
    frame slot, its counts and the arrival times are exactly what a camera at ``fps`` gives.
    """

    def __init__(self, frames, total: int, fps: float, clock: ManualClock):
        import threading

        self.frames, self.total, self.fps, self.clock = frames, total, fps, clock
        self.sent = 0
        self.source = None  # set by the test once the LiveSource exists
        self._permits = threading.Semaphore(0)

    # -- the capture ---------------------------------------------------------------------------
    def read(self):
        self._permits.acquire()
        if self.sent >= self.total:
            return False, None
        frame = np.ascontiguousarray(self.frames[self.sent % len(self.frames)][:, :, ::-1])
        self.sent += 1
        return True, frame

    def get(self, prop: int) -> float:
        h, w = self.frames[0].shape[:2]
        return {3: float(w), 4: float(h), 5: self.fps}.get(prop, 0.0)

    def release(self) -> None:
        pass

    # -- the script ----------------------------------------------------------------------------
    def tick(self, n: int = 1) -> None:
        """``n`` frame intervals pass: each delivers a frame (or, once, the end of the stream)."""
        for _ in range(n):
            self.clock.advance(1.0 / self.fps)
            if self.source._ended:
                continue  # time goes on after the end
            ended = self.sent >= self.total
            want = self.sent + 1
            self._permits.release()
            deadline = time.monotonic() + 60  # a bound on a hang, not a timing assertion
            while not (self.source._ended if ended else self.source.stats.grabbed >= want):
                if time.monotonic() > deadline:
                    raise AssertionError("the grabber did not take the frame")
                time.sleep(0.0005)


class TickingSegmenter:
    """A real segmenter whose every call takes ``intervals`` frame intervals of the scripted
    camera's clock (a slow GPU, a big model), however fast the machine really is."""

    def __init__(self, inner, camera: ScriptedCamera, intervals: int):
        self.inner, self.camera, self.intervals = inner, camera, intervals
        self.steps = 0

    def add_prompt(self, *args, **kwargs):
        res = self.inner.add_prompt(*args, **kwargs)
        self.camera.tick(self.intervals)
        return res

    def step(self, frame):
        res = self.inner.step(frame)
        self.steps += 1
        self.camera.tick(self.intervals)
        return res
