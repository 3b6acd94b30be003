"""Check 3, periodic cells: energy, forces and stress along an isotropic strain scan through every cutoff.

A bond-stretch scan (:mod:`~physnetjax.check.smoothness`) pulls one atom away from a molecule; in a
crystal it would run into its neighbours and their images. A crystal is scanned by scaling it
instead: positions R (n, 3) Å and cell h (3, 3) Å both mapped by D = s I,

    r → s r,   h → s h,   s ∈ [1 − δ, 1 + δ],

so that every pair vector, images included, is scaled by s, and a pair of length d in the given
cell crosses a cutoff c at s = c / d. A rattled crystal has pairs of many lengths, so each cutoff
of the model (:func:`~physnetjax.check.smoothness.model_cutoffs`) is crossed by the pairs of
length c / (1 + δ) < d < c / (1 − δ), each at its own s. δ = min(:data:`MAX_SCALE_CHANGE`,
0.9 skin / (c_max + skin)) with skin = :data:`~physnetjax.check.evaluate.PERIODIC_SKIN`: the
pair lists of the check reach skin beyond each cutoff, so no pair outside them comes within a
cutoff when the crystal is compressed. Steps: h_s = ``scan_step`` / c_max (the pairs at the
largest cutoff move by ``scan_step`` Å per step).

Per step, with the slope dE/ds = V(s) tr σ(s) / s (an isotropic strain e changes s by s e, and
∂E/∂ε_ab = V σ_ab; V(s) = s³ V₀ Å³, σ eV/Å³ the function's stress), the force jumps
J_k = max_i |F_i(s_k+1) − F_i(s_k)| and the energy residuals of the trapezoid rule are searched
and refined as in the bond scans (:func:`~physnetjax.check.smoothness.find_discontinuities`):
suspicious intervals, and those where a pair crosses a cutoff (the :data:`MARKED_CROSSINGS` of
each cutoff nearest to s = 1), are re-scanned down to h_s / refine³; a jump that keeps its size
is a discontinuity and fails the row. A smooth error of the slope (a stress that is not the
strain derivative of the energy) shrinks with the step and is not flagged here: ``forces.fd.stress``
judges it; it does raise ``max_energy_residual_eV``.

Row ``smoothness.strain`` (group ``smoothness``): value the largest force jump per step (eV/Å),
thresholds ``Thresholds.smoothness`` (reported only by default). It warns when a cutoff is not
crossed by any pair within the scan (a small cell whose pair lengths all lie away from it) and,
as the bond scans do, when energy and forces do not change along the scan.
"""

from __future__ import annotations

import numpy as np

from physnetjax.check.evaluate import PERIODIC_SKIN, Evaluator
from physnetjax.check.report import CheckResult
from physnetjax.check.settings import CheckSettings, Thresholds
from physnetjax.check.smoothness import ENERGY_JUMP_FLOOR, FORCE_JUMP_FLOOR, GROUP, find_discontinuities, model_cutoffs
from physnetjax.neighbors.periodic import periodic_pairs

MAX_SCALE_CHANGE = 0.1
"""Largest relative change of the cell's scale in the scan (δ, module docstring)."""
MARKED_CROSSINGS = 8
"""Per cutoff, this many crossings of a pair (those nearest to s = 1) have their interval refined in any case."""


def scale_range(cutoffs: dict) -> float:
    """δ of the module docstring for the model's ``cutoffs`` (name → Å)."""
    largest = max(cutoffs.values())
    return min(MAX_SCALE_CHANGE, 0.9 * PERIODIC_SKIN / (largest + PERIODIC_SKIN))


def pair_lengths(evaluator: Evaluator, reach: float) -> np.ndarray:
    """Lengths (Å) of the crystal's pairs, images included, shorter than ``reach`` (each pair once per direction)."""
    s = evaluator.structure
    dst, src, shifts = periodic_pairs(np.asarray(s.positions, np.float64), np.asarray(s.cell, np.float64), reach)
    return np.linalg.norm(s.positions[src] - s.positions[dst] + shifts, axis=-1)


