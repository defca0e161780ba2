"""raise_on_signals: the one signal-to-exception context of the server and live mode."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from surgsam.app.signals import raise_on_signals


class Stop(Exception):
    pass


def test_signal_raises_in_the_block_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(Stop, match=str(int(signal.SIGUSR1))):
        with raise_on_signals([signal.SIGUSR1], lambda n: Stop(n)):
            os.kill(os.getpid(), signal.SIGUSR1)
            signal.sigtimedwait([], 0)  # let the handler run (signals arrive between bytecodes)
    assert signal.getsignal(signal.SIGUSR1) is before


def test_once_ignores_a_second_signal_while_the_run_winds_up():
    seen = []
    with raise_on_signals([signal.SIGUSR1], lambda n: Stop(n), once=True):
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            signal.sigtimedwait([], 0)
        except Stop:
            seen.append("first")
        os.kill(os.getpid(), signal.SIGUSR1)  # ignored: winding up is not interrupted
        signal.sigtimedwait([], 0)
        seen.append("wound up")
    assert seen == ["first", "wound up"]


def test_off_the_main_thread_the_block_runs_unchanged():
    before = signal.getsignal(signal.SIGUSR1)
    seen = []

    def worker():
        with raise_on_signals([signal.SIGUSR1], lambda n: Stop(n)):
            seen.append(signal.getsignal(signal.SIGUSR1))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [before]
