"""One training process per run directory: a lock file held while a run is set up and trained.

Two ``python -m physnetjax.train --out DIR`` started together both reported success: until its first checkpoint
a live run looks like one that stopped early, so the second process removed the first one's files and trained in
the same directory (``metrics.csv`` interleaved, ``best`` and ``split.npz`` of one seed, the log of the other
naming them). :func:`run_lock` creates ``DIR/.lock`` (``O_EXCL``: atomic) holding the host name and process id,
and removes it when the run ends. A lock whose process no longer runs on this host (a run killed with ``kill -9``)
is taken over; one of a live process, or of another host, is refused. ``python -m physnetjax.learn`` holds the
same lock on its ``--out`` for its whole run (a second loop there took the first one's round in progress for an
interrupted one and removed it); its rounds train in subdirectories, each under a lock of its own.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from physnetjax.errors import OutputPathError

LOCK_NAME = ".lock"
"""The lock file in a run directory."""


class RunLockedError(OutputPathError):
    """Another process runs in the run directory (CLI exit 3, as for other unusable outputs)."""


FRESH_LOCK_S = 10.0
"""Seconds for which a lock file without a readable holder counts as being written (taken), not as left over."""


def _holder(lock: Path) -> tuple[str, int]:
    """(host, pid) written in ``lock``; ("", 0) for an unreadable or partly written one."""
    try:
        host, pid = lock.read_text(encoding="utf-8").split()
        return host, int(pid)
    except (OSError, ValueError):
        return "", 0


def _age_s(lock: Path) -> float:
    try:
        return time.time() - lock.stat().st_mtime
    except OSError:
        return 0.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return pid > 0


@contextlib.contextmanager
def run_lock(run_dir: Path, process: str = "training") -> Iterator[None]:
    """Hold ``run_dir``/:data:`LOCK_NAME` while the block runs (``run_dir`` must exist).

    ``process`` names the kind of process the directory is for in the refusal: "training", or "learning"
    (``python -m physnetjax.learn``, whose rounds train in subdirectories under locks of their own).

    Raises:
      RunLockedError: a live process on this host, or a process on another host, holds it.
    """
    lock = Path(run_dir) / LOCK_NAME
    mine = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            host, pid = _holder(lock)
            if host and host != socket.gethostname():
                raise RunLockedError(f"{run_dir} is in use by a {process} process on host {host} (pid {pid}, "
                                     f"{lock}): wait for it, or pick another --out; remove {lock} if no process "
                                     "runs there") from None
            if (pid and _alive(pid)) or (not pid and _age_s(lock) < FRESH_LOCK_S):
                raise RunLockedError(f"{run_dir} is in use by another {process} process"
                                     + (f" (pid {pid})" if pid else "") + ": wait for it to end, or pick another "
                                     "--out") from None
            lock.unlink(missing_ok=True)  # its process is gone (killed): take the directory over
            continue
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(mine)
        break
    else:
        raise RunLockedError(f"{run_dir}: could not take {lock} (another process keeps creating it)")
    try:
        yield
    finally:
        if _holder(lock) == (socket.gethostname(), os.getpid()):
            lock.unlink(missing_ok=True)
