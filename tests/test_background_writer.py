"""The trainer's background checkpoint writer: one write at a time, in order, errors raised in the caller."""

import signal
import threading
import time

import pytest

from physnetjax.train.background import BackgroundWriter


def test_writes_run_one_at_a_time_in_order_and_errors_reach_the_caller():
    writer = BackgroundWriter()
    release = threading.Event()
    log = []

    def slow_write(name):
        release.wait(timeout=10)
        log.append(name)

    writer.submit(slow_write, "first")
    assert log == []  # submit returned while the write is still blocked
    release.set()
    writer.submit(log.append, "second")  # waits for "first" before starting
    writer.wait()
    assert log == ["first", "second"]

    def failing_write():
        raise OSError("disk full")

    writer.submit(failing_write)
    with pytest.raises(OSError, match="disk full"):
        writer.wait()
    writer.wait()  # the error is raised once
    writer.submit(failing_write)
    with pytest.raises(OSError, match="disk full"):
        writer.submit(log.append, "third")  # the next submit reports the previous failure
    assert log == ["first", "second"]


def test_an_interrupt_while_waiting_keeps_the_write_pending():
    """On main wait() forgot the write before joining it: after Ctrl-C there the next wait() returned at once,
    and the process could exit while the checkpoint was still being written."""
    writer = BackgroundWriter()
    release = threading.Event()
    log = []

    def slow_write():
        release.wait(timeout=10)
        time.sleep(0.2)
        log.append("written")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        writer.submit(slow_write)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(KeyboardInterrupt):
            writer.wait()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    release.set()
    writer.wait()
    assert log == ["written"]


def test_a_failed_write_is_raised_without_waiting_for_a_running_one():
    """A failed write was raised only at the next submit (checkpoint_interval_s later) or the run's end: on a full
    disk a long run trained on for minutes without saving anything."""
    writer = BackgroundWriter()
    release, finished = threading.Event(), threading.Event()

    def slow_write():
        release.wait(timeout=10)
        finished.set()

    writer.submit(slow_write)
    writer.raise_if_failed()  # returns at once while the write runs
    assert not finished.is_set()
    release.set()
    writer.wait()

    def failing_write():
        raise OSError("disk full")

    writer.submit(failing_write)
    writer._done.wait(timeout=10)
    with pytest.raises(OSError, match="disk full"):
        writer.raise_if_failed()
    writer.raise_if_failed()  # raised once
    writer.wait()
