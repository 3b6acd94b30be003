"""PhysNet total-charge correction and molecular dipole moments."""

from __future__ import annotations

import jax.numpy as jnp

from physnetjax.physics.molecules import sum_per_molecule


def corrected_charges(raw_charges, atom_mask, atom_segments, num_molecules, total_charges):
    r"""Shift raw atomic charges so that each molecule carries its total charge Q.

    .. math:: q_i = \tilde q_i + \frac{Q_{b(i)} - \sum_{j \in b(i)} \tilde q_j}{N_{b(i)}}

    where the sums and N_b run over real atoms only; padded atoms get q = 0.

    Args:
      raw_charges: (N,) raw charges q̃ in e.
      atom_mask: (N,) bool, True for real atoms.
      atom_segments: (N,) molecule index of each atom.
      num_molecules: static number of molecules B.
      total_charges: (B,) total charge Q of each molecule in e.

    Returns:
      (N,) corrected charges in e.
    """
    raw = jnp.where(atom_mask, raw_charges, 0.0)
    raw_sum = sum_per_molecule(raw, atom_segments, num_molecules)
    count = sum_per_molecule(atom_mask.astype(raw.dtype), atom_segments, num_molecules)
    correction = (total_charges.astype(raw.dtype) - raw_sum) / jnp.maximum(count, 1.0)
    return jnp.where(atom_mask, raw + correction[atom_segments], 0.0)


def dipole_moments(charges, positions, atom_segments, num_molecules):
    r"""Molecular dipoles μ_b = Σ_{i ∈ b} q_i r_i in e·Å, about the coordinate origin.

    For neutral molecules μ does not depend on the reference point; for charged ones
    it does, and the origin is used (as in the GFN2/DFT reference data).

    Args:
      charges: (N,) charges in e (0 on padded atoms).
      positions: (N, 3) positions in Å.
      atom_segments: (N,) molecule index of each atom.
      num_molecules: static number of molecules B.

    Returns:
      (B, 3) dipoles in e·Å.
    """
    return sum_per_molecule(charges[:, None] * positions, atom_segments, num_molecules)
