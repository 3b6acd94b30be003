"""The library's own error and warning types (shared by every room, imported by none of them upward).

* :class:`PhysNetInputError` (a ``ValueError``): an input no model can evaluate
  meaningfully — a structure, a data frame, an argument value. Subclasses:
  :class:`OutputPathError`, :class:`InputNotFoundError`, :class:`OutOfMemoryError` (a structure too large for the
  device), :class:`physnetjax.data.DataError`;
  the checkpoint package's ``CheckpointError`` is a ``ValueError`` too.
* :class:`PhysNetInputWarning`: an input the model evaluates, but by extrapolation.
  Subclasses: :class:`LengthUnitWarning`, :class:`CloseContactWarning`.
* :class:`RunStoppedError` (a ``RuntimeError``): a run (MD, training) stopped because
  its numbers went bad; the message names what was saved and where.

:mod:`physnetjax.cli_errors` maps each of them to one exit code. A check that a command line runs
too names the arguments in its messages with :func:`displayed` (and a setting with its value with
:func:`displayed_setting`): by keyword, or by the option the command line passes for it. Every warning is issued with
:func:`warn_caller`, so that it names the line of the user's code that asked.
"""

import contextlib
import errno
import functools
import importlib.util
import os
import sys
import sysconfig
import warnings
from typing import Callable, Iterator, Mapping, Optional

CALLED_THROUGH = ("physnetjax", "ase", "jax", "flax")
"""Packages whose frames a warning skips to reach the user's line (physnetjax itself and the libraries that call it:
ASE's ``atoms.get_forces()`` calls the calculator, JAX traces a model). The standard library's frames (``contextlib``
running a ``with`` block's exit, ``runpy`` running ``python -m``) are skipped too."""


def _folders(locations) -> tuple[str, ...]:
    """``locations`` and their real paths, each ending in a separator (prefixes of the files inside)."""
    return tuple({os.path.join(path, "") for location in locations for path in (location, os.path.realpath(location))})


@functools.cache
def _library_folders() -> tuple[str, ...]:
    """Source folders of :data:`CALLED_THROUGH`, found without importing the packages."""
    specs = [importlib.util.find_spec(name) for name in CALLED_THROUGH]
    return _folders([location for spec in specs if spec is not None
                     for location in spec.submodule_search_locations or []])


@functools.cache
def _standard_library_folders() -> tuple[str, ...]:
    return _folders(filter(None, (sysconfig.get_paths().get(key) for key in ("stdlib", "platstdlib"))))


def _skipped(filename: str) -> bool:
    """Whether a frame of ``filename`` is one a warning passes through: :data:`CALLED_THROUGH`, the interpreter's
    frozen modules and the standard library, but not the packages installed in its ``site-packages``."""
    if filename.startswith("<frozen ") or filename.startswith(_library_folders()):
        return True
    installed = {"site-packages", "dist-packages"} & set(filename.split(os.sep))
    return filename.startswith(_standard_library_folders()) and not installed


