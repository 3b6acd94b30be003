"""Progress of ``python -m physnetjax.data.generate``: rich bars on a terminal, a few plain lines elsewhere.

:func:`physnetjax.data.generate.generate` reports ``progress(phase, done, total)`` as it
goes, ``total`` None while unknown (a relaxation's step count). The phases, in their units
(:data:`PHASE_UNITS`): MD sampling runs ``equilibration`` then ``labelling``; normal-mode
sampling ``relaxation``, ``Hessian`` then ``labelling``. A phase is timed from its first
report when that counts 0, else from the report before (the end of the phase before, or the
start of the reporter).

:class:`GenerateProgress` shows them on stderr: on a terminal a rich bar per phase with its
rate, elapsed time and the time left (ETA); elsewhere (a CI log, a pipe, a file) one plain
line at a phase's first report and at its end, and between them whenever it has come another
tenth of the way (:data:`PLAIN_STEPS`) at least :data:`PLAIN_MIN_INTERVAL_S` after its last
line, or a minute has passed (:data:`PLAIN_INTERVAL_S`): a few dozen lines for a run of hours,
never one a step, and no stream of them for a run of seconds.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

PHASE_UNITS = {"equilibration": "MD steps", "relaxation": "BFGS steps", "Hessian": "force calls",
               "labelling": "frames"}
"""Phase → what its counts count."""

PLAIN_STEPS = 10
"""Off a terminal a line is due each time a phase passes another of its ``1/PLAIN_STEPS`` marks."""

PLAIN_MIN_INTERVAL_S = 5.0
"""Seconds at least between two plain lines within a phase (but its first and last)."""

PLAIN_INTERVAL_S = 60.0
"""Seconds after which a plain line is written whatever the fraction done."""


def duration(seconds: float) -> str:
    """``41 s``, ``2 min 10 s``, ``3 h 05 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_detail(done: int, total: Optional[int], elapsed: float, unit: str) -> str:
    """``12.3 MD steps/s, 41 s elapsed, ETA 2 min 10 s``: the mean rate of the phase so far, and the time left at that
    rate (no rate before the first count, no ETA without a total)."""
    if done <= 0 or elapsed <= 0:
        return f"{duration(elapsed)} elapsed"
    rate = done / elapsed
    parts = [f"{rate:.3g} {unit}/s", f"{duration(elapsed)} elapsed"]
    if total is not None and done < total:
        parts.append(f"ETA {duration((total - done) / rate)}")
    return ", ".join(parts)


class GenerateProgress:
    """Context manager: the ``progress(phase, done, total)`` callable of :func:`~physnetjax.data.generate.generate`
    (module docstring), shown on ``console`` (default: a rich console on stderr) as bars on a terminal and as plain
    lines elsewhere; ``clock`` gives seconds. Leaving it stops the bars (after Ctrl-C too), so an error line
    follows them."""

    def __init__(self, console=None, clock: Callable[[], float] = time.monotonic):
        from rich.console import Console

        self._console = Console(stderr=True) if console is None else console
        self._clock = clock
        self._bars = None
        self._phase = self._task = None
        self._start = self._last_report = self._line_time = 0.0
        self._line_done = 0

    def __enter__(self) -> "GenerateProgress":
        self._last_report = self._clock()
        if self._console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[unit]}  {task.fields[detail]}"), console=self._console)
            self._bars.start()
        return self

    def __exit__(self, *exc) -> bool:
        if self._bars is not None:
            self._bars.stop()
        return False

    def __call__(self, phase: str, done: int, total: Optional[int]) -> None:
        now = self._clock()
        unit = PHASE_UNITS[phase]
        first = phase != self._phase
        if first:
            self._phase, self._start = phase, now if done == 0 else self._last_report
            self._task = None if self._bars is None else self._bars.add_task(phase, total=total, unit=unit, detail="")
        self._last_report = now
        detail = progress_detail(done, total, now - self._start, unit)
        if self._bars is not None:
            self._bars.update(self._task, completed=done, total=total, detail=detail)
            return
        since = now - self._line_time
        marked = bool(total) and done * PLAIN_STEPS // total > self._line_done * PLAIN_STEPS // total
        if first or done == total or since >= PLAIN_INTERVAL_S or (marked and since >= PLAIN_MIN_INTERVAL_S):
            self._line_time, self._line_done = now, done
            of = f"/{total}" if total is not None else ""
            share = f" ({done / total:.0%})" if total else ""
            self._console.file.write(f"{phase}: {done}{of} {unit}{share}, {detail}\n")
            self._console.file.flush()
