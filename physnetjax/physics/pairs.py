"""Pair geometry and reduction of pair energies to molecules.

Pair lists in physnetjax are *full directed* lists: if (i → j) is in the list, so
is (j → i). Pair energies are symmetric, so every reduction of a per-pair energy
over a full list multiplies by ½ and each unordered pair {i, j} is counted once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from physnetjax.physics.molecules import sum_per_molecule


def pair_displacements(positions, dst_idx, src_idx):
    """d_p = r[src_p] − r[dst_p] in Å, shape (P, 3), as one gather of both ends.

    One gather of 2P rows instead of two of P: in the force pass its transpose is one
    scatter-add into the (N, 3) position gradient instead of two (each of which XLA CPU
    runs as three kernels).
    """
    ends = positions[jnp.concatenate([src_idx, dst_idx])]
    return ends[: src_idx.shape[0]] - ends[src_idx.shape[0]:]


def safe_pair_distances(displacements, pair_mask):
    r"""Pair distances r = |d| with padded pairs made safe for differentiation.

    Padded pairs (``pair_mask`` False) often have d = 0, where ∂|d|/∂d is NaN.
    The "double where" replaces their displacement by a unit vector before the norm,
    so their distance is exactly 1 Å and every gradient stays finite; callers must
    still zero the padded pairs' contributions with ``jnp.where(pair_mask, ..., 0)``.

    Args:
      displacements: (P, 3) vectors r_src − r_dst (+ periodic shift) in Å.
      pair_mask: (P,) bool, True for real pairs.

    Returns:
      (P,) distances in Å (1.0 on padded pairs).
    """
    unit = jnp.zeros_like(displacements).at[:, 0].set(1.0)
    safe = jnp.where(pair_mask[:, None], displacements, unit)
    return jnp.sqrt(jnp.sum(safe * safe, axis=-1))


def pair_energy_per_molecule(pair_energy, dst_idx, atom_segments, num_molecules):
    r"""Sum a per-pair energy over a *full* directed list into molecules, ½ Σ_{i≠j}.

    .. math:: E_b = \tfrac12 \sum_{(i,j) \in \mathrm{list},\ b(i) = b} e_{ij}
              = \sum_{i<j,\ b(i)=b} e_{ij}

    Args:
      pair_energy: (P,) energies e_ij in eV (zero on padded pairs).
      dst_idx: (P,) index i of each pair.
      atom_segments: (N,) molecule index b(i) of each atom.
      num_molecules: static number of molecules B.

    Returns:
      (B,) energies in eV.
    """
    return 0.5 * sum_per_molecule(pair_energy, atom_segments[dst_idx], num_molecules)


def pair_energy_per_atom(pair_energy, dst_idx, num_atoms: int):
    r"""Split a per-pair energy over a *full* directed list among the atoms, half to each end, (N,) eV.

    .. math:: E_i = \tfrac12 \sum_{(i,j) \in \mathrm{list}} e_{ij}

    Each unordered pair appears once as (i → j) and once as (j → i), so atom i
    receives ½ e_ij from its own direction and j the other half; a periodic atom and
    its image (i → i with shifts ±s) both land on i, which receives the whole e_ii'.
    Summed over a molecule's atoms this is :func:`pair_energy_per_molecule`.

    Args:
      pair_energy: (P,) energies e_ij in eV (zero on padded pairs).
      dst_idx: (P,) index i of each pair.
      num_atoms: static number of atoms N.

    Returns:
      (N,) energies in eV (zero for atoms in no pair).
    """
    return 0.5 * jax.ops.segment_sum(pair_energy, dst_idx, num_segments=num_atoms)
