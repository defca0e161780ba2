"""The OpenCV window of ``surgsam live``: click the prompts on the first frame, then watch.

Needs an OpenCV build with GUI support (``opencv-python``; the ``opencv-python-headless``
wheel has none) and a display; :func:`gui_support` says why not otherwise, and live mode then
asks for ``--headless`` with ``--mask`` / ``--points`` / ``--box``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from ..engine.offline import Prompt
from ..engine.state import FrameResult
from .._optional import require_cv2
from .prompts import ObjectPrompt, PromptBook, PromptError

__all__ = ["HEADLESS_HINT", "ClickPrompter", "Window", "gui_support"]

HEADLESS_HINT = (
    "use --headless with --mask, --points or --box (the overlay goes to --record), or install "
    "OpenCV with GUI support: pip install opencv-python (in place of opencv-python-headless)"
)
HELP_LINE = "left click +  right/shift click -  drag: box  1-9: object  u: undo  c: clear  Enter: start  q: quit"
_DRAG_PX = 6  # a press and release further apart than this is a box, not a click


def gui_support(cv2: Any = None) -> str | None:
    """None when OpenCV can open a window here; otherwise the reason, for the user."""
    if cv2 is None:
        try:
            cv2 = require_cv2("the live window")
        except ImportError as exc:
            return str(exc)
    m = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if m is None or m.group(1).upper() == "NONE":
        return "this OpenCV has no GUI support (opencv-python-headless)"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "there is no display (DISPLAY is not set)"
    return None


class Window:
    """An OpenCV window showing RGB frames; :meth:`show` returns False when the user quits
    (q, Esc, or closing the window)."""

    def __init__(self, title: str = "surgsam live"):
        self.cv2 = require_cv2("the live window")
        self.title = title
        self.cv2.namedWindow(title, self.cv2.WINDOW_NORMAL)

    def show(self, image: np.ndarray, wait_ms: int = 1) -> bool:
        self.cv2.imshow(self.title, np.ascontiguousarray(image[:, :, ::-1]))
        key = self.cv2.waitKey(wait_ms) & 0xFF
        return key not in (ord("q"), 27) and self.visible()

    def key(self, image: np.ndarray, wait_ms: int = 30) -> int:
        """Show ``image`` and return the key pressed within ``wait_ms`` (-1: none)."""
        self.cv2.imshow(self.title, np.ascontiguousarray(image[:, :, ::-1]))
        k = self.cv2.waitKey(wait_ms)
        return -1 if k < 0 else k & 0xFF

    def visible(self) -> bool:
        try:
            return self.cv2.getWindowProperty(self.title, self.cv2.WND_PROP_VISIBLE) >= 1
        except self.cv2.error:
            return False

    def on_mouse(self, callback: Callable[[int, int, int, int, Any], None]) -> None:
        self.cv2.setMouseCallback(self.title, callback)

    def close(self) -> None:
        try:
            self.cv2.destroyWindow(self.title)
        except self.cv2.error:
            pass


class ClickPrompter:
    """Prompts clicked on the first frame (callable as ``prompts(frame)`` for :func:`run_live`).

    Left click: positive point; right click or shift + left click: negative point; drag with
    the left button: a box; keys 1-9: the object the next prompts belong to; u: undo; c: clear;
    Enter or space: start tracking; q or Esc: quit. ``preview(frame, prompts)`` (optional)
    gives the masks the prompts produce, drawn under them.
    """

    def __init__(
        self,
        window: Window | None,
        cv2: Any = None,
        preview: Callable[[np.ndarray, Sequence[ObjectPrompt]], FrameResult | None] | None = None,
    ):
        if cv2 is None:
            if window is None:
                raise ValueError("ClickPrompter needs a window or the cv2 module")
            cv2 = window.cv2
        self.window = window
        self.cv2 = cv2
        self.preview = preview
        self.obj_id = 1
        self.book: PromptBook | None = None
        self.message = ""
        self._press: tuple[int, int] | None = None
        self._drag: tuple[int, int, int, int] | None = None
        self.dirty = True

    # -- events (public so they can be driven without a window) --------------------------------
    def start(self, frame: np.ndarray) -> None:
        self.book = PromptBook((frame.shape[0], frame.shape[1]), 1)
        self.dirty = True

    def _book(self) -> PromptBook:
        if self.book is None:
            raise RuntimeError("no frame to prompt on yet: call start(frame) first")
        return self.book

    def mouse(self, event: int, x: int, y: int, flags: int, _param: Any = None) -> None:
        c = self.cv2
        try:
            if event == c.EVENT_LBUTTONDOWN:
                self._press = (x, y)
            elif event == c.EVENT_MOUSEMOVE and self._press is not None and flags & c.EVENT_FLAG_LBUTTON:
                self._drag = (*self._press, x, y)
                self.dirty = True
            elif event == c.EVENT_LBUTTONUP and self._press is not None:
                (x0, y0), self._press, self._drag = self._press, None, None
                if abs(x - x0) > _DRAG_PX and abs(y - y0) > _DRAG_PX:
                    box = (min(x0, x), min(y0, y), max(x0, x), max(y0, y))
                    self.message = self._book().set_box(self.obj_id, 0, box)
                else:
                    negative = bool(flags & c.EVENT_FLAG_SHIFTKEY)
                    self.message = self._book().add_click(self.obj_id, 0, x, y, positive=not negative)
                self.dirty = True
            elif event == c.EVENT_RBUTTONUP:
                self.message = self._book().add_click(self.obj_id, 0, x, y, positive=False)
                self.dirty = True
        except PromptError as exc:
            self.message, self.dirty = str(exc), True

    def key(self, k: int) -> list[Prompt] | None | Literal[True]:
        """Handle a key: the prompts (start), None (quit), or True (go on)."""
        if k in (13, 10, 32):
            prompts = self._book().prompts()
            if prompts:
                return prompts
            self.message, self.dirty = "click an object first", True
        elif k in (ord("q"), 27):
            return None
        elif ord("1") <= k <= ord("9"):
            self.obj_id, self.message, self.dirty = k - ord("0"), f"now prompting object {k - ord('0')}", True
        elif k == ord("u"):
            self.message, self.dirty = self._book().undo(), True
        elif k == ord("c"):
            self.message, self.dirty = self._book().clear(), True
        return True

    def render(self, frame: np.ndarray) -> np.ndarray:
        from ..io import draw_overlay

        img = frame
        if self.preview is not None and self._book().on_frame(0):
            try:
                res = self.preview(frame, self._book().on_frame(0))
                if res is not None:
                    img = draw_overlay(frame, res.obj_ids, res.masks)
            except ValueError as exc:
                self.message = f"preview failed: {exc}"
        img = self._book().draw(img, 0)
        if self._drag is not None:
            from PIL import Image, ImageDraw

            pil = Image.fromarray(img)
            x0, y0, x1, y1 = self._drag
            ImageDraw.Draw(pil).rectangle(
                (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), outline=(255, 255, 255), width=2
            )
            img = np.asarray(pil)
        lines = [HELP_LINE, f"object {self.obj_id}" + (f": {self.message}" if self.message else "")]
        return draw_overlay(img, text=lines)

    # -- the loop ------------------------------------------------------------------------------
    def __call__(self, frame: np.ndarray) -> list[Prompt] | None:
        if self.window is None:
            raise RuntimeError("ClickPrompter needs a window to run its loop")
        self.start(frame)
        self.window.on_mouse(self.mouse)
        img = frame
        while True:
            if self.dirty:
                img, self.dirty = self.render(frame), False
            out = self.key(self.window.key(img)) if self.window.visible() else None
            if out is not True:
                return out
