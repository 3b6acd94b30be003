"""PhysNet's shielded Coulomb interaction, optionally force-shifted at a long-range cutoff."""

from __future__ import annotations

import jax.numpy as jnp

from physnetjax.physics.switch import cutoff_polynomial
from physnetjax.units import COULOMB_CONSTANT


def shielded_coulomb_kernel(r, sr_cutoff: float, lr_cutoff: float | None = None):
    r"""PhysNet's shielded Coulomb kernel χ(r) in 1/Å.

    .. math::
        χ(r) = φ(2r / r_{sr}) \, \frac{1}{\sqrt{r^2 + 1}} + \bigl(1 - φ(2r / r_{sr})\bigr) \frac{1}{r}

    with φ the PhysNet cutoff polynomial (:func:`cutoff_polynomial`): the kernel is
    the regular 1/√(r²+1) below r_sr/2 ... blending into the bare 1/r, which it equals
    for r ≥ r_sr/2. With a long-range cutoff r_lr ("shifted force"), both parts are
    replaced by f(u) → f(u) + u/r_lr² − 2/r_lr (u = r and u = √(r²+1) respectively)
    and χ(r) = 0 for r ≥ r_lr, so χ and χ' vanish at r_lr.

    Args:
      r: distances in Å, any shape (must be > 0 where used).
      sr_cutoff: short-range cutoff r_sr in Å (> 0).
      lr_cutoff: long-range cutoff r_lr in Å (> r_sr/2), or None for no truncation.

    Returns:
      χ(r) in 1/Å, same shape as ``r``.
    """
    shielded = jnp.sqrt(r * r + 1.0)
    switch = cutoff_polynomial(2.0 * r / sr_cutoff)
    if lr_cutoff is None:
        return switch / shielded + (1.0 - switch) / r
    inv_rc2 = 1.0 / (lr_cutoff * lr_cutoff)
    shifted_shielded = 1.0 / shielded + shielded * inv_rc2 - 2.0 / lr_cutoff
    shifted_bare = 1.0 / r + r * inv_rc2 - 2.0 / lr_cutoff
    kernel = switch * shifted_shielded + (1.0 - switch) * shifted_bare
    return jnp.where(r < lr_cutoff, kernel, 0.0)


def coulomb_pair_energy(charge_i, charge_j, r, pair_mask, sr_cutoff: float, lr_cutoff: float | None = None):
    r"""Per-pair electrostatic energy e_ij = k_e q_i q_j χ(r_ij) in eV.

    Every term carries q_i q_j (there is no charge-independent shift). Padded pairs
    give exactly 0 (their distances must come from :func:`safe_pair_distances`).

    Args:
      charge_i, charge_j: (P,) charges of the two atoms of each pair in e.
      r: (P,) distances in Å.
      pair_mask: (P,) bool, True for real pairs.
      sr_cutoff, lr_cutoff: see :func:`shielded_coulomb_kernel`.

    Returns:
      (P,) energies in eV. Sum over a full list with ½ (:func:`pair_energy_per_molecule`).
    """
    if lr_cutoff is not None and lr_cutoff <= 0.5 * sr_cutoff:
        raise ValueError(
            f"lr_cutoff must exceed sr_cutoff/2 = {0.5 * sr_cutoff}, received {lr_cutoff}"
        )
    energy = COULOMB_CONSTANT * charge_i * charge_j * shielded_coulomb_kernel(r, sr_cutoff, lr_cutoff)
    return jnp.where(pair_mask, energy, 0.0)
