"""Check 6: precision — the float32 energies and forces MD runs on, against float64, on this device.

MD, the calculator and ``predict`` compute in float32 by default; every other check runs in
float64. This one evaluates the same function in float32 (x64 switched off for the call,
parameters and positions cast, so nothing is promoted to float64 on the way) at the structure's
geometry and at ``displacement_trials`` random moves of ``displacement`` Å per atom, and
compares with float64 at the same geometries (the molecule centred first, as ``predict`` does:
float32 coordinates far from the origin would add their own rounding; a periodic cell keeps its atoms
wrapped into the cell, as ``predict_periodic`` does; the element energies
Σ_i E0[Z_i] are added to the float32 energy in float64, as ``predict`` and the calculator add them):

    ``precision.float32_forces``  = max_k,i |F32_ki − F64_ki|                 (eV/Å)
    ``precision.float32_energy``  = max_k |E32_k − E64_k| / n · 1000         (meV/atom)
    ``precision.float32_stress``  = max_k,ab |σ32_k,ab − σ64_k,ab|           (GPa; cells periodic along x, y, z)

The stress row is what NPT MD and the calculator's ``get_stress`` run on in float32: σ = (1/V) ∂E/∂ε sums a
virial over every pair, so rounding that leaves the forces alone can still shift the pressure.

Full IEEE float32 gives 6e-6 eV/Å and 1e-4 meV/atom for the shipped ethanol model (over
150× below the warn bounds of :class:`~physnetjax.check.settings.Thresholds`). Larger
differences come from products computed at reduced precision: XLA's default precision on
NVIDIA GPUs since Ampere is TF32 (4.2 meV/Å for that model on an H200, see
:mod:`physnetjax.matmul_precision`), or a ``jax_default_matmul_precision`` the user set. The
details name the backend, the device and that setting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.calculator import cast_params
from physnetjax.check.evaluate import Evaluator, Structure, model_energy_and_forces
from physnetjax.check.report import CheckResult, status_of
from physnetjax.check.settings import CheckSettings, Thresholds
from physnetjax.check.stability import random_displacements
from physnetjax.matmul_precision import MODEL_MATMUL_PRECISION
from physnetjax.predict import element_energy_sum, split_element_energies
from physnetjax.units import GPA

GROUP = "precision"
FLOAT64 = "compute in float64 (md and eval --float64, the calculator's dtype='float64')"


def float32_and_float64(evaluator: Evaluator, positions: np.ndarray) -> tuple:
    """(E32 (K,), F32 (K, n, 3), S32, E64 (K,), F64 (K, n, 3), S64) eV, eV/Å and eV/Å³ of ``evaluator``'s function
    at ``positions`` (K, n, 3) Å; float32 with x64 off, float64 with x64 on (whatever the caller's setting). S32 and
    S64 (K, 3, 3) are the stresses at the structure's cell when it is periodic along x, y and z, else None.

    For the model's own function the element energies Σ_i E0[Z_i] are added to the float32 energy in float64, as
    ``predict`` and the calculator add them (:func:`~physnetjax.predict.split_element_energies`); an injected
    function is evaluated as it is.
    """
    own = evaluator.fn is model_energy_and_forces(evaluator.model)
    network, element_energies = split_element_energies(evaluator.model) if own else (evaluator.model, None)
    periodic = evaluator.structure.periodic
    with jax.enable_x64(False):
        single = Evaluator(network.clone(param_dtype=jnp.float32), cast_params(evaluator.params, np.float32),
                           evaluator.structure, None if own else evaluator.fn, dtype=np.float32)
        energies32, forces32 = single.evaluate(positions)
        stress32 = np.stack([single.stress(r) for r in positions]).astype(np.float64) if periodic else None
    with jax.enable_x64(True):
        energies64, forces64 = evaluator.evaluate(positions)
        stress64 = np.stack([evaluator.stress(r) for r in positions]) if periodic else None
    energies32 = energies32[:, 0].astype(np.float64) + element_energy_sum(element_energies,
                                                                          evaluator.structure.atomic_numbers)
    return energies32, forces32, stress32, energies64[:, 0], forces64, stress64


def _precision_in_use() -> str:
    """The precision the model's float32 products are traced at, as a reader of the report needs it."""
    chosen = jax.config.jax_default_matmul_precision
    return f"{chosen!r} (jax_default_matmul_precision)" if chosen else f"{MODEL_MATMUL_PRECISION!r} (physnetjax)"


def _remedy() -> str:
    """What to do about float32 results far from float64."""
    chosen = jax.config.jax_default_matmul_precision
    if chosen and chosen != MODEL_MATMUL_PRECISION:
        return (f"jax_default_matmul_precision is {chosen!r}: unset it (the model then computes its products in "
                f"full float32, {MODEL_MATMUL_PRECISION!r}) or {FLOAT64}")
    return FLOAT64


def check_precision(evaluator: Evaluator, index: int, settings: CheckSettings, thresholds: Thresholds) -> list:
    """Results ``precision.float32_forces``, ``precision.float32_energy`` and, for a crystal,
    ``precision.float32_stress`` (see module docstring)."""
    s = evaluator.structure
    centred = np.asarray(s.positions, np.float64)
    if not s.periodic:
        centred = centred - centred.mean(axis=0)
    moves = random_displacements(np.random.default_rng(settings.seed + 5), settings.displacement_trials,
                                 s.num_atoms, settings.displacement)
    centred_evaluator = Evaluator(evaluator.model, evaluator.params, Structure(
        s.atomic_numbers, centred, s.total_charge, s.name, s.cell), evaluator.fn)
    energies32, forces32, stress32, energies64, forces64, stress64 = float32_and_float64(
        centred_evaluator, np.concatenate([centred[None], centred[None] + moves]))
    force_error = np.linalg.norm(forces32 - forces64, axis=-1)
    energy_error = 1e3 * np.abs(energies32 - energies64) / s.num_atoms
    device = jax.devices()[0]
    where = f"on {jax.default_backend()} ({device.device_kind}), products at {_precision_in_use()}"
    details = {"max_force_error_eV_per_A": float(force_error.max()),
               "rms_force_error_eV_per_A": float(np.sqrt(np.mean(force_error ** 2))),
               "max_energy_error_meV_per_atom": float(energy_error.max()), "geometries": len(energies32),
               "backend": jax.default_backend(), "device": device.device_kind,
               "matmul_precision": jax.config.jax_default_matmul_precision or MODEL_MATMUL_PRECISION}
    forces_value, energy_value = float(force_error.max()), float(energy_error.max())

    def verdict(value, limits, what):
        close = status_of(value, *limits) == "pass"
        return f"{what} {where}" + ("" if close else f": {_remedy()}")

    results = [
        CheckResult.measured(
            "precision.float32_forces", GROUP, index, forces_value, "eV/Å", thresholds.float32_forces,
            verdict(forces_value, thresholds.float32_forces,
                    f"float32 forces within {1e3 * forces_value:.3g} meV/Å of float64 (RMS "
                    f"{1e3 * details['rms_force_error_eV_per_A']:.2g}, {len(energies32)} geometries)"), details),
        CheckResult.measured(
            "precision.float32_energy", GROUP, index, energy_value, "meV/atom", thresholds.float32_energy,
            verdict(energy_value, thresholds.float32_energy,
                    f"float32 energies within {energy_value:.3g} meV/atom of float64"), details),
    ]
    if stress32 is not None:
        stress_error = np.abs(stress32 - stress64) / GPA
        stress_value = float(stress_error.max())
        stress_details = {**details, "max_stress_error_GPa": stress_value,
                          "max_abs_stress_GPa": float(np.abs(stress64).max() / GPA)}
        results.append(CheckResult.measured(
            "precision.float32_stress", GROUP, index, stress_value, "GPa", thresholds.float32_stress,
            verdict(stress_value, thresholds.float32_stress,
                    f"float32 stress within {stress_value:.3g} GPa of float64 (|σ| up to "
                    f"{stress_details['max_abs_stress_GPa']:.3g} GPa)"), stress_details))
    return results
