"""Error handling shared by every command-line tool: one clear line, a documented exit code.

Wrap a CLI's ``main(argv) -> int`` with :func:`cli_main`::

    @cli_main("python -m physnetjax.md")
    def main(argv=None) -> int:
        ...

An exception raised inside becomes one line on stderr, ``PROG: error: MESSAGE``
(the library's messages say what, where and how to fix it), and the exit code
below; ``--verbose`` on the command line prints the traceback first. Warnings
printed during the call read ``PROG: warning: MESSAGE`` (with ``--verbose``, Python's
form with the file and line that warned).

Exit codes (every physnetjax CLI):

====  ==========================================================================
0     success
1     the tool ran and its verdict is negative (``check``: a check failed;
      ``migrate``: the migrated network does not reproduce the original)
2     bad input: an argument value, a missing, unreadable or corrupt file, invalid
      data, geometry or checkpoint, or a missing optional dependency such as
      matplotlib for plots (argparse's usage errors are 2 as well)
3     output refused: an existing run directory or checkpoint the tool would not
      replace, or an output directory that is missing or not writable (output
      files of md, eval, check, spectra and data.generate are replaced)
4     a run stopped because its numbers went bad (MD NaN/absurd force/energy not
      conserved, training loss NaN, failed force check); the message says what was saved
5     internal error (a bug): please report it with the ``--verbose`` traceback
130   interrupted (Ctrl-C)
====  ==========================================================================
"""

from __future__ import annotations

import functools
import sys
import traceback
import warnings
from typing import Callable

from physnetjax.errors import OutputPathError, RunStoppedError

EXIT_OK = 0
EXIT_VERDICT = 1
EXIT_INPUT = 2
EXIT_OUTPUT = 3
EXIT_RUN_STOPPED = 4
EXIT_INTERNAL = 5
EXIT_INTERRUPTED = 130


def exit_code(error: BaseException) -> int:
    """The exit code of the table in the module docstring for ``error``."""
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, (OutputPathError, FileExistsError, PermissionError, IsADirectoryError)):
        return EXIT_OUTPUT
    if isinstance(error, (RunStoppedError, FloatingPointError)):
        return EXIT_RUN_STOPPED
    if isinstance(error, (ValueError, OSError, ImportError)):
        return EXIT_INPUT
    return EXIT_INTERNAL


def error_line(prog: str, error: BaseException) -> str:
    """``PROG: error: MESSAGE`` on one line (an internal error names its type and asks for --verbose)."""
    code = exit_code(error)
    if code == EXIT_INTERRUPTED:
        return f"{prog}: interrupted"
    message = " ".join(str(error).split()) or type(error).__name__
    if code == EXIT_INTERNAL:
        return (f"{prog}: internal error ({type(error).__name__}: {message}); please report it with the "
                "traceback that --verbose prints")
    if isinstance(error, OSError) and error.filename is not None and str(error.filename) not in message:
        message = f"{error.filename}: {message}"
    return f"{prog}: error: {message}"


def cli_main(prog: str) -> Callable:
    """Decorator for ``main(argv=None) -> int``: errors become one line and an exit code (see module docstring).

    ``SystemExit`` (argparse, ``--help``) passes through unchanged.
    """

    def decorate(main: Callable) -> Callable:
        @functools.wraps(main)
        def wrapped(argv=None) -> int:
            verbose = "--verbose" in (sys.argv[1:] if argv is None else list(argv))
            python_format = warnings.formatwarning
            if not verbose:
                warnings.formatwarning = lambda message, *_, **__: f"{prog}: warning: {message}\n"
            try:
                return main(argv)
            except (Exception, KeyboardInterrupt) as error:
                if verbose:
                    traceback.print_exc()
                print(error_line(prog, error), file=sys.stderr)
                return exit_code(error)
            finally:
                warnings.formatwarning = python_format

        return wrapped

    return decorate
