"""agent/stopflag.py: stop flags a signal handler may set, and the parent-death pipe."""

from __future__ import annotations

import os
import signal
import threading

from agent.stopflag import ParentStop, StopFlag


def test_a_signal_handler_wakes_a_waiting_flag() -> None:
    flag = StopFlag()
    old = signal.signal(signal.SIGUSR1, lambda *_: flag.set())
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        assert flag.wait(60)  # woken by the handler: wait() returns True, not on timeout
        assert flag.is_set()
    finally:
        signal.signal(signal.SIGUSR1, old)
        flag.close()


def test_another_thread_sets_the_flag() -> None:
    flag = StopFlag()
    assert not flag.is_set() and not flag.wait(0)
    threading.Timer(0.1, flag.set).start()
    assert flag.wait(60)
    flag.set()  # twice is fine
    flag.close()
    assert flag.is_set() and flag.wait(0)  # closed: still answers from the flag


def test_parent_stop_ends_when_the_write_end_closes() -> None:
    r, w = os.pipe()
    stop = ParentStop(r)
    assert not stop.is_set() and not stop.wait(0.01)
    os.close(w)  # the parent closed it (stop) or died
    assert stop.is_set() and stop.wait(0)
    stop.close()
    os.close(r)
