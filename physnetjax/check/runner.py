"""``check_model``: run the selected check groups on every structure, in float64.

A structure is checked as one of two kinds:

* an isolated molecule: no cell, or a cell (periodic along some or all directions) whose images all lie beyond the
  model's reach (:func:`~physnetjax.neighbors.image_reach`), a molecule in a vacuum box: its cell is dropped;
* a crystal: a cell periodic along x, y and z (three independent cell vectors) with atoms within the model's reach
  of a periodic image, checked with its images (atoms wrapped into the cell): the forces, stress
  (:mod:`~physnetjax.check.stress`), invariances of a crystal (:mod:`~physnetjax.check.cell_invariance`), smoothness
  along a strain scan (:mod:`~physnetjax.check.cell_smoothness`), stability, element energies and precision. What
  does not apply to a cell (:data:`~physnetjax.check.cell_invariance.NOT_APPLICABLE`: the torque) is named in its
  structure summary (``not_checked``) and under its line of the table.

A slab or wire (periodic along one or two directions) within reach of its images is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import jax
import numpy as np

from physnetjax.check.cell_invariance import NOT_APPLICABLE, check_cell_invariance
from physnetjax.check.cell_smoothness import check_cell_smoothness
from physnetjax.check.evaluate import (
    EnergyAndForces,
    Evaluator,
    Structure,
    cast_to_float64,
)
from physnetjax.check.forces import check_forces
from physnetjax.check.invariance import check_invariance
from physnetjax.check.precision import check_precision
from physnetjax.check.references import check_element_energies
from physnetjax.check.report import GROUPS, CheckReport, CheckResult
from physnetjax.check.settings import CheckSettings, Thresholds
from physnetjax.check.smoothness import check_smoothness
from physnetjax.check.stability import check_curvature, check_nve
from physnetjax.check.stress import check_stress
from physnetjax.data import DataError
from physnetjax.data.dataset import check_images_beyond_reach, nearest_images
from physnetjax.dipole_surface import IR_R2_THRESHOLD, unreliable_ir_message
from physnetjax.distance_domain import DOMAIN_MARGIN, DistanceDomain
from physnetjax.neighbors import image_reach, model_pair_cutoff
from physnetjax.neighbors.periodic import wrapped_positions
from physnetjax.training_record import NO_TRAINING_RECORD, TrainingRecord, training_record_of
from physnetjax.validation import SYMBOLS, element, untrained_charges, unseen_elements, validate_structure

logger = logging.getLogger(__name__)

PERIODIC_CHECK_REMEDY = ("check takes molecules and cells periodic along x, y and z (crystals, liquids, with their "
                         "images); a slab or a wire needs a cell vector across vacuum wider than the model's reach "
                         "along each open direction and pbc True there (its checks are then those of the isolated "
                         "slab), or the ASE calculator physnetjax.PhysNetCalculator, which takes partial pbc")
"""The end of the refusal of a structure periodic along one or two directions within the model's reach of its
periodic images (:func:`physnetjax.data.dataset.check_images_beyond_reach`)."""

_GROUP_CHECKS = {
    "forces": (check_forces,),
    "invariance": (check_invariance,),
    "smoothness": (check_smoothness,),
    "stability": (check_curvature, check_nve),
    "references": (check_element_energies,),
    "precision": (check_precision,),
}
"""The checks of each group for an isolated molecule."""

_CELL_CHECKS = {
    "forces": (check_forces, check_stress),
    "invariance": (check_cell_invariance,),
    "smoothness": (check_cell_smoothness,),
    "stability": (check_curvature, check_nve),
    "references": (check_element_energies,),
    "precision": (check_precision,),
}
"""The checks of each group for a crystal (a cell periodic along x, y and z within reach of its images)."""

def crystals_and_molecules(structures: Sequence[Structure], model) -> list[Structure]:
    """``structures`` sorted into crystals and molecules (module docstring): a crystal with its atoms wrapped into its
    cell (each moved by a lattice vector, :func:`~physnetjax.neighbors.periodic.wrapped_positions`), a molecule
    without a cell.

    Raises:
      ValueError: a single atom whose images lie beyond the model's reach.
      DataError: a slab or wire within the model's reach of its images
        (:func:`~physnetjax.data.dataset.check_images_beyond_reach`, :data:`PERIODIC_CHECK_REMEDY`), or a crystal
        with a charge model whose Coulomb term has no long-range cutoff (its all-pairs sum is infinite in a crystal).
    """
    reach, reach_text = image_reach(model)
    partial = [s for s in structures if not s.periodic]
    check_images_beyond_reach([s.name for s in partial], [s.cell for s in partial], [s.positions for s in partial],
                              reach, reach_text, PERIODIC_CHECK_REMEDY)
    near = np.isfinite(nearest_images([s.cell for s in structures], [s.positions for s in structures], reach))
    sorted_out = []
    for structure, crystal in zip(structures, near):
        if crystal:
            inside = wrapped_positions(structure.positions, structure.cell)
            sorted_out.append(dataclasses.replace(structure, positions=inside))
        elif structure.num_atoms < 2:
            raise ValueError(f"{structure.name}: the checks need at least 2 atoms, received 1 (its images lie beyond "
                             f"the reach {reach_text}: an isolated atom)")
        else:
            sorted_out.append(dataclasses.replace(structure, cell=np.zeros((3, 3))))
    crystals = [s.name for s in sorted_out if s.periodic]
    if crystals and model_pair_cutoff(model) is None:
        raise DataError(f"{len(crystals)} structure(s) are periodic cells (e.g. {crystals[0]}), and this charge "
                        "model's Coulomb term without a long-range cutoff (coulomb_lr_cutoff) sums over all atom "
                        "pairs, which is infinite in a crystal (no Ewald sum here): check the model on molecules, or "
                        "give it a coulomb_lr_cutoff")
    return sorted_out


def as_structure(item, index: int, max_atomic_number: int = 118) -> Structure:
    """A :class:`Structure` from a Structure or a tuple (Z, R) / (Z, R, Q), validated.

    Raises:
      PhysNetInputError: bad shapes, atomic numbers outside 1..max_atomic_number (named
        by element), non-finite positions or charge, overlapping atoms (with their periodic images where the
        structure has a cell; see :func:`physnetjax.validation.validate_structure`). ValueError: fewer than 2 atoms
        (a cell periodic along x, y and z may hold one: it meets its images).
    """
    if isinstance(item, Structure):
        z, r, q, name = item.atomic_numbers, item.positions, item.total_charge, item.name
    else:
        z, r, *rest = item
        q, name = (float(rest[0]) if rest else 0.0), f"structure {index}"
    cell = np.asarray(item.cell, np.float64) if isinstance(item, Structure) else np.zeros((3, 3))
    periodic = cell.any(axis=1)
    z, r = validate_structure(z, r, max_atomic_number, total_charge=q, where=name,
                              **({"cell": cell, "pbc": periodic} if periodic.any() else {}))
    if z.shape[0] < 2 and not periodic.all():
        raise ValueError(f"{name}: the checks need at least 2 atoms, received {z.shape[0]}")
    return Structure(z, np.asarray(r, np.float64), float(q), name, cell)


def check_model(
    model,
    params,
    structures: Sequence,
    *,
    energy_and_forces: EnergyAndForces | None = None,
    groups: Sequence[str] = GROUPS,
    settings: CheckSettings | None = None,
    thresholds: Thresholds | None = None,
    checkpoint: str | None = None,
    training_record: TrainingRecord = NO_TRAINING_RECORD,
    dipole_r2: tuple[str, float] | None = None,
) -> CheckReport:
    """Check that a model's energy surface is physically sane; returns a :class:`CheckReport`.

    Runs in float64 (x64 is switched on for the duration; ``params`` are cast), apart from the float32 side of
    group ``precision``.

    Args:
      model: a :class:`physnetjax.PhysNet` (its cutoffs define the scans and graphs).
      params: its variables ``{"params": ...}`` in any float dtype.
      structures: isolated molecules, each a :class:`Structure` or a tuple
        (Z (n,), R (n, 3) Å[, total charge e]), or cells periodic along x, y and z (a :class:`Structure` with its
        ``cell``), checked as crystals with their images (module docstring).
      energy_and_forces: the function to check, ``f(params, batch) -> dict`` like
        :func:`physnetjax.apply_batch` (default: the model's own); tests inject
        broken ones here.
      groups: subset of ``("forces", "invariance", "smoothness", "stability", "references", "precision")``.
      settings, thresholds: see :mod:`physnetjax.check.settings` (defaults: full run).
      checkpoint: path shown in the report.
      training_record: what the model's training data held (checkpoint metadata,
        :class:`~physnetjax.training_record.TrainingRecord`). Where it records the elements,
        each structure gets a row ``inputs.trained_elements`` (group ``inputs``) that warns
        about elements the model never saw in training; where it records the total charges,
        a row ``inputs.trained_charges`` that warns about a total charge no training frame had; where it records
        the interatomic distances, a row ``inputs.trained_distances`` that warns about a structure lying outside
        them by more than :data:`~physnetjax.distance_domain.DOMAIN_MARGIN`.
      dipole_r2: (split, R²) of the dipole in the molecular frame the checkpoint records
        (:func:`physnetjax.dipole_surface.recorded_r2` of its metadata; None: none recorded). A model with charges
        gets one row ``inputs.dipole_surface`` (structure 0) that warns below
        :data:`~physnetjax.dipole_surface.IR_R2_THRESHOLD`: its IR intensities are unreliable.

    Raises:
      ValueError: unknown group, or a structure that is not a valid molecule or cell.
      DataError: a structure periodic along one or two directions (:attr:`Structure.cell`) whose atoms lie within
        the model's reach (:func:`~physnetjax.neighbors.image_reach`) of a periodic image: a slab or wire, which the
        check does not take (:func:`crystals_and_molecules`); a crystal with a charge model without a Coulomb
        long-range cutoff.
    """
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown check groups {unknown}; choose from {list(GROUPS)}")
    settings = settings or CheckSettings()
    thresholds = thresholds or Thresholds()
    structures = [as_structure(item, k, model.supported_max_atomic_number) for k, item in enumerate(structures)]
    if not structures:
        raise ValueError("check_model needs at least one structure")
    structures = crystals_and_molecules(structures, model)
    training_record = training_record_of(training_record)
    results = [dipole_surface_result(*dipole_r2)] if model.charges and dipole_r2 is not None else []
    if training_record.elements is not None:
        results += [trained_elements_result(s, k, training_record.elements) for k, s in enumerate(structures)]
    if training_record.charges is not None:
        results += [trained_charges_result(s, k, training_record.charges) for k, s in enumerate(structures)]
    if training_record.distances is not None:
        results += [trained_distances_result(s, k, training_record.distances) for k, s in enumerate(structures)]
    with jax.enable_x64(True):
        params64 = cast_to_float64(params)
        for index, structure in enumerate(structures):
            evaluator = Evaluator(model, params64, structure, energy_and_forces)
            checks = _CELL_CHECKS if structure.periodic else _GROUP_CHECKS
            for group in GROUPS:
                if group not in groups:
                    continue
                for check in checks[group]:
                    logger.info("structure %d (%s): %s", index, structure.name, check.__name__)
                    results.extend(check(evaluator, index, settings, thresholds))
    summaries = [structure_summary(s, k, groups) for k, s in enumerate(structures)]
    return CheckReport(results, summaries, model.config(), settings.to_dict(), checkpoint)


def structure_summary(structure: Structure, index: int, groups: Sequence[str]) -> dict:
    """The report's entry of one structure: index, name, formula, num_atoms, total_charge; for a crystal also its
    ``cell`` (3, 3) Å, ``volume_A3`` and ``not_checked`` (the rows or groups of
    :data:`~physnetjax.check.cell_invariance.NOT_APPLICABLE` among the selected ``groups``, each with the reason)."""
    summary = {"index": index, "name": structure.name, "formula": structure.formula(),
               "num_atoms": structure.num_atoms, "total_charge": structure.total_charge}
    if structure.periodic:
        summary.update(cell=structure.cell.tolist(), volume_A3=structure.volume,
                       not_checked={name: reason for name, reason in NOT_APPLICABLE.items()
                                    if name.split(".")[0] in groups})
    return summary


def trained_elements_result(structure: Structure, index: int, trained_elements) -> CheckResult:
    """Row ``inputs.trained_elements``: value = number of atoms of elements absent from the training data."""
    unseen = unseen_elements(structure.atomic_numbers, trained_elements)
    count = int(np.isin(structure.atomic_numbers, unseen).sum())
    trained = ", ".join(SYMBOLS[int(z)] for z in sorted(trained_elements))
    message = (f"elements {', '.join(element(z) for z in unseen)} never occurred in training (trained on {trained})"
               if unseen else f"all elements occurred in training ({trained})")
    return CheckResult.measured("inputs.trained_elements", "inputs", index, count, "atoms", (0.0, math.inf), message,
                                {"unseen_elements": unseen, "trained_elements": sorted(int(z) for z in trained_elements)})


def trained_charges_result(structure: Structure, index: int, trained_charges) -> CheckResult:
    """Row ``inputs.trained_charges``: value = distance (e) of the total charge from the nearest trained one."""
    trained = sorted(float(q) for q in trained_charges)
    q = float(structure.total_charge)
    distance = 0.0 if not untrained_charges([q], trained) else float(np.min(np.abs(np.asarray(trained) - q)))
    listed = ", ".join(f"{t:g}" for t in trained)
    message = (f"total charge {q:g} e never occurred in training (trained on {listed} e)" if distance
               else f"total charge {q:g} e occurred in training ({listed} e)")
    return CheckResult.measured("inputs.trained_charges", "inputs", index, distance, "e", (0.0, math.inf), message,
                                {"total_charge": q, "trained_charges": trained})


def trained_distances_result(structure: Structure, index: int, distances: DistanceDomain) -> CheckResult:
    """Row ``inputs.trained_distances``: value = the structure's largest relative excursion beyond the training
    data's interatomic distances, judged isolated or, for a crystal, with its images (:meth:`DistanceDomain.excursion
    <physnetjax.distance_domain.DistanceDomain.excursion>`: 1 − d / r_min of a pair, r_nn / r_nn,max − 1 of an atom's
    nearest neighbour, (n − n_max) / max(n_max, 10) of its neighbour count within the cutoff; 0 inside)."""
    periodic = {"cell": structure.cell, "pbc": (True, True, True)} if structure.periodic else {}
    excursion, outside = distances.excursion(structure.atomic_numbers, structure.positions, **periodic)
    message = outside or (f"interatomic distances within {DOMAIN_MARGIN:.0%} of those of the training data "
                          f"(largest excursion {excursion:.1%})")
    return CheckResult.measured("inputs.trained_distances", "inputs", index, excursion, "relative",
                                (DOMAIN_MARGIN, math.inf), message, {"cutoff_A": distances.cutoff})


def dipole_surface_result(split: str, r2: float) -> CheckResult:
    """Row ``inputs.dipole_surface``, one for the model (under structure 0): value = 1 − R² of the dipole in the
    molecular frame on ``split`` (:mod:`physnetjax.dipole_surface`), the fraction of the labels' vibrational dipole
    spread the model leaves unexplained; warns above 1 − :data:`~physnetjax.dipole_surface.IR_R2_THRESHOLD` with
    :func:`~physnetjax.dipole_surface.unreliable_ir_message`."""
    message = unreliable_ir_message(split, r2) or (
        f"dipole R² in the molecular frame {r2:.2f} on the {split} split (at least {IR_R2_THRESHOLD:g}: IR "
        "intensities follow the dipole derivatives)")
    return CheckResult.measured("inputs.dipole_surface", "inputs", 0, 1.0 - r2, "1 − R²",
                                (1.0 - IR_R2_THRESHOLD, math.inf), message, {"split": split, "r2": r2})
