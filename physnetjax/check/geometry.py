"""Which structures to check: given files, frames stored with the model, or a built-in frame.

Order of the defaults (:func:`default_structures`):

1. ``geometries.npz`` in the checkpoint directory or the directory holding it (the
   legacy fixtures and migrated checkpoints keep their reference frames there);
2. the first data file named in the checkpoint metadata (``metadata["data"]``, as the
   trainer writes it), if it exists;
3. the first ``.xyz`` (by name) in the directory holding the checkpoint (the shipped
   models keep their example geometry there, e.g. ``pretrained/co2/co2.xyz``);
4. the bundled example dataset (:func:`physnetjax.data.dataset.bundled_dataset_path`);
5. :data:`ETHANOL`, one ethanol frame built into this module.

The first ``max_structures`` frames of the chosen file are used. Falling back to 4 or 5
(frames not of the model's own system) is logged as a warning naming the frames used.
A chosen file that cannot be read, or whose frames the model cannot evaluate, is an error
that says the file was picked automatically and suggests ``--geometry``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from physnetjax.check.evaluate import Structure
from physnetjax.checkpoint.report import read_geometries
from physnetjax.data.dataset import bundled_dataset_path, npz_cell, periodic_cell
from physnetjax.errors import PhysNetInputError, PhysNetInputWarning
from physnetjax.npz_file import read_npz
from physnetjax.validation import atoms_total_charge

logger = logging.getLogger(__name__)

GEOMETRY_FILE = "geometries.npz"

ETHANOL = Structure(
    atomic_numbers=np.array([6, 6, 8, 1, 1, 1, 1, 1, 1], np.int32),
    positions=np.array([
        [1.4211, -1.0172, -1.6541],
        [0.1280, -0.2004, -1.3420],
        [-1.0039, -0.7405, -1.9962],
        [-1.2151, -1.6562, -1.6709],
        [-0.1495, -0.1325, -0.2615],
        [0.1683, 0.8202, -1.8516],
        [2.0333, -1.2154, -0.6893],
        [1.1475, -1.9272, -2.0810],
        [2.0245, -0.4791, -2.2894],
    ]),
    name="built-in ethanol",
)
"""An ethanol frame (Å) of a GFN2-xTB 500 K trajectory, used when nothing else is available."""


def read_structures(path, limit: int | None = None) -> list[Structure]:
    """Frames of ``path`` as structures: ``.npz`` with Z, R (and optional N, Q, cell, pbc) or any ASE-readable file.

    Each structure keeps the cell of its frame along the periodic directions (:attr:`Structure.cell`, Å:
    an ASE frame's ``cell`` and ``pbc``, an ``.npz`` cell key as
    :func:`~physnetjax.data.dataset.npz_cell` reads it); :func:`~physnetjax.check.check_model` checks a cell
    periodic along x, y and z within the model's reach of its images as a crystal, refuses a slab or wire within
    reach, and checks a molecule in a wider vacuum box as the isolated molecule it is.

    Raises:
      ValueError: unreadable file, no frames, or a bad cell (the checkpoint module's errors are ValueErrors,
        :class:`~physnetjax.data.DataError` is one).
    """
    path = Path(path)
    structures = []
    if path.suffix == ".npz":
        data = read_geometries(path)
        cells = npz_cell(path, read_npz(path), data["Z"].shape[0])
        for k in range(data["Z"].shape[0]):
            n = int(data["N"][k])
            structures.append(Structure(data["Z"][k, :n].astype(np.int32), data["R"][k, :n].astype(np.float64),
                                        float(data["Q"][k]), f"{path.name}[{k}]", cells[k]))
    else:
        import ase.io

        from physnetjax.structure_file import read_failure

        try:
            frames = ase.io.read(path, index=":")
        except FileNotFoundError:
            raise
        except Exception as error:
            raise ValueError(f"{path}: {read_failure(error, path)}") from error
        for k, atoms in enumerate(frames[:limit]):
            charge = float(atoms_total_charge(atoms))
            structures.append(Structure(atoms.numbers.astype(np.int32), atoms.positions.astype(np.float64),
                                        charge, f"{path.name}[{k}]", periodic_cell(path, k, atoms.pbc, atoms.cell)))
    if not structures:
        raise ValueError(f"{path}: contains no frames")
    return structures[:limit]


def default_structures(checkpoint: Path | None, metadata: dict | None, limit: int,
                       max_atomic_number: int | None = None) -> list[Structure]:
    """The structures to check when none are given (order in the module docstring).

    Args:
      checkpoint: the checkpoint directory (its directory and parent are searched).
      metadata: its metadata (``metadata["data"]``: training data files).
      limit: frames taken from the chosen file.
      max_atomic_number: the model's; when given, the frames are validated for it here
        (:func:`physnetjax.check.runner.as_structure`; warnings are left to the check itself).

    Raises:
      PhysNetInputError: the chosen file cannot be read or (with ``max_atomic_number``) holds a
        frame the model cannot evaluate; the message says the file was picked automatically
        (the user never named it) and suggests ``--geometry``.
    """
    candidates: list[tuple[Path, str]] = []  # (file, where it is)
    if checkpoint is not None:
        checkpoint = Path(checkpoint).resolve()
        candidates += [(checkpoint / GEOMETRY_FILE, "stored with the checkpoint"),
                       (checkpoint.parent / GEOMETRY_FILE, "beside the checkpoint")]
    data = (metadata or {}).get("data")
    training = "no training data file in the metadata"
    if isinstance(data, Sequence) and not isinstance(data, str) and data:
        candidates.append((Path(data[0]), "the training data named in the checkpoint metadata"))
        training = f"training data {data[0]} not found"
    if checkpoint is not None:
        candidates += [(path, "beside the checkpoint") for path in sorted(checkpoint.parent.glob("*.xyz"))[:1]]
    for path, where in candidates:
        if path.is_file():
            logger.info("checking frames of %s", path)
            return _picked(path, lambda: read_structures(path, limit), where, max_atomic_number)
    bundled = bundled_dataset_path()
    if bundled.is_file():
        structures = _picked(bundled, lambda: read_structures(bundled, limit), "the bundled example dataset",
                             max_atomic_number)
        logger.warning("no frames of this model's own system found (no %s, %s, no .xyz beside the checkpoint); "
                       "checking %d frame(s) of the bundled dataset %s instead (pass --geometry)",
                       GEOMETRY_FILE, training, len(structures), bundled)
        return structures
    logger.warning("no frames of this model's own system found; checking the built-in ethanol geometry instead "
                   "(pass --geometry)")
    return _picked("built-in ethanol", lambda: [ETHANOL], "the built-in fallback", max_atomic_number)


def _picked(source, read, where: str, max_atomic_number: int | None) -> list[Structure]:
    """``read()``'s structures, validated for the model; an error names ``source`` as picked automatically."""
    from physnetjax.check.runner import as_structure

    try:
        structures = read()
        if max_atomic_number is not None:
            with warnings.catch_warnings():  # the check warns about them itself, once
                warnings.simplefilter("ignore", PhysNetInputWarning)
                for k, structure in enumerate(structures):
                    as_structure(structure, k, max_atomic_number)
    except ValueError as error:
        raise PhysNetInputError(
            f"{error} (no --geometry was given, so the frames were picked automatically from {source}, {where}; "
            "pass --geometry FILE with frames of this model's own system)") from error
    return structures