def warn_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` attributed to the first frame that is the user's (:func:`_skipped`).

    The warning then names the user's line that asked (``atoms.get_forces()``, ``simulate(...)``), not the line deep
    in physnetjax that found the problem, whatever the depth between them (Python 3.12's ``skip_file_prefixes``).
    Python's default filter shows it once per such line, and ``warnings.filterwarnings(module=...)`` matches the
    user's module. A stack with no user frame (a command line run as ``python -m``) keeps the direct caller.
    """
    frame, level = sys._getframe(1), 2
    while frame is not None and _skipped(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level if frame is not None else 2)


def displayed(keyword: str, names: Optional[Mapping[str, str]]) -> str:
    """How an error message names the argument ``keyword``: ``names[keyword]`` when ``names`` holds it (a command
    line passes its options, e.g. ``{"timestep_fs": "--timestep"}``), else the keyword itself."""
    return keyword if names is None else names.get(keyword, keyword)


def namer(names: Optional[Mapping[str, str]]) -> Callable[[str], str]:
    """:func:`displayed` with ``names`` fixed: ``name = namer(names)``, then ``name("timestep_fs")``."""
    return lambda keyword: displayed(keyword, names)


def displayed_setting(keyword: str, text: str, names: Optional[Mapping[str, str]]) -> str:
    """How an error message names the argument ``keyword`` set to ``text`` (its value as written): ``keyword=text``,
    or ``OPTION text`` when ``names`` gives the option, e.g. ``valid=0.1`` / ``--valid 0.1``."""
    name = displayed(keyword, names)
    return f"{keyword}={text}" if name == keyword else f"{name} {text}"


class PhysNetInputError(ValueError):
    """An input structure, data frame or argument value that no model can evaluate meaningfully.

    The message names the atoms, frames and values involved and says what to change.
    """


class PhysNetInputWarning(UserWarning):
    """An input the model can evaluate, but where its answer is an extrapolation."""


class LengthUnitWarning(PhysNetInputWarning):
    """Positions that look like bohr read as Å (atoms ~1.89× the covalent bond length apart).

    Its own class so that a caller that has said it once for a molecule (the ``spectra ir``
    command, whose MD starts from the molecule its harmonic analysis already judged) can
    leave out the repeats by category, not by the words of the message.
    """


class CloseContactWarning(PhysNetInputWarning):
    """Two atoms closer than 0.5 Å (closer than any chemical bond): the model extrapolates there.

    Issued for a structure given to the calculator or to a prediction, and for an MD run that reaches such a
    contact. Its own class so that a caller that reports those structures itself (the active-learning loop cuts a
    run's candidates at its first such frame and says so) can leave it out by category, not by the words of the
    message.
    """


class OutOfMemoryError(PhysNetInputError, MemoryError):
    """A structure too large for the device's memory; the message names the sizes that fill it and what to change.

    Raised before a compiled program runs when it would allocate more than the device has free
    (:mod:`physnetjax.device_memory`; ``needed_bytes`` and ``available_bytes`` then hold the two sizes, else None),
    and for XLA's ``RESOURCE_EXHAUSTED``. A ``MemoryError`` too, so ``except MemoryError`` catches it.
    """

    def __init__(self, message: str, needed_bytes: Optional[int] = None, available_bytes: Optional[int] = None):
        super().__init__(message)
        self.needed_bytes, self.available_bytes = needed_bytes, available_bytes


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says the device ran out of memory: an :class:`OutOfMemoryError`, or XLA's
    ``RESOURCE_EXHAUSTED`` (a ``jax.errors.JaxRuntimeError``; jax is not imported for the question)."""
    if isinstance(error, OutOfMemoryError):
        return True
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(error, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(error)


@contextlib.contextmanager
def out_of_memory_as(make_error: Callable[[BaseException], OutOfMemoryError]) -> Iterator[None]:
    """Inside the block, an error saying the device ran out of memory (:func:`is_out_of_memory`) is raised as
    ``make_error(error)``, an OutOfMemoryError that names the sizes behind it and what to change; others pass."""
    try:
        yield
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        raise make_error(error) from error


class InputNotFoundError(PhysNetInputError):
    """An input file or directory that does not exist (like ``FileNotFoundError``, which is an ``OSError``).

    ``path`` is the missing path; a command line names the option that gave it
    (:mod:`physnetjax.cli_errors`).
    """

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = path


class OutputPathError(PhysNetInputError):
    """An output path that cannot be written: missing directory, not writable, or already existing."""


FULL_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
"""``OSError`` numbers of a write the file system refused (no space, quota exceeded, file too large, read-only):
an output problem whatever the path, never bad input."""


class OutputWriteError(OutputPathError):
    """Writing an output file failed part-way (disk full, quota exceeded, read-only file system, I/O error).

    The message names the file, the cause and what was kept; ``cause`` is the ``OSError`` (its ``errno`` says which).
    """

    def __init__(self, message: str, cause: Optional[OSError] = None):
        super().__init__(message)
        self.cause = cause


def write_failure(path, error: OSError, kept: str = "") -> OutputWriteError:
    """An :class:`OutputWriteError` for the failed write of ``path``: ``PATH: cannot be written (CAUSE); KEPT``.

    ``kept`` says what is left (which file is complete, how to continue); ``error`` is the ``OSError`` the write
    raised (``[Errno 28] No space left on device`` names no file).
    """
    cause = error.strerror or str(error) or type(error).__name__
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        cause += ": free space on its file system"
    message = f"{os.fspath(path)}: cannot be written ({cause})"
    return OutputWriteError(message + (f"; {kept}" if kept else ""), error)


class RunStoppedError(RuntimeError):
    """A run stopped because its numbers went bad (NaN/Inf, absurd force, energy not conserved, force check)."""
