"""Ziegler–Biersack–Littmark (ZBL) universal screened nuclear repulsion."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from physnetjax.physics.switch import cutoff_polynomial
from physnetjax.units import BOHR, COULOMB_CONSTANT

ZBL_COEFFICIENTS = np.array([0.18175, 0.50986, 0.28022, 0.02817])
"""Universal ZBL screening-function coefficients c_k (sum to 1)."""
ZBL_EXPONENTS = np.array([3.19980, 0.94229, 0.40290, 0.20162])
"""Universal ZBL screening-function exponents d_k."""
ZBL_A_COEFFICIENT = 0.8854
"""Universal screening length prefactor (in Bohr)."""
ZBL_A_EXPONENT = 0.23
"""Exponent of Z in the universal screening length."""


def zbl_pair_energy(
    z_i,
    z_j,
    r,
    pair_mask,
    cutoff: float,
    a_coefficient=ZBL_A_COEFFICIENT,
    a_exponent=ZBL_A_EXPONENT,
    coefficients=ZBL_COEFFICIENTS,
    exponents=ZBL_EXPONENTS,
):
    r"""Per-pair ZBL repulsion e_ij in eV, switched off smoothly at ``cutoff``.

    .. math::
        e_{ij} = k_e \frac{Z_i Z_j}{r} \sum_k c_k \exp(-d_k r / a_{ij}) \; φ(r / r_c),
        \qquad a_{ij} = \frac{0.8854 \, a_0}{Z_i^{0.23} + Z_j^{0.23}}

    with a_0 the Bohr radius in Å and φ the PhysNet cutoff polynomial, so e_ij and
    its first two derivatives vanish at r_c. The numbers 0.8854, 0.23, c_k and d_k
    are the universal ZBL values by default; a model may pass trained values.

    Args:
      z_i, z_j: (P,) atomic numbers (any numeric dtype).
      r: (P,) distances in Å (from :func:`safe_pair_distances`).
      pair_mask: (P,) bool, True for real pairs.
      cutoff: r_c in Å.
      a_coefficient, a_exponent, coefficients (4,), exponents (4,): screening parameters.

    Returns:
      (P,) energies in eV, 0 on padded pairs and for r ≥ r_c. Sum a full list with ½.
    """
    # Padded pairs may join Z = 0 atoms, where ∂(Z^a)/∂a = Z^a ln Z is NaN: give them Z = 1.
    zi = jnp.where(pair_mask, z_i, 1).astype(r.dtype)
    zj = jnp.where(pair_mask, z_j, 1).astype(r.dtype)
    # float32 parameters under float64 distances (predict(dtype=float64) of a loaded checkpoint) are cast first:
    # a float32 a times the Python float BOHR stays float32 and rounded the screening length by 1.5e-8 Å
    a_coefficient = jnp.asarray(a_coefficient, dtype=r.dtype)
    a_exponent = jnp.asarray(a_exponent, dtype=r.dtype)
    screening_length = a_coefficient * BOHR / (zi**a_exponent + zj**a_exponent)
    x = (r / screening_length)[:, None]
    coefficients = jnp.asarray(coefficients, dtype=r.dtype)
    exponents = jnp.asarray(exponents, dtype=r.dtype)
    screening = jnp.sum(coefficients * jnp.exp(-exponents * x), axis=-1)
    energy = COULOMB_CONSTANT * zi * zj / r * screening * cutoff_polynomial(r / cutoff)
    return jnp.where(pair_mask, energy, 0.0)
