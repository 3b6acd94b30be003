"""Float64 finite-difference check of the model's forces, run whenever a best checkpoint is saved.

F_i,a = −∂E/∂R_i,a from autodiff is compared with the central difference
−(E(R + δ e_ia) − E(R − δ e_ia)) / (2δ), all in float64 (x64 switched on only
inside the check; parameters cast to float64). With δ = 1e-4 Å the truncation
error is ~δ² |∂³E| ≈ 1e-6 eV/Å and rounding ~1e-12 eV/Å, so an error above
1e-3 eV/Å means the forces are not the gradient of the energy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.neighbors import apply_batch, batch_molecules, model_pair_cutoff


class ForceCheckError(RuntimeError):
    """Autodiff forces disagree with finite differences of the energy."""


_CACHE: dict = {}


def _functions(model):
    if model not in _CACHE:
        def energy(params, batch, positions):
            return apply_batch(model, params, batch.replace(positions=positions))["energy"][0]

        def forces(params, batch):
            return apply_batch(model, params, batch)["forces"]

        _CACHE[model] = (jax.jit(jax.vmap(energy, in_axes=(None, None, 0))), jax.jit(forces))
    return _CACHE[model]


def finite_difference_force_error(model, params, atomic_numbers, positions, delta: float = 1e-4) -> float:
    """max_ia |F_autodiff − F_central-difference| in eV/Å for one molecule, in float64.

    Args:
      model: a PhysNet (its ``element_energies`` do not affect forces).
      params: its variables; cast to float64 here.
      atomic_numbers: (n,) ints; positions: (n, 3) Å.
      delta: finite-difference step in Å.
    """
    z = np.asarray(atomic_numbers)
    r = np.asarray(positions, dtype=np.float64)
    n = z.shape[0]
    with jax.enable_x64(True):
        params64 = jax.tree_util.tree_map(
            lambda p: jnp.asarray(p, jnp.float64) if jnp.issubdtype(jnp.asarray(p).dtype, jnp.floating) else p, params)
        batch = batch_molecules([z], [r], model.cutoff, pair_cutoff=model_pair_cutoff(model), dtype=np.float64)
        displaced = np.repeat(batch.positions[None], 2 * 3 * n, axis=0)
        for i in range(n):
            for a in range(3):
                displaced[6 * i + 2 * a, i, a] += delta
                displaced[6 * i + 2 * a + 1, i, a] -= delta
        energy_fn, forces_fn = _functions(model)
        energies = np.asarray(energy_fn(params64, batch, jnp.asarray(displaced)))
        forces = np.asarray(forces_fn(params64, batch))[:n]
    numeric = -(energies[0::2] - energies[1::2]).reshape(n, 3) / (2.0 * delta)
    return float(np.max(np.abs(numeric - forces)))
