"""The trainer's background checkpoint writer: one write at a time, in order, errors raised in the caller."""

import threading

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
