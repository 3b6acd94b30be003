"""One structure read from a file the user names: the last frame of any file ASE reads, or a clear error."""

from __future__ import annotations

from pathlib import Path

import ase
import ase.io

from physnetjax.errors import PhysNetInputError, PhysNetInputWarning, warn_caller


def read_failure(error: Exception, path=None) -> str:
    """Why ASE could not read the file ``path``, completing "``{file}: ``": a directory, an empty file and a format
    ASE does not know are said in words (ASE's own errors are "Not a BundleTrajectory" and a bare
    ``UnknownFileTypeError('txt')``), anything else is ASE's error."""
    from ase.io.formats import UnknownFileTypeError

    if path is not None and Path(path).is_dir():
        return f"it is a directory, not a file: give the file in it (ASE: {type(error).__name__}: {error})"
    if isinstance(error, UnknownFileTypeError):
        if str(error).startswith("Empty file"):
            return "ASE cannot read it: the file is empty"
        return (f"ASE cannot read it: it does not know this file format ({error}); give a structure file ASE reads, "
                "e.g. .xyz, .extxyz, .traj or .pdb, with its usual ending")
    return f"ASE cannot read it ({type(error).__name__}: {error})"


def read_last_frame(path, name: str, uses: str) -> ase.Atoms:
    """The last frame of ``path`` (any ASE format), as ``python -m physnetjax.md --geometry`` and
    ``python -m physnetjax.data.generate --molecule`` read their start.

    Args:
      path: the file (it must exist: FileNotFoundError is passed on for the caller's input-naming).
      name: how messages name it, e.g. ``"--geometry run.xyz"``.
      uses: what starts from the frame, completing "``uses`` the last one", e.g. ``"MD starts from"``.

    Raises:
      PhysNetInputError: ASE cannot read the file, or reads no frame from it.
    Warns:
      PhysNetInputWarning: the file holds several frames (a trajectory), naming their number.
    """
    frames, atoms = 0, None
    try:
        for frames, atoms in enumerate(ase.io.iread(path), start=1):
            pass
    except FileNotFoundError:
        raise
    except Exception as error:
        raise PhysNetInputError(f"{name}: {read_failure(error, path)}") from error
    if atoms is None:
        raise PhysNetInputError(f"{name}: ASE reads no frame from it")
    if frames > 1:
        warn_caller(f"{name} holds {frames} frames: {uses} the last one (frame {frames}); write the frame to start "
                    "from into a file of its own to start from another", PhysNetInputWarning)
    return atoms
