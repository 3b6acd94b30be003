"""Geometry optimisation of one molecule: L-BFGS with a zoom line search, in float64 inside jit.

The whole loop is one ``jax.lax.while_loop`` around ``optax.lbfgs`` (memory 10,
initial inverse Hessian scaled by the last curvature pair, step lengths from the zoom
line search that enforces the strong Wolfe conditions). L-BFGS rather than FIRE:
near a minimum it converges superlinearly, which is what reaching max |F| ≤ 1e-4 eV/Å
(or tighter, for a clean Hessian) needs, and the line search guarantees a decrease of
the energy at every step without a time step or mass to tune. Translations and
rotations are flat directions of the energy; they carry no gradient, so the iterates
never move along them beyond the first step.

Convergence: max_i |F_i| ≤ ``fmax`` with F_i = −∂E/∂R_i the force on atom i (the
Euclidean norm per atom, as ASE's ``fmax``). The loop also stops when ``max_steps``
steps are done, when a step raised the energy by more than its round-off
(:data:`ENERGY_ROUND_OFF` relative: the line search failed to find a decrease) or when
the energy is not finite; these raise :class:`OptimizationError` carrying the last geometry.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from physnetjax.calculator import cast_params
from physnetjax.errors import PhysNetInputError, PhysNetInputWarning, RunStoppedError, displayed, displayed_setting
from physnetjax.training_record import NO_TRAINING_RECORD, TrainingRecord, training_record_of
from physnetjax.units import ANGSTROM_PER_BOHR
from physnetjax.validation import (
    BOND_RATIO_MIN,
    bond_length_ratios,
    check_length_unit,
    check_range,
    position_unit_question,
    stretched_bond_ratio,
    validate_structure,
)
from physnetjax.spectra.molecule import molecule_functions

DEFAULT_FMAX = 1e-4
"""Default convergence threshold on max_i |F_i| in eV/Å."""

DEFAULT_MAX_STEPS = 1000
"""Default largest number of L-BFGS steps."""

ENERGY_ROUND_OFF = 1e-10
"""Relative rise of the energy over one step that is still taken as round-off. Near a tight
minimum (max |F| ~ 1e-7 eV/Å) a step changes E by less than float64 resolves, and the
evaluation of a model energy of ~10³ eV scatters by ~1e-13 relative, so such steps can raise
E by a few ulp and L-BFGS, driven by the gradient, still converges; a failed line search
(a gradient that does not match the energy) raises E by far more."""


class OptimizationError(RunStoppedError):
    """The optimisation stopped before max |F| ≤ fmax (a :class:`~physnetjax.errors.RunStoppedError`: CLI exit 4).

    Attributes:
      summary: what happened and what to change, without where the last geometry is (the message adds that:
        ``.positions`` here; a command line that writes it to a file says so instead).
      positions: (N, 3) Å, the last geometry.  energy: its energy in eV.
      fmax: its max_i |F_i| in eV/Å.  steps: L-BFGS steps taken.
    """

    def __init__(self, summary: str, positions: np.ndarray, energy: float, fmax: float, steps: int,
                 kept: str = "in the error's .positions"):
        super().__init__(f"{summary}; the last geometry is kept {kept}")
        self.summary = summary
        self.positions = positions
        self.energy = energy
        self.fmax = fmax
        self.steps = steps


@dataclasses.dataclass(frozen=True)
class OptimizationResult:
    """A converged optimisation: ``positions`` (N, 3) Å, ``energy`` eV, ``fmax`` = max_i |F_i| eV/Å, ``steps``."""

    positions: np.ndarray
    energy: float
    fmax: float
    steps: int


def check_optimizer_settings(fmax: float, max_steps: int, names: Optional[Mapping[str, str]] = None) -> None:
    """ValueError unless ``fmax`` (eV/Å) is finite and > 0 and ``max_steps`` an integer >= 1; the messages name them
    by keyword or as ``names`` does (a command line passes its options, e.g. ``{"fmax": "--fmax"}``)."""
    check_range(displayed("fmax", names), fmax, "eV/Å", 0.0, strict=True)
    if int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"{displayed('max_steps', names)} must be an integer >= 1, received {max_steps}")


def minimize(energy_fn, positions, args=(), *, fmax: float = DEFAULT_FMAX,
             max_steps: int = DEFAULT_MAX_STEPS, names: Optional[Mapping[str, str]] = None) -> OptimizationResult:
    """Minimise ``energy_fn(positions, *args)`` over the positions (float64, one jitted loop).

    Args:
      energy_fn: pure, JAX-differentiable ``(positions (N, 3) Å, *args) -> () eV``.
      positions: (N, 3) start geometry in Å.
      args: further arguments of ``energy_fn`` (e.g. the parameters), traced.
      fmax: convergence threshold on max_i |∂E/∂R_i| in eV/Å (> 0).
      max_steps: largest number of L-BFGS steps (≥ 1).
      names: keyword (``fmax``, ``max_steps``) → how the messages name it (a command line passes its
        options, e.g. ``{"max_steps": "--max-steps"}``); by default the keyword.

    Returns:
      :class:`OptimizationResult` at the first iterate with max |F| ≤ fmax.

    Raises:
      ValueError: fmax not finite and > 0 (an infinite one would accept any geometry as converged),
        max_steps < 1 (:func:`check_optimizer_settings`), or positions not finite (N, 3).
      OptimizationError: not converged (the message says why; the last geometry is kept).
    """
    check_optimizer_settings(fmax, max_steps, names)
    start = np.asarray(positions, dtype=np.float64)
    if start.ndim != 2 or start.shape[1] != 3 or not np.isfinite(start).all():
        raise ValueError(f"positions must be finite with shape (N, 3), received shape {start.shape}")
    with jax.enable_x64(True):
        final, energy, force_max, steps, downhill = jax.device_get(
            _lbfgs_loop(energy_fn)(jnp.asarray(start), tuple(args), fmax, int(max_steps))
        )
    energy, force_max, steps = float(energy), float(force_max), int(steps)
    if force_max <= fmax:
        return OptimizationResult(positions=np.asarray(final), energy=energy, fmax=force_max, steps=steps)
    if not np.isfinite(energy) or not np.isfinite(force_max):
        reason = f"the energy or forces became non-finite (E = {energy} eV, max |F| = {force_max} eV/Å)"
    elif not downhill:
        reason = (f"the line search found no lower energy at max |F| = {force_max:.3e} eV/Å: either the energy "
                  f"is flat to float64 round-off there (loosen {displayed('fmax', names)}) or its gradient does "
                  "not match it")
    else:
        reason = (f"max |F| = {force_max:.3e} eV/Å after {displayed_setting('max_steps', steps, names)}; raise "
                  f"{displayed('max_steps', names)}")
    raise OptimizationError(
        f"geometry optimisation did not reach max |F| <= {fmax:.1e} eV/Å: {reason} (last energy {energy:.8f} eV)",
        positions=np.asarray(final), energy=energy, fmax=force_max, steps=steps,
    )


def optimize_geometry(model, params, atomic_numbers, positions, *, total_charge: float = 0.0,
                      fmax: float = DEFAULT_FMAX, max_steps: int = DEFAULT_MAX_STEPS,
                      training_record: TrainingRecord = NO_TRAINING_RECORD) -> OptimizationResult:
    """Relax one isolated molecule with a model to max |F| ≤ fmax (float64; params are cast).

    Args:
      model, params: a :class:`physnetjax.PhysNet` and its variables ``{"params": ...}``.
      atomic_numbers: (N,) ints, N ≥ 2.  positions: (N, 3) Å.
      total_charge: Q in e.  fmax: eV/Å.  max_steps: L-BFGS steps.
      training_record: what the model's training data held (checkpoint metadata,
        :class:`~physnetjax.training_record.TrainingRecord`); a structure outside it warns.

    Raises:
      ValueError: invalid structure (NaN/Inf positions, bad atomic numbers, a total charge
        that is NaN/Inf or above ΣZ: see :func:`physnetjax.validation.validate_structure`),
        fmax or max_steps.
      OptimizationError: not converged; ``.positions`` holds the last geometry.

    Warns:
      PhysNetInputWarning: a molecule stretched as by positions in bohr, where a model may
        have a spurious minimum (:func:`physnetjax.validation.check_length_unit`), or elements,
        a total charge or a composition outside the training data
        (:meth:`physnetjax.training_record.TrainingRecord.check_structure`).
    """
    z, r = validate_structure(atomic_numbers, positions, model.max_atomic_number, total_charge=total_charge)
    stretched_start = check_length_unit(z, r)
    training_record_of(training_record).check_structure(model, z, total_charge)
    functions = molecule_functions(model, z, total_charge)
    with jax.enable_x64(True):
        params64 = cast_params(params, np.float64)

        def relax(start):
            return minimize(functions.energy, start, (params64,), fmax=fmax, max_steps=max_steps)

        result = relax(r)
        check_optimized_geometry(z, r, result, stretched_start, relax)
    return result


BOHR_MINIMUM_TOLERANCE_EV = 1e-3
"""A start read as bohr (× 0.529177) that relaxes this much (eV) below the start as given was in bohr."""


def check_optimized_geometry(atomic_numbers, start, optimized: OptimizationResult, stretched_start: Optional[float],
                             relax) -> None:
    """Judge an optimised geometry for a molecule given in bohr, or a spurious minimum far from any bonded molecule.

    A start stretched as by bohr read as Å (``stretched_start``, :func:`physnetjax.validation.check_length_unit`)
    is relaxed a second time after conversion to Å (``relax(positions) -> OptimizationResult``); reaching a minimum
    more than :data:`BOHR_MINIMUM_TOLERANCE_EV` lower shows that the start was in bohr, and the minimum found from it
    is a spurious one of the model (CO2's shipped model: C–O 1.96 Å, 1.43 eV above the true minimum; rare-gas
    clusters, stretched legitimately, relax back to the same minimum). An optimised geometry that is itself so
    stretched (:func:`physnetjax.validation.stretched_bond_ratio`) warns.

    Raises:
      PhysNetInputError: the start was in bohr, as above.
    Warns:
      PhysNetInputWarning: a stretched optimised geometry.
    """
    if stretched_start is not None:
        try:
            converted = relax(np.asarray(start, np.float64) * ANGSTROM_PER_BOHR)
        except RunStoppedError:
            converted = None
        if converted is not None and converted.energy < optimized.energy - BOHR_MINIMUM_TOLERANCE_EV:
            raise PhysNetInputError(
                f"the positions look like bohr (atoms {stretched_start:.2f}× the covalent bond length apart): relaxed "
                f"as given they reach a minimum of the model {optimized.energy - converted.energy:.3g} eV above the "
                "one reached from them × 0.529177 (bohr → Å), a spurious minimum far from the molecule; give the "
                "geometry in Å")
    check_not_collapsed(atomic_numbers, start, optimized)
    stretched = stretched_bond_ratio(atomic_numbers, optimized.positions)
    if stretched is not None:
        warnings.warn(f"the optimised geometry has its atoms {stretched:.2f}× the covalent bond length from their "
                      "nearest neighbours: a minimum of the model far from any bonded molecule, an extrapolation; "
                      "check the model's training data, the total charge and the start geometry", PhysNetInputWarning,
                      stacklevel=3)


def check_not_collapsed(atomic_numbers, start, optimized: OptimizationResult) -> None:
    """Refuse an optimised geometry with two atoms closer than :data:`~physnetjax.validation.BOND_RATIO_MIN` × the sum
    of their covalent radii: a minimum no molecule has (H₂: 1.19×, compressed bonds ≥ ~0.8×), but one a model may
    have where its training data held no such distances (CO2's shipped model: C–O 0.43 Å, reached in one line-search
    step from a bent start with |F| ≤ 1.7 eV/Å). Frequencies there would be reported as a molecule's. A start that
    looks like nm read as Å (:func:`~physnetjax.validation.position_unit_slip`) is named as such.

    Raises:
      OptimizationError: naming the pair, its distance and ratio; the geometry is kept.
    """
    from ase.data import covalent_radii

    z = np.asarray(atomic_numbers)
    r = np.asarray(optimized.positions, np.float64)
    ratio = (np.linalg.norm(r[:, None] - r[None], axis=-1)
             / (covalent_radii[z][:, None] + covalent_radii[z][None, :]))
    ratio[np.diag_indices(len(z))] = np.inf
    i, j = np.unravel_index(np.argmin(ratio), ratio.shape)
    if ratio[i, j] >= BOND_RATIO_MIN:
        return
    start_ratio = float(np.median(bond_length_ratios(z, start)))
    cause = (f"the start has its atoms {start_ratio:.2f}× the covalent bond length apart: "
             f"{position_unit_question(start_ratio)}" if start_ratio < BOND_RATIO_MIN
             else "start from a geometry nearer the molecule's minimum (the model has a spurious one here, where its "
                  "training data held no such distances), or check the model and the total charge")
    distance = float(np.linalg.norm(r[i] - r[j]))
    raise OptimizationError(
        f"the optimisation reached a collapsed geometry: atoms {min(i, j)}-{max(i, j)} at {distance:.3g} Å, "
        f"{ratio[i, j]:.2f}× their covalent bond length (a molecule's minimum has ≥ ~0.8×), at E = "
        f"{optimized.energy:.6f} eV; its frequencies would not be a molecule's: {cause}",
        positions=r, energy=optimized.energy, fmax=optimized.fmax, steps=optimized.steps)


def _max_atom_norm(gradient):
    return jnp.max(jnp.linalg.norm(gradient, axis=-1))


@functools.lru_cache(maxsize=64)
def _lbfgs_loop(energy_fn):
    """Jitted ``(positions, args, fmax, max_steps) -> (positions, E, max|F|, steps, downhill)`` for ``energy_fn``.

    ``downhill`` is False when the last step raised the energy beyond round-off.
    """

    def run(positions, args, fmax, max_steps):
        def value_fn(r):
            return energy_fn(r, *args)

        optimizer = optax.lbfgs()
        value, gradient = jax.value_and_grad(value_fn)(positions)

        def keep_going(carry):
            _, _, value, gradient, steps, downhill = carry
            return (steps < max_steps) & (_max_atom_norm(gradient) > fmax) & jnp.isfinite(value) & downhill

        def step(carry):
            r, state, value, gradient, steps, _ = carry
            updates, state = optimizer.update(gradient, state, r, value=value, grad=gradient, value_fn=value_fn)
            r = optax.apply_updates(r, updates)
            new_value = otu.tree_get(state, "value")
            downhill = new_value <= value + ENERGY_ROUND_OFF * jnp.maximum(1.0, jnp.abs(value))
            return r, state, new_value, otu.tree_get(state, "grad"), steps + 1, downhill

        carry = (positions, optimizer.init(positions), value, gradient, jnp.asarray(0), jnp.asarray(True))
        r, _, value, gradient, steps, downhill = jax.lax.while_loop(keep_going, step, carry)
        return r, value, _max_atom_norm(gradient), steps, downhill

    return jax.jit(run)
