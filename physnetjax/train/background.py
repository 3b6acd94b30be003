"""One background thread for checkpoint writes, so training goes on while a checkpoint is written.

Writes run one at a time and in submission order: :meth:`BackgroundWriter.submit`
first waits for the previous write, so at most one is in flight and the
``latest``/``best`` links always move forward. A write's exception is raised in
the training thread at the next :meth:`~BackgroundWriter.submit`,
:meth:`~BackgroundWriter.wait` or :meth:`~BackgroundWriter.raise_if_failed` (the trainer calls
it every epoch, so a failed write, e.g. on a full disk, stops the run within an epoch, not at the
next write minutes later). A process killed during a write leaves the
previous complete checkpoint in place (the checkpoint writer's own guarantee), so
the run resumes from there exactly.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional


class BackgroundWriter:
    """Runs submitted write functions on a background thread, one at a time."""

    def __init__(self):
        self._done: Optional[threading.Event] = None
        self._error: Optional[BaseException] = None

    def submit(self, write: Callable, *args) -> None:
        """Wait for the previous write (raising its error), then start ``write(*args)`` in the background."""
        self.wait()
        done = threading.Event()

        def run():
            try:
                write(*args)
            except BaseException as error:  # handed to the training thread by wait()
                self._error = error
            finally:
                done.set()

        self._done = done
        threading.Thread(target=run, name="checkpoint-writer").start()

    def raise_if_failed(self) -> None:
        """Re-raise the exception of a write that has finished with one; return at once while a write still runs."""
        if self._done is not None and self._done.is_set():
            self.wait()

    def wait(self) -> None:
        """Block until the pending write (if any) is done; re-raise its exception.

        The write is forgotten only once it has finished: an exception raised in the
        waiting thread (Ctrl-C) leaves it pending, so the next ``wait`` still waits for it.
        (It waits on an event the write sets: an interrupted ``Thread.join`` marks the
        thread as finished although it still runs.)
        """
        if self._done is not None:
            self._done.wait()
            self._done = None
        error, self._error = self._error, None
        if error is not None:
            raise error
