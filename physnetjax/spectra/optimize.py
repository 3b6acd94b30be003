"""Geometry optimisation of one molecule: L-BFGS with a bounded step, in float64 inside jit.

The whole loop is one ``jax.lax.while_loop``: the L-BFGS direction (memory :data:`MEMORY`,
initial inverse Hessian scaled by the newest curvature pair, 1/:data:`INITIAL_STIFFNESS`
before there is one), scaled so that no atom moves more than ``max_step`` Å in one step
(ASE's ``maxstep``, 0.2 Å by default), then a backtracking line search that accepts the first
step length α ≤ 1 with a sufficient decrease of the energy (Armijo). L-BFGS rather than
FIRE: near a minimum it converges superlinearly, which is what reaching max |F| ≤ 1e-4 eV/Å
(or tighter, for a clean Hessian) needs, and the line search guarantees a decrease of the
energy at every step without a time step or mass to tune.

The bound on the step keeps the optimisation in the basin of the start. A line search free
to lengthen its steps (optax's zoom search, used before) jumped from CO2 and ethanol starts
0.1 Å off the minimum, from which ASE's BFGS relaxes back to it, into spurious minima of the
shipped models (C–O 0.61 Å; two ethanol atoms 0.40 Å apart). Translations and rotations are
flat directions of the energy; they carry no gradient, so the iterates never move along them.

Convergence: max_i |F_i| ≤ ``fmax`` with F_i = −∂E/∂R_i the force on atom i (the
Euclidean norm per atom, as ASE's ``fmax``). The loop also stops when ``max_steps``
steps are done, when the line search finds no step that lowers the energy beyond its
round-off (:data:`ENERGY_ROUND_OFF` relative) or when the energy is not finite; these raise
:class:`OptimizationError` carrying the last geometry.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from physnetjax import compilation
from physnetjax.calculator import cast_params
from physnetjax.errors import (PhysNetInputError, PhysNetInputWarning, RunStoppedError, displayed, displayed_setting,
                               warn_caller)
from physnetjax.training_record import NO_TRAINING_RECORD, TrainingRecord, training_record_of
from physnetjax.units import ANGSTROM_PER_BOHR
from physnetjax.validation import (
    BOND_RATIO_MIN,
    bond_length_ratios,
    check_count,
    check_length_unit,
    covalent_distance_ratios,
    check_range,
    position_unit_question,
    stretched_bond_ratio,
    validate_structure,
)
from physnetjax.spectra.molecule import molecule_functions, require_molecule

DEFAULT_FMAX = 1e-4
"""Default convergence threshold on max_i |F_i| in eV/Å."""

DEFAULT_MAX_STEPS = 1000
"""Default largest number of L-BFGS steps."""

DEFAULT_MAX_STEP = 0.2
"""Default largest displacement of any atom in one step, in Å (ASE's ``maxstep`` for BFGS and LBFGS)."""

MEMORY = 10
"""Curvature pairs L-BFGS keeps."""

INITIAL_STIFFNESS = 70.0
"""eV/Å²: the Hessian L-BFGS assumes before it has a curvature pair, 70 I (ASE's default guess, the order of a
bond's force constant); the first step is F/70 Å, bounded by ``max_step``."""

ARMIJO = 1e-4
"""c₁ of the sufficient-decrease condition E(R + αd) ≤ E(R) + c₁ α ∇E·d (Nocedal & Wright's usual value)."""

MAX_LINE_SEARCH_TRIALS = 30
"""Energy evaluations one line search may take (each shortens α to 0.1–0.5 of the last): α down to ~1e-9."""

CURVATURE_FLOOR = 1e-10
"""A pair with s·y ≤ this × |s| |y| (energy not convex along the step) is left out of the L-BFGS memory, which
keeps the inverse Hessian positive definite."""

ENERGY_ROUND_OFF = 1e-10
"""Relative rise of the energy over a full L-BFGS step (α = 1) that is still taken as round-off. Near a tight
minimum (max |F| ~ 1e-7 eV/Å) a step changes E by less than float64 resolves, and the
evaluation of a model energy of ~10³ eV scatters by ~1e-13 relative, so such steps can raise
E by a few ulp and L-BFGS, driven by the gradient, still converges. Shortened steps get no
allowance: with a gradient that does not match the energy they would otherwise creep uphill
by round-off-sized steps instead of stopping."""


FORCE_ROUND_OFF = 1e-13
"""Relative to max(1, |E| / eV), in eV/Å: forces at or below this are at the level of float64 round-off (ε ≈ 2e-16
of the energy and of the sums that make up its gradient; the shipped CO2 model's CO stalls at max |F| = 4e-15 eV/Å,
E = −168 eV). An ``fmax`` below it is not reached by raising ``max_steps``, which the message of an unconverged
optimisation says instead."""


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


def check_optimizer_settings(fmax: float, max_steps: int, names: Optional[Mapping[str, str]] = None,
                             max_step: float = DEFAULT_MAX_STEP) -> None:
    """PhysNetInputError unless ``fmax`` (eV/Å) and ``max_step`` (Å) are finite and > 0 and ``max_steps`` an integer
    >= 1 (not a float such as 2.0); the messages name them by keyword or as ``names`` does (a command line passes
    its options, e.g. ``{"fmax": "--fmax"}``)."""
    check_range(displayed("fmax", names), fmax, "eV/Å", 0.0, strict=True)
    check_count(displayed("max_steps", names), max_steps)
    check_range(displayed("max_step", names), max_step, "Å", 0.0, strict=True)


def minimize(energy_fn, positions, args=(), *, fmax: float = DEFAULT_FMAX, max_steps: int = DEFAULT_MAX_STEPS,
             max_step: float = DEFAULT_MAX_STEP, names: Optional[Mapping[str, str]] = None) -> OptimizationResult:
    """Minimise ``energy_fn(positions, *args)`` over the positions (float64, one jitted loop).

    Args:
      energy_fn: pure, JAX-differentiable ``(positions (N, 3) Å, *args) -> () eV``.
      positions: (N, 3) start geometry in Å.
      args: further arguments of ``energy_fn`` (e.g. the parameters), traced.
      fmax: convergence threshold on max_i |∂E/∂R_i| in eV/Å (> 0).
      max_steps: largest number of L-BFGS steps (≥ 1).
      max_step: largest displacement of any atom in one step, Å (> 0).
      names: keyword (``fmax``, ``max_steps``, ``max_step``) → how the messages name it (a command line passes its
        options, e.g. ``{"max_steps": "--max-steps"}``); by default the keyword.

    Returns:
      :class:`OptimizationResult` at the first iterate with max |F| ≤ fmax.

    Raises:
      ValueError: fmax or max_step not finite and > 0 (an infinite fmax would accept any geometry as converged),
        max_steps < 1 (:func:`check_optimizer_settings`), or positions not finite (N, 3).
      OptimizationError: not converged (the message says why; the last geometry is kept).
    """
    check_optimizer_settings(fmax, max_steps, names, max_step)
    start = np.asarray(positions, dtype=np.float64)
    if start.ndim != 2 or start.shape[1] != 3 or not np.isfinite(start).all():
        raise ValueError(f"positions must be finite with shape (N, 3), received shape {start.shape}")
    with jax.enable_x64(True):
        final, energy, force_max, steps, downhill = jax.device_get(
            _lbfgs_loop(energy_fn)(jnp.asarray(start), tuple(args), fmax, int(max_steps), float(max_step))
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
    elif force_max <= FORCE_ROUND_OFF * max(1.0, abs(energy)):
        reason = (f"max |F| = {force_max:.3e} eV/Å after {displayed_setting('max_steps', steps, names)}, at the "
                  f"level of float64 round-off of the forces for an energy of {abs(energy):.3g} eV: "
                  f"{displayed_setting('fmax', f'{fmax:.1e}', names)} eV/Å is below what any number of steps "
                  f"reaches; loosen {displayed('fmax', names)}")
    else:
        reason = (f"max |F| = {force_max:.3e} eV/Å after {displayed_setting('max_steps', steps, names)}; raise "
                  f"{displayed('max_steps', names)}")
    raise OptimizationError(
        f"geometry optimisation did not reach max |F| <= {fmax:.1e} eV/Å: {reason} (last energy {energy:.8f} eV)",
        positions=np.asarray(final), energy=energy, fmax=force_max, steps=steps,
    )


def optimize_geometry(model, params, atomic_numbers, positions, *, total_charge: float = 0.0,
                      fmax: float = DEFAULT_FMAX, max_steps: int = DEFAULT_MAX_STEPS,
                      max_step: float = DEFAULT_MAX_STEP,
                      training_record: TrainingRecord = NO_TRAINING_RECORD) -> OptimizationResult:
    """Relax one isolated molecule with a model to max |F| ≤ fmax (float64; params are cast).

    Args:
      model, params: a :class:`physnetjax.PhysNet` and its variables ``{"params": ...}``.
      atomic_numbers: (N,) ints, N ≥ 2.  positions: (N, 3) Å.
      total_charge: Q in e.  fmax: eV/Å.  max_steps: L-BFGS steps.  max_step: Å per atom and step.
      training_record: what the model's training data held (checkpoint metadata,
        :class:`~physnetjax.training_record.TrainingRecord`); a structure outside it warns, and so does an
        optimised geometry whose interatomic distances lie outside those of the training data.

    Raises:
      ValueError: invalid structure (NaN/Inf positions, bad atomic numbers, a total charge
        that is NaN/Inf or above ΣZ: see :func:`physnetjax.validation.validate_structure`),
        fmax, max_steps or max_step.
      OptimizationError: not converged; ``.positions`` holds the last geometry.

    Warns:
      PhysNetInputWarning: a molecule stretched as by positions in bohr, where a model may
        have a spurious minimum (:func:`physnetjax.validation.check_length_unit`), or elements,
        a total charge, a composition or interatomic distances outside the training data
        (:meth:`physnetjax.training_record.TrainingRecord.check_structure`; the distances of the optimised
        geometry too, :meth:`~physnetjax.training_record.TrainingRecord.check_distances`).
    """
    z, r = validate_structure(atomic_numbers, positions, model.supported_max_atomic_number, total_charge=total_charge)
    require_molecule(z)
    stretched_start = check_length_unit(z, r)
    record = training_record_of(training_record)
    record.check_structure(model, z, total_charge, positions=r)
    functions = molecule_functions(model, z, total_charge)
    with jax.enable_x64(True):
        params64 = cast_params(params, np.float64)

        def relax(start):
            return minimize(functions.energy, start, (params64,), fmax=fmax, max_steps=max_steps, max_step=max_step)

        result = relax(r)
        check_optimized_geometry(z, r, result, stretched_start, relax)
    record.check_distances(z, result.positions, where="optimised geometry")
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
        warn_caller(f"the optimised geometry has its atoms {stretched:.2f}× the covalent bond length from their "
                    "nearest neighbours: a minimum of the model far from any bonded molecule, an extrapolation; "
                    "check the model's training data, the total charge and the start geometry", PhysNetInputWarning)


def check_not_collapsed(atomic_numbers, start, optimized: OptimizationResult) -> None:
    """Refuse an optimised geometry with two atoms closer than :data:`~physnetjax.validation.BOND_RATIO_MIN` × the sum
    of their covalent radii: a minimum no molecule has (H₂: 1.19×, compressed bonds ≥ ~0.8×), but one a model may
    have where its training data held no such distances (CO2's shipped model: C–O 0.24 Å, reached from CO2 in nm
    read as Å; 0.61 Å from some starts 0.1 Å off its minimum, as with ASE's BFGS). Frequencies there would be reported as a molecule's. A start that
    looks like nm read as Å (:func:`~physnetjax.validation.position_unit_slip`) is named as such.

    Raises:
      OptimizationError: naming the pair, its distance and ratio; the geometry is kept.
    """
    z = np.asarray(atomic_numbers)
    r = np.asarray(optimized.positions, np.float64)
    ratio = covalent_distance_ratios(z, r)
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


def _max_atom_norm(vectors):
    """max_i |v_i| of (N, 3) per-atom vectors."""
    return jnp.max(jnp.linalg.norm(vectors, axis=-1))


def _lbfgs_direction(gradient, steps, gradient_changes, inverse_curvatures, stored, newest):
    """−H g for the L-BFGS inverse Hessian H of the ``stored`` newest curvature pairs (two-loop recursion).

    The pairs (s_k, y_k) (flattened (MEMORY, 3N) Å and eV/Å, ρ_k = 1/(s_k·y_k)) sit in a circular buffer with the
    newest at index ``newest``; H₀ = γ I with γ = s·y / y·y of the newest pair, or 1/:data:`INITIAL_STIFFNESS`
    without pairs (Nocedal & Wright, Algorithm 7.4).
    """
    q = gradient.reshape(-1)
    alphas = []
    for age in range(MEMORY):
        k = (newest - age) % MEMORY
        alpha = jnp.where(age < stored, inverse_curvatures[k] * jnp.dot(steps[k], q), 0.0)
        q = q - alpha * gradient_changes[k]
        alphas.append(alpha)
    curvature = jnp.dot(steps[newest], gradient_changes[newest])
    change_sq = jnp.dot(gradient_changes[newest], gradient_changes[newest])
    gamma = jnp.where(stored > 0, curvature / jnp.where(stored > 0, change_sq, 1.0), 1.0 / INITIAL_STIFFNESS)
    z = gamma * q
    for age in reversed(range(MEMORY)):
        k = (newest - age) % MEMORY
        beta = jnp.where(age < stored, inverse_curvatures[k] * jnp.dot(gradient_changes[k], z), 0.0)
        z = z + steps[k] * (alphas[age] - beta)
    return -z.reshape(gradient.shape)


@functools.lru_cache(maxsize=64)
def _lbfgs_loop(energy_fn):
    """Jitted ``(positions, args, fmax, max_steps, max_step) -> (positions, E, max|F|, steps, downhill)``.

    One iteration: the L-BFGS direction d, scaled so that no atom moves more than ``max_step`` Å; then the first
    step length of α = 1, α₁, α₂, ... (each 0.1-0.5 × the one before, where a quadratic through E(R), its slope and
    the last trial has its minimum) that satisfies the Armijo condition
    E(R + αd) ≤ E(R) + c₁ α ∇E·d (c₁ = :data:`ARMIJO`; the full step α = 1 up to the round-off allowance
    :data:`ENERGY_ROUND_OFF`, which near a tight minimum is all that separates the energies). A curvature pair with
    s·y ≤ 0 (E not convex along the step) is not stored: every stored pair has s·y > 0, so H stays positive definite
    and d downhill. ``downhill`` is False when :data:`MAX_LINE_SEARCH_TRIALS` trials found no such α.
    """

    def run(positions, args, fmax, max_steps, max_step):
        value_and_grad = jax.value_and_grad(lambda r: energy_fn(r, *args))
        value, gradient = value_and_grad(positions)
        memory = jnp.zeros((MEMORY, positions.size), positions.dtype)
        carry = (positions, value, gradient, memory, memory, jnp.zeros(MEMORY, positions.dtype), jnp.asarray(0),
                 jnp.asarray(MEMORY - 1), jnp.asarray(0), jnp.asarray(True))

        def keep_going(carry):
            _, value, gradient, *_, steps, downhill = carry
            return (steps < max_steps) & (_max_atom_norm(gradient) > fmax) & jnp.isfinite(value) & downhill

        def step(carry):
            r, value, gradient, s_memory, y_memory, rho_memory, stored, newest, steps, _ = carry
            direction = _lbfgs_direction(gradient, s_memory, y_memory, rho_memory, stored, newest)
            direction = direction * jnp.minimum(1.0, max_step / _max_atom_norm(direction))
            slope = jnp.vdot(gradient, direction)
            allowance = ENERGY_ROUND_OFF * jnp.maximum(1.0, jnp.abs(value))

            def trial(search):
                length, _, _, _, trials = search
                trial_value, trial_gradient = value_and_grad(r + length * direction)
                round_off = jnp.where(trials == 0, allowance, 0.0)  # a shorter step would change E by even less
                accepted = jnp.isfinite(trial_value) & (trial_value <= value + ARMIJO * length * slope + round_off)
                excess = trial_value - value - length * slope  # > 0: the quadratic through E, slope, trial has a minimum
                quadratic = -slope * length**2 / (2.0 * jnp.where(excess > 0.0, excess, 1.0))
                shorter = jnp.where(jnp.isfinite(trial_value) & (excess > 0.0),
                                    jnp.clip(quadratic, 0.1 * length, 0.5 * length), 0.1 * length)
                return jnp.where(accepted, length, shorter), trial_value, trial_gradient, accepted, trials + 1

            def searching(search):
                return ~search[3] & (search[4] < MAX_LINE_SEARCH_TRIALS)

            length, new_value, new_gradient, accepted, _ = jax.lax.while_loop(
                searching, trial, (jnp.asarray(1.0, value.dtype), value, gradient, jnp.asarray(False), 0))
            s = (length * direction).reshape(-1)
            y = (new_gradient - gradient).reshape(-1)
            curvature = jnp.dot(s, y)
            keep = accepted & (curvature > CURVATURE_FLOOR * jnp.linalg.norm(s) * jnp.linalg.norm(y))
            slot = (newest + 1) % MEMORY
            s_memory = jnp.where(keep, s_memory.at[slot].set(s), s_memory)
            y_memory = jnp.where(keep, y_memory.at[slot].set(y), y_memory)
            rho_memory = jnp.where(keep, rho_memory.at[slot].set(1.0 / jnp.where(keep, curvature, 1.0)), rho_memory)
            return (jnp.where(accepted, r + length * direction, r), jnp.where(accepted, new_value, value),
                    jnp.where(accepted, new_gradient, gradient), s_memory, y_memory, rho_memory,
                    jnp.where(keep, jnp.minimum(stored + 1, MEMORY), stored), jnp.where(keep, slot, newest),
                    steps + 1, accepted)

        r, value, gradient, *_, steps, downhill = jax.lax.while_loop(keep_going, step, carry)
        return r, value, _max_atom_norm(gradient), steps, downhill

    return compilation.jit_with_xla_defaults(run)
