"""Reading a NumPy ``.npz`` archive whole, with a reason a person can act on when it fails.

``np.load`` reports a file that is not a zip archive as pickled object data ("This
file contains pickled (object) data ... allow_pickle"), a truncated archive as a
``BadZipFile`` and an empty file as an ``EOFError``. :func:`read_npz` says instead
which of these the file is; callers prefix the path and what the file was for.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from physnetjax.errors import OutputPathError
from physnetjax.jsonlines import written_whole

ZIP_MAGIC = b"PK"
"""First bytes of every zip archive, hence of every .npz."""


class NpzReadError(ValueError):
    """The file cannot be read as an .npz archive; the message is the reason (without the path)."""


def read_npz(path) -> dict:
    """All arrays of the ``.npz`` at ``path`` as ``{key: np.ndarray}`` (pickled object arrays refused).

    Raises:
      NpzReadError: the file is empty, not a zip archive (not an .npz), a damaged or
        truncated archive, or holds object arrays (which need pickle).
      FileNotFoundError / IsADirectoryError / PermissionError: as ``open`` raises them
        (the command line tools name the option that gave the path).
    """
    path = Path(path)
    with open(path, "rb") as handle:  # opened here: np.load(path) leaks its handle when a damaged zip fails
        head = handle.read(len(ZIP_MAGIC))
        if not head:
            raise NpzReadError("the file is empty")
        if head != ZIP_MAGIC:
            raise NpzReadError("not an .npz file (it is not a zip archive)")
        handle.seek(0)
        try:
            with np.load(handle, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        except (zipfile.BadZipFile, EOFError, OSError) as error:
            raise NpzReadError(f"a damaged or truncated .npz ({type(error).__name__}: {error})") from error
        except ValueError as error:
            if "allow_pickle" in str(error):
                raise NpzReadError("it holds object arrays, which would need pickle; store plain numeric arrays"
                                   ) from error
            raise NpzReadError(f"a damaged .npz ({error})") from error


def write_npz(path, arrays: dict, *, compressed: bool = False) -> Path:
    """Write ``arrays`` to ``path`` (.npz, exactly that name) through a temporary file beside it and ``os.replace``
    (:func:`physnetjax.jsonlines.written_whole`): a failed write (a full disk, an interrupt) leaves the file that was
    there, never half a file.

    Raises:
      OutputWriteError: the file system refused the write (disk full, quota, read-only), naming the path.
      OutputPathError: any other failed write (e.g. no permission), naming the path and the system's reason.
    """
    path = Path(path)
    try:
        with written_whole(path, also_kept="") as temporary, open(temporary, "wb") as handle:
            (np.savez_compressed if compressed else np.savez)(handle, **arrays)
    except OSError as error:  # not a refused write, which written_whole reports
        raise OutputPathError(f"{path}: cannot be written ({error.strerror or error})") from error
    return path
