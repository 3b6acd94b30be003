"""Error handling shared by every command-line tool: one clear line, a documented exit code.

Wrap a CLI's ``main(argv) -> int`` with :func:`cli_main`::

    @cli_main("python -m physnetjax.md")
    def main(argv=None) -> int:
        ...

An exception raised inside becomes one line on stderr, ``PROG: error: MESSAGE``
(the library's messages say what, where and how to fix it), and the exit code
below; ``--verbose`` on the command line prints the traceback first. While ``main`` runs,
SIGTERM (``kill PID``, what a batch scheduler sends at its time limit) is handled as Ctrl-C:
it raises :class:`Terminated`, a ``KeyboardInterrupt``, so a tool saves what it saves after
Ctrl-C and prints its resume hint (before, SIGTERM ended a training run like ``kill -9``,
its unwritten checkpoints lost), and exits 143. Warnings printed during the call read
``PROG: warning: MESSAGE`` (with ``--verbose``, Python's form with the file and line that
warned), and so do log records of level WARNING and up with :func:`configure_logging` (with
``--verbose``: INFO and up, ``LEVEL logger: MESSAGE``).

A missing input (``FileNotFoundError``, :class:`~physnetjax.errors.InputNotFoundError`)
reads ``OPTION PATH does not exist``, e.g. ``--geometry g.xyz does not exist`` (``--geometry
g.xyz (from --config run.toml) does not exist`` for a config file's value):
:func:`physnetjax.cli_config.parse_args` names each path by its option with :func:`name_input`.
Any other message that begins with such a path names its option the same way: ``--data
inp/a.npz: cannot read as .npz: ...``.

Exit codes (every physnetjax CLI):

====  ==========================================================================
0     success
1     the tool ran and its verdict is negative (``check``: a check failed;
      ``migrate``: the migrated network does not reproduce the original)
2     bad input: an argument value, a missing, unreadable or corrupt file, invalid
      data, geometry or checkpoint, a missing optional dependency such as
      matplotlib for plots (argparse's usage errors are 2 as well), or an input too
      large for the device's memory (``OutOfMemoryError``, XLA's ``RESOURCE_EXHAUSTED``)
3     output refused: an existing run directory or checkpoint the tool would not
      replace, an output directory that is missing or not writable, or a write the
      file system refused (disk full, quota exceeded, read-only; the message says
      which file and what was kept) (output
      files of md, eval, check, spectra and data.generate are replaced). An output
      file's folder must exist; an output directory (run, checkpoint, report) is
      created with its missing folders
4     a run stopped because its numbers went bad (MD NaN/absurd force/energy not
      conserved, training loss NaN, failed force check); the message says what was saved
5     internal error (a bug): please report it with the ``--verbose`` traceback
130   interrupted (Ctrl-C)
143   terminated (SIGTERM; 128 + 15, as a shell reports it), handled as Ctrl-C
====  ==========================================================================
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import re
import signal
import sys
import threading
import traceback
import warnings
from pathlib import Path
from typing import Callable, Iterator, NoReturn, Optional

from physnetjax.errors import (FULL_DISK_ERRNOS, InputNotFoundError, OutOfMemoryError, OutputPathError,
                               RunStoppedError, is_out_of_memory)

EXIT_OK = 0
EXIT_VERDICT = 1
EXIT_INPUT = 2
EXIT_OUTPUT = 3
EXIT_RUN_STOPPED = 4
EXIT_INTERNAL = 5
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM (15), as a shell reports a process that SIGTERM ended

_INPUT_NAMES: contextvars.ContextVar[Optional[dict]] = contextvars.ContextVar("physnetjax_input_names", default=None)
"""Path → how the running :func:`cli_main` call names it (``--geometry g.xyz``); None outside such a call."""


class Terminated(KeyboardInterrupt):
    """SIGTERM received while a :func:`cli_main` ``main`` runs: an interrupt like Ctrl-C, of exit code 143."""


def _terminate(signum, frame) -> NoReturn:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """In the main thread, SIGTERM raises :class:`Terminated` while the block runs (elsewhere nothing changes:
    Python runs signal handlers in the main thread only); the previous handler is restored afterwards, so a second
    SIGTERM while the error line is printed ends the process as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def exit_code(error: BaseException) -> int:
    """The exit code of the table in the module docstring for ``error``."""
    if isinstance(error, Terminated):
        return EXIT_TERMINATED
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, (OutputPathError, FileExistsError, PermissionError, IsADirectoryError)):
        return EXIT_OUTPUT
    if isinstance(error, OSError) and error.errno in FULL_DISK_ERRNOS:  # a refused write: disk full, quota, ...
        return EXIT_OUTPUT
    if isinstance(error, (RunStoppedError, FloatingPointError)):
        return EXIT_RUN_STOPPED
    if isinstance(error, (ValueError, OSError, ImportError)) or is_out_of_memory(error):
        return EXIT_INPUT
    return EXIT_INTERNAL


def name_input(path, name: str) -> None:
    """Within a :func:`cli_main` call, report ``path`` as ``NAME does not exist`` should it be missing.

    ``name`` says where the path came from, e.g. ``--geometry g.xyz``. The first name given to a path keeps it: a
    path given to an input and an output option (``--data X --write-predictions X``) is missing as the input, which
    the parsers declare first. Outside a call it does nothing.
    """
    names = _INPUT_NAMES.get()
    if names is not None:
        names.setdefault(os.fspath(path), name)


def _input_name(path) -> str:
    """How the running call named ``path`` (the same string, or the same file by another spelling); else the path."""
    names = _INPUT_NAMES.get() or {}
    path = os.fspath(path)
    if path in names:
        return names[path]
    resolved = Path(path).resolve()
    return next((name for given, name in names.items() if Path(given).resolve() == resolved), path)


