"""Synthetic frames, a polling helper and a scripted capture for the io tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

NUM_FRAMES, HEIGHT, WIDTH = 30, 48, 64
SQUARE = 16


def make_frames(n: int = NUM_FRAMES, h: int = HEIGHT, w: int = WIDTH) -> list[np.ndarray]:
    """A smooth gradient with a red square moving right by one pixel per frame."""
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([xx * 2 % 256, yy * 3 % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
    frames = []
    for i in range(n):
        frame = bg.copy()
        x0 = i % (w - SQUARE)
        frame[h // 4 : h // 4 + SQUARE, x0 : x0 + SQUARE] = (255, 0, 0)
        frames.append(frame)
    return frames


def square_mask(i: int, h: int = HEIGHT, w: int = WIDTH) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    x0 = i % (w - SQUARE)
    mask[h // 4 : h // 4 + SQUARE, x0 : x0 + SQUARE] = True
    return mask


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


class FakeCapture:
    """A ``cv2.VideoCapture`` stand-in whose frames the test releases one by one.

    Frame ``i`` is BGR ``(i, 0, 255 - i)``, i.e. RGB ``(255 - i, 0, i)``.
    """

    def __init__(self, num_frames: int, h: int = 6, w: int = 8, fps: float = 25.0):
        self.num_frames, self.h, self.w, self.fps = num_frames, h, w, fps
        self.index = 0
        self.released = False
        self.error: BaseException | None = None
        self._permits = threading.Semaphore(0)

    def feed(self, n: int = 1) -> None:
        """Let ``n`` more reads return."""
        for _ in range(n):
            self._permits.release()

    def read(self) -> tuple[bool, np.ndarray | None]:
        self._permits.acquire()
        if self.error is not None:
            raise self.error
        if self.index >= self.num_frames:
            return False, None
        frame = np.zeros((self.h, self.w, 3), dtype=np.uint8)
        frame[..., 0], frame[..., 2] = self.index, 255 - self.index
        self.index += 1
        return True, frame

    def get(self, prop: int) -> float:
        return {3: float(self.w), 4: float(self.h), 5: self.fps}.get(prop, 0.0)

    def release(self) -> None:
        self.released = True
