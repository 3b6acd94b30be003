"""Pair terms and smooth cutoff functions as pure JAX functions (no Flax state)."""

from physnetjax.physics.charges import corrected_charges, dipole_moments
from physnetjax.physics.coulomb import coulomb_pair_energy, shielded_coulomb_kernel
from physnetjax.physics.dispersion import (D3BJParameters, d3_atomic_energies, d3_bj_parameters, d3_dispersion_energy,
                                          d3_functionals)
from physnetjax.physics.molecules import sum_per_molecule
from physnetjax.physics.pairs import (pair_displacements, pair_energy_per_atom, pair_energy_per_molecule,
                                    safe_pair_distances)
from physnetjax.physics.switch import cutoff_polynomial
from physnetjax.physics.zbl import ZBL_COEFFICIENTS, ZBL_EXPONENTS, zbl_pair_energy

__all__ = [
    "D3BJParameters",
    "ZBL_COEFFICIENTS",
    "ZBL_EXPONENTS",
    "corrected_charges",
    "coulomb_pair_energy",
    "cutoff_polynomial",
    "d3_atomic_energies",
    "d3_bj_parameters",
    "d3_dispersion_energy",
    "d3_functionals",
    "dipole_moments",
    "pair_displacements",
    "pair_energy_per_atom",
    "pair_energy_per_molecule",
    "safe_pair_distances",
    "shielded_coulomb_kernel",
    "sum_per_molecule",
    "zbl_pair_energy",
]