def _named_leading_path(message: str) -> str:
    """``message`` with the file or directory it begins with (as given, or the same one by another spelling)
    named by the option that gave it (:func:`name_input`): ``inp/a.npz: not an .npz file`` reads ``--data
    inp/a.npz: not an .npz file`` (and ``inp/a.npz[3]: ...`` of a frame ``--data inp/a.npz[3]: ...``)."""
    head = re.match(r"[^\s:\[]+", message)
    if head is None or not Path(head.group()).exists():
        return message
    name = _input_name(head.group())
    return message if name == head.group() else name + message[head.end():]


def _missing_path(error: BaseException):
    """The path a missing-input error is about, or None for any other error."""
    if isinstance(error, FileNotFoundError) and isinstance(error.filename, (str, os.PathLike)):
        return error.filename
    if isinstance(error, InputNotFoundError) and error.path is not None:
        return error.path
    return None


def error_line(prog: str, error: BaseException, resume_hint: str = "") -> str:
    """``PROG: error: MESSAGE`` on one line (an internal error names its type and asks for --verbose).

    A missing input reads ``PROG: error: OPTION PATH does not exist`` (see :func:`name_input`); an interrupt
    ``PROG: interrupted`` (after SIGTERM ``PROG: terminated (SIGTERM)``), followed by ``; RESUME_HINT`` when the
    tool has one: the interrupt's own ``resume_hint`` attribute (set by a tool that knows what it interrupted, e.g.
    the run directory), else ``resume_hint``.
    """
    code = exit_code(error)
    if isinstance(error, KeyboardInterrupt):
        hint = getattr(error, "resume_hint", None) or resume_hint
        stopped = "terminated (SIGTERM)" if code == EXIT_TERMINATED else "interrupted"
        return f"{prog}: {stopped}" + (f"; {hint}" if hint else "")
    message = " ".join(_text(error).split()) or type(error).__name__
    if code == EXIT_INTERNAL:
        return (f"{prog}: internal error ({type(error).__name__}: {message}); please report it with the "
                "traceback that --verbose prints")
    missing = _missing_path(error)
    if missing is not None:
        message = f"{_input_name(missing)} does not exist"
    else:
        message = _named_leading_path(message)
    if isinstance(error, OSError) and error.errno in FULL_DISK_ERRNOS and error.filename is None:
        message = (f"an output file could not be written ({error.strerror or message}); free space on the file "
                   "system of the outputs and run it again (--verbose shows where)")
    if is_out_of_memory(error) and not isinstance(error, OutOfMemoryError):
        message = (f"out of memory on the device ({message}): the input is too large for it; use a smaller batch or "
                   "system, or a device with more memory")
    return f"{prog}: error: {message}"


def _text(error: BaseException) -> str:
    """``str(error)``, except for an OSError that holds a message and a filename but no errno (``OSError(text)``
    given a ``filename`` afterwards): Python prints that as ``[Errno None] None: 'FILE'``, losing the text; here it
    reads ``FILE: TEXT``."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror is None:
        text = " ".join(str(arg) for arg in error.args)
        return f"{error.filename}: {text}" if text else str(error.filename)
    return str(error)


def exit_process(code: int) -> NoReturn:
    """End a command-line process with ``code`` (what a :func:`cli_main` ``main`` returned).

    After Ctrl-C or SIGTERM (:data:`EXIT_INTERRUPTED`, :data:`EXIT_TERMINATED`) the process ends at once with its
    streams flushed (``os._exit``): an interrupt during a JAX compilation leaves XLA threads running, and the
    interpreter's shutdown then crashed with SIGSEGV instead of exiting 130. Everything the tools write is closed by
    then (``finally`` blocks).
    """
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


class _ToolLine(logging.Formatter):
    """``PROG: warning: MESSAGE``: a log record as one line in the form of the tool's warnings and errors."""

    def __init__(self, prog: str):
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        return f"{self.prog}: {record.levelname.lower()}: {' '.join(record.getMessage().split())}"


def configure_logging(prog: str, verbose: bool) -> None:
    """Send the log records of a command-line run to stderr: WARNING and up as ``PROG: warning: MESSAGE`` lines,
    or with ``verbose`` INFO and up as ``LEVEL logger: MESSAGE`` (which module said it)."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(_ToolLine(prog))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def cli_main(prog: str, resume_hint: str = "") -> Callable:
    """Decorator for ``main(argv=None) -> int``: errors become one line and an exit code (see module docstring).

    ``resume_hint`` says how to continue after Ctrl-C or SIGTERM (e.g. "rerun the same command to continue").
    ``SystemExit`` (argparse, ``--help``) passes through unchanged. Called in the main thread, ``main`` runs with
    SIGTERM raising :class:`Terminated` (the previous handler is restored afterwards).
    """

    def decorate(main: Callable) -> Callable:
        @functools.wraps(main)
        def wrapped(argv=None) -> int:
            verbose = "--verbose" in (sys.argv[1:] if argv is None else list(argv))
            python_format = warnings.formatwarning
            if not verbose:
                warnings.formatwarning = lambda message, *_, **__: f"{prog}: warning: {message}\n"
            names = _INPUT_NAMES.set({})
            try:
                with _sigterm_interrupts():
                    return main(argv)
            except (Exception, KeyboardInterrupt) as error:
                if verbose:
                    traceback.print_exc()
                print(error_line(prog, error, resume_hint), file=sys.stderr)
                return exit_code(error)
            finally:
                _INPUT_NAMES.reset(names)
                warnings.formatwarning = python_format

        return wrapped

    return decorate
