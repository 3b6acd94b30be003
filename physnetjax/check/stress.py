"""Check 1, periodic cells: the stress against central differences of the energy under strain.

A cell periodic along x, y and z, positions R (n, 3) Å and cell vectors h (3, 3) Å as rows, is
strained homogeneously by a deformation D = I + ε (ε symmetric, dimensionless) applied to both,
r → r D and h → h D. Its stress, in ASE's convention (positive under tension: a stretched crystal
whose energy rises as it is stretched further; pressure P = −tr σ / 3), is

    σ_ab = (1/V) ∂E/∂ε_ab        (eV/Å³, V = |det h| Å³)

Central differences about a state D₀ (positions R D₀, cell h D₀, volume V₀ = |det(h D₀)|), with
step η = ``CheckSettings.fd_strain_step`` and for each of the six pairs a ≤ b the symmetric unit
strain S_ab = (e_ab + e_ba) / 2 (S_aa = e_aa)::

    σ_FD,ab = σ_FD,ba = [E(D₀ (I + η S_ab)) − E(D₀ (I − η S_ab))] / (2 η V₀)

twelve energies per state (:func:`numerical_stress`), compared with the function's own ``stress``
at two states: the given cell (D₀ = I) and D₀ = I + ε₀, a random symmetric strain with every
component up to ``CheckSettings.cell_strain`` (2 %), every atom also moved by ``displacement`` Å
in a random direction (seed ``seed + 3``). A relaxed crystal has σ ≈ 0 at its given cell, where a
flipped sign or a wrong volume would go unseen; at the strained cell its stress is GPa-sized.

Row ``forces.fd.stress`` (group ``forces``, the derivative checks): value max_ab |σ − σ_FD| over
both states in GPa (:data:`physnetjax.units.GPA`), thresholds ``Thresholds.stress_fd``. The
least-squares slope s = ⟨σ, σ_FD⟩ / ⟨σ_FD, σ_FD⟩ over both states says what is wrong: 1 is right,
−1 a flipped sign (the virial −Vσ or the pressure given as the stress), V_true / V_used a wrong
volume (2 for a cell of half the volume). It fails when |s − 1| > ``Thresholds.fd_ratio`` where it
is resolved: where fd_ratio · max|σ_FD| (GPa) exceeds the warn bound of ``stress_fd``. A stress
that is zero at both states while its finite differences are too (max ≤ :data:`STRESS_FLOOR`: an
energy that ignores the cell, an untrained or broken model) warns: the comparison then tests nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from physnetjax.check.evaluate import Evaluator
from physnetjax.check.report import CheckResult
from physnetjax.check.settings import CheckSettings, Thresholds
from physnetjax.check.stability import random_displacements
from physnetjax.units import GPA

GROUP = "forces"
STRESS_FLOOR = 1e-9
"""eV/Å³ (1.6e-7 GPa): a stress no larger than this everywhere is "absent" (no slope is computed)."""
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
"""The six independent components (a, b) of a symmetric tensor, in ASE's Voigt order xx, yy, zz, yz, xz, xy."""


def strain_steps(step: float) -> np.ndarray:
    """(12, 3, 3) deformations I + η S_ab, I − η S_ab for each pair (a, b) of :data:`VOIGT_PAIRS` in turn (η =
    ``step``; S_ab = (e_ab + e_ba) / 2, the symmetric unit strain)."""
    steps = []
    for a, b in VOIGT_PAIRS:
        unit = np.zeros((3, 3))
        unit[a, b] += 0.5
        unit[b, a] += 0.5
        steps += [np.eye(3) + step * unit, np.eye(3) - step * unit]
    return np.stack(steps)


def numerical_stress(energy_of: Callable[[np.ndarray], np.ndarray], cell: np.ndarray, deformation: np.ndarray,
                     step: float) -> np.ndarray:
    """(3, 3) eV/Å³: σ_FD of the module docstring at the state ``deformation`` D₀ (3, 3).

    Args:
      energy_of: maps deformations (K, 3, 3) D to the energies (K,) eV of the crystal with positions R D and cell
        h D (R, h: its positions and ``cell`` at D = I).
      cell: (3, 3) Å, h, the cell vectors as rows at D = I.
      deformation: (3, 3) D₀.
      step: η, the strain step (dimensionless).
    """
    energies = np.asarray(energy_of(deformation @ strain_steps(step)), np.float64)
    volume = abs(np.linalg.det(cell @ deformation))
    stress = np.zeros((3, 3))
    for k, (a, b) in enumerate(VOIGT_PAIRS):
        stress[a, b] = stress[b, a] = (energies[2 * k] - energies[2 * k + 1]) / (2.0 * step * volume)
    return stress


