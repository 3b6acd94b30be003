"""One-command physical sanity check of a model: ``python -m physnetjax.check CHECKPOINT``.

Groups of checks (in float64, apart from the float32 side of ``precision``):

* ``forces`` (:mod:`~physnetjax.check.forces`): central finite differences vs analytic
  forces, total and per term, with the analytic/numerical ratio and each term's weight
  in the total force;
* ``invariance`` (:mod:`~physnetjax.check.invariance`): Σ F = 0, zero torque, rotation,
  reflection, translation, permutation, padding and batch invariance;
* ``smoothness`` (:mod:`~physnetjax.check.smoothness`): bond-stretch scans through every
  cutoff, with discontinuity detection by local refinement;
* ``stability`` (:mod:`~physnetjax.check.stability`): force response to 0.05 Å random
  moves and a short NVE run;
* ``references`` (:mod:`~physnetjax.check.references`): suspicious element reference
  energies E0 (the minimum-norm split of one composition, E0[H] below a first-row
  atom's, magnitudes beyond any atom's energy, elements absent from training);
* ``precision`` (:mod:`~physnetjax.check.precision`): float32 energies and forces (what MD
  and the calculator compute by default) against float64 on this device, which catches
  reduced-precision matrix products (TF32 on NVIDIA GPUs);
* ``inputs`` (:mod:`~physnetjax.check.runner`, always run where the checkpoint records its
  training): elements, total charges and interatomic distances of each structure outside
  the training data's, and a charge model's dipole R² in the molecular frame below 0.8.

A cell periodic along x, y and z within the model's reach of its images is checked as a crystal,
with its images (:mod:`~physnetjax.check.runner`): ``forces`` adds its stress against finite
strain differences (:mod:`~physnetjax.check.stress`), ``invariance`` holds a crystal's
invariances (:mod:`~physnetjax.check.cell_invariance`: rotation of cell and atoms, translation
across the cell boundary, wrapping, permutation, padding, batch and a supercell), ``smoothness``
scans the crystal's scale through every cutoff (:mod:`~physnetjax.check.cell_smoothness`), and
what does not apply to a cell (``invariance.torque``) is named in the report.

:func:`check_model` returns a :class:`CheckReport` (JSON schema in
:mod:`~physnetjax.check.report`).
"""

from physnetjax.check.evaluate import (
    EnergyAndForces,
    Evaluator,
    Structure,
    model_energy_and_forces,
)
from physnetjax.check.geometry import default_structures, read_structures
from physnetjax.check.report import SCHEMA_VERSION, CheckReport, CheckResult
from physnetjax.check.runner import check_model
from physnetjax.check.settings import CheckSettings, Thresholds

__all__ = [
    "SCHEMA_VERSION",
    "CheckReport",
    "CheckResult",
    "CheckSettings",
    "EnergyAndForces",
    "Evaluator",
    "Structure",
    "Thresholds",
    "check_model",
    "default_structures",
    "model_energy_and_forces",
    "read_structures",
]