def crossings(lengths: np.ndarray, cutoffs: dict, delta: float) -> dict:
    """Scale factors s = c / d at which a pair of length d crosses each cutoff c within [1 − δ, 1 + δ], nearest to 1
    first: name → (m,) array."""
    found = {}
    for name, cutoff in cutoffs.items():
        scales = np.unique(cutoff / lengths[(lengths > cutoff / (1 + delta)) & (lengths < cutoff / (1 - delta))])
        found[name] = scales[np.argsort(np.abs(scales - 1.0), kind="stable")]
    return found


def check_cell_smoothness(evaluator: Evaluator, index: int, settings: CheckSettings, thresholds: Thresholds) -> list:
    """One result ``smoothness.strain``: the isotropic strain scan of a crystal (module docstring)."""
    structure = evaluator.structure
    cutoffs = model_cutoffs(evaluator.model)
    delta = scale_range(cutoffs)
    step = settings.scan_step / max(cutoffs.values())
    scales = np.linspace(1.0 - delta, 1.0 + delta, int(np.ceil(2 * delta / step)) + 1)
    volume = abs(float(np.linalg.det(structure.cell)))
    positions = np.asarray(structure.positions, np.float64)

    def sample(points):
        energies, forces, stress = evaluator.strained_outputs(positions, points[:, None, None] * np.eye(3))
        slopes = volume * points ** 2 * np.trace(stress, axis1=1, axis2=2)
        return energies[:, 0], forces, slopes

    crossed = crossings(pair_lengths(evaluator, max(cutoffs.values()) / (1 - delta)), cutoffs, delta)
    marks = np.concatenate([found[:MARKED_CROSSINGS] for found in crossed.values()])
    scan = find_discontinuities(sample, scales, marks, settings, "between_scale")
    jumps, found = scan["jumps"], scan["discontinuities"]
    worst = int(np.argmax(jumps))
    details = {
        "scale_range": [float(scales[0]), float(scales[-1])], "scale_step": float(scales[1] - scales[0]),
        "points": len(scales), "cutoffs_A": cutoffs,
        "pairs_crossing": {name: int(len(values)) for name, values in crossed.items()},
        "max_force_jump_eV_per_A": float(jumps[worst]), "max_force_jump_at_scale": float(scales[worst]),
        "max_energy_residual_eV": float(scan["residual"].max()), "energy_span_eV": float(np.ptp(scan["energies"])),
        "refined_intervals": scan["refined_intervals"], "crossing_intervals_refined": scan["marked_intervals"],
        "discontinuities": found,
    }
    failure = None
    if found:
        failure = "discontinuous: " + ", ".join(
            f"{f['kind']} jump {f['size']:.2g} {f['unit']} at scale {f['between_scale'][0]:.4f}–"
            f"{f['between_scale'][1]:.4f}" for f in found[:3])
    message = (f"cell scaled by {scales[0]:.3f}–{scales[-1]:.3f}: max ΔF {details['max_force_jump_eV_per_A']:.2g} "
               f"eV/Å per step of {details['scale_step']:.2g} at scale {details['max_force_jump_at_scale']:.3f}; "
               "pairs crossing " + ", ".join(f"{name} {count}" for name, count in details["pairs_crossing"].items()))
    warnings = []
    missed = [name for name, count in details["pairs_crossing"].items() if count == 0]
    if missed:
        warnings.append(f"cutoffs no pair crosses within the scan: {', '.join(missed)} (a larger or rattled cell "
                        "crosses them)")
    if details["max_force_jump_eV_per_A"] <= FORCE_JUMP_FLOOR and details["energy_span_eV"] <= ENERGY_JUMP_FLOOR:
        warnings.append("energy and forces do not change along the scan: the energy does not depend on the "
                        "geometry, an untrained or broken model")
    return [CheckResult.measured("smoothness.strain", GROUP, index, details["max_force_jump_eV_per_A"], "eV/Å",
                                 thresholds.smoothness, message, details, failure, "; ".join(warnings) or None)]
