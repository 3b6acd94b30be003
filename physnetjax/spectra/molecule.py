"""A model on one isolated molecule as pure functions of the positions, for autodiff.

:func:`molecule_functions` turns ``(model, atomic_numbers, total_charge)`` into
``energy(positions, params) -> E`` (eV) and, for a charge model,
``dipole(positions, params) -> μ`` (e·Å, μ = Σ_i q_i r_i about the coordinate
origin). Both call the model with ``compute_forces=False``: they are meant to be
differentiated, and the model's own force gradient would only be carried along
unused. The edge set is every ordered pair of atoms, fixed when the functions are
built (the ``"all_pairs"`` set of :func:`physnetjax.md.potential.physnet_potential`,
assembled by the same :func:`~physnetjax.neighbors.one_system_batch`): pairs beyond the
cutoff take part with a zero basis, so the energy equals that of a neighbor list, it is
smooth in the positions everywhere and any number of derivatives can be taken.
``params`` is an argument rather than a closure, so one compilation per (model,
atomic numbers, total charge) serves any weights of the same shapes.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import jax
import numpy as np

from physnetjax.errors import PhysNetInputError
from physnetjax.neighbors import apply_batch, model_triplet_cutoff, molecule_pairs, one_system_batch, pair_triplets


class MoleculeFunctions(NamedTuple):
    """``energy(positions (N, 3) Å, params) -> () eV`` and ``dipole(...) -> (3,) e·Å`` (None without charges)."""

    energy: Callable[[jax.Array, dict], jax.Array]
    dipole: Optional[Callable[[jax.Array, dict], jax.Array]]


def molecule_functions(model, atomic_numbers, total_charge: float = 0.0) -> MoleculeFunctions:
    """Energy and dipole of one isolated molecule as functions of (positions, params).

    Args:
      model: a :class:`physnetjax.PhysNet`.
      atomic_numbers: (N,) ints, N ≥ 2 (validate them first, e.g. with
        :func:`physnetjax.validation.validate_structure`).
      total_charge: total charge Q in e.

    The same (model, atomic numbers, total charge) returns the same function objects,
    so jitted transformations of them are compiled once.
    """
    z = tuple(int(value) for value in np.asarray(atomic_numbers).ravel())
    require_molecule(z)
    return _cached_functions(model, z, float(total_charge))


def require_molecule(atomic_numbers) -> None:
    """PhysNetInputError unless there are at least 2 atoms: a single atom has no bonds, forces or vibrations.

    The spectra call it right after validating the structure, before the checks that judge its geometry (a lone
    atom has no neighbour, which a training record would otherwise warn about before this error)."""
    count = np.asarray(atomic_numbers).size
    if count < 2:
        raise PhysNetInputError(f"{count} atom(s): a molecule of at least 2 atoms is needed (a single atom has no "
                                "bonds, forces or vibrations)")


@functools.lru_cache(maxsize=64)
def _cached_functions(model, atomic_numbers: tuple, total_charge: float) -> MoleculeFunctions:
    z = np.asarray(atomic_numbers, dtype=np.int32)
    dst, src = molecule_pairs(np.zeros((z.shape[0], 3)), None)
    triplets = {} if model_triplet_cutoff(model) is None else {"triplets": pair_triplets(dst, np.ones(len(dst), bool))}

    def outputs(positions, params):
        batch = one_system_batch(z, positions, dst, src, total_charge=total_charge, **triplets)
        return apply_batch(model, params, batch, compute_forces=False)

    def energy(positions, params):
        return outputs(positions, params)["energy"][0]

    def dipole(positions, params):
        return outputs(positions, params)["dipoles"][0]

    return MoleculeFunctions(energy=energy, dipole=dipole if model.charges else None)