def random_strain(rng: np.random.Generator, size: float) -> np.ndarray:
    """(3, 3) symmetric strain ε with components uniform in [−size, size] (dimensionless)."""
    strain = rng.uniform(-size, size, (3, 3))
    return np.triu(strain) + np.triu(strain, 1).T


def _ratio_failure(ratio: float, limit: float) -> str | None:
    """Why a stress slope s = σ / σ_FD fails, or None when |s − 1| ≤ limit."""
    if abs(ratio - 1.0) <= limit:
        return None
    if ratio < 0:
        return (f"sign flipped (analytic/numerical = {ratio:.6g}; σ = (1/V) ∂E/∂ε is positive under tension, as in "
                "ASE: a virial −Vσ or a pressure given as the stress?)")
    return f"analytic/numerical = {ratio:.6g} (a wrong volume V or strain factor?)"


def check_stress(evaluator: Evaluator, index: int, settings: CheckSettings, thresholds: Thresholds) -> list:
    """Row ``forces.fd.stress`` of a cell periodic along x, y and z (module docstring); none for a molecule.

    details: ``max_abs_error_GPa``, ``rms_error_GPa``, ``max_abs_numerical_GPa``, ``ratio``, ``ratio_judged``,
    ``sign`` ("same", "flipped" or "none"), ``per_state`` (max error and max |σ_FD| in GPa at the given cell, then at
    the strained one), ``stress_GPa`` and ``numerical_stress_GPa`` (both states, (2, 3, 3)), ``pressure_GPa`` (at the
    given cell, −tr σ / 3), ``strain`` (ε₀), ``fd_strain_step``, ``zero_stress``.
    """
    structure = evaluator.structure
    if not structure.periodic:
        return []
    rng = np.random.default_rng(settings.seed + 3)
    strain = random_strain(rng, settings.cell_strain)
    given = np.asarray(structure.positions, np.float64)
    moved = given + random_displacements(rng, 1, structure.num_atoms, settings.displacement)[0]
    states = [(given, np.eye(3)), (moved, np.eye(3) + strain)]
    analytic = np.stack([evaluator.stress(r, d) for r, d in states]) / GPA
    numeric = np.stack([numerical_stress(lambda ds, r=r: evaluator.strained_energies(r, ds), structure.cell, d,
                                         settings.fd_strain_step) for r, d in states]) / GPA
    error = np.abs(analytic - numeric)
    scale = float(np.max(np.abs(numeric)))
    floor = STRESS_FLOOR / GPA
    ratio = float(np.vdot(analytic, numeric) / np.vdot(numeric, numeric)) if scale > floor else None
    judged = ratio is not None and thresholds.fd_ratio * scale > thresholds.stress_fd[0]
    zero = max(scale, float(np.max(np.abs(analytic)))) <= floor
    details = {"max_abs_error_GPa": float(error.max()), "rms_error_GPa": float(np.sqrt(np.mean(error ** 2))),
               "max_abs_numerical_GPa": scale, "ratio": ratio, "ratio_judged": judged,
               "sign": "none" if ratio is None else ("flipped" if ratio < 0 else "same"),
               "per_state": [{"max_abs_error_GPa": float(error[k].max()),
                              "max_abs_numerical_GPa": float(np.abs(numeric[k]).max())} for k in range(2)],
               "stress_GPa": analytic, "numerical_stress_GPa": numeric,
               "pressure_GPa": float(-np.trace(analytic[0]) / 3.0), "strain": strain,
               "fd_strain_step": settings.fd_strain_step, "zero_stress": zero}
    ratio_text = "n/a" if ratio is None else f"{ratio:.6g}"
    message = (f"σ = (1/V) ∂E/∂ε at the cell and at a {settings.cell_strain:.0%} random strain with "
               f"{settings.displacement:g} Å random moves: max err {details['max_abs_error_GPa']:.2e} GPa, ratio "
               f"{ratio_text}; pressure at the cell {details['pressure_GPa']:.3g} GPa")
    if ratio is not None and not judged:
        message += (f" (ratio not judged: max |σ_FD| {scale:.2g} GPa is too small for one; the absolute error is "
                    "judged)")
    failure = _ratio_failure(ratio, thresholds.fd_ratio) if judged else None
    warning = None
    if zero:
        warning = (f"the stress is zero (max |σ| ≤ {floor:.2g} GPa at both cells) and so are its finite differences: "
                   "the energy does not depend on the cell, an untrained or broken model, and the check tests nothing")
    return [CheckResult.measured("forces.fd.stress", GROUP, index, details["max_abs_error_GPa"], "GPa",
                                 thresholds.stress_fd, message, details, failure, warning)]
