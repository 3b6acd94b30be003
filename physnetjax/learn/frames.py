"""Datasets of the loop on disk: the round's training set as a PhysNet ``.npz``, written atomically.

Layout written by :func:`save_frames` (read back by :func:`physnetjax.data.load_dataset`):
``R`` (M, n, 3) Å, ``Z`` (M, n), ``N`` (M,), ``E`` (M,) eV, ``F`` (M, n, 3) eV/Å,
``Q`` (M,) e, ``D`` (M, 3) e·Å only when every frame has a dipole, and the per-frame loss weights
``config_weight``, ``config_energy_weight``, ``config_forces_weight``, ``config_stress_weight`` (M,) only when
some frame's differ from 1 (a starting file's weights stay with its frames in every round), and ``config_type``
(M,) only when some frame has a kind other than "Default" (a starting file's kinds stay with its frames, the frames
a round selects are ``learn_<T>K``, and the rounds' trainings report their errors per kind). Every frame must carry energy and forces (the loop trains on both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from physnetjax.data import Dataset, DataError
from physnetjax.data.dataset import CONFIG_TYPE_KEY, DEFAULT_CONFIG_TYPE, WEIGHT_KEYS
from physnetjax.npz_file import write_npz


def save_frames(data: Dataset, path) -> Path:
    """Write ``data`` to ``path`` (.npz) through a temporary file and ``os.replace`` (never half a file).

    Raises:
      DataError: some frame lacks an energy or forces.
    """
    path = Path(path)
    missing = ~(data.has_E & data.has_F)
    if missing.any():
        raise DataError(f"{path}: the learning loop needs energy and forces for every frame; frame(s) "
                        f"{np.nonzero(missing)[0][:5].tolist()} ({data.sources[missing][:3].tolist()}) lack them")
    arrays = {"R": data.R, "Z": data.Z, "N": data.N, "E": data.E, "F": data.F, "Q": data.Q}
    if data.has_D.all():
        arrays["D"] = data.D
    if data.weighted:
        arrays.update({key: data.weights[:, column] for column, key in enumerate(WEIGHT_KEYS)})
    if (data.config_type != DEFAULT_CONFIG_TYPE).any():
        arrays[CONFIG_TYPE_KEY] = data.config_type.astype(str)
    return write_npz(path, arrays)


def labelled_frames(numbers: list, positions: list, labels: list, charge: float, source: str,
                    kinds: Optional[list] = None) -> Dataset:
    """A :class:`Dataset` of labelled geometries (each (n_j,) numbers, (n_j, 3) Å, labels of
    :func:`physnetjax.learn.labellers.checked_labels`, and its kind, :data:`DEFAULT_CONFIG_TYPE` where ``kinds`` is
    None), padded to the largest n_j."""
    count, width = len(numbers), max(len(z) for z in numbers)
    Z = np.zeros((count, width), np.int32)
    R = np.zeros((count, width, 3))
    F = np.zeros((count, width, 3))
    D = np.zeros((count, 3))
    for k, (z, r, label) in enumerate(zip(numbers, positions, labels)):
        Z[k, : len(z)], R[k, : len(z)], F[k, : len(z)] = z, r, label["F"]
        D[k] = label.get("D", 0.0)
    has_D = np.array(["D" in label for label in labels])
    return Dataset(Z=Z, R=R, N=np.array([len(z) for z in numbers], np.int32),
                   E=np.array([label["E"] for label in labels], np.float64), F=F, D=D,
                   Q=np.full(count, float(charge)), has_E=np.ones(count, bool), has_F=np.ones(count, bool),
                   has_D=has_D, has_Q=np.ones(count, bool),
                   sources=np.array([f"{source}[{k}]" for k in range(count)]),
                   config_type=None if kinds is None else np.array(kinds, dtype=object))
