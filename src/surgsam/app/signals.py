"""Signals that end a run, as exceptions: one context manager for the server and live mode."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["raise_on_signals"]


@contextmanager
def raise_on_signals(
    signums: Iterable[int], make_error: Callable[[int], BaseException], *, once: bool = False
) -> Iterator[None]:
    """While the block runs, each signal of ``signums`` raises ``make_error(signum)`` in the main
    thread (where Python runs signal handlers); the earlier handlers are back afterwards. Off the
    main thread, where handlers cannot be set, the block runs unchanged. ``once``: only the first
    signal raises and later ones are ignored, so the interrupted run can still wind up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if once and fired:
            return
        fired.append(signum)
        raise make_error(signum)

    old = {n: signal.signal(n, handler) for n in signums}
    try:
        yield
    finally:
        for n, h in old.items():
            signal.signal(n, h)
