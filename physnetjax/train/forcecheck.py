"""Float64 finite-difference check of the model's forces, run whenever a best checkpoint is saved.

F_i,a = −∂E/∂R_i,a from autodiff is compared with the central difference
−(E(R + δ e_ia) − E(R − δ e_ia)) / (2δ), all in float64 (x64 switched on only
inside the check; parameters cast to float64). With δ = 1e-4 Å the truncation
error is ~δ² |∂³E| ≈ 1e-6 eV/Å and rounding ~1e-12 eV/Å, so an error above
1e-3 eV/Å means the forces are not the gradient of the energy. The finite
differences are those of :mod:`physnetjax.check.forces` (one implementation).
"""

from __future__ import annotations

import jax
import numpy as np

from physnetjax.check.evaluate import Evaluator, Structure, cast_to_float64
from physnetjax.check.forces import compare_forces, numerical_forces
from physnetjax.errors import RunStoppedError
from physnetjax.neighbors.periodic import wrapped_positions


class ForceCheckError(RunStoppedError):
    """Autodiff forces disagree with finite differences of the energy."""


def finite_difference_force_error(model, params, atomic_numbers, positions, delta: float = 1e-4,
                                  cell=None) -> float:
    """max_ia |F_autodiff − F_central-difference| in eV/Å for one molecule or periodic cell, in float64.

    Args:
      model: a PhysNet (its ``element_energies`` do not affect forces).
      params: its variables; cast to float64 here.
      atomic_numbers: (n,) ints; positions: (n, 3) Å.
      delta: finite-difference step in Å.
      cell: (3, 3) Å, vectors as rows, for a cell periodic along x, y and z (its atoms are wrapped into it first);
        None for a molecule.
    """
    r = np.asarray(positions, dtype=np.float64)
    if cell is None:
        structure = Structure(np.asarray(atomic_numbers), r)
    else:
        r = wrapped_positions(r, cell)
        structure = Structure(np.asarray(atomic_numbers), r, cell=np.asarray(cell, np.float64))
    with jax.enable_x64(True):
        evaluator = Evaluator(model, cast_to_float64(params), structure)
        _, forces = evaluator.evaluate_one(r)
        numeric = numerical_forces(evaluator, r, delta)[0]
    return compare_forces(forces, numeric)["max_abs_error"]
