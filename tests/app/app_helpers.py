"""Shared helpers of the app tests: a click the demo model segments, a slow segmenter."""

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


class SlowSegmenter:
    """A real VideoSegmenter whose ``step`` takes at least ``delay_s`` (a slow GPU, a big model)."""

    def __init__(self, inner, delay_s: float):
        self.inner, self.delay_s = inner, delay_s
        self.steps = 0

    def add_prompt(self, *args, **kwargs):
        return self.inner.add_prompt(*args, **kwargs)

    def step(self, frame):
        t0 = time.perf_counter()
        res = self.inner.step(frame)
        self.steps += 1
        rest = self.delay_s - (time.perf_counter() - t0)
        if rest > 0:
            time.sleep(rest)
        return res
